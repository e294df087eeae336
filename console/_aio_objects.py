"""Snapshots, jobs and repositories as an asyncio console hands them out: the same reads, awaitable calls.

An :class:`AsyncObject` reads like the snapshot it wraps (properties, statistics, ``state``, ``stale``…)
and its methods return coroutines; a method without out-arguments gives an :class:`AsyncJob`, whose
``wait_state`` is awaited; opening a console or channel gives an AsyncConsoleStream (console/_aio_streams.py),
other stream methods move their file on a thread. Repositories read memory only, so they stay synchronous
and hand out :class:`AsyncObject` s. They know their console as an :class:`AsyncSession`, as snapshots know theirs.
"""

from __future__ import annotations

from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple,
                    Union)

from virtq.schema.codec import ObjectId
from virtq.schema.errors import InvalidParameterError
from virtq.schema.streams import BOTH, DIRECTIONS, stream_argument

from ._aio_streams import AsyncConsoleStream, open_console, transfer
from ._jobs import Job
from ._scope import Scope
from .objects import RemoteObject
from .repository import Repository

__all__ = ["AsyncJob", "AsyncObject", "AsyncRepository", "AsyncScope", "AsyncSession", "unwrap", "wrap"]

Target = Union[RemoteObject, "AsyncObject", ObjectId]


class AsyncSession(Protocol):
    """What async snapshots and jobs need of the console that made them."""

    @property
    def timeout(self) -> float: ...

    async def run(self, obj: Target, method_name: str, arguments: Optional[Mapping[str, Any]] = None,
                  timeout: Optional[float] = None) -> Tuple["AsyncJob", Any]: ...

    async def xml(self, obj: Target, flags: int = 0) -> str: ...

    async def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> bool: ...

    def lookup(self, object_id: ObjectId) -> "AsyncObject": ...


class AsyncObject:
    """A snapshot whose methods are awaited: ``await dom.suspend()``, ``await dom.getXMLDesc()``.

    Everything else reads through to the snapshot (``snapshot``), which never changes."""

    __slots__ = ("snapshot", "_session")

    def __init__(self, snapshot: RemoteObject, session: AsyncSession) -> None:
        object.__setattr__(self, "snapshot", snapshot)
        object.__setattr__(self, "_session", session)

    snapshot: RemoteObject
    _session: AsyncSession

    def __getattr__(self, name: str) -> Any:
        snapshot = self.snapshot
        if name in snapshot.values or name in snapshot.stats:
            return getattr(snapshot, name)
        method = snapshot.schema.method(name)
        if method is None:  # the snapshot's own attributes (AttributeError as it says); dom.snapshots wrapped
            value = getattr(snapshot, name)
            return wrap(value, self._session) if isinstance(value, list) else value
        if stream_argument(method) is not None:  # its data comes as a stream (console/_streams.py)
            streamed = getattr(snapshot, name)
            if DIRECTIONS.get(method.libvirt, BOTH) == BOTH:  # a console: read and written on the loop

                async def open_both_ways(*args: Any, **kwargs: Any) -> AsyncConsoleStream:
                    return await open_console(streamed, *args, **kwargs)

                return open_both_ways

            async def moved(*args: Any, **kwargs: Any) -> Any:  # a file's worth: moved by a thread
                return await transfer(streamed, *args, **kwargs)

            return moved
        names = [a.name for a in method.inputs]
        has_outputs = bool(method.outputs)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if len(args) > len(names):
                raise InvalidParameterError(f"{name} takes {len(names)} argument(s)")
            job, result = await self._session.run(snapshot, name, {**dict(zip(names, args)), **kwargs})
            return result if has_outputs else job

        call.__name__ = name
        call.__doc__ = getattr(snapshot, name).__doc__
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("snapshots are immutable")

    async def xml(self) -> str:
        """The XML description, fetched once per configuration generation."""
        return await self._session.xml(self.snapshot)

    def latest(self) -> "AsyncObject":
        """The repository's current snapshot of this object."""
        return self._session.lookup(self.snapshot.object_id)

    def __repr__(self) -> str:
        return repr(self.snapshot).replace("<", "<async ", 1)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncObject) and other.snapshot == self.snapshot

    def __hash__(self) -> int:
        return hash(self.snapshot)


