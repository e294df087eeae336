"""The baseline's decoder: while :func:`decoding` ``("old")`` is in force, this process's codec reads ``_stats``
batches in the old map form (bench/ingest/legacy.py) instead of the tree's.

Only the benchmark's console process does this, and only around its baseline runs: product code has no old
path. The substitution is checked on a real message before it is trusted, so a codec that stops calling
``StatsBatch.from_wire`` makes the baseline fail loudly rather than measure the new decoder twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

from proton import Message as ProtonMessage

from virtq.schema.codec import StatsBatch, StatsIndication, decode

from .traffic import AgentTraffic, FleetPlan, encode

__all__ = ["decoding"]


@contextlib.contextmanager
def decoding(encoding: str) -> Iterator[None]:
    """Inside: the codec decodes ``encoding`` (``new``: the tree's, as is; ``old``: the map form)."""
    if encoding == "new":
        yield
        return
    from .legacy import legacy_from_wire

    original = StatsBatch.__dict__["from_wire"]

    def from_wire(cls: Any, value: Any) -> StatsBatch:
        return legacy_from_wire(value)

    setattr(StatsBatch, "from_wire", classmethod(from_wire))
    try:
        _check(encoding)
        yield
    finally:
        setattr(StatsBatch, "from_wire", original)


def _check(encoding: str) -> None:
    """Decode one message of ``encoding`` carried through AMQP: it must come back as the batch it was."""
    traffic = AgentTraffic(FleetPlan(1, 40), 0, epoch=1)
    batch = traffic.next_batch(40)
    wire = encode(batch, traffic.agent, traffic.subject, encoding)
    received = ProtonMessage()
    received.decode(ProtonMessage(body=wire.body).encode())
    try:
        message = decode(dataclasses.replace(wire, body=received.body))
    except Exception as exc:
        raise RuntimeError(f"the {encoding} decoder could not be substituted: {exc}") from exc
    got = message.batches[0] if isinstance(message, StatsIndication) and message.batches else None
    if got is None or got.keys != batch.keys or {k: list(v) for k, v in got.columns.items()} != \
            {k: list(v) for k, v in batch.columns.items()}:
        raise RuntimeError(f"the {encoding} decoder could not be substituted: a batch did not survive the trip")
