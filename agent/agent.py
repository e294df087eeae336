"""The agent: receives requests from its transport, answers them from libvirt, pushes changes.

Threads: the transport's reactor delivers messages and sends what it is given; libvirt is
called only on the worker pool, the sampler and the event pump (libvirt's own event-loop
thread only queues events); heartbeats and the reconcile have a thread each. Nothing a
peer sends can kill the agent: every message gets an answer or a log line.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Union

from virtq.schema import errors
from virtq.schema.codec import (DIRECT, LOCATE_SUBJECT, PRODUCT, TOPIC, VENDOR, AgentHeartbeat, AgentInfo,
                                AgentLocateRequest, AgentLocateResponse, DataIndication, DataRecord,
                                EventIndication, EventRecord, ExceptionResponse, Message, MethodRequest,
                                QueryRequest, StatsBatch, StatsIndication, WireMessage, data_subject, decode,
                                direct_address, event_subject, now_ns, stats_subject)
from virtq.schema.model import Method, Schema
from virtq.transport.base import Transport

from .access import Access
from .configgen import RUN_STATE_ONLY, ConfigGenerations, method_changes_config
from .dispatcher import Dispatcher, unexpected
from .events import EventPump
from .hypervisor import Hypervisor, HypervisorError
from .policy import Policy, default_policy
from .registry import Entry, Registry
from .sampler import Sampler

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Requests above this size are refused with invalid-parameter (XML documents are far smaller)."""


def load_epoch(state_dir: Optional[Path]) -> int:
    """The agent's epoch: persisted and incremented per start when a state directory is given."""
    if state_dir is None:
        return int(time.time())
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "epoch"
    try:
        epoch = int(path.read_text().strip()) + 1
    except (FileNotFoundError, ValueError):
        epoch = 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{epoch}\n")
    os.replace(tmp, path)
    return epoch


