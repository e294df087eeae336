"""Prometheus tier: virtq's metrics scraped by a private Prometheus server (virtq.testing.prometheus)."""
