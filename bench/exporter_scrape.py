"""``python -m bench.exporter_scrape``: the CPU one ``virtq exporter`` scrape costs at fleet scale.

A console (not started: no network) is filled by hand with N domains on N/40 agents, records and statistics
fed to its updater as the agents' pushes would be. Each scrape is timed in CPU seconds (collect and render),
several times, best kept: the exporter's own text writer (a fresh render; a scrape with nothing applied since
the last, which reuses it; gzipped) against prometheus_client's formatter over the same console (the
baseline, what the exporter served before), measured in the same run. At 50,000 domains or fewer both texts
are also parsed by prometheus_client's parser and must hold the same samples.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from prometheus_client.parser import text_string_to_metric_families

from bench.common import bench_main, ratio
from bench.exporter_baseline import baseline_openmetrics, baseline_text
from bench.fleetsim.tables import table
from virtq.console import Console
from virtq.console.exporter import GZIP_LEVEL, FleetText
from virtq.console.repository import AgentView
from virtq.schema import default_schema
from virtq.schema.codec import DataRecord, ObjectId, StatsBatch

__all__ = ["Result", "fill", "main", "run"]

DOMAINS_PER_AGENT = 40
COMPARED_UP_TO = 50_000
"""Above this many domains the two texts are not parsed and compared (the parser takes minutes there)."""
KIB_PER_GIB = 1024 * 1024


def fill(domains: int, per_agent: int = DOMAINS_PER_AGENT) -> Console:
    """A console holding ``domains`` running domains on ``domains / per_agent`` agents, each sampled once."""
    now = 1000.0
    console = Console(clock=lambda: now)
    domain = default_schema().cls("Domain").schema_id
    for first in range(0, domains, per_agent):
        agent = f"libvirt.org:virtq:hv{first // per_agent:05d}"
        console.agents.put(agent, AgentView(agent, 7, 10, hostname=f"hv{first // per_agent:05d}.example.com",
                                            last_seen=now - 1))
        uuids = tuple(f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(first, min(first + per_agent, domains)))
        console.updater.apply_records([DataRecord(ObjectId(f"Domain:{u}", agent, 7), domain,
                                                  {"uuid": u, "name": f"vm-{u[:8]}", "id": 1, "configGen": 1},
                                                  100, 100) for u in uuids])
        count = len(uuids)
        console.updater.apply_stats(agent, [StatsBatch(domain, 7, 200, uuids, {
            "state": [1] * count, "cpuTime": [123_456_789_012 + n for n in range(count)],
            "maxMem": [4 * KIB_PER_GIB] * count, "memory": [2 * KIB_PER_GIB + n for n in range(count)],
            "nrVirtCpu": [2] * count})])
    return console


def sample(console: Console) -> None:
    """One statistics batch of the first agent: what a console applies between two scrapes of a real fleet."""
    view = min(console.agents, key=lambda v: v.name)
    domains = console.domains.of_agent(view.name)
    console.updater.apply_stats(view.name, [StatsBatch(
        domains[0].schema.schema_id, view.epoch, console.updater.samples_applied + 300,
        tuple(d.uuid for d in domains), {"cpuTime": [d.cpuTime + 10**9 for d in domains]})])


def cpu_seconds(scrape: Callable[[], Any], repeat: int, before: Callable[[], None] = lambda: None
                ) -> Tuple[float, Any]:
    """The least CPU time of ``repeat`` calls (garbage collection included, as a server pays it; ``before``
    each, untimed), and the last call's result."""
    best, result = math.inf, None
    for _ in range(repeat):
        result = None
        before()
        gc.collect()
        start = time.process_time()
        result = scrape()
        best = min(best, time.process_time() - start)
    return best, result


def samples(text: str) -> List[Tuple[str, Tuple[Tuple[str, str], ...], str]]:
    """The samples of an exposition as the parser reads them (labels sorted, values as floats)."""
    return [(s.name, tuple(sorted(s.labels.items())), repr(float(s.value)))
            for family in text_string_to_metric_families(text) for s in family.samples]


@dataclass
class Result:
    domains: int
    agents: int
    repeat: int
    seconds: Dict[str, float] = field(default_factory=dict)  # what was timed -> CPU seconds per scrape
    bytes: Dict[str, int] = field(default_factory=dict)
    compared: Optional[bool] = None
    problems: List[str] = field(default_factory=list)

    def report(self) -> str:
        base = self.seconds.get("baseline text")
        rows = [(name, f"{s:.3f}", f"{ratio(base, s):.1f}x" if base else "") for name, s in self.seconds.items()]
        sizes = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in self.bytes.items())
        checked = {None: f"not compared (over {COMPARED_UP_TO:,} domains)", True: "same samples",
                   False: "DIFFERENT samples"}[self.compared]
        return (f"virtq exporter scrape: {self.domains:,} domains on {self.agents:,} agents "
                f"({5 * self.domains:,} domain series), CPU seconds per scrape, best of {self.repeat}\n"
                + table(rows, ["scrape", "CPU s", "baseline text / this"])
                + f"\nbody: {sizes}; the two writers: {checked}"
                + "".join(f"\nPROBLEM: {p}" for p in self.problems))

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def run(domains: int, repeat: int = 3, openmetrics: bool = False) -> Result:
    console = fill(domains)
    result = Result(domains, math.ceil(domains / DOMAINS_PER_AGENT), repeat)
    try:
        fleet = FleetText(console)
        fleet.parts(False)
        result.seconds["exporter text, statistics applied since"], _ = cpu_seconds(
            lambda: fleet.parts(False), repeat, lambda: sample(console))  # first: nothing changes after it
        result.seconds["exporter text"], parts = cpu_seconds(lambda: FleetText(console).parts(False), repeat)
        body = b"".join(parts).decode()
        result.seconds["exporter text, nothing applied since"], _ = cpu_seconds(lambda: fleet.parts(False), repeat)
        result.seconds[f"exporter text gzipped (level {GZIP_LEVEL})"], zipped = cpu_seconds(
            lambda: FleetText(console).parts(True), repeat)
        result.seconds["exporter gzipped, nothing applied since"], _ = cpu_seconds(lambda: fleet.parts(True), repeat)
        result.seconds["baseline text"], baseline = cpu_seconds(lambda: baseline_text(console), repeat)
        result.seconds["baseline text gzipped (level 9)"], baseline_zipped = cpu_seconds(
            lambda: gzip.compress(baseline_text(console)), repeat)
        if openmetrics:
            result.seconds["baseline OpenMetrics"], _ = cpu_seconds(lambda: baseline_openmetrics(console), repeat)
        result.bytes = {"text": len(body.encode()), "gzipped": sum(map(len, zipped)),
                        "baseline text": len(baseline), "baseline gzipped": len(baseline_zipped)}
        if gzip.decompress(b"".join(zipped)).decode() != body:
            result.problems.append("the gzipped body is not the text")
        if domains <= COMPARED_UP_TO:
            result.compared = samples(body) == samples(baseline.decode())
            if not result.compared:
                result.problems.append("the exporter's text and prometheus_client's hold different samples")
    finally:
        console.close()
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=40_000, help="domains in the fleet (default 40,000)")
    parser.add_argument("--repeat", type=int, default=3, help="scrapes timed per kind, best kept (default 3)")
    parser.add_argument("--openmetrics", action="store_true",
                        help="also time prometheus_client's OpenMetrics formatter (the slowest)")
    return bench_main(parser, argv, lambda args: run(args.domains, args.repeat, args.openmetrics))


if __name__ == "__main__":
    raise SystemExit(main())
