"""contrib/prometheus/virtq-alerts.yml, read as text (no YAML library): its alert names and expressions."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import List

__all__ = ["ALERTS", "ALERT_NAMES", "alert_expressions"]

ALERTS = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "virtq-alerts.yml"
ALERT_NAMES: List[str] = re.findall(r"^\s*- alert: (\w+)$", ALERTS.read_text(), re.MULTILINE)


def alert_expressions(text: str) -> List[str]:
    """The ``expr`` of every rule in a rule file (one line, or a ``|`` block: the lines indented deeper)."""
    found: List[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        head, _, rest = line.partition("expr:")
        if head.strip() or not rest.strip():
            continue
        if rest.strip() != "|":
            found.append(rest.strip())
            continue
        block = itertools.takewhile(lambda more: len(more) - len(more.lstrip()) > len(head), lines[number + 1:])
        found.append("\n".join(more.strip() for more in block))
    return found
