"""One fleet worker process: a slice of the fleet's agents and the churn on their hosts.

Every agent is the real agent code (:class:`virtq.agent.Agent`) on its own libvirt test-driver
connection, loaded from a generated node file (``bench.fleetsim.nodexml``): a distinct host name,
host UUID and instance per agent, domains named and numbered after the host. In direct mode each
agent listens on its own loopback port; through a broker each has its own connection to it.

The churn thread runs libvirt operations on random domains of this worker's hosts at a given
rate — suspend, resume, destroy, create, and defines and undefines that keep each host near its
size — through the agent's own libvirt connection (a test-driver connection tells only itself of
its events), so the agents see libvirt's events and configuration changes as they would on a
real host. Its calls are counted under their own thread kind (``fleet-churn``), apart from the
agents' own.

The parent talks to the worker over a pipe (dicts both ways): the worker says ``ready`` with its
agents' names and URLs, then a ``tick`` every second (its CPU and RSS, the agents' libvirt calls
by thread kind, churn operations); it answers ``churn`` (set the rate), ``truth`` (every
agent's domains as libvirt has them: uuid -> [name, state]) and ``stop``. If the parent goes away
(end of file on the pipe) the worker stops its agents and exits.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from virtq.agent import Agent
from virtq.agent.hypervisor import HypervisorError
from virtq.schema import default_schema
from virtq.testing import free_port
from virtq import transport as amqp
from virtq.transport import DirectListener, Transport, profile

from .metering import MeteredHypervisor, cpu_seconds, host_identity, rss_bytes
from .nodexml import PAUSED, RUNNING, SHUTOFF, DomainSpec, fleet_domain_xml, node_uri, write_node_xml

log = logging.getLogger(__name__)

AGENT_THREADS = ("virtq-sample", "virtq-sampler", "virtq-events", "virtq-worker", "virtq-reconcile")
"""The thread kinds whose libvirt calls are the agents' own (not the churn's, not the worker's checks)."""


@dataclass
class WorkerConfig:
    index: int
    hosts: List[int]  # the fleet-wide numbers of this worker's hosts
    running: int
    paused: int
    shutoff: int
    via: str  # "direct" or "rabbitmq"
    workdir: str
    broker_urls: List[str] = field(default_factory=list)
    interval: float = 10.0
    slow_interval: float = 60.0
    heartbeat: float = 10.0
    reconcile: float = 300.0
    devices: bool = True
    seed: int = 0
    report_every: float = 1.0
    agent_workers: int = 4


def host_name(number: int) -> str:
    return f"fleet-{number:05d}"


@dataclass
class _Host:
    name: str
    agent: Agent
    hv: MeteredHypervisor
    url: str
    states: Dict[str, int]  # uuid -> state, as the churn believes it
    names: Dict[str, str]  # uuid -> name
    size: int  # domains the host is kept near
    defined: int = 0


