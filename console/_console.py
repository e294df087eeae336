"""The Console: connects to agents, keeps repositories from their answers and pushes, calls methods.

Threads: each transport's reactor only puts received messages in the inbox; one ingest
thread decodes and applies them in arrival order (responses complete pending requests,
indications update the repositories); callers block only on their own requests.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from virtq.schema import default_schema, errors
from virtq.schema.codec import (TOPIC, AgentHeartbeat, AgentInfo, AgentLocateRequest, AgentLocateResponse,
                                DataIndication, DataRecord, ExceptionResponse, Message, MethodRequest,
                                MethodResponse, ObjectId, QueryRequest, QueryResponse, WireMessage, decode,
                                direct_address)
from virtq.schema.model import Method, Schema
from virtq.transport import DirectConnector, Transport

from .objects import RemoteObject
from .repository import AgentRepository, AgentView, Repository

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """A request waiting for its answer (several messages when the answer is partial)."""

    cid: str
    transport: Transport
    apply: bool = False  # apply returned records to the repositories, in wire order
    replies: List[Message] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: Optional[Exception] = None

    def add(self, message: Message) -> None:
        self.replies.append(message)
        if not (isinstance(message, QueryResponse) and message.partial):
            self.done.set()


class Console:
    """Follows one or more agents. Use as a context manager::

        with Console("amqp://127.0.0.1:5672") as console:
            dom = console.domains.get("test")
            dom.suspend()
    """

    def __init__(self, urls: Union[str, Sequence[str]] = (), timeout: float = 10.0, *,
                 transports: Sequence[Transport] = (), schema: Optional[Schema] = None) -> None:
        urls = [urls] if isinstance(urls, str) else list(urls)
        self.timeout = timeout
        self.schema = schema or default_schema()
        self._transports: List[Tuple[str, Transport]] = [(u, DirectConnector(u)) for u in urls]
        self._transports += [(f"transport-{i}", t) for i, t in enumerate(transports, 1)]
        self.agents = AgentRepository()
        self.nodes = Repository("Node", self.agents)
        self.domains = Repository("Domain", self.agents)
        self.pools = Repository("Pool", self.agents)
        self.volumes = Repository("Volume", self.agents)
        self._repos: Dict[str, Repository] = {r.class_name: r for r in
                                              (self.nodes, self.domains, self.pools, self.volumes)}
        self.unreachable: Dict[str, str] = {}
        """URLs that could not be reached at start, with the reason."""
        self._agent_transport: Dict[str, Tuple[str, Transport]] = {}
        self._inbox: "queue.Queue[Optional[Tuple[str, Transport, WireMessage]]]" = queue.Queue()
        self._pending: Dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._ingest = threading.Thread(target=self._ingest_loop, name="virtq-console-ingest", daemon=True)
        self._loaders: List[threading.Thread] = []
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "Console":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Connect, locate the agents and load their objects; NotConnectedError if nothing answers."""
        self._ingest.start()
        started: List[Tuple[str, Transport]] = []
        for url, transport in self._transports:
            try:
                transport.start(self._deliverer(url, transport), self._state_listener(url, transport),
                                timeout=self.timeout)
                started.append((url, transport))
            except errors.NotConnectedError as exc:
                self.unreachable[url] = str(exc)
                log.warning("%s", exc)
        locates = [(url, t, self._send_request(t, AgentLocateRequest(), TOPIC)) for url, t in started]
        for url, transport, pending in locates:
            try:
                for reply in self._wait(pending, self.timeout, f"agent locate via {url}"):
                    if isinstance(reply, AgentLocateResponse):
                        self._load_agent(reply.info, url, transport)
            except errors.ConsoleError as exc:
                self.unreachable[url] = str(exc)
        if self._transports and len(self.agents) == 0:
            self.close()
            raise errors.NotConnectedError("; ".join(self.unreachable.values()) or "no agent answered")

    def _deliverer(self, url: str, transport: Transport) -> Callable[[WireMessage], None]:
        """What a transport calls on its own thread: queue for the ingest thread, nothing more."""
        return lambda wire: self._inbox.put((url, transport, wire))

    def _state_listener(self, url: str, transport: Transport) -> Callable[[bool], None]:
        def on_state(up: bool) -> None:
            if not up:
                self._fail_pending(transport, errors.NotConnectedError(f"connection to {url} lost"))
        return on_state

    def _fail_pending(self, transport: Optional[Transport], error: Exception) -> None:
        """Requests that can no longer be answered fail now instead of timing out."""
        with self._pending_lock:
            failed = [p for p in self._pending.values() if transport is None or p.transport is transport]
            for p in failed:
                del self._pending[p.cid]
        for p in failed:
            p.error = error
            p.done.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _, transport in self._transports:
            transport.kill()
        self._inbox.put(None)
        if self._ingest.is_alive():
            self._ingest.join(5)
        self._fail_pending(None, errors.NotConnectedError("console closed"))

    # --- requests ----------------------------------------------------------------------------------

    def _send_request(self, transport: Transport, request: Message, address: str, apply: bool = False) -> _Pending:
        if self._closed:
            raise errors.NotConnectedError("console is closed")
        cid = f"c{next(self._ids)}"
        pending = _Pending(cid, transport, apply)
        with self._pending_lock:
            self._pending[cid] = pending
        wire = dataclasses.replace(request, correlation_id=cid, reply_to=transport.reply_address).encode(address)
        try:
            transport.send(wire)
        except errors.NotConnectedError:
            with self._pending_lock:
                self._pending.pop(cid, None)
            raise
        return pending

    def _wait(self, pending: _Pending, timeout: float, what: str) -> List[Message]:
        ok = pending.done.wait(timeout)
        with self._pending_lock:
            self._pending.pop(pending.cid, None)
        if pending.error is not None:
            raise pending.error
        if not ok:
            raise errors.CallTimeoutError(f"{what}: no answer within {timeout:g}s")
        return pending.replies

    def _transport_for(self, agent_name: str) -> Transport:
        entry = self._agent_transport.get(agent_name)
        if entry is None:
            raise errors.NotConnectedError(f"no route to agent {agent_name}")
        if not entry[1].connected:
            raise errors.NotConnectedError(f"not connected to agent {agent_name} ({entry[0]})")
        return entry[1]

    def query(self, agent_name: str, request: QueryRequest, timeout: Optional[float] = None) -> List[Message]:
        """Send a query to one agent and return every response message."""
        transport = self._transport_for(agent_name)
        pending = self._send_request(transport, request, direct_address(agent_name))
        return self._wait(pending, timeout or self.timeout, f"query to {agent_name}")

    def _load_agent(self, info: AgentInfo, url: str, transport: Transport) -> None:
        """Record the agent and load all its objects (records applied by the ingest thread)."""
        self._agent_transport[info.name] = (url, transport)
        self._see_agent(info, url)
        pending = self._send_request(transport, QueryRequest(what="OBJECT"), direct_address(info.name), apply=True)
        replies = self._wait(pending, self.timeout, f"loading objects of {info.name}")
        for reply in replies:
            if isinstance(reply, ExceptionResponse):
                raise errors.remote_error(reply.error_code, reply.error_text)

    def call(self, obj: Union[RemoteObject, ObjectId], method_name: str,
             arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Call a method on a remote object; arguments are validated against the schema first.

        Returns None (no out-arguments), the single out-argument, or a dict of them; object
        references come back as snapshots when the console knows the object.
        """
        target = obj if isinstance(obj, RemoteObject) else self.lookup(obj)
        method = target.schema.method(method_name)
        if method is None:
            raise errors.UnknownMethodError(f"{target.class_name} has no method {method_name!r}")
        arguments = dict(arguments or {})
        method.bind(arguments)
        transport = self._transport_for(target.agent)
        request = MethodRequest(object_id=target.object_id, method_name=method_name, arguments=arguments)
        pending = self._send_request(transport, request, direct_address(target.agent))
        reply = self._wait(pending, timeout or self.timeout,
                           f"{target.class_name}.{method_name} on {target.object_id.object_name}")[-1]
        if isinstance(reply, ExceptionResponse):
            raise errors.remote_error(reply.error_code, reply.error_text)
        if not isinstance(reply, MethodResponse):
            raise errors.ProtocolError(f"unexpected answer {reply.OPCODE} to a method request")
        return self._results(method, reply.arguments)

    def _results(self, method: Method, arguments: Mapping[str, Any]) -> Any:
        results: Dict[str, Any] = {}
        for arg in method.outputs:
            value = arguments.get(arg.name)
            if arg.type == "objId" and isinstance(value, Mapping):
                ref = ObjectId.from_wire(value)
                try:
                    value = self.lookup(ref)
                except errors.UnknownRefError:
                    value = ref
            results[arg.name] = value
        if not results:
            return None
        return next(iter(results.values())) if len(results) == 1 else results

    # --- lookups and waiting -------------------------------------------------------------------

    def repository(self, class_name: str) -> Repository:
        """The repository of a class: 'Domain', 'domain' or 'domains'."""
        for name, repo in self._repos.items():
            if class_name.lower() in (name.lower(), repo.kind):
                return repo
        raise errors.UnknownRefError(f"no class {class_name!r} (node, domain, pool, volume)")

    def lookup(self, object_id: ObjectId) -> RemoteObject:
        class_name = object_id.object_name.partition(":")[0]
        repo = self._repos.get(class_name)
        found = None if repo is None else repo.by_id(object_id)
        if found is None:
            raise errors.UnknownRefError(f"unknown object {object_id.object_name} on {object_id.agent_name}")
        return found

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> bool:
        """Block until ``predicate()`` is true (re-checked after every update); False on timeout."""
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout if timeout is not None else self.timeout))

    # --- ingest (one thread) ---------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            url, transport, wire = item
            try:
                self._ingest_one(url, transport, wire)
            except Exception:  # noqa: BLE001 - one bad message must not stop ingest
                log.exception("ingesting a message from %s", url)
            with self._changed:
                self._changed.notify_all()

    def _ingest_one(self, url: str, transport: Transport, wire: WireMessage) -> None:
        try:
            message = decode(wire)
        except errors.ProtocolError as exc:
            log.warning("dropping malformed message from %s: %s", url, exc)
            return
        pending = None
        if message.correlation_id is not None:
            with self._pending_lock:
                pending = self._pending.get(message.correlation_id)
        if pending is not None:
            if pending.apply and isinstance(message, QueryResponse):
                self._apply(message.records)
            pending.add(message)
        elif isinstance(message, AgentHeartbeat):
            self._heartbeat(message.info, url, transport)
        elif isinstance(message, DataIndication):
            if message.content == "_data":
                self._apply(message.records)
        else:
            log.debug("unsolicited %s from %s", message.OPCODE, url)

    def _see_agent(self, info: AgentInfo, url: str) -> Optional[AgentView]:
        view = AgentView(info.name, info.epoch, info.heartbeat_interval, str(info.attributes.get("hostname", "")),
                         str(info.attributes.get("uri", "")), url, time.monotonic(), dict(info.attributes))
        return self.agents._put(info.name, view)

    def _heartbeat(self, info: AgentInfo, url: str, transport: Transport) -> None:
        if info.name in self._agent_transport:
            self._see_agent(info, url)
            return
        # An agent we have not loaded yet (it started after us): load it off the ingest thread.
        loader = threading.Thread(target=self._load_quietly, args=(info, url, transport),
                                  name=f"virtq-load-{info.name}", daemon=True)
        self._agent_transport[info.name] = (url, transport)
        self._loaders.append(loader)
        loader.start()

    def _load_quietly(self, info: AgentInfo, url: str, transport: Transport) -> None:
        try:
            self._load_agent(info, url, transport)
        except errors.VirtqError as exc:
            log.warning("could not load agent %s: %s", info.name, exc)

    def _apply(self, records: Sequence[DataRecord]) -> None:
        for record in records:
            repo = self._repos.get(record.schema_id.class_name)
            if repo is None:
                log.debug("record of unknown class %s", record.schema_id.class_name)
                continue
            if record.deleted:
                repo.remove(record.object_id)
                continue
            cls = self.schema.classes.get(record.schema_id.class_name)
            if cls is None:
                continue
            repo.upsert(RemoteObject(self, cls, record.object_id, record.values, record.update_ts,
                                     record.create_ts))
