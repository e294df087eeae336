"""``bench/fleet``: virtq-fleet runs for docs/BENCHMARKS.md.

Every option of ``virtq-fleet`` (``python -m virtq.fleet --help``) passes through; besides:

- ``--via rabbitmq`` without ``--broker`` starts a private RabbitMQ node for the run (the broker test
  tier's harness, tests/broker/harness.py: loopback only, its own directory, stopped at the end);
- ``--save`` also writes the result to ``bench/results/fleet-<via>-<agents>x<domains>-i<interval>.json``;
- ``--plot`` (alone) draws ``docs/fleet.png`` from the saved results (needs matplotlib: ``pip install -e .[bench]``).

    bench/fleet --agents 250 --domains 40 --duration 60 --interval 10 --save
    bench/fleet --agents 1000 --domains 40 --via rabbitmq --interval 15 --poll-duration 0 --save
    bench/fleet --plot
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from virtq.fleet import cli

RESULTS = Path(__file__).resolve().parent / "results"
PLOT = Path(__file__).resolve().parent.parent / "docs" / "fleet.png"


def main(argv: Optional[List[str]] = None) -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--save", action="store_true")
    own.add_argument("--plot", action="store_true")
    mine, rest = own.parse_known_args(argv)
    if mine.plot:
        return plot()
    args = cli.parser().parse_args(rest)
    node = session = None
    if args.via == "rabbitmq" and not args.broker:
        from tests.broker.harness import RabbitSession

        session = RabbitSession()
        node = session.node()
        print(f"bench/fleet: starting a private RabbitMQ node ({node.name}, port {node.port})", flush=True)
        node.start()
        rest += ["--broker", node.url]
    out = None
    if mine.save:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"fleet-{args.via}-{args.agents}x{args.domains}-i{args.interval:g}.json"
        rest += ["--json", str(out)]
    try:
        code = cli.main(rest)
    finally:
        if session is not None:
            session.close()
    if out is not None and out.exists():
        print(f"bench/fleet: saved {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return code


def load() -> List[Dict[str, Any]]:
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("fleet-*.json"))]
    return sorted(runs, key=lambda r: (r["options"]["via"], r["domains"]))


def plot() -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/fleet --plot needs matplotlib: pip install -e .[bench]", file=sys.stderr)
        return 2
    runs = load()
    if not runs:
        print(f"no saved runs in {RESULTS}", file=sys.stderr)
        return 1
    fig, (lag, wire) = plt.subplots(1, 2, figsize=(12, 4.8))
    for via, marker in (("direct", "o"), ("rabbitmq", "s")):
        mine = [r for r in runs if r["options"]["via"] == via]
        if not mine:
            continue
        vms = [r["domains"] for r in mine]
        push = [r["numbers"]["push"] for r in mine]
        lag.plot(vms, [p["lag_sub_p99"] / 1000 for p in push], marker=marker, label=f"push p99, {via}")
        lag.plot(vms, [p["lag_sub_max"] / 1000 for p in push], marker=marker, linestyle=":",
                 label=f"push max, {via}")
        wire.plot(vms, [p["bytes_per_interval"] for p in push], marker=marker, label=f"push, {via}")
        polled = [(r["domains"], r["numbers"]["poll"]) for r in mine if r["numbers"].get("poll")]
        if polled:
            lag.plot([v for v, _ in polled], [p["refresh_max"] for _, p in polled], marker=marker, linestyle="--",
                     label=f"poll: a VM's refresh period (max), {via}")
            wire.plot([v for v, _ in polled], [p["bytes_per_cycle"] for _, p in polled], marker=marker,
                      linestyle="--", label=f"poll (per cycle), {via}")
    intervals = sorted({r["options"]["interval"] for r in runs})
    for interval in intervals:
        lag.axhline(interval, color="grey", linewidth=0.8, linestyle="-.")
        lag.annotate(f"interval {interval:g} s", (lag.get_xlim()[0], interval), fontsize=8, color="grey",
                     va="bottom")
    lag.set(xscale="log", yscale="log", xlabel="VMs in the fleet", ylabel="seconds",
            title="Console lag: agent's sample → subscriber")
    wire.set(xscale="log", yscale="log", xlabel="VMs in the fleet", ylabel="bytes per interval",
             title="Bytes on the wire per interval (console's TCP, both ways)")
    for ax in (lag, wire):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"wrote {PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
