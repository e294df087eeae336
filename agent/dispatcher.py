"""Maps a decoded request to its answer; knows nothing of the transport.

Methods are dispatched through the schema: a class's declared method names the libvirt C
function it mirrors, and nothing that the schema does not declare is callable. One code path
serves every method: arguments are validated against the declaration (objId arguments are
resolved to the agent's objects), the hypervisor calls the binding positionally, and the
result is shaped by the declared out-arguments (object references, out-structures, lists).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from virtq.logs import RateLimited, shown
from virtq.schema import errors
from virtq.schema import types as schema_types
from virtq.schema.codec import (CONTENT_FOR_WHAT, DataRecord, ExceptionResponse, Message, MethodRequest,
                                MethodResponse, ObjectId, QueryRequest, QueryResponse, schema_id_to_wire)
from virtq.schema.model import Argument, ClassSchema, Method, Schema

from . import audit
from .access import Access, who
from .hypervisor import (DomainIdentity, Hypervisor, HypervisorError, Identity, NodeIdentity, ObjectRef,
                         PoolIdentity, VolumeIdentity)
from .policy import Grant, Policy, is_read_only
from .registry import Entry, Registry, object_name

log = logging.getLogger(__name__)
limited = RateLimited(log)
"""Failed calls are a peer's to cause at will: one line per error code per 10 s, with counts."""

QUERY_BATCH = 100
"""Records per query-response message; every message but the last carries ``partial``."""


@dataclass(frozen=True)
class Outcome:
    """What handling one request produced: replies, and object changes to push first."""

    replies: Sequence[Message]
    changes: Sequence[DataRecord] = ()


def error_reply(exc: errors.RemoteError, request: Message) -> ExceptionResponse:
    return ExceptionResponse(error_code=exc.error_code, error_text=exc.error_text,
                             correlation_id=request.correlation_id)


AfterCall = Callable[[Entry, Method], List[DataRecord]]
Statistics = Callable[[str], Optional[Mapping[str, Any]]]


class _Hidden:
    """An object a call returned that the caller may not see (outside its scope)."""


HIDDEN = _Hidden()


@dataclass
class _Call:
    """What one call is, as far as it got: for the access check, the returned objects and the audit."""

    principal: Optional[str]
    grant: Optional[Grant] = None
    method: Optional[Method] = None
    bound: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changes_something(self) -> bool:
        """Audited: any permission it needs that a read-only connection would not have."""
        return self.method is not None and any(not is_read_only(str(p)) for p in self.method.required(self.bound))


