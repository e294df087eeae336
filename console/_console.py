"""The Console: connects to agents, keeps repositories from their answers and pushes, calls methods.

A facade over parts of one job each: requests and their answers (``requests``), agent tracking
(``tracker``), loading agents' objects (``loading``), the ingest thread (``ingest``), the updater
(``updater``), method calls, the XML fetcher, subscriptions and job apartments. It is also the session
its snapshots and jobs call back into (``virtq.console._session``).

Threads: each transport's reactor only puts received messages in the inbox; one ingest thread decodes
them and applies them in arrival order (responses complete pending requests, pushes go through the
updater into the repositories and out to subscribers); a monitor thread watches heartbeats; a few loader
threads read agents' objects; callers block only on their own requests.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union, cast

from virtq.logs import shown
from virtq.schema import default_schema, errors
from virtq.schema.children import KINDS, parent_property
from virtq.schema.codec import Message, ObjectId, QueryRequest, direct_address
from virtq.schema.model import Method, Schema
from virtq.transport import TlsConfig, Transport
from virtq.transport.urls import redact

from ._agents import AgentTracker
from ._calls import MethodCalls
from ._connections import open_connections, open_direct
from ._fetcher import XmlFetcher
from ._inbox import Delivery, Inbox
from ._ingest import Ingest
from ._jobs import Apartments, Job
from ._loader import Loader
from ._loading import AgentLoading
from ._migration import MigrationJob, Migrations
from ._moves import Moves
from ._redial import Redialer
from ._requests import Requests
from ._scope import Scope
from ._streams import Streams
from ._updater import Updater
from .events import Event
from .limits import Limits, LimitWatch
from .objects import RemoteObject
from .repository import AgentRepository, AgentView, Repository
from .subscriptions import Subscribers, Subscription, refuse_inline_calls
from .trust import AgentTrust, TrustRule

if TYPE_CHECKING:
    from .typed import Domain, DomainCheckpoint, DomainSnapshot, Node, Pool, Snapshot, Volume

__all__ = ["Console"]

log = logging.getLogger(__name__)


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
        self.trust = AgentTrust(agent_users)
        self.limits = limits or Limits()
        self.timeout = timeout
        self.schema = schema or default_schema()
        self.clock = clock
        self.addressing = addressing
        self.discovery = discovery if discovery is not None else min(timeout, 1.0)
        """With a broker: how long to collect agents' answers to the first locate (heartbeats add later ones)."""
        url_list = [urls] if isinstance(urls, str) else list(urls)
        self._tls = TlsConfig(tls_cert, tls_key, tls_ca)
        self.connections = open_connections(url_list, addressing, self._tls, transports)
        """(URL, transport) of every connection the console follows agents on."""
        self._urls: Dict[str, str] = {redact(u): u for u in url_list} if addressing == "direct" else {}
        """Direct mode: the URLs followed (redialed while down), by name."""
        self.unreachable: Dict[str, str] = {}
        """URLs that could not be reached (at start, or since added), with the reason; direct ones are retried
        in the background and leave this when they join."""
        self._redial = Redialer(self._join)
        self.agents = AgentRepository()

        def started() -> bool:  # read before start() was called: NotStartedError
            return self.ingest.thread.ident is not None or self.closed or not self.connections

        self._repos: Dict[str, Repository[RemoteObject]] = {
            name: Repository(name, self.agents, started) for name in ("Node", "Domain", "Pool", "Volume")}
        for name in KINDS:  # a domain's snapshots and checkpoints: "<domain>/<name>" finds one
            self._repos[name] = Repository(name, self.agents, started, parent=self._repos["Domain"])
        # the same repositories as mypy should see them: handing out their classes' Protocols (virtq.console.typed)
        self.nodes = cast("Repository[Node]", self._repos["Node"])
        self.domains = cast("Repository[Domain]", self._repos["Domain"])
        self.pools = cast("Repository[Pool]", self._repos["Pool"])
        self.volumes = cast("Repository[Volume]", self._repos["Volume"])
        self.snapshots = cast("Repository[DomainSnapshot]", self._repos["DomainSnapshot"])
        self.checkpoints = cast("Repository[DomainCheckpoint]", self._repos["DomainCheckpoint"])
        self.subscribers = Subscribers()
        self.limit_watch = LimitWatch(self.subscribers.emit)
        self.apartments = Apartments()
        self._changed = threading.Condition()  # notified after every update
        self.moves = Moves(self.subscribers.emit, self.find)  # a migrated domain: one DomainMigrated
        self.updater = Updater(self, self._now, self.schema, self.agents, self._repos, self.apartments,
                               self.moves.tell, self.limits, self.limit_watch, self.subscribers.wanted)
        self.requests = Requests()
        self.tracker = AgentTracker(self.agents, self.limits, self.limit_watch, self.subscribers.emit, self._now,
                                    self._changed, schema_hash=self.schema.hash)
        inbox: Inbox[Delivery] = Inbox(self.limits.inbox_bytes, lambda held: self.limit_watch.hit(
            "inbox_bytes", self.limits.inbox_bytes, f"{held} bytes received and not yet applied: reading waits"))
        self.loading = AgentLoading(self.tracker, self.requests, Loader(self.limits.loaders, lambda: self.closed),
                                    self.updater, inbox, timeout)
        self.ingest = Ingest(inbox, self.requests, self.loading, self.updater, self.trust, self.limits,
                             self.limit_watch, self._changed, direct=addressing == "direct")
        self._calls = MethodCalls(self, self.tracker, self.requests, self.apartments,
                                  None if addressing == "direct" else self.settle)
        self._fetcher = XmlFetcher(self.call)
        self._migrations = Migrations(self, self._calls, self.apartments, self.moves, self.subscribers.emit,
                                      self._urls, self._tls)
        self.streams = Streams(self.run, self.tracker.route)
        """Open streams (docs/PROTOCOL.md §14): a stream method's call registers one, the transports feed it."""

    def _now(self) -> float:
        return self.clock()  # looked up at each call: tests replace the clock of a running console

    @property
    def untrusted(self) -> int:
        """Messages dropped because their sender may not speak for the agent they name."""
        return self.ingest.untrusted

    @property
    def unbound(self) -> int:
        """Direct mode: messages dropped because they came on a connection before any agent answered on it."""
        return self.ingest.unbound

    @property
    def xml_fetches(self) -> int:
        """How many times the console asked an agent for XML (the fetcher's cache misses)."""
        return self._fetcher.fetches

    @property
    def conflicts(self) -> Dict[str, Tuple[str, ...]]:
        """Agent name -> the agents answering with it ("epoch N via URL", the followed one first), while two or
        more do (see ``AgentConflict``)."""
        return self.tracker.conflicts.current()

    @property
    def redialing(self) -> List[str]:
        """Direct URLs that could not be reached, waiting for their next try."""
        return self._redial.pending

    @property
    def closed(self) -> bool:
        return self.requests.closed

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "Console":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Connect, locate the agents and load their objects; NotConnectedError if nothing answers."""
        self.ingest.start()
        started: List[Tuple[str, Transport]] = []
        for url, transport in self.connections:
            try:
                self._start(url, transport, self.timeout)
                started.append((url, transport))
            except errors.NotConnectedError as exc:
                self.unreachable[url] = str(exc)
                log.warning("%s", shown(str(exc)))
        brokered = self.addressing != "direct"
        if brokered and not self.trust.enabled:
            log.warning("through a broker without agent_users: any broker user may speak for any agent "
                        "(docs/SECURITY.md)")
        self.loading.discover(started, brokered, self.discovery if brokered else self.timeout, self.unreachable)
        self.loading.workers.wait_idle(self.timeout)  # agents whose heartbeat came before their locate answer
        if self.connections and len(self.agents) == 0 and not (brokered and started):
            self.close()
            raise errors.NotConnectedError("; ".join(self.unreachable.values()) or "no agent answered")
        self.tracker.start_monitor()
        for url, transport in list(self.connections):
            if url in self.unreachable and url in self._urls and not transport.connected:
                self.connections.remove((url, transport))
                self._redial.add(url)

    def add_urls(self, *urls: str) -> None:
        """Direct mode: follow the agents at more URLs, after start(). Each is connected, located and loaded
        now (AgentAdded); one that cannot be reached goes to ``unreachable`` and is retried in the background."""
        if self.addressing != "direct":
            raise ValueError("add_urls: direct mode only (through a broker, URLs are one connection's failovers)")
        for url in urls:
            name = redact(url)
            if name in self._urls:
                continue
            self._urls[name] = url
            if not self._join(name):
                self._redial.add(name)

    def remove_urls(self, *urls: str) -> None:
        """Direct mode: stop following the agents at these URLs: their connections are closed, retries stop,
        and the agents reached through them are lost (AgentLost; their objects are kept, marked stale)."""
        for name in (redact(u) for u in urls):
            if self._urls.pop(name, None) is None:
                raise ValueError(f"remove_urls: {shown(name)} is not followed")
            self._redial.discard(name)
            self.unreachable.pop(name, None)
            for entry in [c for c in self.connections if c[0] == name]:
                self.connections.remove(entry)
                self._drop(entry[1])

    def _join(self, name: str) -> bool:
        """Connect to a direct URL and follow its agent; False (and why in ``unreachable``) when down."""
        url, transport = open_direct(self._urls.get(name, name), self._tls)
        try:
            self._start(url, transport, self.timeout)
        except errors.NotConnectedError as exc:
            self.unreachable[url] = str(exc)
            log.info("%s (retrying in the background)", shown(str(exc)))
            return False
        if self.closed or url not in self._urls:  # closed or removed meanwhile
            transport.kill()
            return True
        self.connections.append((url, transport))
        self.unreachable.pop(url, None)
        # nothing may answer its locate yet: then its agent joins by its first heartbeat
        self.loading.discover([(url, transport)], False, self.timeout, {})
        return True

    def _drop(self, transport: Transport) -> None:
        transport.kill()
        self.requests.fail(transport, errors.NotConnectedError("connection removed (remove_urls)"))
        self.ingest.unbind(transport)
        for agent_name in self.tracker.behind(transport):
            self.tracker.forget(agent_name)

    def attach(self, url: str, transport: Transport, timeout: Optional[float] = None) -> None:
        """Follow agents on one more connection, after start() (tests attach a rogue agent's)."""
        self.connections.append((url, transport))
        self._start(url, transport, timeout or self.timeout)

    def _start(self, url: str, transport: Transport, timeout: float) -> None:
        def on_state(up: bool) -> None:
            if not up:
                self.requests.fail(transport, errors.NotConnectedError(f"connection to {url} lost"))
                self.streams.fail(transport, errors.NotConnectedError(f"connection to {url} lost"))
            elif self.tracker.monitoring:  # a reconnect after start: converge on every agent behind it
                self.loading.reconnected(transport)
        transport.start(self.streams.deliverer(transport, self.ingest.deliverer(url, transport)), on_state,
                        timeout=timeout)

    def close(self) -> None:
        if self.requests.closed:
            return
        self.requests.closed = True
        self._redial.close()
        self.tracker.stop()
        self.loading.close()
        for _, transport in self.connections:
            transport.kill()
        self.ingest.stop()
        self.requests.fail(None, errors.NotConnectedError("console closed"))
        self.streams.fail(None, errors.NotConnectedError("console closed"))
        self.subscribers.close()

    # --- subscribers -----------------------------------------------------------------------------

    def subscribe(self, callback: Optional[Callable[[Event], None]] = None, *,
                  kinds: Union[None, Type[Event], Tuple[Type[Event], ...], List[Type[Event]]] = None,
                  maxsize: int = 10_000, inline: bool = False) -> Subscription:
        """Receive typed events (``kinds``: event classes to keep; None for all but the opt-in per-object
        ``StatsUpdated``, see virtq.console.subscriptions).

        With a callback, events are delivered on the subscription's own thread (``inline=True``: on the
        console's, for a callback that returns at once and never calls the console); without
        one, read them with ``subscription.get(timeout)`` or iterate. Each subscription
        has a bounded queue of ``maxsize``: on overflow the oldest events are dropped and
        an ``Overflowed`` event says how many. Close it (or use it as a context manager).
        """
        return self.subscribers.subscribe(callback, kinds, maxsize, inline)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.unsubscribe(subscription)

    # --- requests and calls ------------------------------------------------------------------------

    def query(self, agent_name: str, request: QueryRequest, timeout: Optional[float] = None) -> List[Message]:
        """Send a query to one agent and return every response message."""
        return self.requests.ask(self.tracker.route(agent_name), request, direct_address(agent_name),
                                 timeout or self.timeout, f"query to {agent_name}")

    def resync(self, agent_name: str) -> None:
        """Re-read every object of an agent; objects it no longer has are removed (ObjectRemoved)."""
        self.loading.read(agent_name)

    def run(self, obj: Union[RemoteObject, Snapshot, ObjectId], method_name: str,
            arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Tuple[Job, Any]:
        """Call a method as a job in the object's apartment; returns (job, result)."""
        target = cast(Union[RemoteObject, ObjectId], obj)  # a typed snapshot (Domain …) is a RemoteObject
        return self._calls.run(target, method_name, arguments, timeout)

    def call(self, obj: Union[RemoteObject, Snapshot, ObjectId], method_name: str,
             arguments: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Call a method on a remote object; arguments are validated against the schema first.

        Returns None (no out-arguments), the single out-argument, or a dict of them; object
        references come back as snapshots when the console knows the object.
        """
        return self.run(obj, method_name, arguments, timeout)[1]

    def migrate(self, dom: Union[RemoteObject, Snapshot], to: Union[str, AgentView, RemoteObject, Node], *,
                live: bool = True, persistent: bool = True, offline: bool = False, postcopy: bool = False,
                bandwidth: Optional[int] = None, timeout: Optional[float] = None,
                on_progress: Optional[Callable[[MigrationJob], None]] = None) -> MigrationJob:
        """Migrate a domain to another agent (its name, instance, hostname, Node or AgentView): the running
        MigrationJob; ``bandwidth`` in MiB/s, ``timeout`` aborts it (docs/CONSOLE.md, Live migration)."""
        return self._migrations.start(cast(RemoteObject, dom), cast(Union[str, AgentView, RemoteObject], to),
                                      live=live, persistent=persistent, offline=offline, postcopy=postcopy,
                                      bandwidth=bandwidth, timeout=timeout, on_progress=on_progress)

    def stream(self, obj: Union[RemoteObject, Snapshot], method: Method, args: Sequence[Any],
               kwargs: Dict[str, Any]) -> Any:
        """Call a stream method: a transfer's byte count, a screenshot's (mime, bytes), a ConsoleStream."""
        return self.streams.call(obj, method, args, kwargs)

    def xml(self, obj: Union[RemoteObject, Snapshot], flags: int = 0) -> str:
        """An object's XML, fetched only when its configGen changed since the last fetch."""
        return self._fetcher.xml(self.find(obj.object_id) or cast(RemoteObject, obj), flags)

    def settle(self) -> None:
        """Wait until everything received so far is applied (at most ``timeout`` seconds)."""
        self.ingest.settle(self.timeout)

    # --- lookups and waiting -------------------------------------------------------------------

    def repository(self, class_name: str) -> Repository[RemoteObject]:
        """The repository of a class: 'Domain', 'domain' or 'domains'; 'DomainSnapshot', 'snapshot' or 'snapshots'
        … (for mypy, of untyped snapshots: the
        attributes ``nodes``, ``domains`` … hand out their classes' Protocols)."""
        for name, repo in self._repos.items():
            if class_name.lower() in (name.lower(), repo.kind, repo.kind[:-1]):
                return repo
        raise errors.UnknownRefError(f"no class {class_name!r} (node, domain, pool, volume, snapshot, checkpoint)")

    def find(self, object_id: ObjectId) -> Optional[RemoteObject]:
        repo = self._repos.get(object_id.object_name.partition(":")[0])
        return None if repo is None else repo.by_id(object_id)

    def children(self, parent: Union[RemoteObject, Snapshot], class_name: str) -> List[RemoteObject]:
        """The objects of ``class_name`` that belong to ``parent``, by name (``dom.snapshots`` is this)."""
        name, reference = parent.object_id.object_name, parent_property(parent.class_name)
        return sorted((o for o in self._repos[class_name].of_agent(parent.agent)
                       if getattr(o.values.get(reference), "object_name", None) == name),
                      key=lambda o: str(o.values.get("name", "")))

    def lookup(self, object_id: ObjectId) -> RemoteObject:
        found = self.find(object_id)
        if found is None:
            raise errors.UnknownRefError(f"unknown object {object_id.object_name} on {object_id.agent_name}")
        return found

    def scope(self, *agent_refs: str) -> Scope:
        """Repositories limited to some agents (cluster scope) — seed 000's configurable set."""
        return Scope({self.agents.get(ref).name for ref in agent_refs},
                     *(self._repos[name] for name in ("Node", "Domain", "Pool", "Volume", *KINDS)))

    def is_lost(self, agent_name: str) -> bool:
        return self.tracker.is_lost(agent_name)

    def check_agents(self) -> List[AgentView]:
        """Mark agents without a heartbeat for LOST_AFTER intervals as lost; returns those newly lost."""
        return self.tracker.check_lost()

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> bool:
        """Block until ``predicate()`` is true (re-checked after every update); False on timeout."""
        refuse_inline_calls("waiting for a change")
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout if timeout is not None else self.timeout))
