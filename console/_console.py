"""The Console: connects to agents, keeps repositories from their answers and pushes, calls methods.

Threads: each transport's reactor only puts received messages in the inbox; one ingest
thread decodes them and applies them in arrival order (responses complete pending
requests, pushes go through the updater into the repositories and out to subscribers);
a monitor thread watches heartbeats; callers block only on their own requests.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, Union

from virtq.schema import default_schema, errors
from virtq.logs import RateLimited, shown
from virtq.schema.codec import (DIRECT, TOPIC, AgentHeartbeat, AgentInfo, AgentLocateRequest, AgentLocateResponse,
                                DataIndication, DataRecord, EventIndication, ExceptionResponse, Message, MethodRequest,
                                MethodResponse, ObjectId, QueryRequest, QueryResponse, StatsIndication,
                                WireMessage, decode, direct_address)
from virtq.schema.model import Method, Schema
from virtq.transport import Connection, TlsConfig, Transport, direct_connection, profile
from virtq.transport.urls import redact

from .events import AgentAdded, AgentDegraded, AgentLost, AgentRecovered, AgentRestarted, Event
from .inbox import Inbox
from .jobs import Apartments, Job
from .limits import Limits, LimitWatch
from .loader import Loader
from .objects import RemoteObject
from .repository import AgentRepository, AgentView, Repository
from .subscriptions import Subscription, normalize_kinds
from .trust import AgentTrust, TrustRule, claimed_agents
from .updater import Updater

log = logging.getLogger(__name__)

_warn = RateLimited(log)

LOST_AFTER = 3
"""Heartbeat intervals without a heartbeat after which an agent is lost."""


@dataclass
class _Pending:
    """A request waiting for its answer (several messages when the answer is partial)."""

    cid: str
    transport: Transport
    apply: bool = False  # apply returned records to the repositories, in wire order
    many: bool = False  # a broadcast (agent locate through a broker): collect answers until the deadline
    agent: str = ""  # the agent asked (its answers must come from it); "" for a broadcast
    replies: List[Message] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: Optional[Exception] = None
    sent: float = field(default_factory=time.monotonic)

    def add(self, message: Message) -> None:
        self.replies.append(message)
        if not self.many and not (isinstance(message, QueryResponse) and message.partial):
            self.done.set()


class Console:
    """Follows one or more agents. Use as a context manager::

        with Console("amqp://127.0.0.1:5672") as console:
            dom = console.domains.get("test")
            dom.suspend()

    ``clock`` (monotonic seconds) is injectable so tests can drive heartbeat expiry.

    ``tls_cert``, ``tls_key``, ``tls_ca``: for ``amqps://`` URLs, the certificate and key this console
    presents (its principal is the certificate's CN) and the CA its peers' certificates must be
    signed by (the URL's host name is checked too). ``agent_users``: through a broker, accept an
    agent's messages only from the broker user this rule maps to it (see ``virtq.console.trust``).

    In direct mode each connection speaks for one agent only: the first that answers on it (its locate
    answer, or its first heartbeat). Messages on it naming any other agent are dropped (``untrusted``),
    and an agent name bound to one connection cannot be taken by another.

    ``limits``: the bounds on what agents can make the console hold (``virtq.console.limits.Limits``);
    hitting one emits ``LimitReached``.
    """

    def __init__(self, urls: Union[str, Sequence[str]] = (), timeout: float = 10.0, *,
                 addressing: str = "direct", transports: Sequence[Transport] = (), schema: Optional[Schema] = None,
                 clock: Callable[[], float] = time.monotonic, discovery: Optional[float] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None, tls_ca: Optional[str] = None,
                 agent_users: TrustRule = None, limits: Optional[Limits] = None) -> None:
        urls = [urls] if isinstance(urls, str) else list(urls)
        tls = TlsConfig(tls_cert, tls_key, tls_ca)
        self.trust = AgentTrust(agent_users)
        self.untrusted = 0
        """Messages dropped because their sender may not speak for the agent they name."""
        self.unbound = 0
        """Direct mode: messages dropped because they came on a connection before any agent answered on it."""
        self.limits = limits or Limits()
        self.limit_watch = LimitWatch(self._emit)
        self._direct = addressing == "direct"
        self._bound: Dict[Transport, str] = {}  # direct mode: connection -> the one agent it speaks for
        self._bound_to: Dict[str, Transport] = {}  # ... and agent -> its connection
        self._degraded: Dict[str, str] = {}  # agent -> why, while its heartbeats say it is degraded
        self._health_lock = threading.Lock()
        self.timeout = timeout
        self.schema = schema or default_schema()
        self.clock = clock
        self.addressing = addressing
        self.discovery = discovery if discovery is not None else min(timeout, 1.0)
        """With a broker: how long to collect agents' answers to the first locate (heartbeats add later ones)."""
        if addressing == "direct":
            self._transports: List[Tuple[str, Transport]] = [(redact(u), direct_connection(u, tls=tls))
                                                             for u in urls]
        else:  # one connection through the broker; several URLs are its failover list
            self._transports = [(" ".join(redact(u) for u in urls),
                                 Connection(urls, profile(addressing), role="console", tls=tls))] if urls else []
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
        self.apartments = Apartments()
        self._subscriptions: List[Subscription] = []
        self._subscriptions_lock = threading.Lock()
        self._updater = Updater(self, self.schema, self.agents, self._repos, self.apartments, self._emit,
                                self.limits, self.limit_watch)
        self._lost: Dict[str, bool] = {}
        self._xml_cache: Dict[Tuple[str, str], Tuple[Any, str]] = {}
        self._xml_lock = threading.Lock()
        self.xml_fetches = 0
        """How many times the console asked an agent for XML (the fetcher's cache misses)."""
        self._agent_transport: Dict[str, Tuple[str, Transport]] = {}
        self._inbox: Inbox[Optional[Tuple[str, Optional[Transport], Union[WireMessage, _Marker, _Resynced]]]] = \
            Inbox(self.limits.inbox_bytes, lambda held: self.limit_watch.hit(
                "inbox_bytes", self.limits.inbox_bytes, f"{held} bytes received and not yet applied: reading waits"))
        self._pending: Dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._ingest = threading.Thread(target=self._ingest_loop, name="virtq-console-ingest", daemon=True)
        self._monitor = threading.Thread(target=self._monitor_loop, name="virtq-console-monitor", daemon=True)
        self._stopping = threading.Event()
        self._loader = Loader(self.limits.loaders, lambda: self._closed)
        self._loaded: set[str] = set()  # agents whose objects were read once in full
        self._resyncing: set[str] = set()  # agents being read now (one reader at a time)
        self._resyncing_lock = threading.Lock()
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
                log.warning("%s", shown(str(exc)))
        brokered = self.addressing != "direct"
        if brokered and not self.trust.enabled:
            log.warning("through a broker without agent_users: any broker user may speak for any agent "
                        "(docs/SECURITY.md)")
        locates = [(url, t, self._send_request(t, AgentLocateRequest(), TOPIC, many=brokered)) for url, t in started]
        for url, transport, pending in locates:
            try:
                replies = self._wait(pending, self.discovery if brokered else self.timeout,
                                     f"agent locate via {url}", many=brokered)
                for reply in replies:
                    if isinstance(reply, AgentLocateResponse) and reply.info.name not in self._agent_transport \
                            and self._admit(reply.info.name):
                        self._load_agent(reply.info, url, transport)
            except errors.ConsoleError as exc:
                self.unreachable[url] = str(exc)
        self._loader.wait_idle(self.timeout)  # agents whose heartbeat came before their locate answer
        if self._transports and len(self.agents) == 0 and not (brokered and started):
            self.close()
            raise errors.NotConnectedError("; ".join(self.unreachable.values()) or "no agent answered")
        self._monitor.start()

    def _deliverer(self, url: str, transport: Transport) -> Callable[[WireMessage], None]:
        """What a transport calls on its own thread: queue for the ingest thread, nothing more."""
        return lambda wire: self._inbox.put((url, transport, wire), wire.size)

    def _state_listener(self, url: str, transport: Transport) -> Callable[[bool], None]:
        def on_state(up: bool) -> None:
            if not up:
                self._fail_pending(transport, errors.NotConnectedError(f"connection to {url} lost"))
            elif self._monitor.is_alive():  # a reconnect after start: converge on every agent behind it
                for name, (_, via) in list(self._agent_transport.items()):
                    if via is transport:
                        self._background(self._resync_quietly, name)
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
        self._stopping.set()
        self._loader.close()
        for _, transport in self._transports:
            transport.kill()
        self._inbox.close(None)
        for thread in (self._ingest, self._monitor):
            if thread.is_alive():
                thread.join(5)
        self._fail_pending(None, errors.NotConnectedError("console closed"))
        with self._subscriptions_lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.close()

    # --- subscribers -----------------------------------------------------------------------------

    def subscribe(self, callback: Optional[Callable[[Event], None]] = None, *,
                  kinds: Union[None, Type[Event], Tuple[Type[Event], ...], List[Type[Event]]] = None,
                  maxsize: int = 10_000) -> Subscription:
        """Receive typed events (``kinds``: event classes to keep; None for all).

        With a callback, events are delivered on the subscription's own thread; without
        one, read them with ``subscription.get(timeout)`` or iterate. Each subscription
        has a bounded queue of ``maxsize``: on overflow the oldest events are dropped and
        an ``Overflowed`` event says how many. Close it (or use it as a context manager).
        """
        subscription = Subscription(callback, normalize_kinds(kinds), maxsize)
        with self._subscriptions_lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._subscriptions_lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
        subscription.close()

    def _emit(self, event: Event) -> None:
        with self._subscriptions_lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if subscription.wants(event):
                subscription.offer(event)

    # --- requests ----------------------------------------------------------------------------------

    def _send_request(self, transport: Transport, request: Message, address: str, apply: bool = False,
                      many: bool = False) -> _Pending:
        if self._closed:
            raise errors.NotConnectedError("console is closed")
        # Unguessable: every agent behind a broker learns a console's reply address from its locate, and an
        # answer is matched by its correlation id; a guessed id would let one agent answer for another.
        cid = f"c{next(self._ids)}-{secrets.token_hex(8)}"
        asked = address[len(DIRECT) + 1:] if address.startswith(DIRECT + "/") else ""
        pending = _Pending(cid, transport, apply, many, agent=asked)
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

    def _wait(self, pending: _Pending, timeout: float, what: str, many: bool = False) -> List[Message]:
        ok = pending.done.wait(timeout)
        with self._pending_lock:
            self._pending.pop(pending.cid, None)
        if pending.error is not None:
            raise pending.error
        if many:
            return list(pending.replies)
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
        """Record the agent and (re)load all its objects; records are applied by the ingest thread."""
        self._agent_transport[info.name] = (url, transport)
        old = self._see_agent(info, url)
        view = self.agents.by_name(info.name)
        if old is None and view is not None:
            self._emit(AgentAdded(view))
        if view is not None:
            self._check_health(view)
        self._resync_once(info.name)

    def resync(self, agent_name: str) -> None:
        """Re-read every object of an agent; objects it no longer has are removed (ObjectRemoved)."""
        transport = self._transport_for(agent_name)
        started = time.monotonic()
        pending = self._send_request(transport, QueryRequest(what="OBJECT"), direct_address(agent_name), apply=True)
        replies = self._wait(pending, self.timeout, f"loading objects of {agent_name}")
        seen: set[str] = set()
        for reply in replies:
            if isinstance(reply, ExceptionResponse):
                raise errors.remote_error(reply.error_code, reply.error_text)
            if isinstance(reply, QueryResponse):
                seen.update(r.object_id.object_name for r in reply.records)
        self._inbox.put(("", transport, _Resynced(agent_name, frozenset(seen), started)), wait=False)  # in order
        self._loaded.add(agent_name)

    def run(self, obj: Union[RemoteObject, ObjectId], method_name: str,
            arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Tuple[Job, Any]:
        """Call a method as a job in the object's apartment; returns (job, result)."""
        target = obj if isinstance(obj, RemoteObject) else self.lookup(obj)
        method = target.schema.method(method_name)
        if method is None:
            raise errors.UnknownMethodError(f"{target.class_name} has no method {method_name!r}")
        arguments = {name: _wire_objects(value) for name, value in (arguments or {}).items()}
        method.bind(arguments)
        transport = self._transport_for(target.agent)
        with self.apartments.run(self, target.object_id, method_name) as job:
            request = MethodRequest(object_id=target.object_id, method_name=method_name, arguments=arguments)
            pending = self._send_request(transport, request, direct_address(target.agent))
            reply = self._wait(pending, timeout or self.timeout,
                               f"{target.class_name}.{method_name} on {target.object_id.object_name}")[-1]
            # The agent pushes what the call changed before it replies; let the ingest thread apply it
            # while the job still owns the object, so those transitions are the job's.
            self._settle()
        if isinstance(reply, ExceptionResponse):
            raise errors.remote_error(reply.error_code, reply.error_text)
        if not isinstance(reply, MethodResponse):
            raise errors.ProtocolError(f"unexpected answer {reply.OPCODE} to a method request")
        return job, self._results(method, reply.arguments)

    def call(self, obj: Union[RemoteObject, ObjectId], method_name: str,
             arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Call a method on a remote object; arguments are validated against the schema first.

        Returns None (no out-arguments), the single out-argument, or a dict of them; object
        references come back as snapshots when the console knows the object.
        """
        return self.run(obj, method_name, arguments, timeout)[1]

    def _settle(self) -> None:
        """Wait until the ingest thread has applied everything received so far."""
        if threading.current_thread() is self._ingest:
            return
        marker = threading.Event()
        self._inbox.put(("", None, _Marker(marker)), wait=False)
        marker.wait(self.timeout)

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
            return self.find(ref) or ref
        if isinstance(value, Mapping):
            return {k: self._snapshots(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._snapshots(v) for v in value]
        return value

    # --- the fetcher ----------------------------------------------------------------------------

    def xml(self, obj: RemoteObject, flags: int = 0) -> str:
        """An object's XML, fetched only when its configGen changed since the last fetch."""
        current = self.find(obj.object_id) or obj
        generation = current.values.get("configGen")
        key = (current.agent, current.object_id.object_name)
        with self._xml_lock:
            cached = self._xml_cache.get(key)
        if cached is not None and cached[0] == (generation, flags) and generation is not None:
            return cached[1]
        text = str(self.call(current, "getXMLDesc", {"flags": flags} if flags else {}))
        with self._xml_lock:
            self.xml_fetches += 1
            self._xml_cache[key] = ((generation, flags), text)
        return text

    # --- lookups and waiting -------------------------------------------------------------------

    def repository(self, class_name: str) -> Repository:
        """The repository of a class: 'Domain', 'domain' or 'domains'."""
        for name, repo in self._repos.items():
            if class_name.lower() in (name.lower(), repo.kind):
                return repo
        raise errors.UnknownRefError(f"no class {class_name!r} (node, domain, pool, volume)")

    def find(self, object_id: ObjectId) -> Optional[RemoteObject]:
        repo = self._repos.get(object_id.object_name.partition(":")[0])
        return None if repo is None else repo.by_id(object_id)

    def lookup(self, object_id: ObjectId) -> RemoteObject:
        found = self.find(object_id)
        if found is None:
            raise errors.UnknownRefError(f"unknown object {object_id.object_name} on {object_id.agent_name}")
        return found

    def scope(self, *agent_refs: str) -> "Scope":
        """Repositories limited to some agents (cluster scope) — seed 000's configurable set."""
        return Scope(self, {self.agents.get(ref).name for ref in agent_refs})

    def is_lost(self, agent_name: str) -> bool:
        return self._lost.get(agent_name, False)

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> bool:
        """Block until ``predicate()`` is true (re-checked after every update); False on timeout."""
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout if timeout is not None else self.timeout))

    # --- agents: heartbeats, loss, restarts ------------------------------------------------------

    def _see_agent(self, info: AgentInfo, url: str) -> Optional[AgentView]:
        view = AgentView(info.name, info.epoch, info.heartbeat_interval, str(info.attributes.get("hostname", "")),
                         str(info.attributes.get("uri", "")), url, self.clock(), dict(info.attributes))
        self._lost[info.name] = False
        return self.agents._put(info.name, view)

    def _heartbeat(self, info: AgentInfo, url: str, transport: Transport) -> None:
        known = self.agents.by_name(info.name)
        if known is None and info.name not in self._agent_transport:
            # An agent we have not loaded yet (it started after us): load it off the ingest thread.
            # The load is queued before the agent counts as known, so start(), which skips known
            # agents, waits for it with the loader's other work.
            if self._admit(info.name):
                self._loader.submit(("load", info.name), self._load_agent, info, url, transport)
                self._agent_transport[info.name] = (url, transport)
            return
        was_lost = self.is_lost(info.name)
        self._see_agent(info, url)
        view = self.agents.by_name(info.name)
        assert view is not None
        if known is not None and known.epoch != info.epoch:
            self._emit(AgentRestarted(view, known.epoch))
            self._background(self._resync_quietly, info.name)
        elif was_lost:
            self._emit(AgentAdded(view))  # back, same epoch: catch up on what we missed
            self._background(self._resync_quietly, info.name)
        elif known is not None and known.attributes.get("reconnects") != info.attributes.get("reconnects"):
            # It reconnected (a broker failover, say) while we did not: what it sent just before its loss
            # may have gone nowhere — a deletion, which its re-push of what exists cannot repeat.
            self._background(self._resync_quietly, info.name)
        elif info.name not in self._loaded and info.name not in self._resyncing:
            # Its objects were never read in full (the first load failed: a timeout on a loaded machine, a
            # lost connection): try again at each heartbeat until one succeeds.
            self._background(self._retry_load, info.name)
        self._check_health(view)

    def _check_health(self, view: AgentView) -> None:
        """AgentDegraded when a heartbeat first says libvirt is not ok or calls are stuck; AgentRecovered
        when one says all is well again (once per transition, not per heartbeat)."""
        health = view.health
        with self._health_lock:
            was = self._degraded.get(view.name)
            if health.ok == (was is None):
                return
            if health.ok:
                del self._degraded[view.name]
            else:
                self._degraded[view.name] = health.reason
        self._emit(AgentRecovered(view) if health.ok else AgentDegraded(view, health.reason))

    def _admit(self, agent_name: str) -> bool:
        """Whether the console may follow one more agent (the ``agents`` limit)."""
        if agent_name in self._agent_transport:
            return True
        if len(self._agent_transport) >= self.limits.agents:
            self.limit_watch.hit("agents", self.limits.agents, f"agent {shown(agent_name)} not followed")
            return False
        self.limit_watch.clear("agents")
        return True

    def _background(self, fn: Callable[..., None], agent_name: str) -> None:
        """Queue work on one agent for the loader threads (at most one such piece waiting per agent)."""
        self._loader.submit((getattr(fn, "__name__", "work"), agent_name), fn, agent_name)

    def _resync_quietly(self, agent_name: str) -> None:
        self.resync(agent_name)

    def _retry_load(self, agent_name: str) -> None:
        """Read an agent's objects that were never read in full, unless a first load is still running."""
        with self._resyncing_lock:
            if agent_name in self._resyncing:
                return
        self._resync_once(agent_name)

    def _resync_once(self, agent_name: str) -> None:
        """resync(), marked as running for the agent (a heartbeat's retry does not start a second one)."""
        with self._resyncing_lock:
            self._resyncing.add(agent_name)
        try:
            self.resync(agent_name)
        finally:
            with self._resyncing_lock:
                self._resyncing.discard(agent_name)

    def check_agents(self) -> List[AgentView]:
        """Mark agents without a heartbeat for LOST_AFTER intervals as lost; returns those newly lost."""
        now = self.clock()
        lost = []
        for view in self.agents:
            if not self._lost.get(view.name) and now - view.last_seen > LOST_AFTER * max(view.heartbeat_interval, 0.001):
                self._lost[view.name] = True
                lost.append(view)
                self._emit(AgentLost(view))
        if lost:
            with self._changed:
                self._changed.notify_all()
        return lost

    def _monitor_loop(self) -> None:
        while not self._stopping.wait(0.25):
            self.check_agents()

    # --- ingest (one thread) ---------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            if self._inbox.held < self.limits.inbox_bytes // 2 and self.limit_watch.active("inbox_bytes"):
                self.limit_watch.clear("inbox_bytes")
            url, transport, wire = item
            try:
                if isinstance(wire, _Marker):
                    wire.event.set()
                    continue
                if isinstance(wire, _Resynced):
                    self._updater.remove_missing(wire.agent, set(wire.seen), wire.started)
                elif transport is not None:
                    self._ingest_one(url, transport, wire)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop ingest
                # a peer may trigger it at will: one line per window, the traceback at debug
                if _warn.warning("ingest", "ingesting a message from %s failed: %s", shown(url),
                                 shown(repr(exc))):
                    log.debug("ingesting a message from %s", shown(url), exc_info=True)
            with self._changed:
                self._changed.notify_all()

    def _distrust(self, principal: Optional[str], agent: str, what: str) -> None:
        """Drop a message whose sender may not speak for the agent it names (counted, logged sparingly)."""
        self.untrusted += 1
        if self.untrusted in (1, 10, 100) or self.untrusted % 1000 == 0:
            log.warning("dropping %s from agent %s (user %s): not the agent's (%d so far)", shown(what),
                        shown(agent), shown(principal or "(none)"), self.untrusted)

    def _bound_ok(self, url: str, transport: Transport, wire: WireMessage, message: Message,
                  pending: Optional[_Pending]) -> bool:
        """Direct mode: whether a message may be believed on the connection it came in on.

        A connection is bound to the first agent that answers on it — its locate answer or heartbeat, or
        an answer from the agent a request on it was sent to — unless that agent is bound to another
        connection already. Until then nothing on it is believed; afterwards only what names that agent."""
        claimed = claimed_agents(message)
        if isinstance(message, (DataIndication, QueryResponse)) and any(
                isinstance(i, DataRecord) and not i.object_id.agent_name
                for i in (message.records if isinstance(message, DataIndication) else message.items)):
            claimed.add("")  # an object of no agent: never one of the bound agent's
        if not claimed:
            return True
        bound = self._bound.get(transport)
        if bound is None:
            name: Optional[str] = None
            if isinstance(message, (AgentLocateResponse, AgentHeartbeat)):
                name = message.info.name
            elif pending is not None and pending.agent and pending.transport is transport:
                name = pending.agent
            if name is None:
                self.unbound += 1
                log.debug("dropping %s from %s: no agent answered on this connection yet", message.OPCODE,
                          shown(url))
                return False
            if claimed != {name} or self._bound_to.get(name, transport) is not transport:
                self._distrust(wire.principal, name, f"a message on {url}, whose agent is not {name}")
                if pending is not None and not pending.agent and isinstance(message, AgentLocateResponse):
                    # our locate on a second connection to an agent we follow already: say so at once
                    pending.error = errors.NotConnectedError(f"{shown(url)}: agent {shown(name)} already answered "
                                                             "on another connection; not followed twice")
                    pending.done.set()
                return False
            self._bound[transport] = name
            self._bound_to[name] = transport
            return True
        if claimed != {bound}:
            other = sorted(claimed - {bound})[0]
            self._distrust(wire.principal, other, f"a message on the connection of {bound} ({url})")
            return False
        return True

    def _ingest_one(self, url: str, transport: Transport, wire: WireMessage) -> None:
        try:
            message = decode(wire)
        except errors.ProtocolError as exc:
            _warn.warning("malformed", "dropping malformed message from %s: %s", shown(url), shown(str(exc)))
            return
        if self.trust.enabled:
            impostor = self.trust.check(wire.principal, message)
            if impostor is not None:
                self._distrust(wire.principal, impostor, f"a message about agent {impostor}")
                return
        pending = None
        if message.correlation_id is not None:
            with self._pending_lock:
                pending = self._pending.get(message.correlation_id)
        if self._direct and not self._bound_ok(url, transport, wire, message, pending):
            return
        if pending is not None and pending.agent and message.agent != pending.agent:
            self._distrust(wire.principal, message.agent or "(none)", f"an answer to a request to {pending.agent}")
            return
        if pending is not None:
            if pending.apply and isinstance(message, QueryResponse):
                self._updater.apply_records(message.records, answered_after=pending.sent)
            pending.add(message)
        elif isinstance(message, AgentHeartbeat):
            self._heartbeat(message.info, url, transport)
        elif isinstance(message, StatsIndication):
            self._updater.apply_stats(message.agent, message.batches)
        elif isinstance(message, EventIndication):
            self._updater.apply_events(message.agent, message.events)
        elif isinstance(message, DataIndication):
            self._updater.apply_records(message.records)
        else:
            log.debug("unsolicited %s from %s", message.OPCODE, url)


@dataclass(frozen=True)
class _Marker:
    event: threading.Event


@dataclass(frozen=True)
class _Resynced:
    agent: str
    seen: frozenset  # type: ignore[type-arg]
    started: float  # time.monotonic() when the query went out


class ScopedRepository:
    """A repository seen through a scope: only the objects of some agents."""

    def __init__(self, repo: Repository, agents: Iterable[str]) -> None:
        self._repo = repo
        self.agent_names = frozenset(agents)
        self.class_name = repo.class_name

    def __iter__(self) -> Iterator[RemoteObject]:
        return iter([o for o in self._repo if o.agent in self.agent_names])

    def __len__(self) -> int:
        return sum(1 for o in self._repo if o.agent in self.agent_names)

    def get(self, ref: str) -> RemoteObject:
        found = [o for o in self if ref in (o.values.get("uuid"), o.values.get("name"), o.values.get("key"),
                                            o.values.get("path"), o.values.get("hostname"),
                                            o.object_id.object_name)]
        if not found:
            raise errors.UnknownRefError(f"no {self._repo.kind[:-1]} matches {ref!r} in this scope")
        if len(found) > 1:
            raise errors.AmbiguousRefError(f"{ref!r} matches {len(found)} {self._repo.kind} in this scope")
        return found[0]


class Scope:
    """nodes/domains/pools/volumes of a set of agents."""

    def __init__(self, console: Console, agent_names: Iterable[str]) -> None:
        names = frozenset(agent_names)
        self.agent_names = names
        self.nodes = ScopedRepository(console.nodes, names)
        self.domains = ScopedRepository(console.domains, names)
        self.pools = ScopedRepository(console.pools, names)
        self.volumes = ScopedRepository(console.volumes, names)


def _wire_objects(value: Any) -> Any:
    """Objects passed as arguments (snapshots, ObjectIds, lists of them) as the wire's object ids."""
    if isinstance(value, RemoteObject):
        return value.object_id.to_wire()
    if isinstance(value, ObjectId):
        return value.to_wire()
    if isinstance(value, (list, tuple)) and any(isinstance(v, (RemoteObject, ObjectId)) for v in value):
        return [_wire_objects(v) for v in value]
    return value
