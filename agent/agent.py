"""The agent: receives requests from its transport, answers them from libvirt, pushes changes.

Threads: the transport's reactor delivers messages and sends what it is given; the worker
pool decodes requests and answers locate, schema and object queries from the registry, never
asking libvirt. libvirt is called in per-object apartments (method calls, look-ups of names the
registry does not know, re-reads after events: agent/apartments.py), by the sampler, the
reconcile and a liveness probe (libvirt's own event-loop thread only queues events); heartbeats
have a thread of their own (agent/liveness.py) and say which libvirt calls are stuck (agent/health.py). A hung
libvirt or QEMU never silences the agent: calls to a stuck object are refused at once (object
busy), calls libvirt does not answer in time get a timeout error, and the rest keeps being
answered. Nothing a peer sends can kill the agent: every message gets an answer or a log line.

The request path runs one way: the agent hands a request to the dispatcher, which returns an
outcome (agent/dispatcher.py) and never calls back; the agent alone pushes (through agent/publisher.py).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from virtq import __version__
from virtq.logs import RateLimited, shown
from virtq.schema import errors
from virtq.schema.codec import (DIRECT, LOCATE_SUBJECT, OPCODE, PRODUCT, TOPIC, VENDOR, AgentHeartbeat, AgentInfo,
                                AgentLocateRequest, AgentLocateResponse, DataRecord, EventRecord, ExceptionResponse,
                                Message, MethodRequest, QueryRequest, StatsBatch, WireMessage, decode,
                                direct_address, now_ns)
from virtq.schema.model import Schema
from virtq.transport.base import UNDECODABLE, Transport

from .access import Access
from .apartments import MAX_THREADS, OBJECT_QUEUE, Apartments, Ticket
from .configgen import ConfigGenerations
from .deadline_errors import deadline_error
from .dispatcher import Dispatcher, Outcome, error_reply, unexpected
from .epoch import load_epoch
from .events import EventPump
from .health import CallTracker, TrackedHypervisor
from .hypervisor import Hypervisor, HypervisorError
from .liveness import Liveness, object_counts
from .metrics import AgentMetrics
from .migration import MIGRATION_DEADLINE, MigrationEndpoint, lane
from .policy import Policy, default_policy
from .publisher import Publisher
from .reconnector import Reconnector
from .registry import Registry, can_look_up, class_of
from .sampler import Sampler
from .streams import AgentStreams

log = logging.getLogger(__name__)
limited = RateLimited(log)
"""For what a peer can make happen at will (refused messages): one line per kind per 10 s, with counts."""

MAX_PENDING_REQUESTS = 1024
"""Requests received and not yet answered; beyond it the transport stops granting peers credit."""

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Requests above this size are refused with invalid-parameter (XML documents are far smaller)."""
INLINE_BYTES = 16 * 1024
"""Method requests up to this size skip the worker pool (Agent._receive): cheaper than the hop to a worker."""
CALL_TIMEOUT = 30.0
"""Seconds a method call may wait for libvirt (queued behind its object's calls included) before it is
answered with LibvirtTimeoutError (or ObjectBusyError if it never started). libvirt's own QEMU driver
waits 30 s for a domain's job lock before it fails with the same VIR_ERR_OPERATION_TIMEOUT: shorter
would hide libvirt's more precise error, longer would only keep callers waiting on a hung daemon."""
LOOKUP_TIMEOUT = 5.0
"""Seconds a query for an object the registry does not know may wait for libvirt's look-up."""
STUCK_AFTER = 0.8
"""A libvirt call running longer than this many heartbeat intervals is stuck (heartbeats say so). Below 1:
the liveness probe starts right after a heartbeat, so a hung libvirtd is reported by the next one, at
most 2 heartbeats after it stopped answering."""


