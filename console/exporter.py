"""The fleet exporter: what a console holds of its agents and their domains, as Prometheus metrics.

A scrape reads only what the console already holds — nothing goes to an agent or to libvirt: per domain
its last pushed virDomainGetInfo statistics, named as prometheus-libvirt-exporter names them; per agent
what its heartbeats say and whether the console considers it alive. Domain statistics are read from the
repository's columns (``Repository.statistics``), not through a snapshot per domain: a fleet has
400,000 of them, and their text is written from the columns too (console/_exposition.py). The metric names
are fixed by docs/OPERATIONS.md ("The fleet exporter").
"""

from __future__ import annotations

import ipaddress
import operator
import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Dict, FrozenSet, Hashable, List, Optional, Sequence, Tuple

from ._console import Console
from ._exposition import CONTENT_TYPE, Body, escape, escape_all, family, label_sets
from ._metrics_server import MetricsServer
from .objects import RemoteObject
from .repository import AgentView

__all__ = ["AGENT_LABELS", "AGENT_METRICS", "DOMAIN_LABELS", "DOMAIN_METRICS", "DomainMetric", "Exporter", "FleetText"]

DOMAIN_LABELS = ("host", "domain", "uuid")
AGENT_LABELS = ("host", "agent")
GZIP_LEVEL = 1
"""The exposition is repetitive: the fastest level already makes it 13 times smaller, for a third of the
render's CPU (level 9 would take five times the render)."""


@dataclass(frozen=True)
class DomainMetric:
    """One per-domain metric: the pushed statistic it shows and the factor to its unit."""

    name: str
    statistic: str
    scale: float
    documentation: str
    counter: bool = False

    @property
    def kind(self) -> str:
        return "counter" if self.counter else "gauge"


DOMAIN_METRICS = (
    DomainMetric("libvirt_domain_info_state", "state", 1,
                 "The domain's virDomainState (1 running, 3 paused, 5 shut off ...), as last pushed."),
    DomainMetric("libvirt_domain_info_cpu_time_seconds_total", "cpuTime", 1e-9,
                 "CPU time the domain used, in seconds, as last pushed.", counter=True),
    DomainMetric("libvirt_domain_info_maximum_memory_bytes", "maxMem", 1024,
                 "The domain's maximum memory in bytes, as last pushed."),
    DomainMetric("libvirt_domain_info_memory_usage_bytes", "memory", 1024,
                 "The domain's memory in bytes, as last pushed."),
    DomainMetric("libvirt_domain_info_virtual_cpus", "nrVirtCpu", 1,
                 "The domain's number of virtual CPUs, as last pushed."),
)
"""Per domain, labels host, domain, uuid: prometheus-libvirt-exporter's names for virDomainGetInfo's fields."""


AGENT_METRICS = (
    ("libvirt_up", "Whether the agent's libvirt connection is up, as its heartbeats say (0 while it is lost)."),
    ("libvirt_domains", "Domains the console holds for the agent."),
    ("virtq_fleet_agent_up", "Whether the console considers the agent alive (its heartbeats come on time)."),
    ("virtq_fleet_agent_last_heartbeat_age_seconds", "Seconds since the agent's last heartbeat (or answer)."),
    ("virtq_fleet_agent_epoch", "The agent's epoch: it changes when the agent restarts."),
)
"""Per agent, labels host, agent: (name, help), in the order FleetText gives their values."""


class DomainRows:
    """The domains' label sets (``{host=..,domain=..,uuid=..} ``, escaped) and agents, in the repository's
    order, kept for as long as its snapshots are the same objects: a snapshot is made anew when a record
    comes, and most scrapes follow only statistics."""

    def __init__(self, snapshots: List[RemoteObject], hosts: Dict[str, str]) -> None:
        self._snapshots = snapshots
        self._hosts = hosts
        self.agents: List[str] = list(map(operator.attrgetter("object_id.agent_name"), snapshots))
        self.per_agent = Counter(self.agents)
        """Domains held per agent."""
        shown = {agent: escape(hosts.get(agent) or agent.rsplit(":", 1)[-1]) for agent in self.per_agent}
        self.heads = label_sets(DOMAIN_LABELS, list(map(shown.__getitem__, self.agents)),
                                escape_all([str(obj.values.get("name", "")) for obj in snapshots]),
                                escape_all([str(obj.values.get("uuid", "")) for obj in snapshots]))

    def made_from(self, snapshots: List[RemoteObject], hosts: Dict[str, str]) -> bool:
        return hosts == self._hosts and len(snapshots) == len(self._snapshots) and \
            all(map(operator.is_, snapshots, self._snapshots))


Rendered = Tuple[Body, bytes]
"""A scrape: the domains' part (shared by scrapes while nothing changes) and the agents' (made per scrape)."""


