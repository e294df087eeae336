"""The console for asyncio: ``AsyncConsole``, the sync Console's API with awaitable calls and waits.

One API, two clients (as httpx's ``Client`` and ``AsyncClient``): an AsyncConsole owns a sync
:class:`~virtq.console.Console`, whose threads do the work as ever, and bridges to the event loop::

    async with AsyncConsole("amqp://127.0.0.1:5672") as console:
        dom = console.domains.get("web1")            # repositories read memory: not awaited
        job = await dom.suspend()
        await job.wait_state("paused", timeout=5)
        async for event in console.subscribe(kinds=DomainStateChanged):
            ...

What blocks in the sync API is awaited here: ``start``/``close``, method calls (on a pool of ``workers``
threads; calls on one object made from the loop go one at a time, in the order they were made, and wait
on the loop, not in a thread), ``xml``, ``wait_for`` and ``job.wait_state`` (re-checked after each update
by one thread, whatever the number of waiters), subscriptions (the sync bounded queue; the loop is only
woken), consoles (``await dom.openConsole()`` gives an :class:`AsyncConsoleStream`, read and written on the
loop, woken by the transport's thread: no thread per read). Closing the console ends iterations and fails what is
awaited with NotConnectedError; cancelling an awaiting task leaves the console as it was (a call already sent still
runs to its end in its apartment; a console being opened is closed).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from virtq.schema.codec import ObjectId
from virtq.schema.errors import NotConnectedError
from virtq.schema.model import Schema

from ._aio_bridge import AsyncSubscription, LoopWaiters, deliver
from ._aio_objects import AsyncJob, AsyncObject, AsyncRepository, AsyncScope, Target, unwrap, wrap
from ._aio_streams import AsyncConsoleStream
from ._console import Console
from ._jobs import Key
from .events import Event
from .repository import AgentRepository

__all__ = ["AsyncConsole", "AsyncConsoleStream", "AsyncJob", "AsyncObject", "AsyncRepository", "AsyncScope",
           "AsyncSubscription"]

T = TypeVar("T")


class AsyncConsole:
    """Follows agents like :class:`~virtq.console.Console` (same arguments, ``console.sync``), for asyncio.

    ``workers``: threads that carry method calls (a call waits for its answer on one).
    """

    def __init__(self, urls: Union[str, Sequence[str]] = (), timeout: float = 10.0, *, workers: int = 32,
                 **options: Any) -> None:
        self.sync = Console(urls, timeout, **options)
        self._calls = ThreadPoolExecutor(workers, thread_name_prefix="virtq-aio-call")
        self._waiters = LoopWaiters(self.sync.wait_for)
        self._tails: Dict[Key, asyncio.Future[None]] = {}  # per object: the last call made from the loop
        self.nodes, self.domains, self.pools, self.volumes, self.snapshots, self.checkpoints = (
            AsyncRepository(self.sync.repository(name), self)
            for name in ("Node", "Domain", "Pool", "Volume", "DomainSnapshot", "DomainCheckpoint"))

    # --- what reads through ---------------------------------------------------------------------

    @property
    def timeout(self) -> float:
        return self.sync.timeout

    @property
    def agents(self) -> AgentRepository:
        return self.sync.agents

    @property
    def unreachable(self) -> Dict[str, str]:
        return self.sync.unreachable

    @property
    def closed(self) -> bool:
        return self.sync.closed

    @property
    def schema(self) -> Schema:
        return self.sync.schema

    @property
    def redialing(self) -> List[str]:
        return self.sync.redialing

    @property
    def conflicts(self) -> Dict[str, Tuple[str, ...]]:
        return self.sync.conflicts

    @property
    def xml_fetches(self) -> int:
        return self.sync.xml_fetches

    def is_lost(self, agent_name: str) -> bool:
        return self.sync.is_lost(agent_name)

    # --- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> "AsyncConsole":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, locate the agents and load their objects; NotConnectedError if nothing answers."""
        await asyncio.to_thread(self.sync.start)

    async def close(self) -> None:
        """Close the console: subscriptions end, awaited waits and calls raise NotConnectedError."""
        self._waiters.close()
        await asyncio.to_thread(self.sync.close)
        self._calls.shutdown(wait=False)  # calls still queued run and fail at once: NotConnectedError

    async def add_urls(self, *urls: str) -> None:
        await asyncio.to_thread(self.sync.add_urls, *urls)

    async def remove_urls(self, *urls: str) -> None:
        await asyncio.to_thread(self.sync.remove_urls, *urls)

    # --- subscribers ----------------------------------------------------------------------------

    def subscribe(self, callback: Optional[Callable[[Event], Any]] = None, *,
                  kinds: Union[None, Type[Event], Tuple[Type[Event], ...], List[Type[Event]]] = None,
                  maxsize: int = 10_000) -> AsyncSubscription:
        """Receive typed events (as ``Console.subscribe``): ``async for event in console.subscribe(…)``, or
        ``callback`` (a function or a coroutine function) called on the loop, in order. From the loop only."""
        subscription = self.sync.subscribe(kinds=kinds, maxsize=maxsize)
        return AsyncSubscription(subscription, asyncio.get_running_loop(), callback)

    def unsubscribe(self, subscription: AsyncSubscription) -> None:
        self.sync.unsubscribe(subscription.subscription)

    # --- calls ------------------------------------------------------------------------------------

    def _in_thread(self, work: Callable[[], T]) -> "asyncio.Future[T]":
        """``work()`` on a call thread; its outcome comes back to the loop on a future the loop made."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def run() -> None:
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                deliver(future, None, exc)
            else:
                deliver(future, result)
        try:
            self._calls.submit(run)
        except RuntimeError:  # shut down: the console closed
            raise NotConnectedError("console is closed") from None
        return future

    async def run(self, obj: Target, method_name: str, arguments: Optional[Mapping[str, Any]] = None,
                  timeout: Optional[float] = None) -> Tuple[AsyncJob, Any]:
        """Call a method as a job in the object's apartment; returns (job, result), snapshots as AsyncObjects."""
        target = unwrap(obj)
        object_id = target if isinstance(target, ObjectId) else target.object_id
        key = (object_id.agent_name, object_id.object_name)
        loop = asyncio.get_running_loop()
        previous, done = self._tails.get(key), loop.create_future()
        self._tails[key] = done  # the next call on the object waits for this one, whoever awaits it
        done.add_done_callback(lambda _: self._tails.pop(key) if self._tails.get(key) is done else None)
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            values = {name: unwrap(value) for name, value in (arguments or {}).items()}
            work = self._in_thread(lambda: self.sync.run(target, method_name, values, timeout))
        except BaseException:  # cancelled while the one before ran: the next goes after that one
            if previous is not None and not previous.done():
                previous.add_done_callback(lambda _: done.set_result(None))
            else:
                done.set_result(None)
            raise
        work.add_done_callback(lambda _: _ended(work, done))
        job, result = await asyncio.shield(work)  # cancelled: the call still ends in its apartment
        return AsyncJob(job, self), wrap(result, self)

    async def call(self, obj: Target, method_name: str, arguments: Optional[Mapping[str, Any]] = None,
                   timeout: Optional[float] = None) -> Any:
        """Call a method on a remote object (as ``Console.call``)."""
        return (await self.run(obj, method_name, arguments, timeout))[1]

    async def xml(self, obj: Target, flags: int = 0) -> str:
        """An object's XML, fetched only when its configGen changed since the last fetch."""
        target = unwrap(obj)
        snapshot = self.sync.lookup(target) if isinstance(target, ObjectId) else target
        return await self._in_thread(lambda: self.sync.xml(snapshot, flags))

    async def query(self, agent_name: str, request: Any, timeout: Optional[float] = None) -> List[Any]:
        return await self._in_thread(lambda: self.sync.query(agent_name, request, timeout))

    async def resync(self, agent_name: str) -> None:
        await asyncio.to_thread(self.sync.resync, agent_name)

    async def settle(self) -> None:
        await asyncio.to_thread(self.sync.settle)

    # --- lookups and waiting ----------------------------------------------------------------------

    def repository(self, class_name: str) -> AsyncRepository:
        return AsyncRepository(self.sync.repository(class_name), self)

    def find(self, object_id: ObjectId) -> Optional[AsyncObject]:
        found = self.sync.find(object_id)
        return None if found is None else AsyncObject(found, self)

    def lookup(self, object_id: ObjectId) -> AsyncObject:
        """The current snapshot of an object (an event's ``obj.object_id``, say), with awaitable methods."""
        return AsyncObject(self.sync.lookup(object_id), self)

    def scope(self, *agent_refs: str) -> AsyncScope:
        return AsyncScope(self.sync.scope(*agent_refs), self)

    async def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> bool:
        """True once ``predicate()`` is true (re-checked after every update, on a console thread: keep it quick
        and thread-safe), False after ``timeout``; NotConnectedError when the console closes meanwhile."""
        return await self._waiters.wait(predicate, timeout if timeout is not None else self.timeout)


def _ended(work: "asyncio.Future[Any]", done: "asyncio.Future[None]") -> None:
    """A call's thread is done: the next call on its object may go (its outcome is its awaiter's, if any)."""
    if not work.cancelled():
        work.exception()  # retrieved: an awaiter cancelled meanwhile leaves no "never retrieved" warning
    done.set_result(None)
