"""The agent side of bench.ingest, in a process of its own: real agents whose statistics the benchmark pushes.

Each agent is the real agent code (:class:`virtq.agent.Agent`, direct mode, its own loopback
:class:`~virtq.transport.DirectListener`) on a :class:`~virtq.testing.FakeHypervisor` holding the plan's running
domains, so the console locates and loads them as it would real ones. The agents' own sampler runs once at
start (its interval is an hour); after that the statistics are the benchmark's: on ``run`` the process
sends batches of ``rows`` rows, round-robin over its agents, through each agent's listener — as fast as the
console applies them (at most ``window`` messages sent and not yet applied, read from the counter the
console process shares) — for ``seconds`` or ``max_records`` rows, whichever ends first.

The parent talks over a pipe (dicts both ways): the process says ``ready`` with the agents' URLs; it answers
``run`` with ``sent`` (messages, rows), ``pace`` (a paced run: :mod:`.pacing`) with ``paced``, and ends on
``stop`` or at the end of the pipe.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from virtq.agent import Agent
from virtq.schema import default_schema
from virtq.testing import FakeHypervisor, free_port
from virtq.transport import DirectListener

from .pacing import pace
from .traffic import AgentTraffic, FleetPlan

__all__ = ["STALLED", "main", "push"]

HOUR = 3600.0
STALLED = 10.0
"""Seconds without a message applied after which a run gives up (the console refuses what it is sent)."""


def start_agents(plan: FleetPlan, workdir: Path, seed: int) -> List[Tuple[Agent, DirectListener, AgentTraffic]]:
    started: List[Tuple[Agent, DirectListener, AgentTraffic]] = []
    for a in range(plan.agents):
        traffic = AgentTraffic(plan, a, epoch=0, seed=seed)
        fake = FakeHypervisor(plan.domain_list(a), node=plan.node(a), events=False)
        fake.bulk = traffic.info()
        listener = DirectListener(f"amqp://127.0.0.1:{free_port()}")
        agent = Agent(default_schema(), fake, listener, heartbeat=10.0, interval=HOUR, slow_interval=HOUR,
                      reconcile=HOUR, events=False, state_dir=workdir / f"agent{a}")
        agent.start()
        traffic.epoch = agent.epoch
        started.append((agent, listener, traffic))
    return started


def push(agents: List[Tuple[Agent, DirectListener, AgentTraffic]], applied: Any, command: Dict[str, Any]) -> \
        Dict[str, Any]:
    """Send one run's batches; ``applied.value``: messages the console applied since the parent reset it."""
    rows, encoding, window = int(command["rows"]), str(command["encoding"]), int(command["window"])
    seconds, max_records = float(command["seconds"]), int(command["max_records"])
    sent = records = 0
    stalled = False
    start = time.monotonic()
    while records < max_records and time.monotonic() - start < seconds and not stalled:
        _, listener, traffic = agents[sent % len(agents)]
        wire = traffic.message(rows, encoding)
        stalled = not _room(applied, sent, window)
        if not stalled:
            listener.send(wire)
            sent += 1
            records += min(rows, len(traffic.uuids))
    return {"type": "sent", "messages": sent, "records": records, "seconds": time.monotonic() - start,
            "stalled": stalled}


def _room(applied: Any, sent: int, window: int) -> bool:
    """Wait until fewer than ``window`` messages are on their way; False if the console stopped applying."""
    last, since = applied.value, time.monotonic()
    while sent - applied.value >= window:
        if applied.value != last:
            last, since = applied.value, time.monotonic()
        elif time.monotonic() - since > STALLED:
            return False
        time.sleep(0.0002)
    return True


def main(plan: FleetPlan, seed: int, applied: Any, conn: Connection, log_file: Optional[str] = None) -> None:
    """The process's entry point (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us to stop
    logging.basicConfig(level=logging.WARNING, filename=log_file,
                        format="%(asctime)s ingest-agents %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="virtq-ingest-") as tmp:
        agents = start_agents(plan, Path(tmp), seed)
        try:
            conn.send({"type": "ready", "urls": [listener.url for _, listener, _ in agents]})
            while True:
                try:
                    command = conn.recv()
                except (EOFError, OSError):
                    return
                if command.get("type") == "run":
                    conn.send(push(agents, applied, command))
                elif command.get("type") == "pace":
                    conn.send(pace(agents, command))
                else:
                    return
        finally:
            for agent, _, _ in agents:
                agent.kill()
