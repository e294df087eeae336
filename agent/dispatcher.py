"""Maps a decoded request to its answer; knows nothing of the transport.

Methods are dispatched through the schema: a class's declared method names the libvirt C
function it mirrors, and nothing that the schema does not declare is callable. One code path
serves every method: arguments are validated against the declaration (objId arguments are
resolved to the agent's objects), the hypervisor calls the binding positionally, and the
result is shaped by the declared out-arguments (object references, out-structures, lists).

The dispatcher never pushes and never calls back into the agent: it returns an :class:`Outcome`
(the replies, the object changes, the statistics wanted) and the agent acts on it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from virtq.logs import RateLimited, shown
from virtq.schema import errors
from virtq.schema.codec import (CONTENT_FOR_WHAT, DataRecord, ExceptionResponse, Message, MethodRequest,
                                MethodResponse, ObjectId, QueryRequest, QueryResponse, schema_id_to_wire)
from virtq.schema.model import Argument, ClassSchema, Method, Schema
from virtq.schema.streams import check_peek, stream_argument
from virtq.schema.types import TypeCheckError, check

from . import audit
from .access import Access, who
from .children import call_changes_children
from .configgen import RUN_STATE_ONLY, method_changes_config
from .hypervisor import IDENTITY_TYPES, Hypervisor, HypervisorError, Identity, ObjectRef
from .policy import Grant, Policy, is_read_only
from .registry import Entry, Registry, object_name
from .streams import AgentStreams

log = logging.getLogger(__name__)
limited = RateLimited(log)
"""Failed calls are a peer's to cause at will: one line per error code per 10 s, with counts."""

QUERY_BATCH = 100
"""Records per query-response message; every message but the last carries ``partial``."""


SAMPLED_AFTER_CALLS = ("Domain", "Pool", "Volume")
"""Classes whose statistics are sampled at once after a call that may have changed them."""


@dataclass(frozen=True)
class Outcome:
    """What handling one request produced, for the agent to act on: the replies; the object changes
    (looked up, re-read, created, removed, a new configuration generation) to push before them; and
    the object (its name) whose statistics are to be sampled and pushed before them too."""

    replies: Sequence[Message]
    changes: Sequence[DataRecord] = ()
    sample: Optional[str] = None


