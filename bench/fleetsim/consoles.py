"""The measuring consoles, each in a process of its own (its CPU and RSS are its own).

push  the ordinary :class:`virtq.console.Console`, which loads every agent's objects once and
      then only listens. Measured: ingest (records and samples applied per second), lag from
      the agent's sample time (a statistics batch's ``_sample_ts``) to the repository update
      (the updater's ``apply_stats`` returned) and to subscriber delivery (a ``StatsApplied``
      callback, one per batch, its lag counted once per object in it), lag from a libvirt event's timestamp to its subscriber, XML fetches (a consumer
      fetches a domain's XML through the console's fetcher when it is added or its configGen
      moves: never otherwise).
poll  what an engine did before push: every cycle (one per interval, back to back when a cycle
      takes longer) it asks every agent for the list of its domains and calls ``getInfo`` and
      ``getXMLDesc`` on each of them. Its transports subscribe to heartbeats only. Requests to
      one agent are pipelined (all sent, then all awaited), ``--poll-concurrency`` agents at a
      time — cheaper for the poller than one call after the other.

Both: bytes on the wire (every TCP socket of the process, from the kernel's tcp_info), bytes
received per message category, CPU and RSS (/proc/self). The parent drives a console over a pipe:
``window_start`` / ``window_end`` (the answer has the window's measurements), ``picture``
(the domains it sees: agent -> uuid -> [name, state]; the poller runs a fresh cycle first) and
``stop``; the console sends ``ready`` once loaded and a ``tick`` every second.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Optional, Sequence, Tuple

from virtq.console import Console, RemoteObject
from virtq.console.events import (AgentAdded, AgentLost, AgentRestarted, ConfigChanged, Event, LibvirtEvent,
                                  ObjectAdded, StatsApplied)
from virtq.schema import errors
from virtq.schema.codec import (ExceptionResponse, MethodRequest, MethodResponse, QueryRequest,
                                QueryResponse, StatsBatch, WireMessage, direct_address)
from virtq.schema.model import SchemaId
from virtq.testing import WaitTimeout, wait_until
from virtq import transport as amqp
from virtq.transport import AddressProfile, QmfProfile, Transport, profile

from .metering import category, cpu_seconds, snapshot

log = logging.getLogger(__name__)

HEARTBEATS_ONLY = "agent.ind.heartbeat.#"


@dataclass
class ConsoleConfig:
    mode: str  # "push" or "poll"
    via: str  # "direct" or "rabbitmq"
    agent_urls: List[str] = field(default_factory=list)  # direct mode
    broker_urls: List[str] = field(default_factory=list)
    interval: float = 10.0
    agents: int = 0  # how many agents to wait for
    domains: int = 0  # how many domains to wait for
    timeout: float = 30.0
    load_timeout: float = 300.0
    poll_concurrency: int = 8
    report_every: float = 1.0
    inline: bool = False  # the push console's subscriber runs on the console's thread (Console.subscribe)


# --- metered transports ------------------------------------------------------------------------------

class Tallies:
    """Messages and bytes received, by category (thread-safe; several reactor threads count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Dict[str, List[int]] = {}

    def add(self, wire: WireMessage) -> None:
        name = category(wire)
        with self._lock:
            tally = self.counts.get(name)
            if tally is None:
                tally = self.counts[name] = [0, 0]
            tally[0] += 1
            tally[1] += wire.size

    def read(self) -> Dict[str, List[int]]:
        with self._lock:
            return {k: list(v) for k, v in self.counts.items()}


class MeteredConnection(amqp.Connection):
    """A console's connection that tallies what it receives; the poller's hears only heartbeats
    (liveness), no pushes."""

    def __init__(self, urls: Sequence[str], addresses: AddressProfile, tallies: Tallies, *, heartbeats_only: bool,
                 fail_fast: bool = False) -> None:
        super().__init__(urls, addresses, role="console", fail_fast=fail_fast,
                         sources=[addresses.topic_source(HEARTBEATS_ONLY)] if heartbeats_only else None)
        self.tallies = tallies

    def deliver(self, wire: WireMessage) -> None:
        self.tallies.add(wire)
        super().deliver(wire)


# --- numbers ---------------------------------------------------------------------------------------------

def summary(values: Sequence[float]) -> Dict[str, float]:
    """n, p50, p99, max (nearest rank) of a list of numbers; NaN when empty."""
    if not values:
        return {"n": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]

    return {"n": len(ordered), "p50": rank(50), "p99": rank(99), "max": ordered[-1]}


Picture = Dict[str, Dict[str, List[Any]]]


class Measured:
    """What both consoles share: the transports, the console, the window, the loop with the parent."""

    def __init__(self, config: ConsoleConfig, conn: Connection) -> None:
        self.config = config
        self.conn = conn
        self.tallies = Tallies()
        heartbeats_only = config.mode == "poll"
        transports: List[Transport]
        if config.via == "direct":
            transports = [MeteredConnection([u], QmfProfile(), self.tallies, heartbeats_only=heartbeats_only,
                                            fail_fast=True) for u in config.agent_urls]
        else:
            transports = [MeteredConnection(config.broker_urls, profile(config.via), self.tallies,
                                            heartbeats_only=heartbeats_only)]
        addressing = config.via
        self.console = Console(transports=transports, timeout=config.timeout, addressing=addressing,
                               discovery=3.0)
        self._send_lock = threading.Lock()
        self.window_open = False
        self._window: Dict[str, Any] = {}
        self.load_seconds = 0.0

    def send(self, message: Dict[str, Any]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def start(self) -> None:
        started = time.monotonic()
        self.console.start()
        c = self.config
        self.console.wait_for(lambda: len(self.console.agents) >= c.agents and len(self.console.domains) >= c.domains,
                              max(0.0, started + c.load_timeout - time.monotonic()))  # (the run goes on if not)
        self.load_seconds = time.monotonic() - started

    # counters the window measures; subclasses add theirs
    def counters(self) -> Dict[str, Any]:
        snap = snapshot()
        snap.update(t=time.monotonic(), categories=self.tallies.read(),
                    records=self.console.updater.records_applied, samples=self.console.updater.samples_applied)
        return snap

    def window_start(self) -> None:
        self._window = self.counters()
        self.window_open = True

    def window_end(self) -> Dict[str, Any]:
        self.window_open = False
        before, after = self._window, self.counters()
        categories = {k: [v[0] - before["categories"].get(k, [0, 0])[0], v[1] - before["categories"].get(k, [0, 0])[1]]
                      for k, v in after["categories"].items()}
        return {"type": "window", "mode": self.config.mode, "seconds": after["t"] - before["t"],
                "cpu": after["cpu"] - before["cpu"], "rss": after["rss"],
                "tcp_sent": after["tcp_sent"] - before["tcp_sent"],
                "tcp_received": after["tcp_received"] - before["tcp_received"],
                "records": after["records"] - before["records"], "samples": after["samples"] - before["samples"],
                "categories": {k: v for k, v in categories.items() if v[0]}}

    def tick(self) -> Dict[str, Any]:
        return {"type": "tick", "mode": self.config.mode, "t": time.time(), "cpu": cpu_seconds(),
                "agents": len(self.console.agents), "domains": len(self.console.domains),
                "lost": sum(1 for a in self.console.agents if self.console.is_lost(a.name)),
                "records": self.console.updater.records_applied, "samples": self.console.updater.samples_applied}

    def picture(self) -> Picture:
        raise NotImplementedError

    def run(self) -> None:
        try:
            self.start()
        except errors.VirtqError as exc:
            self.send({"type": "failed", "mode": self.config.mode, "error": str(exc)})
            return
        self.send({"type": "ready", "mode": self.config.mode, "seconds": self.load_seconds,
                   "agents": len(self.console.agents), "domains": len(self.console.domains)})
        next_tick = time.monotonic()
        try:
            while True:
                if self.conn.poll(max(0.0, next_tick - time.monotonic())):
                    command = self.conn.recv()
                    what = command.get("cmd")
                    if what == "window_start":
                        self.window_start()
                    elif what == "window_end":
                        self.send(self.window_end())
                    elif what == "picture":
                        self.send({"type": "picture", "mode": self.config.mode, "picture": self.picture()})
                    elif what == "stop":
                        break
                if time.monotonic() >= next_tick:
                    self.send(self.tick())
                    next_tick = max(next_tick + self.config.report_every, time.monotonic())
        except (EOFError, OSError):
            log.warning("%s console: lost the parent; stopping", self.config.mode)
        finally:
            self.close()
        try:
            self.send({"type": "stopped", "mode": self.config.mode})
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.console.close()


class PushConsole(Measured):
    def __init__(self, config: ConsoleConfig, conn: Connection) -> None:
        super().__init__(config, conn)
        self.lag_repo: List[float] = []  # ms, one per statistics batch
        self.lag_sub: List[float] = []  # ms, one per object of each StatsApplied
        self.lag_event: List[float] = []  # ms, one per libvirt event
        self.recent: collections.deque[float] = collections.deque(maxlen=20_000)  # for the live line
        self.config_changes = 0
        self.fetch_failures = 0
        self._fetches: "queue.Queue[Optional[RemoteObject]]" = queue.Queue()
        self._fetcher = threading.Thread(target=self._fetch_loop, name="fleet-xml-fetcher", daemon=True)

        def applied(agent: str, batches: Sequence[StatsBatch]) -> None:
            if self.window_open:
                now = time.time_ns()
                self.lag_repo.extend((now - b.sample_ts) / 1e6 for b in batches)

        self.console.updater.stats_observers.append(applied)
        self.agent_events: Dict[str, int] = collections.Counter()  # AgentLost, AgentAdded, AgentRestarted
        self.subscription = self.console.subscribe(self._on_event, kinds=(StatsApplied, LibvirtEvent, ConfigChanged,
                                                                          ObjectAdded, AgentLost, AgentAdded,
                                                                          AgentRestarted), maxsize=1_000_000,
                                                   inline=config.inline)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, StatsApplied):
            lags = [(time.time_ns() - event.sample_ts) / 1e6] * len(event.keys)
            self.recent.extend(lags)
            if self.window_open:
                self.lag_sub.extend(lags)
        elif isinstance(event, (AgentLost, AgentAdded, AgentRestarted)):
            if self.window_open:  # an agent lost (no heartbeat for 3 intervals) or back: a resync follows
                self.agent_events[type(event).__name__] += 1
        elif isinstance(event, LibvirtEvent):
            if self.window_open:
                self.lag_event.append((time.time_ns() - event.timestamp) / 1e6)
        elif isinstance(event, (ConfigChanged, ObjectAdded)) and event.obj.class_name == "Domain":
            if self.window_open:  # a consumer that keeps every domain's configuration up to date
                self.config_changes += 1
                self._fetches.put(event.obj)

    def _fetch_loop(self) -> None:
        while True:
            obj = self._fetches.get()
            if obj is None:
                return
            try:
                self.console.xml(obj)
            except errors.VirtqError as exc:  # undefined meanwhile, say
                self.fetch_failures += 1
                log.info("fetching the XML of %s failed: %s", obj.object_id.object_name, exc)

    def start(self) -> None:
        super().start()
        self._fetcher.start()

    def counters(self) -> Dict[str, Any]:
        counters = super().counters()
        counters.update(xml_fetches=self.console.xml_fetches)
        return counters

    def window_start(self) -> None:
        self.lag_repo, self.lag_sub, self.lag_event = [], [], []
        self.config_changes = self.fetch_failures = 0
        self.agent_events = collections.Counter()
        super().window_start()

    def window_end(self) -> Dict[str, Any]:
        before = self._window
        result = super().window_end()
        result.update(lag_repo=summary(self.lag_repo), lag_sub=summary(self.lag_sub),
                      lag_event=summary(self.lag_event), config_changes=self.config_changes,
                      xml_fetches=self.console.xml_fetches - before["xml_fetches"],
                      fetch_failures=self.fetch_failures, dropped=self.subscription.dropped,
                      agent_events=dict(self.agent_events))
        return result

    def tick(self) -> Dict[str, Any]:
        tick = super().tick()
        recent = list(self.recent)
        self.recent.clear()
        tick["lag_p99"] = summary(recent)["p99"]
        tick["xml_fetches"] = self.console.xml_fetches
        return tick

    def picture(self) -> Picture:
        out: Picture = {}
        for dom in self.console.domains:
            out.setdefault(dom.agent, {})[str(dom.values.get("uuid"))] = [dom.values.get("name"),
                                                                          dom.stats.get("state")]
        return out

    def close(self) -> None:
        self._fetches.put(None)
        super().close()


class PollConsole(Measured):
    def __init__(self, config: ConsoleConfig, conn: Connection) -> None:
        super().__init__(config, conn)
        self.domain_class = SchemaId(self.console.schema.package, "Domain")
        self._stop = threading.Event()
        self._cycling = threading.Event()
        self._in_flight = threading.Event()
        self._first_cycle = 0
        self._lock = threading.Lock()
        self.cycles: List[float] = []  # seconds each complete cycle took
        self.requests = 0
        self.xml_fetches = 0
        self.answers = 0  # records and method answers received
        self.failures = 0
        self.last_info: Dict[Tuple[str, str], float] = {}  # (agent, uuid) -> when getInfo last answered
        self.refresh: List[float] = []  # seconds between two getInfo answers of one domain
        self.latest: Picture = {}
        self._thread = threading.Thread(target=self._loop, name="fleet-poller", daemon=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(config.poll_concurrency, thread_name_prefix="fleet-poll")

    # one agent, one cycle: the list, then every domain's getInfo and getXMLDesc, pipelined
    def poll_agent(self, agent: str) -> Dict[str, List[Any]]:
        console = self.console
        transport = console.tracker.route(agent)
        address = direct_address(agent)
        pending = console.requests.send(transport, QueryRequest(what="OBJECT", schema_id=self.domain_class), address)
        records = [r for reply in console.requests.wait(pending, self.config.timeout, f"domain list of {agent}")
                   if isinstance(reply, QueryResponse) for r in reply.records]
        asked = []
        for record in records:
            for method in ("getInfo", "getXMLDesc"):
                asked.append((record, method, console.requests.send(
                    transport, MethodRequest(object_id=record.object_id, method_name=method), address)))
        picture: Dict[str, List[Any]] = {}
        failures = 0
        for record, method, waiting in asked:
            uuid = str(record.values.get("uuid"))
            try:
                reply = console.requests.wait(waiting, self.config.timeout, f"{method} on {agent}")[-1]
            except errors.VirtqError:
                failures += 1
                continue
            if isinstance(reply, ExceptionResponse) or not isinstance(reply, MethodResponse):
                failures += 1  # undefined since the list was read, say
                continue
            if method == "getInfo":
                picture[uuid] = [record.values.get("name"), _state(reply.arguments)]
        now = time.monotonic()
        with self._lock:
            self.requests += 1 + len(asked)
            self.xml_fetches += len(records)
            self.answers += len(records) + len(asked) - failures
            self.failures += failures
            for uuid in picture:
                last = self.last_info.get((agent, uuid))
                if last is not None and self.window_open:
                    self.refresh.append(now - last)
                self.last_info[(agent, uuid)] = now
        return picture

    def cycle(self) -> Picture:
        agents = [a.name for a in self.console.agents]
        started = time.monotonic()
        results = dict(zip(agents, self._pool.map(self._poll_quietly, agents)))
        with self._lock:
            self.cycles.append(time.monotonic() - started)
        return {a: p for a, p in results.items() if p is not None}

    def _poll_quietly(self, agent: str) -> Optional[Dict[str, List[Any]]]:
        try:
            return self.poll_agent(agent)
        except errors.VirtqError as exc:
            with self._lock:
                self.failures += 1
            log.info("polling %s failed: %s", agent, exc)
            return None

    def _loop(self) -> None:
        next_cycle = time.monotonic()
        while not self._stop.is_set():
            if not self._cycling.is_set():
                self._cycling.wait(0.2)
                next_cycle = time.monotonic()
                continue
            delay = next_cycle - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            self._in_flight.set()  # before the check: window_end sees either no cycle or this one
            try:
                if self._cycling.is_set():
                    self.latest = self.cycle()
            finally:
                self._in_flight.clear()
            next_cycle = max(next_cycle + self.config.interval, time.monotonic())

    def start(self) -> None:
        super().start()
        self.cycle()  # a warm-up cycle, out of any window
        self._thread.start()

    def counters(self) -> Dict[str, Any]:
        counters = super().counters()
        with self._lock:
            counters.update(cycles=len(self.cycles), requests=self.requests, xml_fetches=self.xml_fetches,
                            answers=self.answers, failures=self.failures)
        return counters

    def window_start(self) -> None:
        with self._lock:
            self.refresh = []
            first = len(self.cycles)
        self._first_cycle = first
        super().window_start()
        self._cycling.set()

    def window_end(self) -> Dict[str, Any]:
        self._cycling.clear()
        # the window ends with the cycle in flight (a partial cycle would count bytes, not a cycle)
        with contextlib.suppress(WaitTimeout):  # (a cycle stuck that long is cut short)
            wait_until(lambda: not self._in_flight.is_set(), 10 * self.config.interval + 60, interval=0.05)
        before = self._window
        result = super().window_end()
        with self._lock:
            cycles = self.cycles[self._first_cycle:]
            result.update(cycles=len(cycles), cycle_seconds=summary(cycles), refresh=summary(self.refresh),
                          requests=self.requests - before["requests"],
                          xml_fetches=self.xml_fetches - before["xml_fetches"],
                          answers=self.answers - before["answers"], failures=self.failures - before["failures"])
        return result

    def picture(self) -> Picture:
        return self.cycle()

    def close(self) -> None:
        self._stop.set()
        self._cycling.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()


def _state(arguments: Any) -> Any:
    """virDomainGetInfo's state out of a getInfo answer (its out-argument is a structure)."""
    if isinstance(arguments, dict):
        if "state" in arguments:
            return arguments["state"]
        for value in arguments.values():
            found = _state(value)
            if found is not None:
                return found
    return None


def main(config: ConsoleConfig, conn: Connection, log_file: Optional[str] = None) -> None:
    """A console process's entry point (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, filename=log_file,
                        format=f"%(asctime)s {config.mode}-console %(levelname)s %(name)s: %(message)s")
    console = PushConsole(config, conn) if config.mode == "push" else PollConsole(config, conn)
    console.run()
