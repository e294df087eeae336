"""Waiting for state that has no notification: poll a cheap predicate, fail loudly when it never holds.

Tests that sleep a fixed time are slow when the machine is fast and flaky when it is busy; a waiter
returns as soon as the state is there and says what it waited for when it is not.
"""

from __future__ import annotations

import inspect
import time
from typing import Callable, Optional, TypeVar

__all__ = ["WaitTimeout", "wait_until"]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A predicate did not hold in time. An AssertionError, so that pytest reports it as a failed check."""


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01,
               message: Optional[str] = None) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a true value, and return that value;
    raise :class:`WaitTimeout` (naming ``message``, else the predicate's source) once ``timeout`` seconds
    have passed (the predicate is asked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{message or _describe(predicate)}: not true within {timeout:g} s")
        time.sleep(interval)


def _describe(predicate: Callable[[], object]) -> str:
    """The predicate as the test wrote it (its source line), else its name."""
    try:
        return " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
