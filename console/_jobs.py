"""Job apartments (seed 001): operations on one object run one at a time, in arrival order.

Calls on different objects run in parallel; calls on the same object queue behind each
other (FIFO). While a job owns an object, the changes the console observes on it are
recorded in the job and delivered to subscribers tagged with the job's id.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from virtq.schema.codec import ObjectId
from virtq.schema.errors import CallTimeoutError
from virtq.schema.states import state_code

from ._session import Session
from .events import Event
from .objects import RemoteObject

__all__ = ["Apartments", "Job", "Key"]

Key = Tuple[str, str]  # (agent, object name)


@dataclass
class Job:
    """One operation on one object; after the call, ``wait_state`` waits for the pushed state."""

    id: int
    object_id: ObjectId
    method: str
    console: Session[RemoteObject] = field(repr=False)  # the console it runs on
    transitions: List[Event] = field(default_factory=list)
    started: float = 0.0
    finished: Optional[float] = None

    def wait_state(self, state: Union[str, int], timeout: Optional[float] = None) -> RemoteObject:
        """Block until the object's pushed state is ``state``: a member of its class's enum
        (``DomainState.PAUSED``, ``PoolState.RUNNING``), a code, or a member's name ("paused").

        No polling: it waits on the console's updates. Raises CallTimeoutError on timeout.
        """
        if not self.console.wait_for(self.reached(state), timeout):
            raise self.not_reached(state, timeout)
        obj = self.console.find(self.object_id)
        assert obj is not None
        return obj

    def reached(self, state: Union[str, int]) -> Callable[[], bool]:
        """The predicate ``wait_state`` waits on (ValueError for an unknown state name); virtq.console.aio's
        waiters re-check it too."""
        wanted = state_code(self.object_id.object_name.partition(":")[0], state)

        def reached() -> bool:
            obj = self.console.find(self.object_id)
            return obj is not None and obj.stats.get("state") == wanted
        return reached

    def not_reached(self, state: Union[str, int], timeout: Optional[float]) -> CallTimeoutError:
        return CallTimeoutError(f"{self.object_id.object_name} did not reach state {state!r} "
                                f"within {timeout if timeout is not None else self.console.timeout:g}s")


class _Apartment:
    """A FIFO lock: tickets are served in the order they were taken."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.next_ticket = 0
        self.serving = 0
        self.owner: Optional[Job] = None


class Apartments:
    """The console's apartments, one per object called (made on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apartments: Dict[Key, _Apartment] = {}
        self._owned: Dict[Key, Job] = {}  # the objects jobs own now
        self._ids = itertools.count(1)
        self.completed = 0

    def _apartment(self, key: Key) -> _Apartment:
        with self._lock:
            apartment = self._apartments.get(key)
            if apartment is None:
                apartment = self._apartments[key] = _Apartment()
            return apartment

    def owner(self, object_id: ObjectId) -> Optional[Job]:
        """The job owning the object now, if any (called by the updater)."""
        with self._lock:
            apartment = self._apartments.get((object_id.agent_name, object_id.object_name))
        return None if apartment is None else apartment.owner

    def owners(self) -> Dict[Key, Job]:
        """The objects jobs own now, and their jobs (the updater checks a batch of statistics against them)."""
        with self._lock:
            return dict(self._owned)

    def run(self, console: Session[RemoteObject], object_id: ObjectId, method: str) -> "_Holding":
        """``with apartments.run(...) as job:`` — the job owns the object inside the block."""
        return _Holding(self, console, object_id, method)

    def hold(self, job: Job) -> "_Holding":
        """``with apartments.hold(job):`` — a job made elsewhere (a migration's, ``new_id``) owns its object."""
        return _Holding(self, job.console, job.object_id, job.method, job)

    def new_id(self) -> int:
        return next(self._ids)

    def _enter(self, job: Job) -> None:
        apartment = self._apartment((job.object_id.agent_name, job.object_id.object_name))
        with apartment.cond:
            ticket = apartment.next_ticket
            apartment.next_ticket += 1
            apartment.cond.wait_for(lambda: apartment.serving == ticket)
            apartment.owner = job
            with self._lock:
                self._owned[(job.object_id.agent_name, job.object_id.object_name)] = job
        job.started = time.monotonic()

    def _leave(self, job: Job) -> None:
        apartment = self._apartment((job.object_id.agent_name, job.object_id.object_name))
        job.finished = time.monotonic()
        with apartment.cond:
            with self._lock:
                self._owned.pop((job.object_id.agent_name, job.object_id.object_name), None)
            apartment.owner = None
            apartment.serving += 1
            apartment.cond.notify_all()
        self.completed += 1


class _Holding:
    def __init__(self, apartments: Apartments, console: Session[RemoteObject], object_id: ObjectId,
                 method: str, job: Optional[Job] = None) -> None:
        self._apartments = apartments
        self.job = job or Job(apartments.new_id(), object_id, method, console)

    def __enter__(self) -> Job:
        self._apartments._enter(self.job)
        return self.job

    def __exit__(self, *exc: Any) -> None:
        self._apartments._leave(self.job)


