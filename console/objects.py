"""Snapshots of remote objects, with method proxies generated from the schema.

A snapshot never changes; the repository replaces it when the agent pushes a new state.
Properties read as attributes (``dom.uuid``, ``dom.name``, ``dom.id``); references to
parents (``dom.node``, ``vol.pool``) are :class:`ObjectId` values that
``console.lookup()`` turns into snapshots; every method the class declares is a callable
attribute (``dom.suspend()``, ``dom.getXMLDesc(flags=0)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping

from virtq.schema.codec import ObjectId
from virtq.schema.errors import InvalidParameterError
from virtq.schema.model import ClassSchema, Method

if TYPE_CHECKING:
    from ._console import Console


class RemoteObject:
    """An immutable snapshot of one Node, Domain, Pool or Volume on one agent."""

    __slots__ = ("_console", "_schema", "object_id", "values", "update_ts", "create_ts")

    _console: "Console"
    _schema: ClassSchema
    object_id: ObjectId
    values: Mapping[str, Any]
    update_ts: int
    create_ts: int

    def __init__(self, console: "Console", schema: ClassSchema, object_id: ObjectId,
                 values: Mapping[str, Any], update_ts: int = 0, create_ts: int = 0) -> None:
        refs = {p.name for p in schema.properties if p.type == "objId"}
        frozen: Dict[str, Any] = {k: ObjectId.from_wire(v) if k in refs and isinstance(v, Mapping) else v
                                  for k, v in values.items()}
        for name, value in (("_console", console), ("_schema", schema), ("object_id", object_id),
                            ("values", frozen), ("update_ts", update_ts), ("create_ts", create_ts)):
            object.__setattr__(self, name, value)

    @property
    def class_name(self) -> str:
        return self._schema.name

    @property
    def agent(self) -> str:
        return self.object_id.agent_name

    @property
    def schema(self) -> ClassSchema:
        return self._schema

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        method = object.__getattribute__(self, "_schema").method(name)
        if method is not None:
            return self._proxy(method)
        raise AttributeError(f"{self._schema.name} has no property or method {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("snapshots are immutable")

    def _proxy(self, method: Method) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            inputs = method.inputs
            if len(args) > len(inputs):
                raise InvalidParameterError(f"{method.name} takes {len(inputs)} argument(s)")
            arguments = dict(zip((a.name for a in inputs), args))
            arguments.update(kwargs)
            return self._console.call(self, method.name, arguments)

        call.__name__ = method.name
        call.__doc__ = f"{method.libvirt}: {method.desc}".rstrip(": ")
        return call

    def latest(self) -> "RemoteObject":
        """The repository's current snapshot of this object (it may have changed since)."""
        return self._console.lookup(self.object_id)

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


__all__ = ["RemoteObject", "describe"]
