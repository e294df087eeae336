"""Volume download throughput through virtq (direct mode) against ``virsh vol-download`` on the same volume in the
same run, and screenshot latency (docs/PROTOCOL.md §14).

Needs a real libvirtd with the QEMU driver: the running one (qemu:///system), or as root one the realhv tier's
harness starts (tests/realhv/harness.py) and stops afterwards. It makes a transient directory pool with one raw
volume of ``--mib`` MiB of incompressible data, starts a ``virtq-agent`` process on loopback (anonymous
consoles may do everything: a benchmark's agent only), then alternates, ``--rounds`` times:

* ``virsh -c URI vol-download --pool P VOL FILE`` (libvirt's own client, writing a local file);
* ``vol.download(file)`` through a virtq console (the agent reads libvirt's stream, the console writes the file);

and compares the files' sha256 with the volume's. The rate is the median over the rounds (MiB/s). Then it boots
a tiny guest with a VGA device and takes ``--shots`` screenshots through virtq and, for reference, straight
through libvirt-python (p50/p95 ms). Results go to bench/results/stream-download.json.

    .venv/bin/python -m bench.stream_download --mib 256 --rounds 3 --shots 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, List

import libvirt

from virtq.console import Console
from virtq.testing import free_port, port_open, wait_until

from tests.realhv.harness import (GUEST_PREFIX, LibvirtDaemons, destroy_guests, guest_name, guest_xml, sha256_file,
                                  write_disk)

MiB = 1024 * 1024
RESULTS = Path(__file__).parent / "results" / "stream-download.json"
AGENT = Path(sys.executable).parent / "virtq-agent"


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def start_agent(uri: str, workdir: Path, stack: ExitStack) -> str:
    policy = workdir / "policy.ini"
    policy.write_text("[principal anonymous]\nroles = admin\n")
    port = free_port()
    log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed by the stack
    stack.callback(log.close)
    proc = subprocess.Popen([str(AGENT), "--libvirt", uri, "--listen", f"amqp://127.0.0.1:{port}", "--policy",
                             str(policy), "--instance", f"bench-{uuid.uuid4().hex[:8]}", "--log-level", "warning"],
                            stdout=log, stderr=log)
    def stop() -> None:
        proc.terminate()
        proc.wait(10)
    stack.callback(stop)
    if not wait_until(lambda: proc.poll() is not None or port_open(port, timeout=0.2), 30) or proc.poll() is not None:
        raise SystemExit(f"virtq-agent did not start: {(workdir / 'agent.log').read_text()}")
    return f"amqp://127.0.0.1:{port}"


def downloads(conn: libvirt.virConnect, console: Console, uri: str, workdir: Path, mib: int,
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
    try:
        if not wait_until(lambda: any(v.name == "bench.img" for v in console.volumes), 30):
            raise SystemExit("the agent did not report the volume")
        vol = console.volumes.get(str(volume))
        virsh_file, virtq_file = workdir / "virsh.img", workdir / "virtq.img"
        virsh_s: List[float] = []
        virtq_s: List[float] = []
        for _ in range(rounds):
            virsh_s.append(timed(lambda: subprocess.run(["virsh", "-q", "-c", uri, "vol-download", "--pool", name,
                                                         "bench.img", str(virsh_file)], check=True)))

            def through_virtq() -> None:
                with open(virtq_file, "wb") as f:
                    vol.download(f)
            virtq_s.append(timed(through_virtq))
            if sha256_file(virsh_file) != expected or sha256_file(virtq_file) != expected:
                raise SystemExit("a download does not match the volume")
    finally:
        pool.destroy()
    virsh_rate, virtq_rate = mib / statistics.median(virsh_s), mib / statistics.median(virtq_s)
    return {"mib": mib, "rounds": rounds, "virsh_seconds": virsh_s, "virtq_seconds": virtq_s,
            "virsh_mib_s": round(virsh_rate, 1), "virtq_mib_s": round(virtq_rate, 1),
            "virtq_vs_virsh": round(virtq_rate / virsh_rate, 3)}


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
            "virtq_ms_p50": round(percentile(virtq_ms, 0.5), 2), "virtq_ms_p95": round(percentile(virtq_ms, 0.95), 2),
            "libvirt_ms_p50": round(percentile(direct_ms, 0.5), 2),
            "libvirt_ms_p95": round(percentile(direct_ms, 0.95), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="Volume size (MiB).")
    parser.add_argument("--rounds", type=int, default=3, help="Downloads per tool (alternating).")
    parser.add_argument("--shots", type=int, default=20, help="Screenshots per path.")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=GUEST_PREFIX))
    workdir.chmod(0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        daemons = LibvirtDaemons(workdir / "libvirtd")
        daemons.start()
        stack.callback(daemons.stop)
        conn = libvirt.open(daemons.uri)
        stack.callback(conn.close)
        url = start_agent(daemons.uri, workdir, stack)
        console = stack.enter_context(Console(url, timeout=30))
        result: Dict[str, Any] = {"downloads": downloads(conn, console, daemons.uri, workdir, args.mib, args.rounds),
                  "screenshots": screenshots(conn, console, daemons.uri, workdir, args.shots)}
    result["seconds"] = round(time.monotonic() - started, 1)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    d, s = result["downloads"], result["screenshots"]
    print(f"volume download, {d['mib']} MiB, median of {d['rounds']}: virsh {d['virsh_mib_s']} MiB/s, "
          f"virtq {d['virtq_mib_s']} MiB/s ({100 * d['virtq_vs_virsh']:.0f}% of virsh)")
    print(f"screenshot ({s['mime']}, {s['bytes']} bytes), {s['shots']} each: virtq p50 {s['virtq_ms_p50']} ms "
          f"p95 {s['virtq_ms_p95']} ms; libvirt-python p50 {s['libvirt_ms_p50']} ms p95 {s['libvirt_ms_p95']} ms")
    print(f"({result['seconds']} s; {args.output})")


if __name__ == "__main__":
    main()
