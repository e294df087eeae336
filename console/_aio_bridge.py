"""From the console's threads to an asyncio event loop: results, waits and events, without a thread per await.

What the console's threads learn reaches the loop only through ``loop.call_soon_threadsafe``, on futures
the loop made (:func:`deliver`). Predicates awaited on the loop are re-checked by one thread per console,
after every update, while any is awaited (:class:`LoopWaiters`); subscriptions keep the sync queue and
its overflow policy and only wake the loop (:class:`AsyncSubscription`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any, Callable, Dict, Optional, TypeVar

from virtq.schema.errors import NotConnectedError

from .events import Event
from .subscriptions import Subscription

__all__ = ["AsyncSubscription", "LoopWaiters", "Wakeup", "deliver"]

log = logging.getLogger(__name__)

T = TypeVar("T")
WaitFor = Callable[[Callable[[], Any], Optional[float]], bool]
RECHECK = 0.5
"""Seconds the waiters' thread waits for an update before it looks whether it is still needed."""


def deliver(future: "asyncio.Future[T]", result: Optional[T] = None, error: Optional[BaseException] = None) -> None:
    """Complete ``future`` on its loop, from any thread; a future already done (cancelled) or a closed loop
    drops the outcome, as nobody awaits it any more."""
    def complete() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    try:
        future.get_loop().call_soon_threadsafe(complete)
    except RuntimeError:  # the loop is closed
        pass


class Wakeup:
    """Wakes an event loop from any thread: ``signal()`` has ``wake`` run on the loop soon, with at most one
    wake-up in flight (``wake`` runs after the flag is down, so whatever comes meanwhile signals again)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self._loop = loop
        self._wake = wake
        self._pending = False

    def signal(self) -> None:  # any thread
        if not self._pending:
            self._pending = True
            try:
                self._loop.call_soon_threadsafe(self._run)
            except RuntimeError:  # the loop is closed: nobody waits
                pass

    def _run(self) -> None:
        self._pending = False
        self._wake()


class LoopWaiters:
    """Predicates awaited on event loops, re-checked on one thread after each update of the console.

    ``wait_for`` is the console's (it runs the predicates holding its update lock, so they must be quick);
    the thread runs only while something is awaited."""

    def __init__(self, wait_for: WaitFor) -> None:
        self._wait_for = wait_for
        self._lock = threading.Lock()
        self._waiting: Dict["asyncio.Future[bool]", Callable[[], Any]] = {}
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    async def wait(self, predicate: Callable[[], Any], timeout: float) -> bool:
        """True once ``predicate()`` is true, False after ``timeout`` seconds; NotConnectedError if closed."""
        if self._closed:
            raise NotConnectedError("console closed")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[future] = predicate
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="virtq-aio-waiters", daemon=True)
                self._thread.start()
        try:
            if predicate():  # checked after registering: an update from now on re-checks it on the thread
                return True
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiting.pop(future, None)

    def _check(self) -> bool:
        with self._lock:
            waiting = list(self._waiting.items())
        for future, predicate in waiting:
            try:
                if predicate():
                    self._done(future, True)
            except Exception as exc:  # noqa: BLE001 - the awaiting task raises it
                self._done(future, None, exc)
        return self._closed or not self._waiting

    def _done(self, future: "asyncio.Future[bool]", result: Optional[bool], error: Optional[Exception] = None) -> None:
        with self._lock:
            self._waiting.pop(future, None)
        deliver(future, result, error)

    def _run(self) -> None:
        while True:
            self._wait_for(self._check, RECHECK)
            with self._lock:
                if self._closed or not self._waiting:
                    self._thread = None
                    return

    def close(self) -> None:
        """The console closed: whatever is awaited raises NotConnectedError."""
        self._closed = True
        with self._lock:
            waiting = list(self._waiting)
        for future in waiting:
            self._done(future, None, NotConnectedError("console closed"))


class AsyncSubscription:
    """A subscription read with ``async for`` (or ``await get(timeout)``) on one event loop.

    The events wait in the sync subscription's bounded queue, with its overflow policy (the oldest
    dropped, one ``Overflowed`` before the next event); the console's threads only wake the loop, at most
    one wake-up in flight. With a ``callback`` (a function or a coroutine function), a task on the loop
    hands it the events in order."""

    def __init__(self, subscription: Subscription, loop: asyncio.AbstractEventLoop,
                 callback: Optional[Callable[[Event], Any]] = None) -> None:
        self.subscription = subscription
        self._loop = loop
        self._waiter: Optional[asyncio.Future[None]] = None
        subscription.on_ready = Wakeup(loop, self._wake).signal
        self.task: Optional[asyncio.Task[None]] = None
        """The delivering task, with a callback."""
        if callback is not None:
            self.task = loop.create_task(self._deliver(callback))

    @property
    def dropped(self) -> int:
        return self.subscription.dropped

    @property
    def delivered(self) -> int:
        return self.subscription.delivered

    @property
    def closed(self) -> bool:
        return self.subscription.closed

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; None when ``timeout`` passes or the subscription is closed (and drained)."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            event = self.subscription.get(timeout=0)
            if event is not None or self.subscription.closed:
                return event
            self._waiter = self._loop.create_future()
            left = None if deadline is None else deadline - self._loop.time()
            try:
                await asyncio.wait_for(self._waiter, left)
            except asyncio.TimeoutError:
                return None

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def _deliver(self, callback: Callable[[Event], Any]) -> None:
        async for event in self:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a subscriber's bug is its own
                log.exception("subscriber callback failed on %s", type(event).__name__)

    def close(self) -> None:
        self.subscription.close()

    def __enter__(self) -> "AsyncSubscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
