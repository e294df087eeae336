"""Waiting for what a console's subscription delivers: the next event of a kind, others skipped."""

from __future__ import annotations

import time
from typing import Callable, List, Type, TypeVar

from virtq.console.events import Event
from virtq.console.subscriptions import Subscription

__all__ = ["next_event"]

E = TypeVar("E", bound=Event)


def next_event(subscription: Subscription, kind: Type[E], match: Callable[[E], bool] = lambda event: True,
               timeout: float = 5.0) -> E:
    """The next event of ``kind`` that ``match``es; the events before it are consumed. AssertionError,
    listing what was skipped, when none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    skipped: List[Event] = []
    while True:
        left = deadline - time.monotonic()
        event = subscription.get(left) if left > 0 else None
        if event is None:
            raise AssertionError(f"no matching {kind.__name__} within {timeout:g} s; skipped {skipped!r}")
        if isinstance(event, kind) and match(event):
            return event
        skipped.append(event)
