"""A metrics endpoint of the test's own: prometheus_client's HTTP server on a free loopback port, serving a
private registry the test fills (the way the agent and the exporter serve theirs)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsEndpoint"]


class MetricsEndpoint:
    """``registry`` served at ``address`` (``127.0.0.1:port``) until ``stop()``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
