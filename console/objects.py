"""Snapshots of remote objects, with method proxies generated from the schema.

A snapshot never changes; the repository replaces it when the agent pushes a new state.
Properties read as attributes (``dom.uuid``, ``dom.name``, ``dom.id``, ``dom.configGen``);
so do the pushed statistics (``dom.cpuTime`` …, also in ``dom.stats``), a state or type as libvirt's enum
(``dom.state`` is a :class:`~virtq.schema.enums.DomainState`; ``dom.stats`` keeps the wire's integers).
References to parents (``dom.node``, ``vol.pool``, ``snap.domain``) are :class:`ObjectId` values that
``console.lookup()`` turns into snapshots; a domain's own objects are lists of snapshots (``dom.snapshots``,
``dom.checkpoints``: what the console holds now, sorted by name). Every method the class declares is a callable
attribute (``dom.suspend()``, ``dom.getXMLDesc(flags=0)``); a method without out-arguments
returns its :class:`~virtq.console.Job`, so ``dom.create().wait_state("running")``
waits for the pushed state. For mypy, virtq.console.typed declares each class's methods (and
``console.domains`` hands out its ``Domain``).
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Dict, Mapping, Optional

from virtq.schema.children import CHILDREN
from virtq.schema.codec import ObjectId
from virtq.schema.errors import InvalidParameterError
from virtq.schema.model import ClassSchema, Method
from virtq.schema.states import as_enum
from virtq.schema.streams import stream_argument

from ._session import Session

__all__ = ["RemoteObject", "describe"]


class RemoteObject:
    """An immutable snapshot of one Node, Domain, Pool or Volume on one agent; ``session``: the console's."""

    __slots__ = ("_session", "_schema", "object_id", "values", "stats", "update_ts", "create_ts", "stats_ts")

    _session: Session["RemoteObject"]
    _schema: ClassSchema
    object_id: ObjectId
    values: Mapping[str, Any]
    stats: Mapping[str, Any]
    update_ts: int
    create_ts: int
    stats_ts: int

    def __init__(self, session: Session["RemoteObject"], schema: ClassSchema, object_id: ObjectId,
                 values: Mapping[str, Any], update_ts: int = 0, create_ts: int = 0,
                 stats: Optional[Mapping[str, Any]] = None, stats_ts: int = 0) -> None:
        refs = {p.name for p in schema.properties if p.type == "objId"}
        statistics = {s.name for s in schema.statistics}
        frozen: Dict[str, Any] = {}
        sampled: Dict[str, Any] = dict(stats or {})
        for key, value in values.items():
            if key in statistics:
                sampled[key] = value  # query answers carry the latest statistics too
            else:
                frozen[key] = ObjectId.from_wire(value) if key in refs and isinstance(value, Mapping) else value
        for name, value in (("_session", session), ("_schema", schema), ("object_id", object_id),
                            ("values", frozen), ("stats", sampled), ("update_ts", update_ts),
                            ("create_ts", create_ts), ("stats_ts", stats_ts)):
            object.__setattr__(self, name, value)

    def with_stats(self, changed: Mapping[str, Any], stats_ts: int) -> "RemoteObject":
        """A new snapshot with these statistics merged in."""
        return self.with_sample({**self.stats, **changed}, stats_ts)

    def with_sample(self, stats: Dict[str, Any], stats_ts: int) -> "RemoteObject":
        """A new snapshot whose statistics are ``stats`` (taken over, not copied: the caller gives it away).

        How a repository makes the snapshot of an object whose statistics moved: the properties are
        already split and converted, so the new snapshot shares them instead of going through __init__.
        """
        new = object.__new__(RemoteObject)
        for name, value in (("_session", self._session), ("_schema", self._schema), ("object_id", self.object_id),
                            ("values", self.values), ("stats", stats), ("update_ts", self.update_ts),
                            ("create_ts", self.create_ts), ("stats_ts", stats_ts)):
            object.__setattr__(new, name, value)
        return new

    def with_values(self, values: Mapping[str, Any], update_ts: int, create_ts: int,
                    object_id: Optional[ObjectId] = None) -> "RemoteObject":
        """A new snapshot with new properties (and the id the record carries: a restarted agent's has
        its new epoch), keeping the statistics."""
        return RemoteObject(self._session, self._schema, object_id or self.object_id, values, update_ts, create_ts,
                            self.stats, self.stats_ts)

    @property
    def class_name(self) -> str:
        return self._schema.name

    @property
    def agent(self) -> str:
        return self.object_id.agent_name

    @property
    def schema(self) -> ClassSchema:
        return self._schema

    @property
    def stale(self) -> bool:
        """True while its agent is lost (no heartbeat for 3 intervals): the values may be outdated."""
        return self._session.is_lost(self.agent)

    @property
    def state_name(self) -> str:
        """The pushed state as a name: a domain's virDomainState ("running", "paused", "shutoff" …), a pool's
        virStoragePoolState ("inactive", "running" …); "unknown" when none was pushed or the code is new."""
        state = as_enum(self._schema.name, "state", self.stats.get("state"))
        return state.name.lower() if isinstance(state, enum.IntEnum) else "unknown"

    def xml(self) -> str:
        """The XML description, fetched once per configuration generation (see Console.xml)."""
        return self._session.xml(self)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        stats = object.__getattribute__(self, "stats")
        if name in stats:
            return as_enum(self._schema.name, name, stats[name])
        method = object.__getattribute__(self, "_schema").method(name)
        if method is not None:
            return self._proxy(method)
        child = dict(CHILDREN.get(self._schema.name, ())).get(name)
        if child is not None:
            return self._session.children(self, child)
        raise AttributeError(f"{self._schema.name} has no property, statistic or method {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("snapshots are immutable")

    def _proxy(self, method: Method) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if stream_argument(method) is not None:  # its data comes as a stream (console/_streams.py)
                return self._session.stream(self, method, args, kwargs)
            inputs = method.inputs
            if len(args) > len(inputs):
                raise InvalidParameterError(f"{method.name} takes {len(inputs)} argument(s)")
            arguments = dict(zip((a.name for a in inputs), args))
            arguments.update(kwargs)
            job, result = self._session.run(self, method.name, arguments)
            return job if not method.outputs else result

        call.__name__ = method.name
        call.__doc__ = f"{method.libvirt}: {method.desc}".rstrip(": ")
        return call

    def latest(self) -> "RemoteObject":
        """The repository's current snapshot of this object (it may have changed since)."""
        return self._session.lookup(self.object_id)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.values.items() if not isinstance(v, ObjectId))
        return f"<{self.class_name} {shown} @{self.agent}>"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RemoteObject) and other.object_id == self.object_id
                and other.values == self.values)

    def __hash__(self) -> int:
        return hash(self.object_id)


def describe(obj: RemoteObject) -> Dict[str, Any]:
    """Plain data for printing or JSON: class, agent, object name and properties."""
    values = {k: (v.object_name if isinstance(v, ObjectId) else v) for k, v in obj.values.items()}
    return {"class": obj.class_name, "agent": obj.agent, "object": obj.object_id.object_name, **values}