class Dispatcher:
    def __init__(self, schema: Schema, registry: Registry, hypervisor: Hypervisor, *,
                 after_call: Optional[AfterCall] = None, statistics: Optional[Statistics] = None,
                 access: Optional[Access] = None) -> None:
        self.schema = schema
        self.registry = registry
        self.hypervisor = hypervisor
        self._after_call = after_call
        self._statistics = statistics
        self.access = access or Access(Policy.everyone(schema, "admin", "everything allowed (no policy given)"),
                                       registry)

    # --- methods -------------------------------------------------------------------------------

    def call(self, request: MethodRequest, principal: Optional[str] = None) -> Outcome:
        changes: List[DataRecord] = []
        call = _Call(principal)
        started = time.monotonic()
        outcome, reason = "ok", ""
        try:
            arguments = self._call(request, changes, call)
            reply: Message = MethodResponse(arguments=arguments, correlation_id=request.correlation_id)
        except errors.RemoteError as exc:
            limited.log(logging.INFO, f"failed {exc.error_code}", "method %s on %s failed: %s",
                        shown(request.method_name), shown(request.object_id.object_name), shown(str(exc)))
            reply = error_reply(exc, request)
            denied = isinstance(exc, errors.AccessDeniedError)
            outcome = "denied" if denied else f"error {exc.error_code:#x}"
            reason = exc.error_text
        if outcome == "denied" or call.changes_something:
            audit.record(principal, self.registry.agent_name, request.object_id.object_name, request.method_name,
                         call.bound or request.arguments, outcome, time.monotonic() - started, reason)
        return Outcome([reply], changes)

    def _call(self, request: MethodRequest, changes: List[DataRecord], call: _Call) -> Dict[str, Any]:
        target = request.object_id
        if target.agent_name not in ("", self.registry.agent_name):
            raise errors.UnknownObjectError(f"{target.object_name} belongs to agent {target.agent_name}")
        try:
            entry, found = self.registry.resolve(target.object_name)
            changes += found
        except HypervisorError as exc:  # e.g. a key libvirt refuses to look up
            raise errors.LibvirtError.from_libvirt(exc.code, exc.message) from exc
        if entry is None:
            raise errors.UnknownObjectError(f"no such object: {target.object_name}")
        cls = self.schema.cls(entry.class_name)
        method = cls.method(request.method_name)
        if method is None:
            raise errors.UnknownMethodError(f"{cls.name} has no method {request.method_name!r}")
        bound = method.bind(request.arguments)
        call.method, call.bound = method, bound
        call.grant = self.access.check_call(call.principal, entry, method, bound)
        args = [self._input(method, a, bound[a.name], changes, call) for a in method.inputs]
        key = None if entry.class_name == "Node" else entry.key
        try:
            result = self.hypervisor.invoke(entry.class_name, key, method.libvirt, args)
        except HypervisorError as exc:
            changes += self._resync(entry.class_name, entry.key, [])
            raise errors.LibvirtError.from_libvirt(exc.code, exc.message) from exc
        except LookupError as exc:
            raise errors.NotImplementedError_(f"{cls.name}.{method.name}: {exc}") from exc
        except ValueError as exc:  # the binding refused a value the schema's types let through
            raise errors.InvalidParameterError(f"{cls.name}.{method.name}: {exc}") from exc
        returned: List[Identity] = []
        try:
            arguments = self._shape(cls, method, result, returned, call)
        finally:  # what the call did is mirrored even when the caller may not see what it returned
            changes += self._resync(entry.class_name, entry.key, returned)
            if self._after_call is not None:
                changes += self._after_call(entry, method)
        return arguments

    def _input(self, method: Method, arg: Argument, value: Any, changes: List[DataRecord], call: _Call) -> Any:
        """An in-argument as the hypervisor takes it: objId references become ObjectRefs."""
        if value is None or not arg.references:
            return value
        if arg.type == "list":
            return [self._object(method, arg, item, changes, call) for item in value]
        return self._object(method, arg, value, changes, call)

    def _object(self, method: Method, arg: Argument, value: Any, changes: List[DataRecord],
                call: _Call) -> ObjectRef:
        where = f"{method.name}: argument {arg.name}"
        try:
            schema_types.check("objId", value)
            ref = ObjectId.from_wire(value)
        except (schema_types.TypeCheckError, errors.ProtocolError) as exc:
            raise errors.InvalidParameterError(f"{where}: {exc}") from None
        if ref.agent_name not in ("", self.registry.agent_name):
            raise errors.InvalidParameterError(f"{where}: {ref.object_name} belongs to agent {ref.agent_name}")
        try:
            entry, found = self.registry.resolve(ref.object_name)
            changes += found
        except HypervisorError as exc:
            raise errors.LibvirtError.from_libvirt(exc.code, exc.message) from exc
        if entry is None:
            raise errors.InvalidParameterError(f"{where}: no such object: {ref.object_name}")
        if entry.class_name != arg.references:
            raise errors.InvalidParameterError(f"{where}: {ref.object_name} is a {entry.class_name}, "
                                               f"not a {arg.references}")
        if call.grant is not None and call.grant.scoped:
            self.access.require_in_scope(call.grant, call.principal, entry)
        return ObjectRef(entry.class_name, entry.key)

    def _resync(self, class_name: str, key: str, returned: List[Identity]) -> List[DataRecord]:
        """The call may have changed its target and created objects: mirror that at once."""
        try:
            return self.registry.sync_object(class_name, key) + self.registry.sync_identities(returned)
        except HypervisorError as exc:
            log.warning("re-reading %s:%s after a call failed: %s", class_name, shown(key), exc.message)
            return []

    def _shape(self, cls: ClassSchema, method: Method, result: Any, returned: List[Identity],
               call: _Call) -> Dict[str, Any]:
        outputs = method.outputs
        if not outputs:
            return {}
        if len(outputs) == 1:
            values: Sequence[Any] = [result]
        elif isinstance(result, (list, tuple)):
            values = list(result)
        else:  # one value where several are declared (a str is not split into characters)
            values = [result]
        if len(values) != len(outputs):
            raise errors.AgentError(f"{cls.name}.{method.name}: libvirt returned {len(values)} values, "
                                    f"schema declares {len(outputs)}")
        return {arg.name: self._shape_value(arg, value, returned, call) for arg, value in zip(outputs, values)}

    def _shape_value(self, arg: Argument, value: Any, returned: List[Identity], call: _Call) -> Any:
        """One out-argument on the wire: objects as references, out-structures as maps."""
        value = self._references(value, returned, call.grant)
        if value is HIDDEN:
            raise errors.AccessDeniedError.denied(f"{who(call.principal)} may not see the {arg.name} returned: "
                                                  "outside its scope")
        if arg.fields and arg.type == "map":
            return self._fields(arg, value)
        if arg.fields and arg.type == "list" and isinstance(value, list):
            return [self._fields(arg, item) for item in value]
        return value

    def _references(self, value: Any, returned: List[Identity], grant: Optional[Grant]) -> Any:
        """Identities at any depth become object references (and are remembered); tuples become lists.
        Objects outside a scoped caller's scope are left out of lists, and HIDDEN elsewhere."""
        if isinstance(value, (NodeIdentity, DomainIdentity, PoolIdentity, VolumeIdentity)):
            returned.append(value)
            if grant is not None and not self.access.sees_identity(grant, value):
                return HIDDEN
            return self.registry.object_id(object_name(value)).to_wire()
        if isinstance(value, (list, tuple)):
            items = [self._references(v, returned, grant) for v in value]
            return [v for v in items if v is not HIDDEN]
        if isinstance(value, dict):
            return {k: self._references(v, returned, grant) for k, v in value.items()}
        return value

    @staticmethod
    def _fields(arg: Argument, value: Any) -> Dict[str, Any]:
        """An out-structure the binding returns as a sequence, as a map of its fields."""
        if not isinstance(value, list) or len(value) != len(arg.fields):
            got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
            raise errors.AgentError(f"{arg.name}: libvirt returned {got}, the schema declares the fields "
                                    f"{' '.join(arg.fields)}")
        return dict(zip(arg.fields, value))

    # --- queries -------------------------------------------------------------------------------

    def query(self, request: QueryRequest, principal: Optional[str] = None, lookup: bool = False) -> Outcome:
        """Answered from the registry (kept fresh by events, calls and the reconcile): never waits on
        libvirt, except to look up (``lookup``) an object name the registry does not know yet."""
        try:
            changes, items = self._query(request, principal, lookup)
        except errors.RemoteError as exc:
            return Outcome([error_reply(exc, request)])
        except HypervisorError as exc:
            return Outcome([error_reply(errors.LibvirtError.from_libvirt(exc.code, exc.message), request)])
        content = CONTENT_FOR_WHAT[request.what]
        batches = [items[i:i + QUERY_BATCH] for i in range(0, len(items), QUERY_BATCH)] or [[]]
        replies = [QueryResponse(content=content, items=tuple(batch), partial=i < len(batches) - 1,
                                 correlation_id=request.correlation_id)
                   for i, batch in enumerate(batches)]
        return Outcome(replies, changes)

    def _classes(self, request: QueryRequest) -> List[ClassSchema]:
        return [c for c in self.schema.classes.values()
                if request.schema_id is None or request.schema_id.matches(c.schema_id)]

    def _query(self, request: QueryRequest, principal: Optional[str],
               lookup: bool) -> Tuple[List[DataRecord], List[Any]]:
        if request.what == "SCHEMA_ID":  # the contract is public: what a peer may ask, not what there is
            return [], [schema_id_to_wire(c.schema_id) for c in self._classes(request)]
        if request.what == "SCHEMA":
            return [], [schema_map(c) for c in self._classes(request)]
        grant = self.access.grant(principal)
        changes: List[DataRecord] = []
        if request.object_id is not None:
            entry, changes = self.registry.resolve(request.object_id.object_name, lookup)
            entries = [] if entry is None else [entry]
        else:
            names = {c.name for c in self._classes(request)}
            entries = [e for e in self.registry.entries() if e.class_name in names]
        entries = [e for e in entries if self.access.sees(grant, e)]  # a tenant's query shows only its own
        records = [self._with_statistics(self.registry.record(e)) for e in entries]
        if request.what == "OBJECT_ID":
            return changes, [r.object_id for r in records]
        return changes, records

    def _with_statistics(self, record: DataRecord) -> DataRecord:
        """Query answers carry the latest pushed statistics too, so a new console starts complete."""
        latest = self._statistics(record.object_id.object_name) if self._statistics is not None else None
        return dataclasses.replace(record, values={**record.values, **latest}) if latest else record


