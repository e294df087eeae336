"""Where QMF messages go: the addresses, subjects and property names of the map dialect."""

from __future__ import annotations

import time

APP_ID_KEY = "x-amqp-0-10.app-id"
APP_ID = "qmf2"
OPCODE = "qmf.opcode"
METHOD = "method"
AGENT = "qmf.agent"
CONTENT = "qmf.content"
PARTIAL = "partial"

DIRECT = "qmf.default.direct"
TOPIC = "qmf.default.topic"
LOCATE_SUBJECT = "console.request.agent_locate"

VENDOR = "libvirt.org"
PRODUCT = "virtq"


def direct_address(agent_name: str) -> str:
    """Where requests for one agent go."""
    return f"{DIRECT}/{agent_name}"


def _subject_word(text: str) -> str:
    """Topic words are dot-separated, so dots inside a word become underscores (as QMF does)."""
    return text.replace(".", "_")


def heartbeat_subject(vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.heartbeat.{_subject_word(vendor)}.{_subject_word(product)}"


def data_subject(package: str, class_name: str, vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.data.{_subject_word(package)}.{class_name}.{_subject_word(vendor)}.{_subject_word(product)}"


def event_subject(package: str, event: str, vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.event.{_subject_word(package)}.{event}.{_subject_word(vendor)}.{_subject_word(product)}"


def stats_subject(package: str, class_name: str, vendor: str = VENDOR, product: str = PRODUCT) -> str:
    return f"agent.ind.stats.{_subject_word(package)}.{class_name}.{_subject_word(vendor)}.{_subject_word(product)}"


def now_ns() -> int:
    """QMF timestamps are nanoseconds since the epoch."""
    return time.time_ns()
