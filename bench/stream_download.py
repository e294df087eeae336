"""Volume download throughput through virtq, direct and via RabbitMQ, against ``virsh vol-download`` on the same
volume in the same run, and screenshot latency (docs/PROTOCOL.md §14).

Needs a real libvirtd with the QEMU driver: the running one (qemu:///system), or as root one the realhv tier's
harness starts (tests/realhv/harness.py) and stops afterwards. It makes a transient directory pool with one raw
volume of ``--mib`` MiB of incompressible data, starts a ``virtq-agent`` process per route of ``--via``
(bench/stream_routes.py: ``direct``, listening on loopback; ``rabbitmq``, a client of a private RabbitMQ node, as
is its console), then alternates, ``--rounds`` times:

* ``virsh -c URI vol-download --pool P VOL FILE`` (libvirt's own client, writing a local file);
* ``vol.download(file)`` through each route's console (the agent reads libvirt's stream, the console writes the
  file);

and compares every file's sha256 with the volume's. The rate is the median over the rounds (MiB/s), each route's
also as a ratio of virsh's; the CPU seconds every process involved spent per download (median) say where the time
goes. Then it boots a tiny guest with a VGA device and takes ``--shots`` screenshots through virtq (the first
route) and, for reference, straight through libvirt-python (p50/p95 ms). Results go to
bench/results/stream-download.json.

    .venv/bin/python -m bench.stream_download --mib 256 --rounds 3 --shots 20  # --via direct: no broker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import libvirt

from bench.common import percentile
from bench.stream_routes import VIAS, Route, agent_logs, cpu_seconds, open_route, pids_named, spawn_broker
from virtq.console import Console
from virtq.testing import wait_until

from tests.realhv.harness import (GUEST_PREFIX, LibvirtDaemons, destroy_guests, guest_name, guest_xml, sha256_file,
                                  write_disk)

MiB = 1024 * 1024
RESULTS = Path(__file__).parent / "results" / "stream-download.json"
KEYS = {"direct": "virtq", "rabbitmq": "rabbitmq"}
"""A route's name in the results (direct's is ``virtq``, as before there were two)."""
NAMES = {"direct": "virtq", "rabbitmq": "virtq via RabbitMQ"}


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measured(run: Callable[[], Any], processes: Dict[str, List[int]]) -> Tuple[float, Dict[str, float]]:
    """Wall seconds of ``run`` and the CPU seconds each named group of processes spent meanwhile."""
    before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in processes.items()}
    seconds = timed(run)
    return seconds, {name: sum(cpu_seconds(pid) for pid in pids) - before[name] for name, pids in processes.items()}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def downloads(conn: libvirt.virConnect, routes: List[Route], uri: str, workdir: Path, mib: int,
              rounds: int) -> Dict[str, Any]:
    pool_dir = workdir / "pool"
    pool_dir.mkdir(mode=0o755)
    name = guest_name(f"pool-{uuid.uuid4().hex[:6]}")
    volume = pool_dir / "bench.img"
    block = os.urandom(MiB)
    with open(volume, "wb") as f:
        for i in range(mib):
            f.write(i.to_bytes(8, "big") + block[8:])
    expected = sha256_file(volume)
    pool = conn.storagePoolCreateXML(f"<pool type='dir'><name>{name}</name><target><path>{pool_dir}</path>"
                                     "</target></pool>", 0)
    libvirtd = pids_named("libvirtd")
    daemon = {"libvirtd": libvirtd} if libvirtd else {}  # (the harness's libvirtd, or the running one)
    seconds: Dict[str, List[float]] = {"virsh": [], **{KEYS[r.via]: [] for r in routes}}
    cpu: Dict[str, List[Dict[str, float]]] = {key: [] for key in seconds}
    try:
        for route in routes:
            if not wait_until(lambda: any(v.name == "bench.img" for v in route.console.volumes), 30):
                raise SystemExit(f"the agent ({route.via}) did not report the volume")
        virsh_file = workdir / "virsh.img"
        for _ in range(rounds):
            spent_before = children_cpu()
            took, spent = measured(lambda: subprocess.run(["virsh", "-q", "-c", uri, "vol-download", "--pool", name,
                                                           "bench.img", str(virsh_file)], check=True),
                                   daemon)
            seconds["virsh"].append(took)
            cpu["virsh"].append({**spent, "virsh": children_cpu() - spent_before})
            files = [virsh_file]
            for route in routes:
                vol, file = route.console.volumes.get(str(volume)), workdir / f"{route.via}.img"

                def through_virtq() -> None:
                    with open(file, "wb") as f:
                        vol.download(f)
                took, spent = measured(through_virtq, {**daemon, "console": [os.getpid()],
                                                       **{k: [pid] for k, pid in route.processes.items()}})
                seconds[KEYS[route.via]].append(took)
                cpu[KEYS[route.via]].append(spent)
                files.append(file)
            if any(sha256_file(file) != expected for file in files):
                raise SystemExit("a download does not match the volume")
    finally:
        pool.destroy()
    rates = {key: mib / statistics.median(values) for key, values in seconds.items()}
    result: Dict[str, Any] = {"mib": mib, "rounds": rounds}
    for key, values in seconds.items():
        result[f"{key}_seconds"] = values
        result[f"{key}_mib_s"] = round(rates[key], 1)
        if key != "virsh":
            result[f"{key}_vs_virsh"] = round(rates[key] / rates["virsh"], 3)
    result["cpu_seconds"] = {key: {name: round(statistics.median(r[name] for r in runs), 2) for name in runs[0]}
                             for key, runs in cpu.items()}
    return result


def screenshots(conn: libvirt.virConnect, console: Console, uri: str, workdir: Path, shots: int) -> Dict[str, Any]:
    name = guest_name(f"shot-{uuid.uuid4().hex[:6]}")
    disk = write_disk(workdir / "guest.img")
    os.chmod(disk, 0o666)
    xml = guest_xml(name, disk, workdir / "serial.log").replace(
        "</devices>", "  <video><model type='vga'/></video>\n  </devices>")
    dom = conn.createXML(xml, 0)
    try:
        if not wait_until(lambda: any(d.name == name for d in console.domains), 30):
            raise SystemExit("the agent did not report the guest")
        remote = console.domains.get(name)
        remote.screenshot()  # warm up (QEMU's first screendump)
        virtq_ms = [1000 * timed(remote.screenshot) for _ in range(shots)]

        def direct() -> None:
            stream = conn.newStream(0)
            dom.screenshot(stream, 0, 0)
            while stream.recv(MiB):
                pass
            stream.finish()
        direct_ms = [1000 * timed(direct) for _ in range(shots)]
        mime, image = remote.screenshot()
    finally:
        destroy_guests(uri, names=[name])
    return {"shots": shots, "mime": mime, "bytes": len(image),
            "virtq_ms_p50": round(percentile(virtq_ms, 50), 2), "virtq_ms_p95": round(percentile(virtq_ms, 95), 2),
            "libvirt_ms_p50": round(percentile(direct_ms, 50), 2),
            "libvirt_ms_p95": round(percentile(direct_ms, 95), 2)}


def vias(text: str) -> List[str]:
    chosen = [via.strip() for via in text.split(",") if via.strip()]
    if not chosen or any(via not in VIAS for via in chosen):
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(VIAS)}")
    return list(dict.fromkeys(chosen))


def report(result: Dict[str, Any], output: Path) -> str:
    d, s = result["downloads"], result["screenshots"]
    routes = ", ".join(f"{NAMES[via]} {d[f'{KEYS[via]}_mib_s']} MiB/s "
                       f"({100 * d[f'{KEYS[via]}_vs_virsh']:.0f}% of virsh)" for via in result["via"])
    lines = [f"volume download, {d['mib']} MiB, median of {d['rounds']}: virsh {d['virsh_mib_s']} MiB/s, {routes}"]
    for key, spent in d["cpu_seconds"].items():
        lines.append(f"  CPU s per download, {key}: " + ", ".join(f"{name} {s:.2f}" for name, s in spent.items()))
    lines.append(f"screenshot ({s['mime']}, {s['bytes']} bytes), {s['shots']} each: virtq p50 {s['virtq_ms_p50']} ms "
                 f"p95 {s['virtq_ms_p95']} ms; libvirt-python p50 {s['libvirt_ms_p50']} ms p95 "
                 f"{s['libvirt_ms_p95']} ms")
    lines.append(f"({result['seconds']} s; {output})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="Volume size (MiB).")
    parser.add_argument("--rounds", type=int, default=3, help="Downloads per tool (alternating).")
    parser.add_argument("--shots", type=int, default=20, help="Screenshots per path.")
    parser.add_argument("--via", type=vias, default=list(VIAS),
                        help="The virtq routes to download through, comma-separated: direct, rabbitmq (a private "
                             "RabbitMQ node; default both). Screenshots take the first.")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=GUEST_PREFIX))
    workdir.chmod(0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        broker = spawn_broker(stack) if "rabbitmq" in args.via else None
        daemons = LibvirtDaemons(workdir / "libvirtd")
        daemons.start()
        stack.callback(daemons.stop)
        conn = libvirt.open(daemons.uri)
        stack.callback(conn.close)
        try:
            routes = [open_route(via, daemons.uri, workdir, stack, broker) for via in args.via]
            result: Dict[str, Any] = {
                "via": args.via, "downloads": downloads(conn, routes, daemons.uri, workdir, args.mib, args.rounds),
                "screenshots": screenshots(conn, routes[0].console, daemons.uri, workdir, args.shots)
                | {"via": args.via[0]}}
        except BaseException:
            print(agent_logs(workdir), file=sys.stderr)
            raise
    result["seconds"] = round(time.monotonic() - started, 1)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result, args.output))


if __name__ == "__main__":
    main()