class Agent:
    """One hypervisor's libvirt, served over one transport."""

    def __init__(self, schema: Schema, hypervisor: Hypervisor,
                 transport: Union[Transport, Callable[[str], Transport]], *,
                 instance: Optional[str] = None, heartbeat: float = 10.0, workers: int = 8,
                 state_dir: Optional[Path] = None, max_request_bytes: int = MAX_REQUEST_BYTES,
                 interval: float = 10.0, slow_interval: float = 60.0, reconcile: float = 300.0,
                 events: bool = True, policy: Optional[Policy] = None) -> None:
        self.schema = schema
        self.hypervisor = hypervisor
        self.heartbeat_interval = heartbeat
        self.max_request_bytes = max_request_bytes
        self.reconcile_interval = reconcile
        self.events_enabled = events
        node = hypervisor.node()
        self.instance = instance or node.uuid
        self.name = f"{VENDOR}:{PRODUCT}:{self.instance}"
        # A broker transport subscribes to the agent's own address, so it may be made from the name.
        self.transport = transport if isinstance(transport, Transport) else transport(self.name)
        self.epoch = load_epoch(state_dir)
        self.registry = Registry(schema, hypervisor, self.name, self.epoch, ConfigGenerations(state_dir))
        self.sampler = Sampler(schema, self.registry, hypervisor, self.push_stats, interval=interval,
                               slow_interval=slow_interval)
        self.pump = EventPump(schema, self.registry, self.sampler, self.push, self.push_events)
        # Without a policy file: safe defaults by where the agent can be reached from (policy.default_policy).
        self.policy = policy or default_policy(schema, hypervisor.uri, self.transport.exposed)
        self.access = Access(self.policy, self.registry)
        self.transport.set_audience(self.access.audience)
        self.dispatcher = Dispatcher(schema, self.registry, hypervisor, after_call=self._after_call,
                                     statistics=self.sampler.latest, access=self.access)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="virtq-worker")
        self._stop = threading.Event()
        self._heartbeats = threading.Thread(target=self._heartbeat_loop, name="virtq-heartbeat", daemon=True)
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="virtq-reconcile", daemon=True)
        self._started = False
        self.reconnects = 0
        """Times the transport came back this epoch; heartbeats carry it (``reconnects``) so consoles that
        never lost their own connection know to re-read this agent: what it sent just before a loss (a
        deletion, say) may have gone nowhere."""
        self._beat_now = threading.Event()
        self._dirty: Set[str] = set()  # objects changed while the transport was down
        self._dirty_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.registry.sync_all()
        self.pump.start()
        if self.events_enabled:
            self.hypervisor.watch(self.pump.deliver)
        self.transport.start(self._receive, self._on_transport_state)
        self._started = True
        self._heartbeats.start()
        self.sampler.start()
        self._reconciler.start()
        log.info("agent %s (epoch %d) serving %s: %d objects", self.name, self.epoch,
                 self.hypervisor.uri, len(self.registry.entries()))
        log.info("access policy: %s", self.policy.describe())

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._beat_now.set()  # wakes the heartbeat thread
        self.hypervisor.unwatch()
        for thread in (self._heartbeats, self._reconciler):
            if thread.is_alive():
                thread.join(timeout)
        self.sampler.stop(timeout)
        self.pump.stop(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._started:
            self.transport.stop(timeout)
        self.hypervisor.close()

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

    def request_stop(self) -> None:
        """Ask wait() to return (safe from signal handlers)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until stop() (the daemon's main thread waits here)."""
        self._stop.wait()

    # --- what the agent says of itself ------------------------------------------------------

    def info(self) -> AgentInfo:
        node = self.registry.node
        return AgentInfo(self.name, self.epoch, max(1, round(self.heartbeat_interval)), now_ns(),
                         self.schema.hash, instance=self.instance,
                         attributes={"hostname": node.hostname, "uri": node.uri,
                                     "node": self.registry.node_name, "reconnects": self.reconnects})

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            self._send(AgentHeartbeat(self.info(), agent=self.name).encode())
            self._beat_now.wait(self.heartbeat_interval)
            self._beat_now.clear()

    def _on_transport_state(self, up: bool) -> None:
        """Back after an outage: re-announce at once and push the latest state of what changed meanwhile."""
        if not up or not self._started:
            return
        self.reconnects += 1
        self._beat_now.set()
        # Messages sent in the moments before the loss was noticed went nowhere and were not marked:
        # re-push every object's latest state once (a few records per VM, only after a reconnect).
        self._flush_dirty({f"{e.class_name}:{e.key}" for e in self.registry.entries()})

    def _flush_dirty(self, more: Iterable[str] = ()) -> None:
        with self._dirty_lock:
            dirty, self._dirty = self._dirty.union(more), set()
        if dirty:
            self._pool.submit(self._push_dirty, dirty)

    def _push_dirty(self, names: Set[str]) -> None:
        """Coalesced while disconnected: one record (or deletion) and the latest statistics per object."""
        now = now_ns()
        records: List[DataRecord] = []
        for name in sorted(names):
            entry = self.registry.get(name)
            if entry is not None:
                records.append(self.registry.record(entry))
            elif name.partition(":")[0] in self.schema.classes:
                class_name = name.partition(":")[0]
                records.append(DataRecord(self.registry.object_id(name), self.schema.cls(class_name).schema_id,
                                          {}, now, now, now))
        self.push(records)
        self.push_stats(self.sampler.resend(names))
        log.info("pushed the latest state of %d object(s) changed while disconnected", len(names))

    def _held_back(self, names: Sequence[str]) -> bool:
        """While the transport is down, remember what changed instead of queueing messages."""
        if self.transport.connected:
            return False
        self._mark_dirty(names)
        return True

    def _mark_dirty(self, names: Iterable[str]) -> None:
        with self._dirty_lock:
            self._dirty.update(names)
        if self.transport.connected:
            # It came back meanwhile, and its reconnect may have taken the set before these were in it.
            self._flush_dirty()

    # --- receiving ------------------------------------------------------------------------------

    def _for_me(self, wire: WireMessage) -> bool:
        if wire.address == direct_address(self.name):
            return True
        if wire.address == DIRECT:
            return wire.subject == self.name
        on_topic = wire.address == TOPIC or wire.address.startswith(TOPIC + "/")
        return on_topic and wire.subject == LOCATE_SUBJECT

    def _receive(self, wire: WireMessage) -> None:
        """Called on the transport's thread: hand over to a worker at once."""
        if self._stop.is_set():
            return
        try:
            self._pool.submit(self._handle, wire)
        except RuntimeError:  # shutting down
            pass

    def _handle(self, wire: WireMessage) -> None:
        if not self._for_me(wire):
            log.debug("ignoring message for %s/%s", wire.address, wire.subject)
            return
        try:
            if wire.size > self.max_request_bytes:
                raise errors.InvalidParameterError(
                    f"request of {wire.size} bytes exceeds the limit of {self.max_request_bytes}")
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
        log.warning("refusing message to %s from %s: %s", wire.address, wire.reply_to or "(no reply-to)", text)
        if wire.reply_to:
            reply = ExceptionResponse(error_code=code, error_text=text, correlation_id=wire.correlation_id)
            self._send(reply_wire(reply, self.name, wire.reply_to))

    def _answer(self, request: Message, principal: Optional[str] = None) -> None:
        if isinstance(request, AgentLocateRequest):
            self._reply(request, [AgentLocateResponse(self.info(), correlation_id=request.correlation_id)])
            return
        if isinstance(request, MethodRequest):
            outcome = self.dispatcher.call(request, principal)
        elif isinstance(request, QueryRequest):
            outcome = self.dispatcher.query(request, principal)
        else:
            outcome = None
        if outcome is None:
            text = f"{request.OPCODE} is not a request this agent serves"
            log.warning(text)
            self._reply(request, [ExceptionResponse(error_code=errors.STATUS_NOT_IMPLEMENTED, error_text=text,
                                                    correlation_id=request.correlation_id)])
            return
        with self.pump.lock:  # after what an event pushes of the same objects, if it got there first
            self.push(outcome.changes)  # before the reply: the console sees the new state first
        self._reply(request, outcome.replies)

    # --- sending -------------------------------------------------------------------------------

    def _reply(self, request: Message, replies: Sequence[Message]) -> None:
        if not request.reply_to:
            log.info("%s without reply-to: answer dropped", request.OPCODE)
            return
        for reply in replies:
            self._send(reply_wire(reply, self.name, request.reply_to))

    def _after_call(self, entry: Entry, method: Method) -> List[DataRecord]:
        """After a successful call: a new configuration generation if it may have changed the XML,
        and the target's fresh statistics pushed at once (before the reply)."""
        changes: List[DataRecord] = []
        # The node's own XML (capabilities) does not change through its methods: defining a domain
        # changes the domain, which has a generation of its own.
        changing = method_changes_config(method.name) and entry.class_name != "Node"
        if changing:
            changes += self.registry.bump_config(f"{entry.class_name}:{entry.key}")
        if (changing or method.name in RUN_STATE_ONLY) and entry.class_name in ("Domain", "Pool", "Volume") \
                and self.registry.get(f"{entry.class_name}:{entry.key}") is not None:
            self.push(changes)
            changes = []
            self.sampler.sample(entry.class_name, [entry.key])
        return changes

    def _reconcile_loop(self) -> None:
        """The backstop: events are hints, a periodic full re-list makes the state right."""
        while not self._stop.wait(self.reconcile_interval):
            self.reconcile()

    def reconcile(self) -> None:
        try:
            if not self.hypervisor.alive():
                log.warning("libvirt connection to %s lost: reconnecting", self.hypervisor.uri)
                self.hypervisor.reconnect()
            self.push(self.registry.sync_all())
            for class_name in ("Domain", "Node", "Pool", "Volume"):
                self.sampler.sample(class_name)
        except HypervisorError as exc:
            log.warning("reconcile failed: %s", exc.message)

    def push_stats(self, batches: Sequence[StatsBatch]) -> None:
        for batch in batches:
            names = [batch.object_name(i) for i in range(len(batch.keys))]
            if self._held_back(names):
                continue
            message = StatsIndication(batches=(batch,), agent=self.name)
            if not self._send(message.encode(TOPIC, stats_subject(self.schema.package, batch.schema_id.class_name))):
                self._mark_dirty(names)

    def push_events(self, events: Sequence[EventRecord]) -> None:
        for event in events:
            message = EventIndication(events=(event,), agent=self.name)
            self._send(message.encode(TOPIC, event_subject(self.schema.package, event.schema_id.class_name)))

    def push(self, records: Sequence[DataRecord]) -> None:
        """Push changed objects as data indications, one per class; all deletions go first.

        Records carry the object's latest statistics, as query answers do: a sample can reach a
        console before the record of an object it has not seen yet (the sampler sees a new object
        as soon as the registry has it) and is dropped there, and unchanged values are never sent
        again — without this, a new idle domain's state would stay unknown to that console.
        """
        if self._held_back([r.object_id.object_name for r in records]):
            return
        for deleted in (True, False):
            by_class: Dict[str, List[DataRecord]] = {}
            for record in records:
                if record.deleted == deleted:
                    latest = None if deleted else self.sampler.latest(record.object_id.object_name)
                    if latest:
                        record = dataclasses.replace(record, values={**record.values, **latest})
                    by_class.setdefault(record.schema_id.class_name, []).append(record)
            for class_name, batch in by_class.items():
                message = DataIndication(records=tuple(batch), agent=self.name)
                if not self._send(message.encode(TOPIC, data_subject(self.schema.package, class_name))):
                    self._mark_dirty(r.object_id.object_name for r in batch)  # lost at the last moment

    def _send(self, wire: WireMessage) -> bool:
        try:
            self.transport.send(wire)
            return True
        except errors.NotConnectedError as exc:
            log.debug("not sent: %s", exc)
            return False


def reply_wire(reply: Message, agent_name: str, reply_to: str) -> WireMessage:
    return dataclasses.replace(reply, agent=agent_name).encode(reply_to)
