"""In-memory repositories of the objects (and agents) the console follows.

The console's updater is the only writer; readers get snapshots. ``get(ref)`` accepts
a uuid, a name (a node's is its hostname), a volume key or path, an object name
(``Domain:<uuid>``) or ``<agent-or-hostname>/<name>`` (a snapshot or checkpoint: ``<domain>/<name>`` too).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import (TYPE_CHECKING, Any, Callable, Dict, Generic, Iterator, List, Mapping, Optional, Sequence, Set,
                    Tuple, TypeVar, cast)

from virtq.logs import shown
from virtq.schema.children import KINDS, parent_property
from virtq.schema.codec import ObjectId
from virtq.schema.errors import AmbiguousRefError, NotStartedError, UnknownRefError

from ._columns import ABSENT, SampleApplied, StatColumns
from .health import AgentHealth
from .objects import RemoteObject

if TYPE_CHECKING:
    from .typed import Snapshot

__all__ = ["AgentRepository", "AgentView", "Repository"]


@dataclass(frozen=True)
class AgentView:
    """What the console knows of one agent."""

    name: str
    epoch: int
    heartbeat_interval: int
    hostname: str = ""
    uri: str = ""
    url: str = ""  # the console URL it was reached through
    last_seen: float = 0.0  # the console's monotonic clock
    attributes: Mapping[str, Any] = field(default_factory=dict)
    schema_hash: str = ""  # the hash of the agent's schema ("" when it sent none)
    schema_mismatch: bool = False  # its schema hash differs from the console's (the console warned once)

    @property
    def instance(self) -> str:
        return self.name.rsplit(":", 1)[-1]

    def heartbeat_age(self, now: float) -> float:
        """Seconds since its last heartbeat or answer; ``now``: the console's clock (``Console.clock()``)."""
        return max(0.0, now - self.last_seen)

    @property
    def version(self) -> str:
        """The agent's virtq version ("" for agents that do not say)."""
        version = self.attributes.get("version", "")
        return shown(version, 40) if isinstance(version, str) else ""

    @property
    def libvirt_reconnects(self) -> Optional[int]:
        """Times its libvirt connection came back since it started (None: the agent does not say)."""
        return _count(self.attributes.get("hypervisor_reconnects"))

    @property
    def transport_reconnects(self) -> Optional[int]:
        """Times its own AMQP connection came back this epoch (None: the agent does not say)."""
        return _count(self.attributes.get("reconnects"))

    @property
    def objects(self) -> Dict[str, int]:
        """Objects per class (``{"Domain": 40, ...}``) as its last heartbeat counted them; ill-typed ones left out."""
        counts = self.attributes.get("objects")
        if not isinstance(counts, Mapping):
            return {}
        valid = {str(k): _count(v) for k, v in counts.items()}
        return {k: v for k, v in valid.items() if v is not None}

    @property
    def health(self) -> AgentHealth:
        """What its last heartbeat said of libvirt and of stuck calls (ok for agents that say nothing)."""
        return AgentHealth.from_attributes(self.attributes)


def _count(value: Any) -> Optional[int]:
    """A count an agent sent, or None when it is absent or not a non-negative integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


T = TypeVar("T")
O = TypeVar("O", bound="Snapshot")  # how mypy sees a repository's snapshots: Domain, Pool … (virtq.console.typed)


def _pick(kind: str, ref: str, items: List[T], tests: List[Callable[[T], bool]]) -> T:
    """The one item the first matching test selects; typed errors for none or several."""
    for test in tests:
        found = [item for item in items if test(item)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AmbiguousRefError(f"{ref!r} matches {len(found)} {kind}: use <agent>/<name> or a uuid")
    raise UnknownRefError(f"no {kind[:-1] if kind.endswith('s') else kind} matches {ref!r}")


class AgentRepository:
    """The agents the console follows, by name."""

    def __init__(self) -> None:
        self.kind = "agents"
        self._lock = threading.Lock()
        self._items: Dict[str, AgentView] = {}

    def __iter__(self) -> Iterator[AgentView]:
        with self._lock:
            return iter(list(self._items.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __bool__(self) -> bool:
        return True

    def get(self, ref: str) -> AgentView:
        return _pick(self.kind, ref, list(self), [lambda a: ref in (a.name, a.instance), lambda a: ref == a.hostname,
                                                  lambda a: ref == a.url])

    def by_name(self, name: str) -> Optional[AgentView]:
        with self._lock:
            return self._items.get(name)

    def put(self, name: str, view: AgentView) -> Optional[AgentView]:
        """The console's side: record what it knows of an agent now; returns what it knew before."""
        with self._lock:
            old = self._items.get(name)
            self._items[name] = view
            return old


