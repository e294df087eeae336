"""Reading a /metrics endpoint as Prometheus does: fetched over HTTP, parsed by prometheus_client's own parser."""

from __future__ import annotations

import urllib.request
from typing import Dict, List, Optional, Tuple

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "scrape"]


class Scrape:
    """One exposition: its families as parsed, each series' samples by name, the families' types."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: List[Metric] = list(text_string_to_metric_families(text))
        self.types: Dict[str, str] = {}
        self.samples: Dict[str, List[Tuple[Dict[str, str], float]]] = {}
        for family in self.families:
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))

    def value(self, name: str, **labels: str) -> Optional[float]:
        """The value of the one ``name`` series whose labels include these; None when there is none."""
        found = [v for have, v in self.samples.get(name, []) if labels.items() <= have.items()]
        assert len(found) <= 1, f"{len(found)} {name} series match {labels}"
        return found[0] if found else None

    def labels(self, name: str) -> List[Dict[str, str]]:
        """The label sets of every ``name`` series."""
        return [have for have, _ in self.samples.get(name, [])]


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.status == 200
        return Scrape(response.read().decode())
