"""How the daemon's log lines look: text for a terminal, syslog priorities for journald, JSON for shippers.

Two levels beyond Python's: NOTICE (25, the audit trail's changes: agent/audit.py) and TRACE (5, below
DEBUG: only there does proton's own debug logging show, which drowns virtq's at DEBUG). Under systemd
stderr is a journal stream (``$JOURNAL_STREAM`` names its device and inode); a ``<N>`` prefix on each
line is the syslog priority journald files it under, so ``journalctl -p warning`` means what it says.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Mapping, Optional, TextIO

TRACE = 5
NOTICE = 25
logging.addLevelName(TRACE, "TRACE")
logging.addLevelName(NOTICE, "NOTICE")

LEVELS = ("trace", "debug", "info", "warning", "error")
FORMATS = ("auto", "text", "journal", "json")
"""``auto``: ``journal`` when stderr is the journal, else ``text``."""

PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (NOTICE, 5), (logging.INFO, 6))
"""Python level → syslog priority (anything below INFO is 7, debug)."""

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def priority(levelno: int) -> int:
    return next((p for level, p in PRIORITIES if levelno >= level), 7)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JournalFormatter(logging.Formatter):
    """``<priority>name: message`` — journald reads the prefix as the line's syslog priority. Every line of a
    multi-line record (a traceback) carries it, or journald would file the rest at its default."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``exception`` if
    any, then the record's extra fields (the audit trail's ``audit`` object, for one)."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line = {"ts": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in line})
        return json.dumps(line, ensure_ascii=True, default=str, separators=(",", ":"))


def stderr_is_journal(environ: Mapping[str, str] = os.environ, stream: Optional[TextIO] = None) -> bool:
    """Whether ``stream`` (stderr) is the journal stream systemd connected (``$JOURNAL_STREAM`` is
    ``device:inode``; a child whose stderr was redirected inherits the variable but not the stream)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat((stream or sys.stderr).fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


def formatter(name: str) -> logging.Formatter:
    if name == "auto":
        name = "journal" if stderr_is_journal() else "text"
    if name == "journal":
        return JournalFormatter()
    return JsonFormatter() if name == "json" else TextFormatter()


def set_level(level: str) -> None:
    """Change the level at run time (a reload)."""
    logging.getLogger().setLevel(level.upper())
    _set_proton_level(level)


def _set_proton_level(level: str) -> None:
    """proton's debug lines only at TRACE."""
    logging.getLogger("proton").setLevel(logging.NOTSET if level == "trace" else logging.INFO)


def setup_logging(level: str, format_name: str) -> logging.Handler:
    """Log to stderr in ``format_name`` from ``level`` up; the handler is returned so a reload can change it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(format_name))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    _set_proton_level(level)
    return handler
