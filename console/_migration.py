"""Live migration orchestrated by the console: ``console.migrate(dom, to=…)`` → a running MigrationJob.

The job owns the domain on both agents (its apartment on the source, and the destination's copy's, so no
other call of this console interleaves), calls the source agent's ``migrateToURI3`` with PEER2PEER and
the destination's advertised ``migration_uri`` / ``migration_address`` (docs/PROTOCOL.md §5.2), and while
that call runs polls ``getJobStats`` on the source: progress is the console's to follow (no statistic of the
schema or the wire changes, it costs only while someone migrates, at the pace the migrating console
chooses). ``abort()`` (or the job's timeout) calls ``abortJob``. It ends when the destination's agent pushes
the domain running and the source's copy is gone (or shut off): then ``getJobStats(COMPLETED)`` on the
destination gives the downtime, and subscribers that ask for it get one ``DomainMigrated`` (console/_moves.py).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Union

from virtq.schema import errors
from virtq.schema.codec import ObjectId
from virtq.schema.enums import DomainState
from virtq.transport import TlsConfig
from virtq.transport.urls import split_credentials

from ._calls import MethodCalls
from ._jobs import Apartments, Job
from ._moves import Moves
from ._session import Session
from .events import Event, MigrationProgress
from .objects import RemoteObject
from .repository import AgentRepository, AgentView

__all__ = ["MigrationAbortedError", "MigrationError", "MigrationFailedError", "MigrationJob", "MigrationRefusedError",
           "Migrations"]

log = logging.getLogger(__name__)

# virDomainMigrateFlags
LIVE, PEER2PEER, PERSIST_DEST, UNDEFINE_SOURCE, OFFLINE, POSTCOPY = 0x1, 0x2, 0x8, 0x10, 0x400, 0x8000
JOB_STATS_COMPLETED = 0x1  # virDomainGetJobStatsFlags
POLL = 0.5
"""Seconds between two getJobStats of a running migration."""
FIRST_POLL = 0.1
"""Seconds between polls until libvirt shows the migration's job (its first statistics)."""
CALL_LIMIT = 24 * 3600.0
"""The migrate call's own reply timeout: the job's ``timeout`` aborts the migration instead."""
SETTLE = 30.0
"""Seconds the job waits, after libvirt's migration returned, for both agents to push the outcome."""


class MigrationError(errors.ConsoleError):
    """A migration did not happen: the domain is still on its source."""


class MigrationRefusedError(MigrationError):
    """Refused before libvirt was asked: the destination is the source, unknown, lost, advertises no
    ``migration_uri`` (an agent older than migrations), or its policy does not let this console's principal
    migrate into it (``migration_from``, agent/migration.py)."""


class MigrationFailedError(MigrationError):
    """libvirt failed the migration (``cause``: the source agent's typed error; e.g. the destination's
    libvirtd cannot be reached)."""

    def __init__(self, message: str, cause: Optional[errors.RemoteError] = None) -> None:
        super().__init__(message)
        self.cause = cause


class MigrationAbortedError(MigrationFailedError):
    """Aborted: by ``job.abort()``, or because the job's timeout passed."""


