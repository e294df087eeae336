"""Live migration through virtq (``console.migrate``) against ``virsh migrate --p2p`` on the same pair of libvirtds
in the same run: wall time and the guest's downtime.

Needs root: it starts two private libvirtds in mount namespaces (tests/realhv/two_hosts.py, the recipe of
../shared/notes/two-libvirtds.md), an agent on each in this process, one console, and a 64 MiB TCG guest
without disk. Then, ``--rounds`` times, it moves the guest A→B and back with ``virsh`` (libvirt's own client:
``virsh -c A migrate --live --p2p --persistent --undefinesource DOM B tcp://127.0.0.1``; downtime from
``getJobStats(COMPLETED)`` on the destination afterwards), and A→B and back with ``console.migrate`` (wall time
until ``job.wait()`` returns: the call, both agents' pushes, the downtime read). Medians go to
bench/results/migration.json.

    .venv/bin/python -m bench.migration --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import libvirt

from virtq.agent.policy import Policy
from virtq.console import Console
from virtq.schema import default_schema
from virtq.testing import wait_until
from virtq.testing.agents import agent_url, start_local_agent

from tests.realhv.two_hosts import Host, TwoHosts, migratable_guest_xml

RESULTS = Path(__file__).parent / "results" / "migration.json"
EVERYTHING = "[principal anonymous]\nroles = admin\n"
"""A benchmark's agents only: anonymous consoles on loopback may do everything."""


def completed_downtime(host: Host, uuid: str) -> int:
    conn = libvirt.open(host.uri)
    try:
        return int(conn.lookupByUUIDString(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)["downtime"])
    finally:
        conn.close()


def by_virsh(name: str, uuid: str, source: Host, destination: Host) -> Tuple[float, int]:
    started = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", source.uri, "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
                    name, destination.uri, "tcp://127.0.0.1"], check=True, capture_output=True)
    return time.perf_counter() - started, completed_downtime(destination, uuid)


def by_virtq(console: Console, uuid: str, agent: str) -> Tuple[float, int]:
    wait_until(lambda: len([d for d in console.domains if d.uuid == uuid]) == 1, 20)  # settled after the last move
    started = time.perf_counter()
    job = console.migrate(console.domains.get(uuid), to=agent)
    job.wait(120)
    return time.perf_counter() - started, int(job.downtime or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("virsh") is None:
        raise SystemExit("virsh is not installed (libvirt-clients)")
    root = Path(tempfile.mkdtemp(prefix="virtq-bench-migration-"))
    hosts = TwoHosts(root)
    hosts.start()
    agents = []
    try:
        for host in (hosts.a, hosts.b):
            agents.append(start_local_agent(host.uri, state_dir=root / f"state-{host.name}", heartbeat=1.0,
                                            policy=Policy.parse(EVERYTHING, default_schema()),
                                            migration_address="127.0.0.1", stuck_after=60.0))
        conn = libvirt.open(hosts.a.uri)
        dom = conn.defineXML(migratable_guest_xml("bench"))
        dom.create()
        name, uuid = dom.name(), dom.UUIDString()
        conn.close()
        samples: Dict[str, List[Tuple[float, int]]] = {"virsh": [], "virtq": []}
        with Console([agent_url(a) for a in agents], timeout=20) as console:
            for _ in range(args.rounds):
                samples["virsh"] += [by_virsh(name, uuid, hosts.a, hosts.b), by_virsh(name, uuid, hosts.b, hosts.a)]
                samples["virtq"] += [by_virtq(console, uuid, agents[1].name), by_virtq(console, uuid, agents[0].name)]
        result = {tool: {"migrations": len(runs), "wall_s_median": round(statistics.median(r[0] for r in runs), 3),
                         "downtime_ms_median": statistics.median(r[1] for r in runs)}
                  for tool, runs in samples.items()}
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        for tool, figures in result.items():
            print(f"{tool:6} {figures['migrations']} migrations: wall {figures['wall_s_median']:.3f} s, "
                  f"downtime {figures['downtime_ms_median']} ms (medians)")
    finally:
        for agent in agents:
            agent.kill()
        hosts.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
