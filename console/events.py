"""What a console tells its subscribers: typed, frozen events.

Object events carry the snapshot as it is after (or, for removals, before) the change,
and ``job``: the id of the job that owned the object when the change was observed
(None when no job did) — seed 001's job apartments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from virtq.schema.codec import ObjectId
from virtq.schema.enums import DomainState

from .objects import RemoteObject
from .repository import AgentView

__all__ = [
    "AgentAdded", "AgentConflict", "AgentDegraded", "AgentEvent", "AgentLost", "AgentRecovered", "AgentRestarted",
    "ConfigChanged", "DomainMigrated", "DomainStateChanged", "Event", "LibvirtEvent", "LimitReached",
    "MigrationProgress", "ObjectAdded", "ObjectEvent", "ObjectRemoved", "Overflowed", "StatsApplied", "StatsUpdated",
]


@dataclass(frozen=True)
class Event:
    """Base of everything a subscriber receives."""


@dataclass(frozen=True)
class AgentEvent(Event):
    """Something about one agent: ``agent`` is the console's view of it after the change."""

    agent: AgentView


@dataclass(frozen=True)
class AgentAdded(AgentEvent):
    """A new agent is followed, or a lost one is back."""


@dataclass(frozen=True)
class AgentLost(AgentEvent):
    """No heartbeat for 3 intervals (console's monotonic clock); its objects are kept, marked stale."""


@dataclass(frozen=True)
class AgentRestarted(AgentEvent):
    """The agent's epoch changed: the console re-reads all its objects."""

    old_epoch: int


@dataclass(frozen=True)
class AgentDegraded(AgentEvent):
    """The agent's heartbeat says libvirt is not responsive or calls are stuck (``agent.health``)."""

    reason: str


@dataclass(frozen=True)
class AgentConflict(AgentEvent):
    """Two or more live agents answer with this agent's name (e.g. the same host UUID): the console keeps
    following the one it followed (``agent``) and ignores the others rather than merge them. ``instances``
    tells each apart ("epoch N via URL"), the followed one first. Once per episode: again only after no
    other agent answered as it for 3 heartbeat intervals (``console.conflicts`` lists those going on)."""

    instances: Tuple[str, ...]


@dataclass(frozen=True)
class AgentRecovered(AgentEvent):
    """The agent's heartbeat says libvirt is ok again and no call is stuck."""


@dataclass(frozen=True)
class LimitReached(Event):
    """A named bound of the console (``virtq.console.limits.Limits``) was hit: what exceeded it is dropped.

    Once per episode: again only after usage fell back below the bound."""

    limit: str
    value: int
    detail: str


@dataclass(frozen=True)
class ObjectEvent(Event):
    obj: RemoteObject
    job: Optional[int] = field(default=None, kw_only=True)


@dataclass(frozen=True)
class ObjectAdded(ObjectEvent):
    pass


@dataclass(frozen=True)
class ObjectRemoved(ObjectEvent):
    pass


@dataclass(frozen=True)
class ConfigChanged(ObjectEvent):
    """configGen moved: the object's XML may have changed (fetch it when you need it)."""

    old_gen: Any
    new_gen: Any


@dataclass(frozen=True)
class StatsApplied(Event):
    """One pushed statistics batch applied: the samples of some objects of one class on one agent.

    ``keys`` name the objects (a domain's uuid, a volume's key …), ``columns`` hold one value per key for
    each statistic the batch carries, None where that object's value did not change. Only objects whose
    sample was applied are in it (not those holding a newer sample, nor those not known yet). Read the
    objects themselves through the repositories (``console.find(event.object_id(i))``): the console
    makes their snapshots only when they are read. Delivered by default; per object, ask for
    ``StatsUpdated``."""

    agent: str
    class_name: str
    epoch: int
    sample_ts: int
    keys: Tuple[str, ...]
    columns: Mapping[str, Sequence[Any]]

    def object_name(self, index: int) -> str:
        return f"{self.class_name}:{self.keys[index]}"

    def object_id(self, index: int) -> ObjectId:
        return ObjectId(self.object_name(index), self.agent, self.epoch)

    def changed(self, index: int) -> Dict[str, Any]:
        """The statistics that changed for object ``index``."""
        return {name: values[index] for name, values in self.columns.items() if values[index] is not None}

    def changes(self) -> Iterator[Tuple[ObjectId, Dict[str, Any]]]:
        """(object id, changed statistics) for each object, made as they are iterated."""
        return ((self.object_id(i), self.changed(i)) for i in range(len(self.keys)))


@dataclass(frozen=True)
class StatsUpdated(ObjectEvent):
    """The statistics of one object changed: ``obj`` is its snapshot with them. Opt-in: delivered only to
    subscriptions whose ``kinds`` name it (or a base class); it costs a snapshot per object per sample."""

    changed: Mapping[str, Any]


@dataclass(frozen=True)
class DomainStateChanged(ObjectEvent):
    """A domain's pushed state changed: ``old`` and ``new`` name it ("running"), ``old_state`` and ``new_state``
    are the DomainState members (None for "unknown": no state pushed yet, or a code newer than the enum)."""

    old: str
    new: str
    reason: str = ""  # the libvirt lifecycle event/detail that explains it, e.g. "started/booted"

    @property
    def old_state(self) -> Optional[DomainState]:
        return DomainState.__members__.get(self.old.upper())

    @property
    def new_state(self) -> Optional[DomainState]:
        return DomainState.__members__.get(self.new.upper())


@dataclass(frozen=True)
class DomainMigrated(ObjectEvent):
    """A domain moved from one agent to another (``obj``: its snapshot on ``to_agent``); ``downtime``: how long
    the guest was paused, in ms (libvirt's), when the migration was this console's (None otherwise).

    Opt-in: delivered only to subscriptions whose ``kinds`` name it (or a base class); they receive this one
    event for the move, and not the ObjectRemoved/ObjectAdded pair of the two copies (console/_moves.py)."""

    from_agent: str
    to_agent: str
    downtime: Optional[int] = None


@dataclass(frozen=True)
class MigrationProgress(ObjectEvent):
    """The statistics of a migration this console runs (``obj``: the domain on its source), from
    getJobStats on the source: libvirt's typed-parameter names (``data_processed``, ``data_remaining``,
    ``memory_bps``, ``memory_iteration``, ``time_elapsed`` …)."""

    stats: Mapping[str, Any]


@dataclass(frozen=True)
class LibvirtEvent(Event):
    """One of the agent's libvirt events (schema event ``name``: domainLifecycle, poolRefresh …)."""

    agent: str
    name: str
    object_id: ObjectId
    event: str
    detail: str
    data: Mapping[str, Any]
    timestamp: int
    severity: int
    obj: Optional[RemoteObject] = None
    job: Optional[int] = None


@dataclass(frozen=True)
class Overflowed(Event):
    """Delivered to a subscriber after its queue overflowed: ``dropped`` older events were discarded."""

    dropped: int