class Agent:
    """One hypervisor's libvirt, served over one transport.

    One rule orders what a request causes: the changes its outcome carries are pushed under
    ``pump.lock`` (so after what an event pushed of the same objects, if the event got there first),
    then the statistics it asks for are sampled and pushed, and only then are its replies sent: a
    console sees the new state before the answer.
    """

    def __init__(self, schema: Schema, hypervisor: Hypervisor,
                 transport: Union[Transport, Callable[[str], Transport]], *,
                 instance: Optional[str] = None, heartbeat: float = 10.0, workers: int = 8,
                 state_dir: Optional[Path] = None, max_request_bytes: int = MAX_REQUEST_BYTES,
                 interval: float = 10.0, slow_interval: float = 60.0, reconcile: float = 300.0,
                 events: bool = True, policy: Optional[Policy] = None, call_timeout: float = CALL_TIMEOUT,
                 lookup_timeout: float = LOOKUP_TIMEOUT, object_queue: int = OBJECT_QUEUE,
                 max_calls: int = MAX_THREADS, stuck_after: Optional[float] = None,
                 migration_uri: Optional[str] = None, migration_address: Optional[str] = None) -> None:
        self.schema = schema
        self.hypervisor = hypervisor
        """As given; the agent's parts use ``libvirt``, which records every call for the health report."""
        self.tracker = CallTracker()
        self.libvirt = TrackedHypervisor(hypervisor, self.tracker)
        self.heartbeat_interval = heartbeat
        self.call_timeout = call_timeout
        self.lookup_timeout = lookup_timeout
        self.stuck_after = stuck_after if stuck_after is not None else STUCK_AFTER * heartbeat
        self.apartments = Apartments(object_queue, max_calls)
        self.max_request_bytes = max_request_bytes
        self.reconcile_interval = reconcile
        self.events_enabled = events
        node = hypervisor.node()
        self.instance = instance or node.uuid
        self.migration = MigrationEndpoint.of(hypervisor.uri, node.hostname, migration_uri, migration_address)
        self.name = f"{VENDOR}:{PRODUCT}:{self.instance}"
        # A broker transport subscribes to the agent's own address, so it may be made from the name.
        self.transport = transport if isinstance(transport, Transport) else transport(self.name)
        self.epoch = load_epoch(state_dir)
        self.registry = Registry(schema, self.libvirt, self.name, self.epoch, ConfigGenerations(state_dir))
        self.metrics = AgentMetrics(self)
        self.sampler = Sampler(self.registry, self.libvirt, self.push_stats, interval=interval,
                               slow_interval=slow_interval, metrics=self.metrics)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="virtq-worker")
        self.publisher = Publisher(self.transport, self.name, self.registry, self.sampler, self._pool, self.metrics)
        self.pump = EventPump(self.registry, self.sampler, self.push, self.push_events, self.apartments,
                              read_timeout=call_timeout)
        # Without a policy file: safe defaults by where the agent can be reached from (policy.default_policy).
        self.policy = policy or default_policy(schema, hypervisor.uri, self.transport.exposed)
        self.access = Access(self.policy, self.registry)
        self.transport.set_audience(self.access.audience)
        self._pending = 0  # requests handed over by the transport and not answered yet
        self._pending_lock = threading.Lock()
        self.transport.set_ready(self._ready)
        self.streams = AgentStreams(self.libvirt, self._send, self.name, self._pool)
        self.dispatcher = Dispatcher(schema, self.registry, self.libvirt, statistics=self.sampler.latest,
                                     access=self.access, streams=self.streams)
        self._stop = threading.Event()
        self.liveness = Liveness(self._beat, self.libvirt.probe, heartbeat, self._stop)
        self.reconnector = Reconnector(self.libvirt, self.reconcile, self.liveness.beat_now, self._stop)
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="virtq-reconcile", daemon=True)
        self._started = False
        self.reconnects = 0
        """Times the transport came back this epoch; heartbeats carry it (``reconnects``) so consoles that
        never lost their own connection know to re-read this agent: what it sent just before a loss (a
        deletion, say) may have gone nowhere."""

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.registry.sync_all()
        self.pump.start()
        if self.events_enabled:
            self.hypervisor.watch(self.pump.deliver)
        # a stream's chunks and controls go to their stream, on the transport's thread (agent/streams.py)
        self.transport.start(self.metrics.timing(self.streams.deliverer(self._for_me, self._receive)),
                             self._on_transport_state)
        self._started = True
        self.liveness.start()
        self.reconnector.start()
        self.sampler.start()
        self._reconciler.start()
        log.info("agent %s (epoch %d) serving %s: %d objects", self.name, self.epoch,
                 self.hypervisor.uri, len(self.registry.entries()))
        log.info("access policy: %s", self.policy.describe())

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.hypervisor.unwatch()
        self.liveness.stop(timeout)
        self.reconnector.stop(timeout)
        if self._reconciler.is_alive():
            self._reconciler.join(timeout)
        self.sampler.stop(timeout)
        self.pump.stop(timeout)
        if not self.apartments.join(timeout):  # calls in flight end before the connection closes, stuck ones not
            log.warning("stopping with libvirt calls still in flight: %s", ", ".join(sorted(self.apartments.busy())))
        self.apartments.stop()
        self.streams.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._started:
            self.transport.stop(timeout)
        self.hypervisor.close()
        self.metrics.close()

    def kill(self) -> None:
        try:
            self.stop(timeout=1.0)
        except Exception:  # noqa: BLE001 - kill never raises
            log.debug("kill", exc_info=True)

    def __enter__(self) -> "Agent":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_policy(self, policy: Policy) -> None:
        """Put a new policy in force at once (SIGHUP): the next request and push are judged by it."""
        self.policy = policy
        self.access.policy = policy
        log.info("access policy reloaded: %s", policy.describe())

    def request_stop(self) -> None:
        """Ask wait() to return (safe from signal handlers)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until stop() (the daemon's main thread waits here)."""
        self._stop.wait()

    # --- what the agent says of itself ------------------------------------------------------

    def info(self) -> AgentInfo:
        """Who the agent is and how its libvirt is doing (never asks libvirt: it may be what hangs)."""
        node = self.registry.node
        return AgentInfo(self.name, self.epoch, max(1, round(self.heartbeat_interval)), now_ns(),
                         self.schema.hash, instance=self.instance,
                         attributes={"hostname": node.hostname, "uri": node.uri,
                                     "node": self.registry.node_name, "reconnects": self.reconnects,
                                     "version": __version__, "hypervisor_reconnects": self.reconnector.reconnects,
                                     "objects": object_counts(e.class_name for e in self.registry.entries()),
                                     **self.tracker.health(self.stuck_after).attributes(),
                                     **self.reconnector.attributes(), **self.migration.attributes(self.policy)})

    def _beat(self) -> None:
        self._send(AgentHeartbeat(self.info(), agent=self.name).encode())

    def _on_transport_state(self, up: bool) -> None:
        """Back after an outage: re-announce at once and push the latest state of what changed meanwhile."""
        if not up or not self._started:
            return
        self.reconnects += 1
        self.liveness.beat_now()
        # Messages sent in the moments before the loss was noticed went nowhere and were not marked:
        # re-push every object's latest state once (a few records per VM, only after a reconnect).
        self.publisher.repush({f"{e.class_name}:{e.key}" for e in self.registry.entries()})

    # --- receiving ------------------------------------------------------------------------------

    def _for_me(self, wire: WireMessage) -> bool:
        if wire.address == direct_address(self.name):
            return True
        if wire.address == DIRECT:
            return wire.subject == self.name
        on_topic = wire.address == TOPIC or wire.address.startswith(TOPIC + "/")
        return on_topic and wire.subject == LOCATE_SUBJECT

    def _receive(self, wire: WireMessage) -> None:
        """Called on the transport's thread: a small method request is queued in its object's apartment from
        here (that is decoding it and a queue: no libvirt, nothing that waits); the rest goes to a worker."""
        if self._stop.is_set():
            return
        with self._pending_lock:
            self._pending += 1
        if wire.properties.get(OPCODE) == MethodRequest.OPCODE and wire.size <= INLINE_BYTES:
            self._handle_counted(wire)
            return
        try:
            self._pool.submit(self._handle_counted, wire)
        except RuntimeError:  # shutting down
            with self._pending_lock:
                self._pending -= 1

    def _ready(self) -> bool:
        """Back-pressure: the transport grants peers credit only while requests waiting here are few."""
        return self._pending < MAX_PENDING_REQUESTS

    def _handle_counted(self, wire: WireMessage) -> None:
        try:
            self._handle(wire)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _handle(self, wire: WireMessage) -> None:
        if not self._for_me(wire):
            log.debug("ignoring message for %s/%s", shown(wire.address), shown(wire.subject))
            return
        try:
            if wire.size > self.max_request_bytes:
                raise errors.InvalidParameterError(
                    f"request of {wire.size} bytes exceeds the limit of {self.max_request_bytes}")
            if wire.body == UNDECODABLE:
                raise errors.ProtocolError("the body has no value (e.g. a map keyed by a list)")
            request = decode(wire)
        except (errors.ProtocolError, errors.InvalidParameterError) as exc:
            self._refuse(wire, exc)
            return
        try:
            self._answer(request, wire.principal)
        except Exception as exc:  # noqa: BLE001 - never die of a message
            reply = unexpected(request, exc)
            if reply is not None and request.reply_to:
                self._reply(request, [reply])

    def _refuse(self, wire: WireMessage, exc: Exception) -> None:
        code = exc.error_code if isinstance(exc, errors.RemoteError) else errors.STATUS_EXCEPTION
        text = exc.error_text if isinstance(exc, errors.RemoteError) else f"malformed message: {exc}"
        # Expected bad input: one line (rate-limited, escaped, bounded), the detail at debug; no traceback.
        limited.warning(f"refused {code}", "refusing message to %s from %s: %s", shown(wire.address),
                        shown(wire.reply_to or "(no reply-to)"), shown(text))
        log.debug("refused message: address %s subject %s properties %s: %s", shown(wire.address),
                  shown(wire.subject), shown(wire.properties, 1000), shown(text, 2000))
        if wire.reply_to:
            reply = ExceptionResponse(error_code=code, error_text=text, correlation_id=wire.correlation_id)
            self._send(reply_wire(reply, self.name, wire.reply_to))

    def _answer(self, request: Message, principal: Optional[str] = None) -> None:
        """Locate, schema and object queries are answered here from the registry; what needs libvirt goes
        to its object's apartment and is answered from there (or by its deadline)."""
        if isinstance(request, AgentLocateRequest):
            self._reply(request, [AgentLocateResponse(self.info(), correlation_id=request.correlation_id)])
            return
        if isinstance(request, MethodRequest):
            name = request.object_id.object_name
            where = lane(name, request.method_name)  # a migrate call: a lane and a deadline of its own
            self._in_apartment(request, where, request.method_name, lambda: self.dispatcher.call(request, principal),
                               MIGRATION_DEADLINE if where != name else self.call_timeout)
            return
        if isinstance(request, QueryRequest):
            name = request.object_id.object_name if request.object_id is not None else ""
            if request.what in ("OBJECT", "OBJECT_ID") and self.registry.get(name) is None and can_look_up(name):
                self._in_apartment(request, name, "look-up",
                                   lambda: self.dispatcher.query(request, principal, lookup=True),
                                   self.lookup_timeout)
                return
            self._deliver(request, self.dispatcher.query(request, principal))
            return
        text = f"{request.OPCODE} is not a request this agent serves"
        limited.warning(f"not served {request.OPCODE}", text)
        self._reply(request, [ExceptionResponse(error_code=errors.STATUS_NOT_IMPLEMENTED, error_text=text,
                                                correlation_id=request.correlation_id)])

    def _deliver(self, request: Message, outcome: Outcome) -> None:
        self._act_on(outcome)
        self._reply(request, outcome.replies)

    def _act_on(self, outcome: Outcome) -> None:
        """All an outcome asks for but its replies, in the order the class docstring gives."""
        with self.pump.lock:
            self.push(outcome.changes)
        if outcome.sample is not None:
            class_name, key = class_of(outcome.sample)
            self.sampler.sample(class_name, [key])

    def _in_apartment(self, request: Message, name: str, label: str, run: Callable[[], Outcome],
                      timeout: float) -> None:
        """Run ``run`` in ``name``'s apartment and answer from there; if it is not done within ``timeout``,
        the caller gets a typed error at the deadline (the call's own answer is then dropped, its changes
        still pushed)."""
        def job(ticket: Ticket) -> None:
            try:
                outcome = run()
            except Exception as exc:  # noqa: BLE001 - never die of a message
                reply = unexpected(request, exc)
                outcome = Outcome([reply] if reply is not None else [])
            if ticket.claim():
                try:
                    self._deliver(request, outcome)
                except Exception as exc:  # noqa: BLE001 - e.g. a value the encoder refuses: still an answer
                    reply = unexpected(request, exc)
                    if reply is not None:
                        self._reply(request, [reply])
                return
            self._act_on(outcome)
            log.info("%s on %s returned after %.1f s, past its deadline: its answer was dropped", shown(label),
                     shown(name), self.apartments.clock() - ticket.submitted)

        def timed_out(ticket: Ticket) -> None:
            late = deadline_error(ticket, timeout, self.apartments, self.tracker, self.schema)
            self._reply(request, [error_reply(late, request)])

        try:
            self.apartments.submit(name, label, job, timeout, timed_out)
        except errors.ObjectBusyError as exc:
            limited.warning(f"busy {class_of(name)[0]}", "refused %s on %s: %s", shown(label), shown(name),
                            exc.error_text)
            self._reply(request, [error_reply(exc, request)])

    # --- sending -------------------------------------------------------------------------------

    def _reply(self, request: Message, replies: Sequence[Message]) -> None:
        if not request.reply_to:
            limited.log(logging.INFO, f"no reply-to {request.OPCODE}", "%s without reply-to: answer dropped",
                        request.OPCODE)
            return
        for reply in replies:
            self._send(reply_wire(reply, self.name, request.reply_to))

    def _reconcile_loop(self) -> None:
        """The backstop: events are hints, a periodic full re-list makes the state right."""
        while not self._stop.wait(self.reconcile_interval):
            self.reconcile()

    def reconcile(self) -> None:
        try:
            if not self.libvirt.alive():
                log.warning("libvirt connection to %s lost: reconnecting", self.hypervisor.uri)
                self.libvirt.reconnect()
            self.push(self.registry.sync_all())
            for class_name in ("Domain", "Node", "Pool", "Volume"):
                self.sampler.sample(class_name)
        except HypervisorError as exc:
            log.warning("reconcile failed: %s", exc.message)

    def push(self, records: Sequence[DataRecord]) -> None:
        self.publisher.push(records)

    def push_stats(self, batches: Sequence[StatsBatch]) -> None:
        self.publisher.push_stats(batches)

    def push_events(self, events: Sequence[EventRecord]) -> None:
        self.publisher.push_events(events)

    def _send(self, wire: WireMessage) -> bool:
        return self.publisher.send(wire)


def reply_wire(reply: Message, agent_name: str, reply_to: str) -> WireMessage:
    return dataclasses.replace(reply, agent=agent_name).encode(reply_to)
