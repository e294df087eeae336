"""In-memory repositories of the objects (and agents) the console follows.

The console's updater is the only writer; readers get snapshots. ``get(ref)`` accepts
a uuid, a name (a node's is its hostname), a volume key or path, an object name
(``Domain:<uuid>``) or ``<agent-or-hostname>/<name>``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, Iterator, List, Mapping, Optional, Tuple, TypeVar

from virtq.schema.codec import ObjectId
from virtq.schema.errors import AmbiguousRefError, UnknownRefError

from .health import AgentHealth
from .objects import RemoteObject

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

    @property
    def instance(self) -> str:
        return self.name.rsplit(":", 1)[-1]

    @property
    def health(self) -> AgentHealth:
        """What its last heartbeat said of libvirt and of stuck calls (ok for agents that say nothing)."""
        return AgentHealth.from_attributes(self.attributes)


T = TypeVar("T")


class _Store(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._items: Dict[Any, T] = {}

    def __iter__(self) -> Iterator[T]:
        with self._lock:
            return iter(list(self._items.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __bool__(self) -> bool:
        return True

    def _put(self, key: Any, item: T) -> Optional[T]:
        with self._lock:
            old = self._items.get(key)
            self._items[key] = item
            return old

    def _pop(self, key: Any) -> Optional[T]:
        with self._lock:
            return self._items.pop(key, None)

    def _peek(self, key: Any) -> Optional[T]:
        with self._lock:
            return self._items.get(key)

    def _pick(self, ref: str, tests: List[Callable[[T], bool]]) -> T:
        """The one item the first matching test selects; typed errors for none or several."""
        items = list(self)
        for test in tests:
            found = [item for item in items if test(item)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise AmbiguousRefError(f"{ref!r} matches {len(found)} {self.kind}: use <agent>/<name> or a uuid")
        raise UnknownRefError(f"no {self.kind[:-1] if self.kind.endswith('s') else self.kind} matches {ref!r}")


class AgentRepository(_Store[AgentView]):
    def __init__(self) -> None:
        super().__init__("agents")

    def get(self, ref: str) -> AgentView:
        return self._pick(ref, [lambda a: ref in (a.name, a.instance), lambda a: ref == a.hostname,
                                lambda a: ref == a.url])

    def by_name(self, name: str) -> Optional[AgentView]:
        return self._peek(name)

    def put(self, name: str, view: AgentView) -> Optional[AgentView]:
        """The console's side: record what it knows of an agent now; returns what it knew before."""
        return self._put(name, view)


class Repository(_Store[RemoteObject]):
    """Objects of one class across every agent the console follows."""

    IDENTITY = ("uuid", "key", "path")

    def __init__(self, class_name: str, agents: AgentRepository) -> None:
        super().__init__(class_name.lower() + "s")
        self.class_name = class_name
        self._agents = agents
        self._name = "hostname" if class_name == "Node" else "name"  # nodes have no name property
        # agent -> object name -> snapshot: of_agent() without a scan of every agent's objects (a resync of
        # each of 1,000 agents scanned 40,000 domains)
        self._by_agent: Dict[str, Dict[str, RemoteObject]] = {}

    def _put(self, key: Any, item: RemoteObject) -> Optional[RemoteObject]:
        with self._lock:
            old = self._items.get(key)
            self._items[key] = item
            self._by_agent.setdefault(key[0], {})[key[1]] = item
            return old

    def _pop(self, key: Any) -> Optional[RemoteObject]:
        with self._lock:
            item = self._items.pop(key, None)
            objects = self._by_agent.get(key[0])
            if item is not None and objects is not None:
                objects.pop(key[1], None)
                if not objects:
                    del self._by_agent[key[0]]
            return item

    def by_id(self, object_id: ObjectId) -> Optional[RemoteObject]:
        return self._peek((object_id.agent_name, object_id.object_name))

    def _scope_matches(self, scope: str, obj: RemoteObject) -> bool:
        agent = self._agents.by_name(obj.agent)
        return scope in (obj.agent, obj.agent.rsplit(":", 1)[-1]) or (agent is not None and scope == agent.hostname)

    def get(self, ref: str) -> RemoteObject:
        """Find one object by reference; UnknownRefError / AmbiguousRefError otherwise."""
        tests: List[Callable[[RemoteObject], bool]] = [
            lambda o: any(o.values.get(k) == ref for k in self.IDENTITY) or o.object_id.object_name == ref,
            lambda o: o.values.get(self._name) == ref,
        ]
        if "/" in ref:
            scope, _, name = ref.partition("/")
            tests.append(lambda o: o.values.get(self._name) == name and self._scope_matches(scope, o))
        return self._pick(ref, tests)

    def of_agent(self, agent_name: str) -> List[RemoteObject]:
        with self._lock:
            return list(self._by_agent.get(agent_name, {}).values())

    # --- the updater's side -------------------------------------------------------------------

    def upsert(self, obj: RemoteObject) -> Tuple[Optional[RemoteObject], bool]:
        """Store a newer snapshot; returns (previous, stored). Older samples never replace newer ones."""
        key = (obj.object_id.agent_name, obj.object_id.object_name)
        old = self._peek(key)
        if old is not None and obj.update_ts and old.update_ts > obj.update_ts:
            return old, False
        self._put(key, obj)
        return old, True

    def remove(self, object_id: ObjectId) -> Optional[RemoteObject]:
        return self._pop((object_id.agent_name, object_id.object_name))