class Repository(Generic[O]):
    """Objects of one class across every agent the console follows.

    Generic for mypy only: ``console.domains`` is a ``Repository[Domain]``, so what it hands out is checked
    against the Domain Protocol of virtq.console.typed; at run time every snapshot is a RemoteObject (cast
    here, on the way out). The updater's side takes and returns RemoteObjects.

    An object's properties live in its last snapshot, its statistics in the class's columns
    (console/_columns.py), which the updater writes a batch at a time; a snapshot is made again from
    them only when the object is read after its statistics moved."""

    IDENTITY = ("uuid", "key", "path")

    def __init__(self, class_name: str, agents: AgentRepository, started: Callable[[], bool] = lambda: True,
                 parent: Optional["Repository[Any]"] = None) -> None:
        self.kind = KINDS.get(class_name, class_name.lower() + "s")  # DomainSnapshot: "snapshots"
        self._parent = parent  # snapshots, checkpoints: the domains, for get("<domain>/<name>")
        self._started = started  # False: reading raises NotStartedError (a console used before start())
        self.class_name = class_name
        self._agents = agents
        self._name = "hostname" if class_name == "Node" else "name"  # nodes have no name property
        self._lock = threading.Lock()
        self._slots: Dict[Tuple[str, str], int] = {}  # (agent, object name) -> slot
        # agent -> object name -> slot: of_agent() without a scan of every agent's objects (a resync of
        # each of 1,000 agents scanned 40,000 domains)
        self._by_agent: Dict[str, Dict[str, int]] = {}
        # agent -> key -> slot, for names "<class>:<key>": how a statistics batch names its objects
        self._by_key: Dict[str, Dict[str, int]] = {}
        self._snapshots: List[Optional[RemoteObject]] = []  # slot -> the last snapshot made
        self._moved: Set[int] = set()  # slots whose statistics moved since their snapshot was made
        self._stats = StatColumns()
        self.changes = 0
        """Bumped under the lock by every change (a stored snapshot, a statistics batch, a removal): a reader
        that saw the same number before reading saw the same objects (the exporter reuses its last scrape)."""

    def __iter__(self) -> Iterator[O]:
        self._check_started()
        with self._lock:
            return iter(cast(List[O], [self._snapshot(slot) for slot in self._slots.values()]))

    def __len__(self) -> int:
        self._check_started()
        with self._lock:
            return len(self._slots)

    def __bool__(self) -> bool:
        return True

    def _check_started(self) -> None:
        if not self._started():
            raise NotStartedError(f"console.{self.kind} read before console.start() (or `with Console(...)`): "
                                  "nothing is loaded yet")

    @staticmethod
    def _typed(obj: RemoteObject) -> O:
        """A snapshot as mypy sees this repository's: its class's Protocol (the same object)."""
        return cast(O, obj)

    def _snapshot(self, slot: int) -> RemoteObject:
        """The object in ``slot`` as it is now (made again only if its statistics moved); under the lock."""
        snapshot = self._snapshots[slot]
        assert snapshot is not None
        if slot in self._moved:
            self._moved.discard(slot)
            snapshot = self._snapshots[slot] = snapshot.with_sample(self._stats.row(slot), self._stats.stats_ts[slot])
        return snapshot

    def by_id(self, object_id: ObjectId) -> Optional[O]:
        with self._lock:
            slot = self._slots.get((object_id.agent_name, object_id.object_name))
            return None if slot is None else self._typed(self._snapshot(slot))

    def _scope_matches(self, scope: str, obj: O) -> bool:
        agent = self._agents.by_name(obj.agent)
        return scope in (obj.agent, obj.agent.rsplit(":", 1)[-1]) or (agent is not None and scope == agent.hostname)

    def get(self, ref: str) -> O:
        """Find one object by reference; UnknownRefError / AmbiguousRefError otherwise. A snapshot or checkpoint
        is also ``<domain name or uuid>/<name>``."""
        tests: List[Callable[[O], bool]] = [
            lambda o: any(o.values.get(k) == ref for k in self.IDENTITY) or o.object_id.object_name == ref,
            lambda o: o.values.get(self._name) == ref,
        ]
        if "/" in ref:
            scope, _, name = ref.partition("/")
            tests.append(lambda o: o.values.get(self._name) == name and self._scope_matches(scope, o))
            if self._parent is not None:
                tests.append(lambda o: o.values.get(self._name) == name and self._parent_matches(scope, o))
        return _pick(self.kind, ref, list(self), tests)

    def _parent_matches(self, ref: str, obj: O) -> bool:
        """Whether a snapshot's or checkpoint's domain is ``ref`` (its name or uuid)."""
        if self._parent is None:
            return False
        parent_id = obj.values.get(parent_property(self._parent.class_name))
        parent = self._parent.by_id(parent_id) if isinstance(parent_id, ObjectId) else None
        return parent is not None and ref in (parent.values.get("name"), parent.values.get("uuid"))

    def of_agent(self, agent_name: str) -> List[O]:
        with self._lock:
            return cast(List[O], [self._snapshot(slot) for slot in self._by_agent.get(agent_name, {}).values()])

    def statistics(self, names: Sequence[str]) -> Tuple[List[O], Dict[str, List[Any]]]:
        """Every object's last snapshot (for its properties: the statistics in it may be older) and, in the same
        order, the current value of each named statistic (None: never sampled). The columns are copied under the
        lock in C-level passes and no snapshot is made: how an exporter reads 400,000 domains per scrape."""
        with self._lock:
            slots = list(self._slots.values())
            snapshots = list(filter(None, map(self._snapshots.__getitem__, slots)))  # a held slot has one
            held = {name: list(map(column.__getitem__, slots)) for name in names
                    if (column := self._stats.columns.get(name)) is not None}
        return cast(List[O], snapshots), {name: [None if v is ABSENT else v for v in held[name]] if name in held
                                          else [None] * len(slots) for name in names}

    def sampled_at(self, object_id: ObjectId) -> float:
        """When a sample of the object was last applied (the console's monotonic clock; -inf: never)."""
        with self._lock:
            slot = self._slots.get((object_id.agent_name, object_id.object_name))
            return float("-inf") if slot is None else self._stats.sampled[slot]

    # --- the updater's side -------------------------------------------------------------------

    def upsert(self, obj: RemoteObject, sampled_at: Optional[float] = None) -> Tuple[Optional[RemoteObject], bool]:
        """Store a newer snapshot, statistics and all (``sampled_at``: it brings a sample applied now, by the
        console's monotonic clock); returns (previous, stored). Older records never replace newer ones."""
        agent, name = key = (obj.object_id.agent_name, obj.object_id.object_name)
        with self._lock:
            slot = self._slots.get(key)
            old = None if slot is None else self._snapshot(slot)
            if old is not None and obj.update_ts and old.update_ts > obj.update_ts:
                return old, False
            if slot is None:
                slot = self._slots[key] = self._stats.allocate()
                self._by_agent.setdefault(agent, {})[name] = slot
                prefix, colon, wire_key = name.partition(":")
                if colon and prefix == self.class_name:
                    self._by_key.setdefault(agent, {})[wire_key] = slot
                if slot == len(self._snapshots):
                    self._snapshots.append(None)
            self._snapshots[slot] = obj
            self.changes += 1
            self._moved.discard(slot)
            self._stats.replace(slot, obj.stats, obj.stats_ts)
            if sampled_at is not None:
                self._stats.sampled[slot] = sampled_at
            return old, True

    def apply_sample(self, agent: str, keys: Tuple[str, ...], columns: Mapping[str, Sequence[Any]], sample_ts: int,
                     now: float, watch: Optional[str] = None) -> SampleApplied:
        """Apply one statistics batch of ``agent`` (its objects' keys, a column per statistic, None for
        "unchanged") at once; ``now``: the console's monotonic clock. See StatColumns.apply."""
        with self._lock:
            index = self._by_key.get(agent, {})
            slots = list(map(index.get, keys))
            applied = self._stats.apply(slots, keys, columns, sample_ts, now, watch)
            self.changes += 1
            self._moved.update(applied.slots)
            return applied

    def remove(self, object_id: ObjectId) -> Optional[RemoteObject]:
        agent, name = key = (object_id.agent_name, object_id.object_name)
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                return None
            old = self._snapshot(slot)
            self._unindex(self._by_agent, agent, name)
            prefix, _, wire_key = name.partition(":")
            if prefix == self.class_name and self._by_key.get(agent, {}).get(wire_key) == slot:
                self._unindex(self._by_key, agent, wire_key)
            self._snapshots[slot] = None
            self.changes += 1
            self._stats.release(slot)
            return old

    @staticmethod
    def _unindex(index: Dict[str, Dict[str, int]], agent: str, name: str) -> None:
        objects = index.get(agent)
        if objects is not None:
            objects.pop(name, None)
            if not objects:
                del index[agent]