def error_reply(exc: errors.RemoteError, request: Message) -> ExceptionResponse:
    return ExceptionResponse(error_code=exc.error_code, error_text=exc.error_text,
                             correlation_id=request.correlation_id)


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
                 statistics: Optional[Statistics] = None, access: Optional[Access] = None,
                 streams: Optional[AgentStreams] = None) -> None:
        self.schema = schema
        self.streams = streams
        """Where a stream method's call opens its stream (agent/streams.py); None: stream methods are not served."""
        self.registry = registry
        self.hypervisor = hypervisor
        self._statistics = statistics
        self.access = access or Access(Policy.everyone(schema, "admin", "everything allowed (no policy given)"),
                                       registry)

    # --- methods -------------------------------------------------------------------------------

    def call(self, request: MethodRequest, principal: Optional[str] = None) -> Outcome:
        """One method call. Each step returns what it found or changed; they are collected here, so what
        a call looked up or changed is pushed even when a later step fails."""
        attempt = _Call(principal)
        started = time.monotonic()
        changes: List[DataRecord] = []
        sample: Optional[str] = None
        try:
            target = request.object_id
            if target.agent_name not in ("", self.registry.agent_name):
                raise errors.UnknownObjectError(f"{target.object_name} belongs to agent {target.agent_name}")
            changes += self._look_up(target.object_name)
            entry, cls, method = self._target(request, attempt)
            args: List[Any] = []
            for arg in method.inputs:
                value = attempt.bound[arg.name]
                if value is None or not arg.references:
                    args.append(value)
                    continue
                refs = []
                for item in value if arg.type == "list" else [value]:
                    name = self._referenced(method, arg, item)
                    changes += self._look_up(name)
                    refs.append(self._object(method, arg, name, attempt))
                args.append(refs if arg.type == "list" else refs[0])
            try:
                result = self._invoke(entry, cls, method, args, request, attempt)
            except errors.LibvirtError:
                changes += self._resync(entry, method, [])
                raise
            try:
                arguments = self._shape(cls, method, result, attempt)
            finally:  # what the call did is mirrored even when the caller may not see what it returned
                returned = identities_in(result) if method.outputs else []
                changes += self._resync(entry, method, returned)
                bumped, sample = self._after(entry, method)
                changes += bumped
            reply: Message = MethodResponse(arguments=arguments, correlation_id=request.correlation_id)
            verdict, reason = "ok", ""
        except errors.RemoteError as exc:
            limited.log(logging.INFO, f"failed {exc.error_code}", "method %s on %s failed: %s",
                        shown(request.method_name), shown(request.object_id.object_name), shown(str(exc)))
            reply = error_reply(exc, request)
            verdict = "denied" if isinstance(exc, errors.AccessDeniedError) else f"error {exc.error_code:#x}"
            reason = exc.error_text
        if verdict == "denied" or attempt.changes_something:
            audit.record(principal, self.registry.agent_name, request.object_id.object_name, request.method_name,
                         attempt.bound or request.arguments, verdict, time.monotonic() - started, reason)
        return Outcome([reply], changes, sample)

    def _look_up(self, name: str) -> List[DataRecord]:
        """The explicit libvirt step of a call: an object name the registry does not know yet is looked up
        in libvirt and registered (what that changed is returned); a known name asks nothing."""
        if self.registry.get(name) is not None:
            return []
        try:
            return self.registry.look_up(name)
        except HypervisorError as exc:  # e.g. a key libvirt refuses to look up
            raise errors.LibvirtError.from_libvirt(exc.code, exc.message) from exc

    def _target(self, request: MethodRequest, attempt: _Call) -> Tuple[Entry, ClassSchema, Method]:
        """The target, its class and the method, with the arguments bound and the access checked."""
        entry = self.registry.get(request.object_id.object_name)
        if entry is None:
            raise errors.UnknownObjectError(f"no such object: {request.object_id.object_name}")
        cls = self.schema.cls(entry.class_name)
        method = cls.method(request.method_name)
        if method is None:
            raise errors.UnknownMethodError(f"{cls.name} has no method {request.method_name!r}")
        bound = method.bind(request.arguments)
        attempt.method, attempt.bound = method, bound
        attempt.grant = self.access.check_call(attempt.principal, entry, method, bound)
        return entry, cls, method

    def _invoke(self, entry: Entry, cls: ClassSchema, method: Method, args: Sequence[Any], request: MethodRequest,
                attempt: _Call) -> Any:
        key = None if entry.class_name == "Node" else entry.key
        try:
            if stream_argument(method) is not None:
                if self.streams is None:
                    raise errors.NotImplementedError_(f"{cls.name}.{method.name}: this agent serves no streams")
                return self.streams.open(request, attempt.principal, entry.class_name, key, method, args)
            check_peek(method, args)  # a binary return stays one bounded message
            return self.hypervisor.invoke(entry.class_name, key, method.libvirt, args)
        except HypervisorError as exc:
            raise errors.LibvirtError.from_libvirt(exc.code, exc.message) from exc
        except LookupError as exc:
            raise errors.NotImplementedError_(f"{cls.name}.{method.name}: {exc}") from exc
        except ValueError as exc:  # the binding refused a value the schema's types let through
            raise errors.InvalidParameterError(f"{cls.name}.{method.name}: {exc}") from exc

    @staticmethod
    def _where(method: Method, arg: Argument) -> str:
        return f"{method.name}: argument {arg.name}"

    def _referenced(self, method: Method, arg: Argument, value: Any) -> str:
        """The object name an objId argument refers to (of this agent)."""
        try:
            check("objId", value)
            ref = ObjectId.from_wire(value)
        except (TypeCheckError, errors.ProtocolError) as exc:
            raise errors.InvalidParameterError(f"{self._where(method, arg)}: {exc}") from None
        if ref.agent_name not in ("", self.registry.agent_name):
            raise errors.InvalidParameterError(f"{self._where(method, arg)}: {ref.object_name} belongs to agent "
                                               f"{ref.agent_name}")
        return ref.object_name

    def _object(self, method: Method, arg: Argument, name: str, attempt: _Call) -> ObjectRef:
        """An objId argument as the hypervisor takes it, once its object is known (and in scope)."""
        entry = self.registry.get(name)
        if entry is None:
            raise errors.InvalidParameterError(f"{self._where(method, arg)}: no such object: {name}")
        if entry.class_name != arg.references:
            raise errors.InvalidParameterError(f"{self._where(method, arg)}: {name} is a {entry.class_name}, "
                                               f"not a {arg.references}")
        if attempt.grant is not None and attempt.grant.scoped:
            self.access.require_in_scope(attempt.grant, attempt.principal, entry)
        return ObjectRef(entry.class_name, entry.key)

    def _after(self, entry: Entry, method: Method) -> Tuple[List[DataRecord], Optional[str]]:
        """After a call: a new configuration generation if it may have changed the XML, and the target to
        sample at once if it may have changed its statistics (and is still there)."""
        name = f"{entry.class_name}:{entry.key}"
        # The node's own XML (capabilities) does not change through its methods: defining a domain
        # changes the domain, which has a generation of its own.
        changing = method_changes_config(method.name) and entry.class_name != "Node"
        bumped = self.registry.bump_config(name) if changing else []
        sampled = (changing or method.name in RUN_STATE_ONLY) and entry.class_name in SAMPLED_AFTER_CALLS \
            and self.registry.get(name) is not None
        return bumped, name if sampled else None

    def _resync(self, entry: Entry, method: Method, returned: List[Identity]) -> List[DataRecord]:
        """The call may have changed its target and created objects: mirror that at once. A snapshot or
        checkpoint a creating call returned that was known already was redefined: a new generation (libvirt
        has no event for it)."""
        class_name, key = entry.class_name, entry.key
        redefined = self.registry.known_children(returned) if method_changes_config(method.name) else []
        try:
            changes = self.registry.sync_object(class_name, key, call_changes_children(class_name, method.name,
                                                                                       method.libvirt))
            changes += self.registry.sync_identities(returned)
        except HypervisorError as exc:
            log.warning("re-reading %s:%s after a call failed: %s", class_name, shown(key), exc.message)
            return []
        return changes + [record for name in redefined for record in self.registry.bump_config(name)]

    def _shape(self, cls: ClassSchema, method: Method, result: Any, attempt: _Call) -> Dict[str, Any]:
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
        return {arg.name: self._shape_value(arg, value, attempt) for arg, value in zip(outputs, values)}

    def _shape_value(self, arg: Argument, value: Any, attempt: _Call) -> Any:
        """One out-argument on the wire: objects as references, out-structures as maps."""
        value = self._references(value, attempt.grant)
        if value is HIDDEN:
            raise errors.AccessDeniedError.denied(f"{who(attempt.principal)} may not see the {arg.name} returned: "
                                                  "outside its scope")
        if arg.fields and arg.type == "map":
            return self._fields(arg, value)
        if arg.fields and arg.type == "list" and isinstance(value, list):
            return [self._fields(arg, item) for item in value]
        return value

    def _references(self, value: Any, grant: Optional[Grant]) -> Any:
        """Identities at any depth become object references; tuples become lists. Objects outside a scoped
        caller's scope are left out of lists, and HIDDEN elsewhere."""
        if isinstance(value, IDENTITY_TYPES):
            if grant is not None and not self.access.sees_identity(grant, value):
                return HIDDEN
            return self.registry.object_id(object_name(value)).to_wire()
        if isinstance(value, (list, tuple)):
            items = [self._references(v, grant) for v in value]
            return [v for v in items if v is not HIDDEN]
        if isinstance(value, dict):
            return {k: self._references(v, grant) for k, v in value.items()}
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
            name = request.object_id.object_name
            if lookup:
                changes = self._look_up(name)
            entry = self.registry.get(name)
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


def identities_in(value: Any) -> List[Identity]:
    """The objects a call returned, at any depth (in lists, tuples and map values)."""
    if isinstance(value, IDENTITY_TYPES):
        return [value]
    if isinstance(value, (list, tuple)):
        return [found for item in value for found in identities_in(item)]
    if isinstance(value, dict):
        return [found for item in value.values() for found in identities_in(item)]
    return []


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