@dataclass
class MigrationJob(Job):
    """A migration this console runs. ``progress``: the source's latest job statistics (libvirt's names);
    ``downtime``: ms the guest was paused, once done. ``wait()`` for the outcome, ``abort()`` to stop it."""

    to_agent: str = ""
    progress: Mapping[str, Any] = field(default_factory=dict)
    downtime: Optional[int] = None
    error: Optional[BaseException] = None
    result: Optional[RemoteObject] = None
    aborting: bool = False
    switching: bool = False
    postcopy: bool = False
    _ended: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    def abort(self) -> None:
        """Ask the source's libvirt to abort the migration (abortJob at the next poll); ``wait()`` then raises
        MigrationAbortedError, and the domain goes on running on its source."""
        self.aborting = True

    def switch_to_postcopy(self) -> None:
        """Switch a migration started with ``postcopy=True`` to post-copy (migrateStartPostCopy, at the next poll
        once libvirt accepts it): the guest runs on the destination from then on, the rest of its memory fetched
        as it touches it, so it ends even when the guest dirties memory faster than it can be copied. It can
        no longer be aborted; ``postcopy`` turns True."""
        self.switching = True

    def wait(self, timeout: Optional[float] = None) -> RemoteObject:
        """The domain's snapshot on its destination once moved; the migration's error otherwise
        (CallTimeoutError when ``timeout`` passes first: the migration goes on)."""
        if not self._ended.wait(timeout):
            raise errors.CallTimeoutError(f"migration of {self.object_id.object_name} still running after {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def principal_at(view: AgentView, urls: Mapping[str, str], tls: TlsConfig) -> Optional[str]:
    """Who this console is to an agent: the user its URL names, else (amqps) its certificate's CN; anonymous on a
    plain direct connection; None when not known here (through a broker, its user not in the URL)."""
    url = urls.get(view.url, view.url)
    user = split_credentials(url)[1] if url else None
    if user:
        return user
    if url.startswith("amqps:"):
        return tls.common_name()
    return "anonymous" if url in urls else None


def _agent_of(to: Union[str, AgentView, RemoteObject], agents: AgentRepository) -> AgentView:
    if isinstance(to, AgentView):
        return to
    if isinstance(to, RemoteObject):
        found = agents.by_name(to.agent)
        if found is None:
            raise MigrationRefusedError(f"agent {to.agent} is not followed")
        return found
    return agents.get(to)


class Host(Session[RemoteObject], Protocol):
    """What a migration needs of its console: the session, and the agents it follows."""

    @property
    def agents(self) -> AgentRepository:
        """The agents the console follows (their advertised migration_uri)."""


class Migrations:
    """The console's migrations: ``start`` makes a job and runs it on a thread of its own."""

    def __init__(self, console: Host, calls: MethodCalls, apartments: Apartments, moves: Moves,
                 emit: Callable[[Event], None], urls: Mapping[str, str], tls: TlsConfig) -> None:
        self.principal: Callable[[AgentView], Optional[str]] = functools.partial(principal_at, urls=urls, tls=tls)
        self.console = console
        self.calls = calls
        self.apartments = apartments
        self.moves = moves
        self.emit = emit

    def start(self, dom: RemoteObject, to: Union[str, AgentView, RemoteObject], *, live: bool = True,
              persistent: bool = True, offline: bool = False, postcopy: bool = False, bandwidth: Optional[int] = None,
              timeout: Optional[float] = None, poll: float = POLL,
              on_progress: Optional[Callable[[MigrationJob], None]] = None) -> MigrationJob:
        """Check the destination and start: MigrationRefusedError at once if it cannot be used."""
        source = self.console.lookup(dom.object_id)
        destination = _agent_of(to, self.console.agents)
        if destination.name == source.agent:
            raise MigrationRefusedError(f"{source.values.get('name')} is on {destination.hostname or destination.name}"
                                        " already")
        if self.console.is_lost(destination.name):
            raise MigrationRefusedError(f"agent {destination.name} is lost (no heartbeat)")
        uri = destination.attributes.get("migration_uri")
        if not isinstance(uri, str) or not uri:
            raise MigrationRefusedError(f"agent {destination.name} advertises no migration_uri (an older agent)")
        self._consented(destination)
        address = destination.attributes.get("migration_address")
        params: Dict[str, Any] = {}
        if isinstance(address, str) and address:
            params.update(migrate_uri=f"tcp://{address}", listen_address=address)
        if bandwidth:
            params["bandwidth"] = int(bandwidth)
        flags = PEER2PEER | (OFFLINE if offline else LIVE if live else 0) | (
            PERSIST_DEST | UNDEFINE_SOURCE if persistent or offline else 0) | (POSTCOPY if postcopy else 0)
        job = MigrationJob(self.apartments.new_id(), source.object_id, "migrate", self.console,
                           to_agent=destination.name)
        arguments = {"dconnuri": uri, "params": params, "flags": flags}
        run = _Run(self, job, source, arguments, timeout, poll, on_progress)
        threading.Thread(target=run.run, name="virtq-migration", daemon=True).start()
        return job


    def _consented(self, destination: AgentView) -> None:
        """The destination's policy names who may migrate into it (``migration_from``); agents that do not say
        consent, and so does one whose list is not empty when who this console is there is not known."""
        allowed = destination.attributes.get("migration_from")
        if not isinstance(allowed, list):
            return
        principal = self.principal(destination)
        if allowed and principal is None:
            return
        if principal in allowed or (principal not in (None, "anonymous") and "*" in allowed):
            return
        raise MigrationRefusedError(f"agent {destination.hostname or destination.name} does not let {principal} "
                                    "migrate domains into it (its policy grants domain:migrate to "
                                    f"{', '.join(map(str, allowed)) or 'nobody'})")


class _Run:
    """One migration's thread."""

    def __init__(self, owner: Migrations, job: MigrationJob, source: RemoteObject, arguments: Dict[str, Any],
                 timeout: Optional[float], poll: float, on_progress: Optional[Callable[[MigrationJob], None]]) -> None:
        self.owner = owner
        self.job = job
        self.source = source
        self.arguments = arguments
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.poll = poll
        self.on_progress = on_progress
        self.uuid = str(source.values.get("uuid") or source.object_id.object_name.partition(":")[2])
        epoch = owner.console.agents.by_name(job.to_agent)
        self.target = ObjectId(source.object_id.object_name, job.to_agent, epoch.epoch if epoch else 0)

    def run(self) -> None:
        job, owner = self.job, self.owner
        there = Job(job.id, self.target, "migrate", job.console, job.transitions)
        try:
            with owner.apartments.hold(job), owner.apartments.hold(there):
                owner.moves.expect(self.uuid)
                try:
                    job.result = self._migrate()
                finally:
                    owner.moves.done(self.uuid, job.downtime, job.id)
        except BaseException as exc:  # noqa: BLE001 - the caller's, through wait()
            job.error = exc
        finally:
            job._ended.set()

    def _migrate(self) -> RemoteObject:
        outcome: Dict[str, BaseException] = {}
        returned = threading.Event()

        def call() -> None:
            try:
                self.owner.calls.in_job(self.source, "migrateToURI3", self.arguments, CALL_LIMIT)
            except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
                outcome["error"] = exc
            finally:
                returned.set()

        threading.Thread(target=call, name="virtq-migrate-call", daemon=True).start()
        aborted = False
        while not returned.is_set():
            if not aborted and not self._stopping():
                self._progress()  # (its callback may abort or switch: then at once, below)
            if self.job.switching and not self.job.postcopy and self.job.progress:
                self._switch()
            if not aborted and self._stopping():
                aborted = self._abort()  # refused while nothing runs yet: again at the next poll
            returned.wait(self.poll if self.job.progress else FIRST_POLL)
        error = outcome.get("error")
        if error is not None:
            name = self.source.values.get("name")
            if aborted and isinstance(error, errors.LibvirtError):
                why = "aborted" if self.job.aborting else "its timeout passed: aborted"
                raise MigrationAbortedError(f"migration of {name}: {why} ({error})", error) from error
            if isinstance(error, errors.LibvirtError) and not isinstance(error, errors.AccessDeniedError):
                raise MigrationFailedError(f"migration of {name} to {self.job.to_agent} failed: {error}", error) \
                    from error
            if isinstance(error, (errors.TransportError, errors.CallTimeoutError)):
                return self._resolve(error)
            raise error
        return self._arrived()

    def _resolve(self, lost: BaseException) -> RemoteObject:
        """libvirt's verdict was lost with the source agent's answer (it went away, or restarted): both agents'
        pushes decide. Moved: the destination's copy arrives. Still on the source, its libvirt running no job
        for it once its agent answers again: failed. Meanwhile (the migration may still run): wait."""
        name, deadline = self.source.values.get("name"), time.monotonic() + SETTLE
        log.info("migration of %s: the source agent's answer was lost (%s); following both agents", name, lost)
        while time.monotonic() < deadline:
            if self.owner.moves.observed(self.uuid) is not None:
                return self._arrived()
            try:
                stats = self.owner.calls.in_job(self.source.object_id, "getJobStats")
            except errors.VirtqError:
                stats = None  # its agent is not back yet, or the domain has just gone from it
            if _job_runs(stats):
                deadline = time.monotonic() + SETTLE  # still migrating
            elif isinstance(stats, Mapping) and self.owner.console.find(self.target) is None:
                raise MigrationFailedError(f"migration of {name}: its source agent's answer was lost ({lost}), and "
                                           f"libvirt runs no migration of it there: it is still on its source")
            time.sleep(self.poll)
        raise errors.CallTimeoutError(f"migration of {name}: its source agent's answer was lost ({lost}), and where "
                                      f"the domain is did not settle within {SETTLE:g}s")

    def _switch(self) -> None:
        try:
            self.owner.calls.in_job(self.source, "migrateStartPostCopy")
        except errors.VirtqError as exc:  # memory copying has not begun yet, say: again at the next poll
            log.debug("migrateStartPostCopy of %s: %s", self.source.object_id.object_name, exc)
            return
        self.job.postcopy = True

    def _stopping(self) -> bool:
        return self.job.aborting or (self.deadline is not None and time.monotonic() > self.deadline)

    def _abort(self) -> bool:
        try:
            self.owner.calls.in_job(self.source, "abortJob")
        except errors.VirtqError:  # no job (yet, or any more), or its agent does not answer: again at the next poll
            return False
        return True

    def _progress(self) -> None:
        try:
            stats = self.owner.calls.in_job(self.source, "getJobStats")
        except errors.VirtqError as exc:
            log.debug("getJobStats of %s: %s", self.source.object_id.object_name, exc)
            return  # not started yet, or over: the next poll or the call's end tells
        if not _job_runs(stats):
            log.debug("getJobStats of %s: no job (%s)", self.source.object_id.object_name, stats)
            return
        self.job.progress = dict(stats)
        self.owner.emit(MigrationProgress(self.source, self.job.progress, job=self.job.id))
        if self.on_progress is not None:
            self.on_progress(self.job)

    def _arrived(self) -> RemoteObject:
        """Wait for both agents' pushes: the destination's copy active, the move seen; then the downtime."""
        console, wanted = self.owner.console, DomainState.PAUSED if self._paused() else DomainState.RUNNING
        offline = bool(self.arguments["flags"] & OFFLINE)

        def arrived() -> bool:
            there = console.find(self.target)
            moved = self.owner.moves.observed(self.uuid) is not None
            return there is not None and moved and (offline or there.stats.get("state") == wanted)

        if not console.wait_for(arrived, SETTLE):
            raise errors.CallTimeoutError(f"libvirt migrated {self.source.values.get('name')}, but its agents did not "
                                          f"push it {wanted.name.lower()} on {self.job.to_agent} within {SETTLE:g}s")
        if not offline:
            try:
                stats = self.owner.calls.in_job(self.target, "getJobStats", {"flags": JOB_STATS_COMPLETED})
                downtime = stats.get("downtime") if isinstance(stats, Mapping) else None
                self.job.downtime = downtime if isinstance(downtime, int) else None
            except errors.RemoteError:
                pass  # the downtime is a nicety: the move happened
        return console.lookup(self.target)

    def _paused(self) -> bool:
        return self.source.stats.get("state") == DomainState.PAUSED


def _job_runs(stats: Any) -> bool:
    """Whether getJobStats' answer shows a job (its ``type`` is not VIR_DOMAIN_JOB_NONE, 0)."""
    return isinstance(stats, Mapping) and stats.get("type") not in (None, 0)
