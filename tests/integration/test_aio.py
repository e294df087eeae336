"""virtq.console.aio against real agents on libvirt's test driver, over loopback AMQP, each test in asyncio.run."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, List, Optional, Sequence

import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import CallTimeoutError, DomainState, InvalidParameterError, LibvirtError, NotConnectedError
from virtq.console.aio import AsyncConsole, AsyncJob, AsyncObject
from virtq.console.events import DomainStateChanged, Event, Overflowed, StatsUpdated
from virtq.testing import agent_url

from ..helpers import DEFAULT_URI, NODE_URI

pytestmark = pytest.mark.integration

Main = Callable[[AsyncConsole], Awaitable[None]]


def run(agent: Agent, main: Main) -> None:
    """``main(console)`` in a fresh event loop, with an AsyncConsole on the agent opened around it."""
    async def body() -> None:
        async with AsyncConsole(agent_url(agent), timeout=5) as console:
            await asyncio.wait_for(main(console), 20)
    asyncio.run(body())


async def next_event(events: Any, wanted: Callable[[Event], bool]) -> Event:
    async def find() -> Event:
        async for event in events:
            if wanted(event):
                return event  # type: ignore[no-any-return]
        raise AssertionError("subscription ended")
    return await asyncio.wait_for(find(), 5)


def test_start_list_and_close_ends_subscriptions(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(DEFAULT_URI)

    async def main() -> None:
        console = AsyncConsole(agent_url(agent), timeout=5)
        await console.start()
        assert [d.name for d in console.domains] == ["test"] and len(console.pools) == 1
        test = console.domains.get("test")
        assert isinstance(test, AsyncObject) and test.state is DomainState.RUNNING and not test.stale
        assert test == test.latest() and console.lookup(test.object_id) == test
        assert console.scope(next(iter(console.agents)).name).domains.get("test") == test
        events = console.subscribe()
        waiting = asyncio.ensure_future(next_event(events, lambda e: False))
        await asyncio.sleep(0.1)
        await console.close()
        with pytest.raises(AssertionError, match="subscription ended"):
            await waiting  # the iteration ended when the console closed
        assert console.closed and events.closed
        with pytest.raises(NotConnectedError):
            await test.getInfo()
    asyncio.run(main())


def test_a_method_call_returns_its_result(start_agent: Callable[..., Agent]) -> None:
    async def main(console: AsyncConsole) -> None:
        web1 = console.domains.get("web1")
        info = await web1.getInfo()
        assert info["state"] == DomainState.RUNNING
        assert web1.uuid in await web1.getXMLDesc(flags=0) and web1.uuid in await web1.xml()
        node = next(iter(console.nodes))
        scratch = await node.domainDefineXML(xml="<domain type='test'><name>scratch</name><memory>65536</memory>"
                                                 "<os><type>hvm</type></os></domain>")
        assert isinstance(scratch, AsyncObject) and console.domains.get("scratch") == scratch
        job = await scratch.undefine()
        assert isinstance(job, AsyncJob) and job.method == "undefine"
        assert "scratch" not in {d.name for d in console.domains}
        assert await console.call(web1, "getState") == await console.call(web1.object_id, "getState")
    run(start_agent(NODE_URI), main)


def test_a_remote_error_raises_the_same_typed_exception_as_sync(start_agent: Callable[..., Agent]) -> None:
    async def main(console: AsyncConsole) -> None:
        web1 = console.domains.get("web1")
        with pytest.raises(LibvirtError) as raised:
            await web1.resume()  # running: libvirt refuses
        with pytest.raises(LibvirtError) as sync_raised:
            await asyncio.to_thread(web1.snapshot.resume)
        assert type(raised.value) is type(sync_raised.value)
        assert (raised.value.error_code, raised.value.error_text) == (sync_raised.value.error_code,
                                                                      sync_raised.value.error_text)
        with pytest.raises(InvalidParameterError):
            await web1.getXMLDesc(flags="not a number")
        with pytest.raises(InvalidParameterError):
            await web1.getXMLDesc(0, 1)
    run(start_agent(NODE_URI), main)


def test_wait_state_after_suspend(start_agent: Callable[..., Agent]) -> None:
    async def main(console: AsyncConsole) -> None:
        web1 = console.domains.get("web1")
        paused = await (await web1.suspend()).wait_state(DomainState.PAUSED, timeout=5)
        assert isinstance(paused, AsyncObject) and paused.state_name == "paused"
        with pytest.raises(CallTimeoutError):
            await (await paused.resume()).wait_state("shutoff", timeout=0.3)
        assert (await console.domains.get("web1").getInfo())["state"] == DomainState.RUNNING
        assert await console.wait_for(lambda: console.sync.domains.get("web1").state_name == "running", 5)
    run(start_agent(NODE_URI), main)


def test_async_iteration_receives_domain_state_changed(start_agent: Callable[..., Agent]) -> None:
    async def main(console: AsyncConsole) -> None:
        web2 = console.domains.get("web2")
        seen: List[Event] = []

        async def on_event(event: Event) -> None:
            seen.append(event)
        with console.subscribe(on_event, kinds=DomainStateChanged) as by_callback:
            async with console.subscribe(kinds=DomainStateChanged) as events:
                await web2.suspend()
                change = await next_event(events, lambda e: isinstance(e, DomainStateChanged)
                                          and e.obj.name == "web2" and e.new == "paused")
            assert isinstance(change, DomainStateChanged) and change.old == "running"
            assert events.closed
            await (await web2.resume()).wait_state("running", timeout=5)
            assert await console.wait_for(lambda: len(seen) >= 2, timeout=5)  # callbacks run on the loop, in order
        assert [getattr(e, "new") for e in seen[:2]] == ["paused", "running"] and by_callback.closed
    run(start_agent(NODE_URI, interval=0.2), main)


def test_a_slow_async_reader_overflows_like_a_sync_one(start_agent: Callable[..., Agent]) -> None:
    async def main(console: AsyncConsole) -> None:
        slow = console.subscribe(kinds=StatsUpdated, maxsize=1)  # not read while samples arrive
        assert await console.wait_for(lambda: slow.dropped > 0, timeout=5)
        first = await slow.get(timeout=1)
        assert isinstance(first, Overflowed) and first.dropped >= 1
        assert isinstance(await slow.get(timeout=1), StatsUpdated)
        console.unsubscribe(slow)
        assert await slow.get(timeout=1) is None
    run(start_agent(NODE_URI, interval=0.2), main)


class Rendezvous(LibvirtHypervisor):
    """The test driver whose virDomainGetXMLDesc waits, while armed, until two calls are in it at once: two calls
    that ran one after the other would both fail (BrokenBarrierError)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.barrier: Optional[threading.Barrier] = None

    def invoke(self, class_name: str, key: Optional[str], function: str, args: Sequence[Any]) -> Any:
        barrier = self.barrier
        if function == "virDomainGetXMLDesc" and barrier is not None:
            barrier.wait()
        return super().invoke(class_name, key, function, args)


