"""Ingest: the one thread that applies what transports received, in arrival order.

Each transport's reactor puts received messages in the inbox (an answer that only completes a request, and an
agent's heartbeats and statistics, it applies itself in the inbox's turn when nothing waits there: see
:meth:`Ingest.deliverer`). This thread decodes them, drops what may not be believed (a sender speaking for an
agent that is not its own; in direct mode, anything on a connection that names another agent than the one bound
to it), hands answers to the requests they answer, heartbeats to the loading, and pushes to the updater; then
wakes whoever waits for a change.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Optional, Tuple, Union

from virtq.logs import RateLimited, shown
from virtq.schema import errors
from virtq.schema.codec import (AGENT, CONTENT, OPCODE, AgentHeartbeat, AgentLocateResponse, DataIndication,
                                DataRecord, EventIndication, Message, QueryResponse, StatsIndication, WireMessage,
                                decode)
from virtq.transport import Transport

from ._inbox import Delivery, Inbox, Step
from ._loading import AgentLoading
from ._requests import Pending, Requests
from ._updater import Updater
from .limits import Limits, LimitWatch
from .trust import AgentTrust, claimed_agents

__all__ = ["HeartbeatDecoder", "Ingest", "routine_push"]

log = logging.getLogger(__name__)

_warn = RateLimited(log)


def routine_push(wire: WireMessage, steady: Callable[[str, Optional[int]], bool]) -> bool:
    """A heartbeat or statistics of an agent in its steady state (``steady``: loaded, not being read, not lost;
    for a heartbeat, the same epoch): what a fleet sends every interval, one message at a time. A transport's
    thread applies it in the inbox's turn when nothing waits there, wherever it came from: the hand-off to the
    ingest thread and its wake-up cost a message more than applying it (docs/BENCHMARKS.md §4). Any other (an
    agent found, restarted, back) goes through the ingest thread, as everything did before."""
    properties = wire.properties
    agent = properties.get(AGENT) if isinstance(properties, dict) else None
    if not isinstance(agent, str):
        return False
    opcode = properties.get(OPCODE)
    if opcode == StatsIndication.OPCODE:
        return properties.get(CONTENT) == StatsIndication.CONTENT_TYPE and steady(agent, None)
    if opcode == AgentHeartbeat.OPCODE and isinstance(wire.body, dict):
        values = wire.body.get("_values")
        epoch = values.get("_epoch") if isinstance(values, dict) else None
        return isinstance(epoch, int) and steady(agent, epoch)
    return False


def _nothing() -> None:
    """A step that does nothing: the ingest thread wakes those waiting for a change after it."""


class HeartbeatDecoder:
    """:func:`decode`, but an agent's heartbeat that says what its last one said (all but ``_timestamp``: most of
    them) comes back as the message decoded then (its ``info.timestamp`` the earlier one's: the console reads
    none). Decoding is a function of the message alone, so whatever is checked after it is checked as ever;
    only its work is saved."""

    def __init__(self, limit: int) -> None:
        self._limit = limit  # agents remembered at most (a peer may name any number)
        self._last: Dict[str, Tuple[Dict[Any, Any], AgentHeartbeat]] = {}  # agent -> its last heartbeat's values

    def decode(self, wire: WireMessage) -> Message:
        agent = wire.properties.get(AGENT)
        values = wire.body.get("_values") if isinstance(wire.body, dict) else None
        if wire.properties.get(OPCODE) != AgentHeartbeat.OPCODE or not isinstance(agent, str) \
                or not isinstance(values, dict) or wire.correlation_id is not None:
            return decode(wire)
        last = self._last.get(agent)
        if last is not None and "_timestamp" in values:
            seen, beat = last
            seen["_timestamp"] = values["_timestamp"]  # (seen: a copy of our own)
            if seen == values and beat.reply_to == wire.reply_to:
                return beat
        message = decode(wire)
        if isinstance(message, AgentHeartbeat) and (len(self._last) < self._limit or agent in self._last):
            self._last[agent] = (dict(values), message)
        return message


class Ingest:
    def __init__(self, inbox: Inbox[Delivery], requests: Requests, loading: AgentLoading, updater: Updater,
                 trust: AgentTrust, limits: Limits, watch: LimitWatch, changed: threading.Condition,
                 direct: bool) -> None:
        self.inbox = inbox
        self._requests = requests
        self._loading = loading
        self._updater = updater
        self._trust = trust
        self._limits = limits
        self._watch = watch
        self._changed = changed  # notified after each item
        self._direct = direct
        self.bound: Dict[Transport, str] = {}
        """Direct mode: connection -> the one agent it speaks for."""
        self._bound_to: Dict[str, Transport] = {}  # ... and agent -> its connection
        self._beats = HeartbeatDecoder(limits.agents)
        self.untrusted = 0
        """Messages dropped because their sender may not speak for the agent they name."""
        self.unbound = 0
        """Direct mode: messages dropped because they came on a connection before any agent answered on it."""
        self.thread = threading.Thread(target=self._loop, name="virtq-console-ingest", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.inbox.close(None)
        if self.thread.is_alive():
            self.thread.join(5)

    def deliverer(self, url: str, transport: Transport) -> Callable[[WireMessage], None]:
        """What a transport calls on its own thread: queue for the ingest thread — or apply it right there when
        nothing received before it waits (a thread hand-off and a wake-up less; the order is the inbox's all the
        same): a heartbeat or statistics (:func:`routine_push`), and in direct mode an answer that only
        completes a request. Not such answers through a broker: there an agent's pushes and its replies come
        through two queues, and the caller's settle (console/_calls.py) is what gives the pushes their chance to
        come first."""
        def deliver(wire: WireMessage) -> None:
            if (routine_push(wire, self._loading.steady) or self._direct and self._completes_only(wire)) \
                    and self.inbox.take_turn():
                try:
                    changed = self._ingest(url, transport, wire)
                finally:
                    self.inbox.end_turn()
                if changed:
                    self._tell_waiters()
            else:
                self.inbox.put((url, transport, wire), wire.size)
        return deliver

    def _tell_waiters(self) -> None:
        """On a transport's thread: wake those waiting for a change — unless one of their predicates holds the
        lock right now (a reactor never waits for one): then the ingest thread does it, after a step."""
        if self._changed.acquire(blocking=False):
            try:
                self._changed.notify_all()
            finally:
                self._changed.release()
        else:
            self.inbox.put(("", None, _nothing), wait=False)

    def _completes_only(self, wire: WireMessage) -> bool:
        """An answer to a request to one agent that applies nothing to the repositories: handing it over
        runs no subscriber's code and nothing that waits, so a transport's thread may do it."""
        pending = self._requests.correlate(wire.correlation_id)
        return pending is not None and bool(pending.agent) and not pending.apply and not pending.many

    def unbind(self, transport: Transport) -> None:
        """Direct mode: a connection was removed; its agent may answer on another one."""
        name = self.bound.pop(transport, None)
        if name is not None and self._bound_to.get(name) is transport:
            del self._bound_to[name]

    def settle(self, timeout: float) -> None:
        """Wait until everything received so far is applied."""
        if threading.current_thread() is self.thread:
            return
        marker = threading.Event()
        self.inbox.put(("", None, marker.set), wait=False)
        marker.wait(timeout)

    def _loop(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            if self.inbox.held < self._limits.inbox_bytes // 2 and self._watch.active("inbox_bytes"):
                self._watch.clear("inbox_bytes")
            try:
                self._ingest(*item)
                with self._changed:
                    self._changed.notify_all()
            finally:
                self.inbox.done()

    def _ingest(self, url: str, transport: Optional[Transport], wire: Union[WireMessage, Step]) -> bool:
        """Apply one item of the inbox, or a message a transport's thread applies in its turn (an answer wakes
        only its caller; a waiter's predicate, which runs under that lock, must never hold a reactor up, so
        what else changed is told by queueing the waiters' wake-up). Whether it changed anything."""
        try:
            if not isinstance(wire, WireMessage):
                wire()
            elif transport is not None:
                return self.apply(url, transport, wire)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop ingest
            # a peer may trigger it at will: one line per window, the traceback at debug
            if _warn.warning("ingest", "ingesting a message from %s failed: %s", shown(url),
                             shown(repr(exc))):
                log.debug("ingesting a message from %s", shown(url), exc_info=True)
        return True

    def apply(self, url: str, transport: Transport, wire: WireMessage) -> bool:
        """Decode one message received on ``transport`` and apply it (the ingest thread's work; tests that
        play agents by hand feed messages through it). False when it changed nothing a waiter looks at: an
        answer that only woke its caller, or a heartbeat that said only that its agent is still there."""
        try:
            message = self._beats.decode(wire)
        except errors.ProtocolError as exc:
            _warn.warning("malformed", "dropping malformed message from %s: %s", shown(url), shown(str(exc)))
            return True
        if self._trust.enabled:
            impostor = self._trust.check(wire.principal, message)
            if impostor is not None:
                self._distrust(wire.principal, impostor, f"a message about agent {impostor}")
                return True
        pending = self._requests.correlate(message.correlation_id)
        if self._direct and not self._bound_ok(url, transport, wire, message, pending):
            return True
        if pending is not None and pending.agent and message.agent != pending.agent:
            self._distrust(wire.principal, message.agent or "(none)", f"an answer to a request to {pending.agent}")
            return True
        if pending is not None:
            if pending.apply and isinstance(message, QueryResponse):
                self._updater.apply_records(message.records, answered_after=pending.sent)
            pending.add(message)  # (wakes its caller)
            return pending.apply
        if isinstance(message, AgentHeartbeat):
            return self._loading.heartbeat(message.info, url, transport)
        elif isinstance(message, StatsIndication):
            self._updater.apply_stats(message.agent, message.batches)
        elif isinstance(message, EventIndication):
            self._updater.apply_events(message.agent, message.events)
        elif isinstance(message, DataIndication):
            self._updater.apply_records(message.records)
        else:
            log.debug("unsolicited %s from %s", message.OPCODE, url)
        return True

    def _distrust(self, principal: Optional[str], agent: str, what: str) -> None:
        """Drop a message whose sender may not speak for the agent it names (counted, logged sparingly)."""
        self.untrusted += 1
        if self.untrusted in (1, 10, 100) or self.untrusted % 1000 == 0:
            log.warning("dropping %s from agent %s (user %s): not the agent's (%d so far)", shown(what),
                        shown(agent), shown(principal or "(none)"), self.untrusted)

    def _bound_ok(self, url: str, transport: Transport, wire: WireMessage, message: Message,
                  pending: Optional[Pending]) -> bool:
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
        bound = self.bound.get(transport)
        if bound is None:
            return self._bind(url, transport, wire, message, pending, claimed)
        if claimed != {bound}:
            other = sorted(claimed - {bound})[0]
            self._distrust(wire.principal, other, f"a message on the connection of {bound} ({url})")
            return False
        return True

    def _bind(self, url: str, transport: Transport, wire: WireMessage, message: Message,
              pending: Optional[Pending], claimed: set[str]) -> bool:
        """The first message that names an agent on a connection not bound yet: bind it, or drop it."""
        name: Optional[str] = None
        if isinstance(message, (AgentLocateResponse, AgentHeartbeat)):
            name = message.info.name
        elif pending is not None and pending.agent and pending.transport is transport:
            name = pending.agent
        if name is None:
            self.unbound += 1
            log.debug("dropping %s from %s: no agent answered on this connection yet", message.OPCODE, shown(url))
            return False
        if claimed != {name} or self._bound_to.get(name, transport) is not transport:
            self._distrust(wire.principal, name, f"a message on {url}, whose agent is not {name}")
            if isinstance(message, (AgentLocateResponse, AgentHeartbeat)) and claimed == {name}:
                self._loading.conflict(message.info, url)  # another agent with a followed one's name
            if pending is not None and not pending.agent and isinstance(message, AgentLocateResponse):
                # our locate on a second connection to an agent we follow already: say so at once
                pending.fail(errors.NotConnectedError(f"{shown(url)}: agent {shown(name)} already answered "
                                                      "on another connection; not followed twice"))
            return False
        self.bound[transport] = name
        self._bound_to[name] = transport
        return True
