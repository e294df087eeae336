"""What a callback under test was handed, and on which thread: both contracts check delivery threads."""

from __future__ import annotations

import threading
from typing import Generic, List, TypeVar

__all__ = ["Deliveries"]

T = TypeVar("T")


class Deliveries(Generic[T]):
    """A callback (call it with the item) that records each item with the name of the thread it came on."""

    def __init__(self) -> None:
        self.items: List[T] = []
        self.threads: List[str] = []
        self._lock = threading.Lock()

    def __call__(self, item: T) -> None:
        with self._lock:
            self.items.append(item)
            self.threads.append(threading.current_thread().name)

    def snapshot(self) -> List[T]:
        with self._lock:
            return list(self.items)
