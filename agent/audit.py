"""The audit trail: every call that changes something, and every denial, logged once, structured.

One line per call on the ``virtq.audit`` logger: ``principal``, ``agent``, ``object``, ``method``,
``outcome`` (``ok``, ``denied``, ``error 0x1002a`` …), ``duration_ms`` and the arguments with secrets
redacted and long values cut — as ``key=value`` text, values JSON-quoted so that nothing a caller
sends can break the line or forge another. Successful changes are logged at NOTICE, denials at
WARNING; under systemd (``JOURNAL_STREAM``) lines carry syslog priority prefixes, so journald files
them at those priorities (``journalctl -p notice -t virtq-agent``).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Mapping, Optional

from .logformat import NOTICE, JournalFormatter  # the audit trail's level and its journald form

__all__ = ["LOG", "NOTICE", "JournalFormatter", "record", "redact"]

LOG = logging.getLogger("virtq.audit")

SECRET_NAMES = re.compile(r"pass|secret|token|cookie|credential", re.I)
"""Arguments whose value is replaced by ***: setUserPassword's password, for one."""
SECRET_XML = re.compile(r"""((?:passwd|password|secret|value)\s*=\s*)(['"])[^'"]*\2""", re.I)
"""XML attributes that carry secrets (a graphics passwd='…', a secret's value)."""
MAX_VALUE = 256
MAX_ITEMS = 20


def redact(value: Any, name: str = "") -> Any:
    """A value fit for the log: secrets hidden, long strings and collections cut."""
    if name and SECRET_NAMES.search(name):
        return "***"
    if isinstance(value, str):
        value = SECRET_XML.sub(r"\1\2***\2", value)
        return value if len(value) <= MAX_VALUE else f"{value[:MAX_VALUE]}…({len(value)} chars)"
    if isinstance(value, Mapping):
        items = list(value.items())
        shown = {str(k): redact(v, str(k)) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            shown["…"] = f"{len(items) - MAX_ITEMS} more"
        return shown
    if isinstance(value, (list, tuple)):
        return [redact(v, name) for v in value[:MAX_ITEMS]] + ([f"… {len(value) - MAX_ITEMS} more"]
                                                                if len(value) > MAX_ITEMS else [])
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return value


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, default=str, separators=(",", ":"))


def record(principal: Optional[str], agent: str, object_name: str, method: str, arguments: Mapping[str, Any],
           outcome: str, duration: float, reason: str = "") -> None:
    """Log one audited call."""
    fields = {"principal": principal or "anonymous", "agent": agent, "object": object_name, "method": method,
              "outcome": outcome}
    if reason:
        fields["reason"] = reason
    text = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
    text += f" duration_ms={duration * 1000:.1f} arguments={_quote(redact(dict(arguments)))}"
    level = logging.WARNING if outcome == "denied" else NOTICE
    LOG.log(level, "audit %s", text, extra={"audit": {**fields, "duration": duration}})
