"""The statistics bench.ingest replays: what agents' samplers push for their running domains, encoded as the
agent sends it today (``new``) and in the old map form (``old``, bench/ingest/legacy.py: the baseline).

Each agent has ``domains`` running domains, uuid-keyed as on the test driver. A batch of B of them is what
the sampler's diff makes of one pass: every row's cpuTime grew (a running guest always uses some CPU), one
row in MEMORY_EVERY also changed memory (a balloon), one in STATE_EVERY its state (a pause or a resume);
a column no row changed is left out, and a row's unchanged values are None. Batches walk an agent's domains
round-robin, and every batch has a newer sample time than the one before, so the console applies every row.
"""

from __future__ import annotations

import dataclasses
import random
import uuid as uuidlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from virtq.agent.hypervisor import DOMAIN_INFO_FIELDS, DomainIdentity, NodeIdentity
from virtq.schema import default_schema
from virtq.schema.codec import PRODUCT, TOPIC, VENDOR, StatsBatch, StatsIndication, WireMessage, now_ns, stats_subject
from virtq.transport import encoded_size

__all__ = ["ENCODINGS", "MEMORY_EVERY", "STATE_EVERY", "AgentTraffic", "FleetPlan", "MessageSize", "encode",
           "message_size"]

ENCODINGS = ("new", "old")
"""``new``: StatsBatch.to_wire() as in the tree; ``old``: the map form of bench/ingest/legacy.py."""
MEMORY_EVERY = 50
STATE_EVERY = 1000
RUNNING, PAUSED = 1, 3
NAMESPACE = uuidlib.UUID("5b0b7e0c-7a3e-4d43-9a55-1a9e6b1c0f12")


@dataclass(frozen=True)
class FleetPlan:
    """The agents the sender plays and their domains (deterministic, so both processes agree)."""

    agents: int
    domains: int

    def node(self, agent: int) -> NodeIdentity:
        host = f"ingest-{agent:04d}"
        return NodeIdentity(str(uuidlib.uuid5(NAMESPACE, host)), host, f"test:///{host}")

    def domain_list(self, agent: int) -> List[DomainIdentity]:
        host = self.node(agent).hostname
        return [DomainIdentity(str(uuidlib.uuid5(NAMESPACE, f"{host}/vm{i:05d}")), f"{host}-vm{i:05d}", i + 1)
                for i in range(self.domains)]


class AgentTraffic:
    """One agent's stream of statistics batches (not thread-safe: one producer)."""

    def __init__(self, plan: FleetPlan, agent: int, epoch: int, seed: int = 0) -> None:
        rng = random.Random(seed * 7919 + agent)
        self.node = plan.node(agent)
        self.agent = f"{VENDOR}:{PRODUCT}:{self.node.uuid}"  # the Agent's name (its instance is the host uuid)
        self.uuids = [d.uuid for d in plan.domain_list(agent)]
        self.epoch = epoch
        self.schema_id = default_schema().cls("Domain").schema_id
        self.subject = stats_subject(default_schema().package, "Domain")
        n = len(self.uuids)
        self.cpu = [rng.randrange(10**12, 10**15) for _ in range(n)]  # hours to weeks of CPU, in ns
        self.cpu_step = [rng.randrange(10**8, 4 * 10**10) for _ in range(n)]  # 10 s of 0.01 to 4 busy vCPUs
        self.memory = [rng.choice((1, 2, 4, 8, 16)) * 1024 * 1024 for _ in range(n)]  # KiB
        self.state = [RUNNING] * n
        self.vcpus = [rng.choice((1, 2, 4)) for _ in range(n)]
        self.sample_ts = now_ns()
        self._next = 0  # the first row of the next batch
        self._rows = 0  # rows made so far (decides which rows change memory or state)

    def info(self) -> Dict[str, Dict[str, int]]:
        """Every domain's virDomainGetInfo values now (what the agent's first pass reads)."""
        return {u: dict(zip(DOMAIN_INFO_FIELDS, (self.state[i], self.memory[i], self.memory[i], self.vcpus[i],
                                                  self.cpu[i])))
                for i, u in enumerate(self.uuids)}

    def next_batch(self, rows: int) -> StatsBatch:
        n = len(self.uuids)
        rows = min(rows, n)
        index = [(self._next + j) % n for j in range(rows)]
        self._next = (self._next + rows) % n
        first, self._rows = self._rows, self._rows + rows
        self.sample_ts = max(self.sample_ts + 1, now_ns())
        cpu, step = self.cpu, self.cpu_step
        for i in index:
            cpu[i] += step[i]
        columns: Dict[str, List[Optional[int]]] = {"cpuTime": [cpu[i] for i in index]}
        for name, values, every, change in (("memory", self.memory, MEMORY_EVERY, _balloon),
                                            ("state", self.state, STATE_EVERY, _pause_or_resume)):
            column = _changed(values, index, first, every, change)
            if column is not None:
                columns[name] = column
        return StatsBatch(self.schema_id, self.epoch, self.sample_ts, tuple(self.uuids[i] for i in index), columns)

    def message(self, rows: int, encoding: str) -> WireMessage:
        return encode(self.next_batch(rows), self.agent, self.subject, encoding)


def _balloon(memory: int) -> int:
    return memory + 1024 if memory % 2048 == 0 else memory - 1024


def _pause_or_resume(state: int) -> int:
    return PAUSED if state == RUNNING else RUNNING


def _changed(values: List[int], index: Sequence[int], first: int, every: int,
             change: Callable[[int], int]) -> Optional[List[Optional[int]]]:
    """Change the field in one row of ``every`` (counting rows across batches from ``first``): the batch's
    column, None where unchanged; None when no row of the batch changed."""
    column: List[Optional[int]] = [None] * len(index)
    for j in range((every - 1 - first) % every, len(index), every):
        i = index[j]
        values[i] = column[j] = change(values[i])
    return column if any(v is not None for v in column) else None


def encode(batch: StatsBatch, agent: str, subject: str, encoding: str) -> WireMessage:
    """The agent's ``_stats`` indication of one batch, in the tree's encoding or the old map form."""
    wire = StatsIndication(batches=(batch,), agent=agent).encode(TOPIC, subject)
    if encoding == "new":
        return wire
    if encoding == "old":
        from .legacy import legacy_to_wire
        return dataclasses.replace(wire, body=[legacy_to_wire(batch)])
    raise ValueError(f"unknown encoding {encoding!r} (one of {', '.join(ENCODINGS)})")


@dataclass(frozen=True)
class MessageSize:
    """Encoded bytes of a batch message of ``rows`` rows: in all, and the part every message pays whatever
    its rows (the same message with no rows)."""

    rows: int
    message: float  # mean over the messages measured
    fixed: float

    @property
    def per_vm(self) -> float:
        """Bytes per running VM per sample, its share of the fixed part included."""
        return self.message / self.rows

    @property
    def fixed_share(self) -> float:
        return self.fixed / self.rows


def message_size(plan: FleetPlan, rows: int, encoding: str, samples: int = 20) -> MessageSize:
    """Sizes measured on ``samples`` consecutive batches of a fresh stream (the same the sender sends)."""
    traffic = AgentTraffic(plan, 0, epoch=1)
    sizes = [encoded_size(traffic.message(rows, encoding)) for _ in range(samples)]
    empty = dataclasses.replace(traffic.next_batch(rows), keys=(), columns={"cpuTime": []})
    fixed = encoded_size(encode(empty, traffic.agent, traffic.subject, encoding))
    return MessageSize(min(rows, plan.domains), sum(sizes) / len(sizes), fixed)