def _arg_map(arg: Argument) -> Dict[str, Any]:
    out: Dict[str, Any] = {"_type": arg.type, "_dir": arg.direction}
    if arg.desc:
        out["_desc"] = arg.desc
    if not arg.required:
        out["_default"] = arg.default
    if arg.references:
        out["_references"] = arg.references
    if arg.fields:
        out["_fields"] = list(arg.fields)
    if arg.nullable:
        out["_nullable"] = True
    if arg.flags:
        out["_flags"] = dict(arg.flags)
    return out


def schema_map(cls: ClassSchema) -> Dict[str, Any]:
    """A class schema in QMFv2's map form (answer to ``_what: SCHEMA``)."""
    return {
        "_schema_id": schema_id_to_wire(cls.schema_id),
        "_desc": cls.desc,
        "_properties": {p.name: {"_type": p.type, "_access": "RO", "_index": p.index, "_desc": p.desc,
                                 **({"_references": p.references} if p.references else {})}
                        for p in cls.properties},
        "_statistics": {s.name: {"_type": s.type, "_unit": s.unit, "_desc": s.desc} for s in cls.statistics},
        "_methods": {m.name: {"_desc": m.desc, "_libvirt": m.libvirt,
                              "_permissions": [p.annotation for p in m.permissions],
                              "_arguments": {a.name: _arg_map(a) for a in m.arguments}}
                     for m in cls.methods.values()},
    }


def unexpected(request: Message, exc: BaseException) -> Optional[ExceptionResponse]:
    """An agent bug must still produce an answer, never kill the agent."""
    log.error("internal error handling %s", type(request).__name__, exc_info=exc)
    return error_reply(errors.AgentError(f"internal error: {type(exc).__name__}: {exc}"), request)
