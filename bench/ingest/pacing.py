"""The agents' side of a paced run: a fleet's per-second mix of messages, spread evenly, not a flood.

A console following a fleet receives its messages one at a time: every agent's heartbeat once per interval and
its statistics once per pass (bench/ingest's flood runs send back to back instead, so a select serves many).
Here the agents' process sends ``rate`` messages per second at even intervals for ``seconds``, round-robin over
its agents, of one kind (:data:`KINDS`): heartbeats (each the agent's own, ``AgentHeartbeat(agent.info())`` as
its heartbeat thread sends it), statistics batches of ``rows`` rows (:mod:`.traffic`), or both alternating —
the fleet's mix, one heartbeat per statistics message (docs/BENCHMARKS.md §3). ``idle`` sends nothing: the
console's own cost of a second (its monitor, the agents' own heartbeats), measured to be subtracted.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

from virtq.agent import Agent
from virtq.schema.codec import AgentHeartbeat, WireMessage
from virtq.transport import DirectListener

from .traffic import AgentTraffic

__all__ = ["KINDS", "MESSAGE_KINDS", "pace"]

KINDS = ("idle", "heartbeat", "stats", "mix")
MESSAGE_KINDS = ("heartbeat", "stats")
"""What a paced run sends, by kind: the mix alternates these."""


def _kinds_of(kind: str) -> Tuple[str, ...]:
    if kind == "mix":
        return MESSAGE_KINDS
    if kind in MESSAGE_KINDS:
        return (kind,)
    if kind == "idle":
        return ()
    raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")


def _message(what: str, agent: Agent, traffic: AgentTraffic, rows: int) -> WireMessage:
    if what == "heartbeat":
        return AgentHeartbeat(agent.info(), agent=agent.name).encode()  # what Agent._beat sends
    return traffic.message(rows, "new")


def pace(agents: List[Tuple[Agent, DirectListener, AgentTraffic]], command: Dict[str, Any]) -> Dict[str, Any]:
    """Send one paced run; answers with what was sent, by kind, and how late the sender fell at worst."""
    kind, rate, seconds, rows = str(command["kind"]), float(command["rate"]), float(command["seconds"]), \
        int(command["rows"])
    order = _kinds_of(kind)
    sent = {what: 0 for what in MESSAGE_KINDS}
    records = 0
    late = 0.0
    start = time.monotonic()
    if not order:
        time.sleep(seconds)
    for i in range(int(rate * seconds) if order else 0):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        what = order[i % len(order)]
        agent, listener, traffic = agents[(i // len(order)) % len(agents)]
        listener.send(_message(what, agent, traffic, rows))
        sent[what] += 1
        if what == "stats":
            records += min(rows, len(traffic.uuids))
    return {"type": "paced", "sent": sent, "records": records, "seconds": time.monotonic() - start, "late": late}
