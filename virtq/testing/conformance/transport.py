"""What every transport must do alike, checked the same way against each: the transport contract.

A pytest class that subclasses :class:`TransportContract` and provides a ``transport_ends`` fixture
(a :class:`TransportEnds`: where the agent side and consoles of the transport under test come from;
``with MemoryEnds() as ends: yield ends``) inherits every check. virtq runs it against the in-memory
bus (:class:`MemoryEnds`) and against proton over loopback (:class:`LoopbackEnds`: a DirectListener and
direct connections); a transport of your own passes it too before an agent or console relies on it.
"""

from __future__ import annotations

import abc
import threading
from typing import Any, Dict, List, Tuple

from virtq.schema.codec import TOPIC, WireMessage, direct_address, heartbeat_subject
from virtq.schema.errors import NotConnectedError
from virtq.transport import DirectListener, MemoryBus, Transport, direct_connection

from ..ports import free_port
from ..waiting import wait_until
from .deliveries import Deliveries

__all__ = ["Inbox", "LoopbackEnds", "MemoryEnds", "TransportContract", "TransportEnds"]


class TransportEnds(abc.ABC):
    """Makes the transports one contract check uses: one agent side, consoles that reach it. Whatever
    it made is killed by ``close()`` (the fixture's teardown)."""

    def __init__(self) -> None:
        self.made: List[Transport] = []

    def agent_side(self) -> Transport:
        """A new (not started) transport in the agent's role."""
        return self._keep(self._agent_side())

    def console_side(self) -> Transport:
        """A new (not started) console transport that reaches the agent side once both are started."""
        return self._keep(self._console_side())

    @abc.abstractmethod
    def _agent_side(self) -> Transport: ...

    @abc.abstractmethod
    def _console_side(self) -> Transport: ...

    def _keep(self, transport: Transport) -> Transport:
        self.made.append(transport)
        return transport

    def close(self) -> None:
        for transport in reversed(self.made):
            transport.kill()

    def __enter__(self) -> "TransportEnds":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryEnds(TransportEnds):
    """The in-memory bus: one bus per check."""

    def __init__(self) -> None:
        super().__init__()
        self.bus = MemoryBus()

    def _agent_side(self) -> Transport:
        return self.bus.agent_transport()

    def _console_side(self) -> Transport:
        return self.bus.console_transport()

    def close(self) -> None:
        super().close()
        self.bus.close()


class LoopbackEnds(TransportEnds):
    """proton over loopback: the agent's DirectListener on a free port, consoles' direct connections."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"amqp://127.0.0.1:{free_port()}"

    def _agent_side(self) -> Transport:
        return DirectListener(self.url, on_death=lambda error: None)

    def _console_side(self) -> Transport:
        return direct_connection(self.url)


class Inbox(Deliveries[WireMessage]):
    """A transport's deliver (the inbox itself) and state callbacks, recorded with the thread each came on."""

    def __init__(self) -> None:
        super().__init__()
        self.states: List[bool] = []

    def on_state(self, up: bool) -> None:
        self.states.append(up)

    @property
    def wires(self) -> List[WireMessage]:
        return self.snapshot()

    def received(self, count: int = 1, timeout: float = 5.0) -> List[WireMessage]:
        """The first ``count`` messages, once they are here."""
        wait_until(lambda: len(self.snapshot()) >= count, timeout, message=f"{count} message(s) delivered")
        return self.snapshot()[:count]


AGENT = "libvirt.org:virtq:contract"


def request(console: Transport, body: Any, cid: str = "c1", **properties: Any) -> WireMessage:
    """A request as a console sends it: to the agent's direct address, replies to the console."""
    return WireMessage(direct_address(AGENT), {"qmf.opcode": "_query_request", **properties}, body,
                       subject="contract", correlation_id=cid, reply_to=console.reply_address)


def indication(number: int) -> WireMessage:
    return WireMessage(TOPIC, {"qmf.opcode": "_data_indication", "n": number}, {"n": number},
                       subject=heartbeat_subject())