class AsyncJob:
    """A :class:`~virtq.console.Job` (``job``) whose ``wait_state`` is awaited."""

    def __init__(self, job: Job, session: AsyncSession) -> None:
        self.job = job
        self._session = session

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def object_id(self) -> ObjectId:
        return self.job.object_id

    @property
    def method(self) -> str:
        return self.job.method

    @property
    def transitions(self) -> List[Any]:
        return self.job.transitions

    async def wait_state(self, state: Union[str, int], timeout: Optional[float] = None) -> AsyncObject:
        """Wait until the object's pushed state is ``state`` (as ``Job.wait_state``); CallTimeoutError on timeout."""
        if not await self._session.wait_for(self.job.reached(state), timeout):
            raise self.job.not_reached(state, timeout)
        return self._session.lookup(self.job.object_id)

    def __repr__(self) -> str:
        return f"<async {self.job!r}>"


def wrap(value: Any, session: AsyncSession) -> Any:
    """A call's result with its snapshots, at any depth, as :class:`AsyncObject` s."""
    if isinstance(value, RemoteObject):
        return AsyncObject(value, session)
    if isinstance(value, Mapping):
        return {k: wrap(v, session) for k, v in value.items()}
    if isinstance(value, list):
        return [wrap(v, session) for v in value]
    return value


class _Readable(Protocol):
    class_name: str

    def __iter__(self) -> Iterator[RemoteObject]: ...

    def __len__(self) -> int: ...

    def get(self, ref: str) -> RemoteObject: ...


class AsyncRepository:
    """A repository (or a scope's) handing out :class:`AsyncObject` s; reading stays synchronous."""

    def __init__(self, repo: _Readable, session: AsyncSession) -> None:
        self.repo = repo
        self.class_name = repo.class_name
        self._session = session

    def __iter__(self) -> Iterator[AsyncObject]:
        return iter([AsyncObject(obj, self._session) for obj in self.repo])

    def __len__(self) -> int:
        return len(self.repo)

    def __bool__(self) -> bool:
        return True

    def get(self, ref: str) -> AsyncObject:
        """One object by reference (as the sync repository's); UnknownRefError / AmbiguousRefError otherwise."""
        return AsyncObject(self.repo.get(ref), self._session)

    def statistics(self, names: Sequence[str]) -> Tuple[List[AsyncObject], Dict[str, List[Any]]]:
        """As ``Repository.statistics``, with the snapshots as :class:`AsyncObject` s (a console's repository only)."""
        if not isinstance(self.repo, Repository):
            raise TypeError("statistics(): a console's repository only, not a scope's")
        snapshots, columns = self.repo.statistics(names)
        return [AsyncObject(obj, self._session) for obj in snapshots], columns


class AsyncScope:
    """A scope (some agents' objects) handing out :class:`AsyncObject` s."""

    def __init__(self, scope: Scope, session: AsyncSession) -> None:
        self.agent_names = scope.agent_names
        self.nodes, self.domains, self.pools, self.volumes, self.snapshots, self.checkpoints = (
            AsyncRepository(repo, session) for repo in (scope.nodes, scope.domains, scope.pools, scope.volumes,
                                                        scope.snapshots, scope.checkpoints))


def unwrap(value: Any) -> Any:
    """What the sync console takes for an argument: snapshots for :class:`AsyncObject` s, at any depth."""
    if isinstance(value, AsyncObject):
        return value.snapshot
    if isinstance(value, (list, tuple)):
        return [unwrap(v) for v in value]
    return value