class Worker:
    def __init__(self, config: WorkerConfig, conn: Connection) -> None:
        self.config = config
        self.conn = conn
        self.hosts: List[_Host] = []
        self.errors: List[str] = []
        self.rate = 0.0
        self.churn_ops: Dict[str, int] = collections.Counter()
        self.churn_errors = 0
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._rng = random.Random(config.seed * 7919 + config.index)
        self._churn = threading.Thread(target=self._churn_loop, name="fleet-churn", daemon=True)

    def send(self, message: Dict[str, Any]) -> None:
        with self._send_lock:
            self.conn.send(message)

    # --- agents ----------------------------------------------------------------------------------

    def start_agents(self) -> None:
        c = self.config
        workdir = Path(c.workdir)
        schema = default_schema()
        for i, number in enumerate(c.hosts):
            name = host_name(number)
            try:
                self.hosts.append(self._start_one(schema, workdir, name))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, the others go on
                log.exception("agent %s did not start", name)
                self.errors.append(f"{name}: {exc}")
            if (i + 1) % 10 == 0 or i + 1 == len(c.hosts):
                self.send({"type": "progress", "worker": c.index, "started": len(self.hosts),
                           "failed": len(self.errors)})

    def _start_one(self, schema: Any, workdir: Path, name: str) -> _Host:
        from virtq.agent.libvirt_adapter import LibvirtHypervisor
        from virtq.agent.policy import Policy

        c = self.config
        path = workdir / f"{name}.xml"
        spec = write_node_xml(path, name, c.running, c.paused, c.shutoff, c.devices)
        uri = node_uri(path)
        hv = MeteredHypervisor(LibvirtHypervisor(uri), node=host_identity(name, uri))
        url = ""
        transport: Union[Transport, Callable[[str], Transport]]
        if c.via == "direct":
            url = f"amqp://127.0.0.1:{free_port()}"
            transport = DirectListener(url)
        else:
            urls = list(c.broker_urls)

            def transport(agent_name: str) -> Transport:
                return amqp.Connection(urls, profile(c.via), role="agent", agent_name=agent_name,
                                       require_connection=False)
        # The fleet is a benchmark on libvirt's test driver: through a broker (where an agent without a
        # policy denies every call) its consoles may do anything; in direct mode (loopback) the default does.
        policy = None if c.via == "direct" else Policy.everyone(schema, "admin", "bench.fleetsim (test driver)")
        agent = Agent(schema, hv, transport, instance=name, heartbeat=c.heartbeat, interval=c.interval,
                      slow_interval=c.slow_interval, reconcile=c.reconcile, workers=c.agent_workers, policy=policy)
        try:
            agent.start()
        except Exception:
            agent.kill()
            raise
        return _Host(name, agent, hv, url, {d.uuid: d.state for d in spec.domains},
                     {d.uuid: d.name for d in spec.domains}, len(spec.domains))

    def stop_agents(self) -> None:
        self.rate = 0.0
        self._stop.set()
        if self._churn.is_alive():
            self._churn.join(5)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda h: h.agent.kill(), self.hosts))

    # --- churn -------------------------------------------------------------------------------------

    def _churn_loop(self) -> None:
        next_op = time.monotonic()
        while not self._stop.is_set():
            rate = self.rate
            if rate <= 0 or not self.hosts:
                self._stop.wait(0.1)
                next_op = time.monotonic()
                continue
            next_op += self._rng.expovariate(rate)
            delay = next_op - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self.rate <= 0:  # stopped while waiting: the parent reads libvirt's truth next
                continue
            if next_op < time.monotonic() - 1.0:  # fell behind by more than a second: do not burst
                next_op = time.monotonic()
            self.churn_once(self._rng.choice(self.hosts))

    def churn_once(self, host: _Host) -> str:
        """One operation on a random domain of the host (or a define/undefine); returns its name."""
        rng = self._rng
        op, uuid = "", ""
        if rng.random() < 0.15:  # the host's configuration: a new domain, or one fewer
            shutoff = [u for u, s in host.states.items() if s == SHUTOFF]
            if len(host.states) <= host.size or not shutoff:
                op = "define"
            else:
                op, uuid = "undefine", rng.choice(shutoff)
        elif host.states:
            uuid = rng.choice(sorted(host.states))
            state = host.states[uuid]
            if state == RUNNING:
                op = "suspend" if rng.random() < 0.6 else "destroy"
            elif state == PAUSED:
                op = "resume" if rng.random() < 0.7 else "destroy"
            else:
                op = "create"
        if not op:
            return ""
        try:
            self._apply(host, op, uuid)
            self.churn_ops[op] += 1
        except (HypervisorError, LookupError, ValueError) as exc:
            self.churn_errors += 1
            log.info("churn %s on %s/%s failed: %s", op, host.name, uuid, exc)
            self._refresh(host)
        return op

    def _apply(self, host: _Host, op: str, uuid: str) -> None:
        hv = host.hv
        if op == "define":
            host.defined += 1
            name = f"churn{host.defined:04d}"
            spec = DomainSpec(name, str(_uuid5(host.name, name)), SHUTOFF, 1024, 2, host.defined)
            hv.invoke("Node", None, "virDomainDefineXML", [fleet_domain_xml(spec, host.name, self.config.devices)])
            host.states[spec.uuid], host.names[spec.uuid] = SHUTOFF, name
            return
        function, after = {"suspend": ("virDomainSuspend", PAUSED), "resume": ("virDomainResume", RUNNING),
                           "destroy": ("virDomainDestroy", SHUTOFF), "create": ("virDomainCreate", RUNNING),
                           "undefine": ("virDomainUndefine", 0)}[op]
        hv.invoke("Domain", uuid, function, [])
        if op == "undefine":
            host.states.pop(uuid, None)
            host.names.pop(uuid, None)
        else:
            host.states[uuid] = after

    def _refresh(self, host: _Host) -> None:
        try:
            truth = self.truth_of(host)
        except HypervisorError:
            return
        host.states = {u: s for u, (_, s) in truth.items()}
        host.names = {u: n for u, (n, _) in truth.items()}

    # --- what libvirt says -------------------------------------------------------------------------

    @staticmethod
    def truth_of(host: _Host) -> Dict[str, Tuple[str, int]]:
        """Every domain of the host as libvirt has it: uuid -> (name, state)."""
        inner = host.hv.inner
        return {d.uuid: (d.name, int(inner.invoke("Domain", d.uuid, "virDomainGetState", [0])[0]))
                for d in inner.list_domains()}

    def truth(self) -> Dict[str, Dict[str, List[Any]]]:
        out: Dict[str, Dict[str, List[Any]]] = {}
        for host in self.hosts:
            try:
                out[host.agent.name] = {u: [n, s] for u, (n, s) in self.truth_of(host).items()}
            except HypervisorError as exc:
                self.errors.append(f"{host.name}: truth: {exc.message}")
        return out

    def tick(self) -> Dict[str, Any]:
        calls: Dict[str, int] = collections.Counter()
        for host in self.hosts:
            for kind, n in host.hv.calls_by_thread().items():
                calls[kind] += n
        return {"type": "tick", "worker": self.config.index, "t": time.time(), "cpu": cpu_seconds(),
                "rss": rss_bytes(), "calls": dict(calls), "churn": dict(self.churn_ops),
                "churn_errors": self.churn_errors, "agents": len(self.hosts),
                "events": sum(h.agent.pump.handled for h in self.hosts),
                "connected": sum(1 for h in self.hosts if h.agent.transport.connected)}

    # --- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        self.start_agents()
        self.send({"type": "ready", "worker": self.config.index, "errors": list(self.errors),
                   "agents": [{"name": h.agent.name, "host": h.name, "url": h.url, "domains": len(h.states)}
                              for h in self.hosts]})
        self._churn.start()
        next_tick = time.monotonic()
        try:
            while True:
                timeout = max(0.0, next_tick - time.monotonic())
                if self.conn.poll(timeout):
                    command = self.conn.recv()
                    what = command.get("cmd")
                    if what == "churn":
                        self.rate = float(command["rate"])
                        self.send({"type": "churn", "worker": self.config.index, "rate": self.rate})
                    elif what == "truth":
                        self.send({"type": "truth", "worker": self.config.index, "truth": self.truth()})
                    elif what == "stop":
                        break
                if time.monotonic() >= next_tick:
                    self.send(self.tick())
                    next_tick += self.config.report_every
                    if next_tick < time.monotonic():
                        next_tick = time.monotonic() + self.config.report_every
        except (EOFError, OSError):  # the parent is gone: stop all the same
            log.warning("worker %d: lost the parent; stopping", self.config.index)
        finally:
            self.stop_agents()
        try:
            self.send({"type": "stopped", "worker": self.config.index})
        except (OSError, ValueError):
            pass


def _uuid5(host: str, name: str) -> str:
    import uuid

    from .nodexml import NAMESPACE
    return str(uuid.uuid5(NAMESPACE, f"{host}/{name}"))


def main(config: WorkerConfig, conn: Connection, log_file: Optional[str] = None) -> None:
    """The worker process's entry point (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us to stop
    logging.basicConfig(level=logging.WARNING, filename=log_file,
                        format=f"%(asctime)s worker{config.index} %(levelname)s %(name)s: %(message)s")
    Worker(config, conn).run()
