"""Loading: reading an agent's objects — when it is found, when it restarts or comes back, and again
until a first read succeeded.

There is one way to read an agent, :meth:`AgentLoading.read`: a full query whose records the ingest
thread applies as they arrive, then (in arrival order, after them) the removal of what the agent no
longer has. Everything else only decides when to read: at discovery, on a heartbeat (:class:`Heard`),
after a reconnect, or on request (``Console.resync``). Reads run on a few shared loader threads.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, Optional, Sequence, Set, Tuple

from virtq.schema import errors
from virtq.schema.codec import (TOPIC, AgentInfo, AgentLocateRequest, AgentLocateResponse, ExceptionResponse,
                                QueryRequest, QueryResponse, direct_address)
from virtq.transport import Transport

from ._agents import AgentTracker, Heard
from ._inbox import Delivery, Inbox
from ._loader import Loader
from ._requests import Requests
from ._updater import Updater

__all__ = ["AgentLoading"]

REREAD = (Heard.RESTARTED, Heard.BACK, Heard.RECONNECTED)
"""Heartbeats after which an agent's objects are read again."""


class AgentLoading:
    def __init__(self, tracker: AgentTracker, requests: Requests, workers: Loader, updater: Updater,
                 inbox: Inbox[Delivery], timeout: float) -> None:
        self._tracker = tracker
        self._requests = requests
        self.workers = workers
        """The loader threads reads run on."""
        self._updater = updater
        self._inbox = inbox
        self._timeout = timeout
        self.loaded: Set[str] = set()
        """Agents whose objects were read once in full."""
        self.reading: Set[str] = set()
        """Agents being read now."""
        self._lock = threading.Lock()

    def read(self, agent_name: str, unless_reading: bool = False) -> None:
        """Read every object of an agent; objects it no longer has are removed (ObjectRemoved).

        ``unless_reading``: not when a read of the agent is running already (a retry)."""
        with self._lock:
            if unless_reading and agent_name in self.reading:
                return
            self.reading.add(agent_name)
        try:
            transport = self._tracker.route(agent_name)
            started = time.monotonic()
            replies = self._requests.ask(transport, QueryRequest(what="OBJECT"), direct_address(agent_name),
                                         self._timeout, f"loading objects of {agent_name}", apply=True)
            seen: Set[str] = set()
            for reply in replies:
                if isinstance(reply, ExceptionResponse):
                    raise errors.remote_error(reply.error_code, reply.error_text)
                if isinstance(reply, QueryResponse):
                    seen.update(r.object_id.object_name for r in reply.records)
            self._inbox.put(("", transport, lambda: self._updater.remove_missing(agent_name, seen, started)),
                            wait=False)  # after the records it answered with
            self.loaded.add(agent_name)
        finally:
            with self._lock:
                self.reading.discard(agent_name)

    def load(self, info: AgentInfo, url: str, transport: Transport) -> None:
        """Follow an agent found on ``transport`` and read its objects."""
        self._tracker.follow(info, url, transport)
        self.read(info.name)

    def reread(self, agent_name: str) -> None:
        """Read an agent again on a loader thread (queued at most once)."""
        self.workers.submit(("read", agent_name), self.read, agent_name)

    def steady(self, agent_name: str, epoch: Optional[int] = None) -> bool:
        """Loaded, not being read, not lost (and in ``epoch``): what the agent sends now changes nothing of when
        it is read."""
        return agent_name in self.loaded and agent_name not in self.reading \
            and self._tracker.steady(agent_name, epoch)

    def heartbeat(self, info: AgentInfo, url: str, transport: Transport) -> bool:
        """What a heartbeat asks for: a first load, a new read, or a retry of a first read that failed. False
        when it only said the agent, loaded, is still there (most heartbeats): it changed nothing else."""
        if info.name in self.loaded and self._tracker.heard_again(info, url):
            return False
        heard = self._tracker.heartbeat(info, url)
        if heard is Heard.NEW:
            # An agent we have not loaded yet (it started after us): load it off the ingest thread. The load is
            # queued before the agent counts as followed, so start(), which skips followed agents, waits for
            # it with the loaders' other work.
            self.workers.submit(("load", info.name), self.load, info, url, transport)
            self._tracker.reserve(info.name, url, transport)
        elif heard in REREAD:
            self.reread(info.name)
        elif heard is Heard.KNOWN and info.name not in self.loaded and info.name not in self.reading:
            # Its objects were never read in full (the first load failed: a timeout on a loaded machine, a
            # lost connection): try again at each heartbeat until one succeeds.
            self.workers.submit(("retry", info.name), self.read, info.name, True)
        return True

    def conflict(self, info: AgentInfo, url: str) -> None:
        """An agent answered on ``url`` as one followed through another connection (direct mode)."""
        self._tracker.conflict(info, url)

    def reconnected(self, transport: Transport) -> None:
        """A connection came back: read every agent behind it again."""
        for name in self._tracker.behind(transport):
            self.reread(name)

    def discover(self, connections: Sequence[Tuple[str, Transport]], brokered: bool, wait: float,
                 unreachable: Dict[str, str]) -> None:
        """Locate the agents on each connection and load them; a connection nothing answered on goes to
        ``unreachable``. ``brokered``: collect every answer that comes within ``wait`` seconds."""
        locates = [(url, t, self._requests.send(t, AgentLocateRequest(), TOPIC, many=brokered))
                   for url, t in connections]
        for url, transport, pending in locates:
            try:
                replies = self._requests.wait(pending, wait, f"agent locate via {url}", many=brokered)
                for reply in replies:
                    if isinstance(reply, AgentLocateResponse) and reply.info.name not in self._tracker.routes \
                            and self._tracker.admit(reply.info.name):
                        self.load(reply.info, url, transport)
            except (errors.ConsoleError, errors.TransportError) as exc:
                unreachable[url] = str(exc)

    def close(self) -> None:
        """Stop the loader threads (queued reads are dropped)."""
        self.workers.close()