def test_calls_on_two_objects_run_concurrently_and_on_one_in_order(start_agent: Callable[..., Agent]) -> None:
    hypervisor = Rendezvous(NODE_URI)

    async def main(console: AsyncConsole) -> None:
        web1, web2 = console.domains.get("web1"), console.domains.get("web2")
        hypervisor.barrier = threading.Barrier(2, timeout=3)
        xml1, xml2 = await asyncio.gather(web1.getXMLDesc(), web2.getXMLDesc())
        hypervisor.barrier = None
        assert web1.uuid in xml1 and web2.uuid in xml2
        for _ in range(3):  # made in this order, run in this order: a resume first would be refused
            await asyncio.gather(web1.suspend(), web1.resume())
        assert (await web1.getInfo())["state"] == DomainState.RUNNING
    run(start_agent(hypervisor), main)


def test_cancelling_an_awaiting_task_leaves_the_console_working(start_agent: Callable[..., Agent]) -> None:
    async def main(console: AsyncConsole) -> None:
        web1 = console.domains.get("web1")
        waiting = asyncio.ensure_future((await web1.suspend()).wait_state("shutoff", timeout=30))
        sent = asyncio.ensure_future(web1.getInfo())
        queued = asyncio.ensure_future(web1.getXMLDesc())  # behind it: waits on the loop, not in a thread
        await asyncio.sleep(0)
        for task in (waiting, sent, queued):
            task.cancel()
        for task in (waiting, sent, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
        running = await (await web1.resume()).wait_state("running", timeout=5)
        assert running.state_name == "running" and (await web1.getInfo())["state"] == DomainState.RUNNING
        assert await console.wait_for(lambda: True)
    run(start_agent(NODE_URI), main)


def test_closing_fails_what_is_awaited(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(NODE_URI)

    async def main() -> None:
        async with AsyncConsole(agent_url(agent), timeout=5) as console:
            job = await console.domains.get("web1").suspend()
            waiting = asyncio.ensure_future(job.wait_state("shutoff", timeout=30))
            await asyncio.sleep(0.1)
        with pytest.raises(NotConnectedError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(NotConnectedError):
            await console.wait_for(lambda: False, timeout=1)
    asyncio.run(main())
