"""Method calls: one call on one object, as a job in the object's apartment.

Arguments are checked against the schema before anything is sent; snapshots and ObjectIds passed as
arguments go as the wire's object ids, and object references in results come back as snapshots when
the console knows the object.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from virtq.schema import errors
from virtq.schema.codec import ExceptionResponse, Message, MethodRequest, MethodResponse, ObjectId, direct_address
from virtq.schema.model import Method
from virtq.schema.streams import CHECKSUMS, stream_argument

from ._agents import AgentTracker
from ._jobs import Apartments, Job
from ._requests import Requests
from ._session import Session
from .objects import RemoteObject
from .subscriptions import refuse_inline_calls

__all__ = ["MethodCalls", "wire_objects"]


class MethodCalls:
    def __init__(self, session: Session[RemoteObject], tracker: AgentTracker, requests: Requests,
                 apartments: Apartments, settle: Optional[Callable[[], None]] = None) -> None:
        self._session = session
        self._tracker = tracker
        self._requests = requests
        self._apartments = apartments
        self._settle = settle  # through a broker: wait until the ingest thread applied what came so far

    def run(self, obj: Union[RemoteObject, ObjectId], method_name: str,
            arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Tuple[Job, Any]:
        """Call a method as a job in the object's apartment; returns (job, result)."""
        target, method, wire = self._checked(obj, method_name, arguments)
        with self._apartments.run(self._session, target.object_id, method_name) as job:
            reply = self._ask(target, method, wire, timeout)
        return job, self._answer(method, reply)

    def in_job(self, obj: Union[RemoteObject, ObjectId], method_name: str,
               arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Call a method as part of a job that owns the object already (a migration's calls); the result."""
        target, method, wire = self._checked(obj, method_name, arguments)
        return self._answer(method, self._ask(target, method, wire, timeout))

    def _checked(self, obj: Union[RemoteObject, ObjectId], method_name: str,
                 arguments: Optional[Mapping[str, Any]]) -> Tuple[RemoteObject, Method, Dict[str, Any]]:
        """The target, its method and the wire's arguments, checked against the schema before anything is sent
        (and before its apartment is waited for)."""
        refuse_inline_calls("calling %s", method_name)
        target = obj if isinstance(obj, RemoteObject) else self._session.lookup(obj)
        method = target.schema.method(method_name)
        if method is None:
            raise errors.UnknownMethodError(f"{target.class_name} has no method {method_name!r}")
        wire = {name: wire_objects(value) for name, value in (arguments or {}).items()}
        method.bind(wire)
        return target, method, wire

    def _ask(self, target: RemoteObject, method: Method, arguments: Dict[str, Any],
             timeout: Optional[float]) -> Message:
        transport = self._tracker.route(target.agent)
        method_name = method.name
        request = MethodRequest(object_id=target.object_id, method_name=method_name, arguments=arguments,
                                stream_checksums=",".join(CHECKSUMS) if stream_argument(method) else "")
        reply = self._requests.ask(transport, request, direct_address(target.agent),
                                   timeout or self._session.timeout,
                                   f"{target.class_name}.{method_name} on {target.object_id.object_name}")[-1]
        # The agent pushes what the call changed before it replies. On one connection (direct mode) the
        # ingest order hands the reply over after those pushes: the transitions are the job's already.
        # Through a broker the pushes come through another queue than the reply: let the ingest thread
        # apply what came meanwhile, while the job still owns the object (best effort: docs/CONSOLE.md).
        if self._settle is not None:
            self._settle()
        return reply

    def _answer(self, method: Method, reply: Message) -> Any:
        if isinstance(reply, ExceptionResponse):
            raise errors.remote_error(reply.error_code, reply.error_text)
        if not isinstance(reply, MethodResponse):
            raise errors.ProtocolError(f"unexpected answer {reply.OPCODE} to a method request")
        return self._results(method, reply.arguments)

    def _results(self, method: Method, arguments: Mapping[str, Any]) -> Any:
        results: Dict[str, Any] = {}
        for arg in method.outputs:
            results[arg.name] = self._snapshots(arguments.get(arg.name))
        if not results:
            return None
        return next(iter(results.values())) if len(results) == 1 else results

    def _snapshots(self, value: Any) -> Any:
        """Object references in a result, at any depth (lists, out-structures), as snapshots when known."""
        if isinstance(value, Mapping) and isinstance(value.get("_object_name"), str) \
                and set(value) <= {"_object_name", "_agent_name", "_agent_epoch"}:
            ref = ObjectId.from_wire(value)
            return self._session.find(ref) or ref
        if isinstance(value, Mapping):
            return {k: self._snapshots(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._snapshots(v) for v in value]
        return value


def wire_objects(value: Any) -> Any:
    """Objects passed as arguments (snapshots, ObjectIds, lists of them) as the wire's object ids."""
    if isinstance(value, RemoteObject):
        return value.object_id.to_wire()
    if isinstance(value, ObjectId):
        return value.to_wire()
    if isinstance(value, (list, tuple)) and any(isinstance(v, (RemoteObject, ObjectId)) for v in value):
        return [wire_objects(v) for v in value]
    return value