class TransportContract:
    """The checks; needs a ``transport_ends`` fixture yielding a :class:`TransportEnds` (closed after)."""

    timeout = 5.0

    def started(self, transport: Transport) -> Inbox:
        inbox = Inbox()
        transport.start(inbox, inbox.on_state, timeout=self.timeout)
        return inbox

    def pair(self, ends: TransportEnds) -> Tuple[Transport, Inbox, Transport, Inbox]:
        """An agent side and one console, both started and connected."""
        agent = ends.agent_side()
        agent_inbox = self.started(agent)
        console = ends.console_side()
        console_inbox = self.started(console)
        wait_until(lambda: console.connected, self.timeout, message="the console is connected")
        return agent, agent_inbox, console, console_inbox

    def test_start_tells_the_state_listener_and_connects(self, transport_ends: TransportEnds) -> None:
        agent, agent_inbox, console, console_inbox = self.pair(transport_ends)
        wait_until(lambda: console_inbox.states == [True], self.timeout)
        assert agent_inbox.states == [True] and agent.connected

    def test_consoles_have_reply_addresses_of_their_own_and_the_agent_none(
            self, transport_ends: TransportEnds) -> None:
        agent, _, first, _ = self.pair(transport_ends)
        second = transport_ends.console_side()
        self.started(second)
        assert agent.reply_address == ""
        assert first.reply_address and second.reply_address and first.reply_address != second.reply_address

    def test_a_request_and_its_reply_arrive_as_sent(self, transport_ends: TransportEnds) -> None:
        agent, agent_inbox, console, console_inbox = self.pair(transport_ends)
        sent = request(console, {"what": "OBJECT"}, cid="c42", extra="x")
        console.send(sent)
        (got,) = agent_inbox.received()
        assert (got.address, dict(got.properties), got.body, got.subject, got.correlation_id, got.reply_to) == (
            sent.address, dict(sent.properties), sent.body, sent.subject, sent.correlation_id, sent.reply_to)
        assert got.size > 0 and got.principal is None  # its encoded size; nobody authenticated on loopback
        reply = WireMessage(got.reply_to or "", {"qmf.opcode": "_query_response"}, [{"a": 1}],
                            correlation_id=got.correlation_id)
        agent.send(reply)
        (answer,) = console_inbox.received()
        assert (answer.correlation_id, answer.body, dict(answer.properties)) == ("c42", [{"a": 1}],
                                                                                 {"qmf.opcode": "_query_response"})

    def test_a_reply_reaches_only_the_console_it_is_addressed_to(self, transport_ends: TransportEnds) -> None:
        agent, _, first, first_inbox = self.pair(transport_ends)
        second = transport_ends.console_side()
        second_inbox = self.started(second)
        wait_until(lambda: second.connected, self.timeout)
        agent.send(WireMessage(second.reply_address, {}, "to the second", correlation_id="r2"))
        agent.send(WireMessage(first.reply_address, {}, "to the first", correlation_id="r1"))
        assert [w.body for w in first_inbox.received()] == ["to the first"]
        assert [w.body for w in second_inbox.received()] == ["to the second"]
        agent.send(indication(0))  # (after the replies: once it is here, nothing else is on its way)
        first_inbox.received(2)
        assert [w.body for w in first_inbox.wires] == ["to the first", {"n": 0}]

    def test_indications_reach_every_console(self, transport_ends: TransportEnds) -> None:
        agent, _, _, first_inbox = self.pair(transport_ends)
        second = transport_ends.console_side()
        second_inbox = self.started(second)
        wait_until(lambda: second.connected, self.timeout)
        agent.send(indication(1))
        for inbox in (first_inbox, second_inbox):
            (got,) = inbox.received()
            assert (got.address, got.subject, got.body) == (TOPIC, heartbeat_subject(), {"n": 1})

    def test_messages_from_one_sender_arrive_in_order(self, transport_ends: TransportEnds) -> None:
        agent, agent_inbox, console, console_inbox = self.pair(transport_ends)
        for n in range(50):
            console.send(request(console, n, cid=f"c{n}"))
            agent.send(indication(n))
        assert [w.body for w in agent_inbox.received(50)] == list(range(50))
        assert [w.body["n"] for w in console_inbox.received(50)] == list(range(50))

    def test_sends_from_many_threads_all_arrive(self, transport_ends: TransportEnds) -> None:
        agent, agent_inbox, console, _ = self.pair(transport_ends)

        def send(thread: int) -> None:
            for n in range(25):
                console.send(request(console, [thread, n], cid=f"c{thread}-{n}"))

        threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.timeout)
        got = agent_inbox.received(100)
        assert sorted(tuple(w.body) for w in got) == [(t, n) for t in range(4) for n in range(25)]

    def test_delivery_comes_on_the_transports_own_thread(self, transport_ends: TransportEnds) -> None:
        agent, agent_inbox, console, console_inbox = self.pair(transport_ends)
        console.send(request(console, "x"))
        agent.send(indication(1))
        agent_inbox.received()
        console_inbox.received()
        here = threading.current_thread().name
        assert here not in agent_inbox.threads and here not in console_inbox.threads

    def test_body_values_survive_the_wire(self, transport_ends: TransportEnds) -> None:
        agent, agent_inbox, console, _ = self.pair(transport_ends)
        body: Dict[str, Any] = {"int": -7, "uint64": 2 ** 64 - 1, "float": 1.5, "true": True, "none": None,
                                "text": "ünïcode", "bytes": b"\x00\xff", "list": [1, "two", [3]],
                                "map": {"nested": {"deeper": 1}}}
        console.send(request(console, body))
        (got,) = agent_inbox.received()
        assert got.body == body
        assert isinstance(got.body["bytes"], bytes) and isinstance(got.body["list"], list)

    def test_send_after_stop_raises_not_connected(self, transport_ends: TransportEnds) -> None:
        agent, _, console, _ = self.pair(transport_ends)
        console.stop()
        assert not console.connected
        self._refused(console, request(console, "late"))
        agent.stop()
        assert not agent.connected
        self._refused(agent, indication(1))

    @staticmethod
    def _refused(transport: Transport, wire: WireMessage) -> None:
        try:
            transport.send(wire)
        except NotConnectedError:
            return
        raise AssertionError(f"{type(transport).__name__}.send after stop did not raise NotConnectedError")

    def test_stop_and_kill_may_be_repeated(self, transport_ends: TransportEnds) -> None:
        agent, _, console, _ = self.pair(transport_ends)
        for transport in (console, agent):
            transport.stop()
            transport.stop()
            transport.kill()
            transport.kill()

    def test_a_reply_to_a_console_that_left_is_dropped_quietly(self, transport_ends: TransportEnds) -> None:
        agent, _, first, _ = self.pair(transport_ends)
        second = transport_ends.console_side()
        second_inbox = self.started(second)
        wait_until(lambda: second.connected, self.timeout)
        gone = first.reply_address
        first.stop()
        agent.send(WireMessage(gone, {}, "nobody is there", correlation_id="r"))  # must not raise
        agent.send(indication(1))
        (got,) = second_inbox.received()
        assert got.body == {"n": 1}

    def test_the_console_is_told_when_the_agent_side_stops(self, transport_ends: TransportEnds) -> None:
        agent, _, console, console_inbox = self.pair(transport_ends)
        agent.stop()
        wait_until(lambda: console_inbox.states[-1:] == [False], self.timeout,
                   message="the console's state listener told False")
        assert not console.connected
        self._refused(console, request(console, "after the agent left"))

    def test_an_agent_side_on_loopback_is_not_exposed(self, transport_ends: TransportEnds) -> None:
        assert not transport_ends.agent_side().exposed

