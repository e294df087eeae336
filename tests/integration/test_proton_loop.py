"""The lean event loop (virtq/transport/_loop.py) against proton's own: what the transports run on by default,
the switch back, and that both carry the transport contract (every other transport test runs on the lean one)."""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator, List

import pytest
from proton import Handler
from proton.reactor import Container

from virtq.schema.codec import WireMessage
from virtq.testing.conformance import LoopbackEnds, TransportContract, TransportEnds
from virtq.transport._loop import LeanContainer, lean_supported
from virtq.transport._reactor import ReactorHandler, ReactorThread, _container

pytestmark = pytest.mark.integration


def test_transports_run_the_lean_loop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTQ_PROTON_LOOP", raising=False)
    container = _container(ReactorHandler())
    assert type(container) is LeanContainer
    assert lean_supported(container)


def test_proton_s_own_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTQ_PROTON_LOOP", "standard")
    assert type(_container(ReactorHandler())) is Container


def test_a_container_without_the_internals_is_not_supported() -> None:
    assert not lean_supported(object())
    container = LeanContainer(ReactorHandler())
    setattr(container, "_global_handler", Handler())  # another global handler: its events must not be bypassed
    assert not lean_supported(container)


class _Fired(Handler):
    def __init__(self, log: List[str], name: str) -> None:
        self.log, self.name = log, name

    def on_timer_task(self, event: Any) -> None:
        self.log.append(self.name)


def test_timers_fire_in_order_and_a_cancelled_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTQ_PROTON_LOOP", raising=False)
    fired: List[str] = []
    done = threading.Event()
    reactor = ReactorThread(ReactorHandler(), "test-lean-timers")

    def schedule() -> None:
        container = reactor.container
        container.schedule(0.05, _Fired(fired, "second"))
        container.schedule(0.01, _Fired(fired, "first"))
        container.schedule(0.03, _Fired(fired, "cancelled")).cancel()
        container.schedule(0.08, _Fired(fired, "done"))
        container.schedule(0.09, _Done(done))

    reactor.call(schedule)
    reactor.start()
    try:
        assert done.wait(5)
        assert fired == ["first", "second", "done"]
    finally:
        reactor.stop()
    assert not reactor.running


class _Done(Handler):
    def __init__(self, done: threading.Event) -> None:
        self.done = done

    def on_timer_task(self, event: Any) -> None:
        self.done.set()


class TestStandardLoopTransport(TransportContract):
    """The contract on proton's own loop too: the switch an operator may reach for must carry the same."""

    @pytest.fixture
    def transport_ends(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[TransportEnds]:
        monkeypatch.setenv("VIRTQ_PROTON_LOOP", "standard")
        with LoopbackEnds() as ends:
            yield ends


@pytest.mark.parametrize("loop", ["lean", "standard"])
def test_large_messages_back_to_back_arrive_whole(monkeypatch: pytest.MonkeyPatch, loop: str) -> None:
    """Messages of several MiB leave a socket a part at a time (the lean loop copies 256 KiB per send)."""
    monkeypatch.setenv("VIRTQ_PROTON_LOOP", loop)
    bodies = [os.urandom(3 * 1024 * 1024 + n) for n in range(3)]
    with LoopbackEnds() as ends:
        agent, _, console, console_inbox = TransportContract().pair(ends)
        for n, body in enumerate(bodies):
            agent.send(WireMessage(console.reply_address, {"n": n}, body, correlation_id=f"big{n}"))
        received = console_inbox.received(3, timeout=20)
    assert [(w.correlation_id, w.body) for w in received] == [(f"big{n}", body) for n, body in enumerate(bodies)]