class FleetText:
    """A console's fleet in Prometheus' text format, rendered at scrape time (no gauge to go stale).

    The domains' series, nearly all of the text, are rendered again only when the domain repository changed
    (its ``changes`` counter), an agent's host name did, or an agent was lost or came back; the agents'
    series (heartbeat ages move) are made at every scrape. One render runs at a time: a scrape that comes
    while one runs waits for it and serves its result, so that two scraping servers do not double the CPU."""

    def __init__(self, console: Console, gzip_level: int = GZIP_LEVEL) -> None:
        self._console = console
        self._gzip_level = gzip_level
        self._lock = threading.Lock()
        self._running: Optional["Future[Rendered]"] = None
        self._key: Optional[Hashable] = None  # what the domains' part was rendered from
        self._domains = Body([], gzip_level)
        self._rows = DomainRows([], {})
        self.domain_renders = 0
        """How many times the domains' part was rendered (the rest of the scrapes reused it)."""

    def parts(self, gzipped: bool) -> List[bytes]:
        """One scrape's body, in parts (gzipped: one gzip member)."""
        with self._lock:
            running, mine = self._running, self._running is None
            if running is None:
                running = self._running = Future()
        if mine:
            try:
                running.set_result(self._render())
            except BaseException as exc:  # the waiting scrapes fail too (and this one: result() raises it)
                running.set_exception(exc)
            finally:
                with self._lock:
                    self._running = None
        domains, agents = running.result()
        return domains.parts(agents, gzipped)

    def text(self) -> str:
        """One scrape's body as text."""
        return b"".join(self.parts(False)).decode()

    def _render(self) -> Rendered:
        console = self._console
        views = sorted(console.agents, key=lambda v: v.name)
        hosts = {v.name: v.hostname or v.instance for v in views}  # the host label: its Node's hostname
        lost = frozenset(v.name for v in views if console.is_lost(v.name))
        key = (console.domains.changes, tuple(hosts.items()), lost)  # the counter first: read before the columns
        if key != self._key:
            self._domains = self._render_domains(hosts, lost)
            self._key = key
            self.domain_renders += 1
        return self._domains, self._render_agents(views, hosts, lost).encode()

    def _render_domains(self, hosts: Dict[str, str], lost: FrozenSet[str]) -> Body:
        """The per-domain families. A lost agent's domains are counted but not shown: the console no longer
        knows their state (as prometheus-libvirt-exporter shows none while libvirt is down); a statistic never
        pushed has no series (not a zero)."""
        snapshots, columns = self._console.repository("Domain").statistics([m.statistic for m in DOMAIN_METRICS])
        if not self._rows.made_from(snapshots, hosts):  # statistics moved, but no record came: the same labels
            self._rows = DomainRows(snapshots, hosts)
        rows = self._rows
        alive = list(map(operator.not_, map(lost.__contains__, rows.agents))) if lost else None
        return Body([family(m.name, m.documentation, m.kind, rows.heads, columns[m.statistic], m.scale, alive)
                     .encode() for m in DOMAIN_METRICS], self._gzip_level)

    def _render_agents(self, views: List[AgentView], hosts: Dict[str, str], lost: FrozenSet[str]) -> str:
        now = self._console.clock()
        heads = label_sets(AGENT_LABELS, [escape(hosts[v.name]) for v in views], [escape(v.name) for v in views])
        alive = [v.name not in lost for v in views]
        columns: Tuple[Sequence[float], ...] = (
            [int(up and bool(v.health.libvirt_connected)) for up, v in zip(alive, views)],
            [self._rows.per_agent.get(v.name, 0) for v in views], list(map(int, alive)),
            [v.heartbeat_age(now) for v in views], [v.epoch for v in views])
        return "".join([*(family(name, help_text, "gauge", heads, values)
                          for (name, help_text), values in zip(AGENT_METRICS, columns)),
                        family("virtq_exporter_agents", "Agents the console knows (lost ones included).",
                               "gauge", [" "], [len(views)]),
                        family("virtq_exporter_stats_records_total",
                               "Pushed statistics records (one object's sample each) the console applied.",
                               "counter", [" "], [self._console.updater.samples_applied])])


class Exporter:
    """Serves a console's metrics at ``http://HOST:PORT/metrics`` (Prometheus' text format; gzipped when the
    scraper asks). ``port`` 0 picks a free one; ``address`` says which after ``start``."""

    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fleet = FleetText(console)
        self._server = MetricsServer(host, port, self.fleet.parts, CONTENT_TYPE)

    def __enter__(self) -> "Exporter":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Tuple[str, int]:
        """Listen and serve on threads of its own; OSError when the address cannot be had."""
        return self._server.start()

    @property
    def address(self) -> Tuple[str, int]:
        """The (host, port) listened on."""
        return self._server.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach it (the endpoint has no authentication)."""
        host = self.address[0]
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return host == "localhost"

    def close(self) -> None:
        self._server.close()
