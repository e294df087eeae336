"""``bench/fleet``: virtq-fleet runs for docs/BENCHMARKS.md.

Every option of ``virtq-fleet`` (``python -m bench.fleetsim --help``) passes through; besides:

- ``--via rabbitmq`` without ``--broker`` starts a private RabbitMQ node for the run (virtq.testing.rabbitmq,
  the broker test tier's too: loopback only, its own directory, stopped at the end);
- ``--save`` also writes the result to ``bench/results/fleet-<via>-<agents>x<domains>-i<interval>.json``;
- ``--plot`` (alone) draws ``docs/fleet.png`` from the saved results (needs matplotlib: ``pip install -e .[bench]``);
- ``--table`` (alone) prints the saved results as the Markdown tables of docs/BENCHMARKS.md.

    bench/fleet --agents 250 --domains 40 --duration 60 --interval 10 --save
    bench/fleet --agents 1000 --domains 40 --via rabbitmq --interval 15 --poll-duration 0 --save
    bench/fleet --plot
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.fleetsim import cli
from bench.fleetsim.tables import table
from virtq.testing.rabbitmq import RabbitNode, RabbitSession

RESULTS = Path(__file__).resolve().parent / "results"
PLOT = Path(__file__).resolve().parent.parent / "docs" / "fleet.png"


def main(argv: Optional[List[str]] = None) -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--save", action="store_true")
    own.add_argument("--plot", action="store_true")
    own.add_argument("--table", action="store_true")
    mine, rest = own.parse_known_args(argv)
    if mine.plot:
        return plot()
    if mine.table:
        print(tables(load()))
        return 0
    args = cli.parser().parse_args(rest)
    node = session = None
    if args.via == "rabbitmq" and not args.broker:
        session = RabbitSession()
        node = RabbitNode(session)
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


def tables(runs: List[Dict[str, Any]]) -> str:
    """Push and poll side by side, one pair of rows per saved run."""
    rows = []
    for r in sorted(runs, key=lambda r: (r["domains"], r["options"]["via"])):
        o, push, poll = r["options"], r["numbers"]["push"], r["numbers"].get("poll")
        run = f"{r['agents']:,} × {o['domains']} = {r['domains']:,} VMs, {o['via']}, {o['interval']:g} s"
        rows.append((run, "push", push["bytes_per_interval"], push["bytes_per_vm"], push["stats_bytes_per_running_vm"],
                     push["cpu_per_interval"], push["cpu_pct"], push["rss_mb"], push["records_per_s"],
                     f"{push['lag_sub_p50']:,.0f} / {push['lag_sub_p99']:,.0f} / {push['lag_sub_max']:,.0f} ms",
                     push["xml_fetches_per_interval"], push["agent_cpu_ms_per_interval_per_100_vms"],
                     push["libvirt_calls_per_interval_per_agent"]))
        if poll:
            rows.append(("", "poll", poll["bytes_per_cycle"], poll["bytes_per_vm"], math.nan, poll["cpu_per_cycle"],
                         poll["cpu_pct"], poll["rss_mb"], poll["records_per_s"],
                         f"cycle {poll['cycle_p50']:.1f} s; refresh {poll['refresh_p50']:.1f} / "
                         f"{poll['refresh_max']:.1f} s", poll["xml_fetches_per_cycle"],
                         poll["agent_cpu_ms_per_interval_per_100_vms"], poll["libvirt_calls_per_interval_per_agent"]))
    header = ("fleet, via, interval", "", "B on the wire / interval (poll: / cycle)", "B / VM",
              "stats B / running VM", "console CPU s / interval (poll: / cycle)", "console CPU %", "RSS MB",
              "records/s", "lag sample→subscriber p50 / p99 / max (poll: cycle; refresh p50 / max)",
              "XML fetches / interval (poll: / cycle)", "agent CPU ms / interval / 100 VMs",
              "libvirt calls / interval / agent")
    ratios = [(f"{r['agents']:,} × {r['options']['domains']}, {r['options']['via']}", r["numbers"]["ratios"]["bytes"],
               r["numbers"]["ratios"]["console_cpu"], r["numbers"]["ratios"]["console_cpu_per_time"],
               r["numbers"]["ratios"]["libvirt_calls"])
              for r in sorted(runs, key=lambda r: r["domains"]) if r["numbers"].get("ratios")]
    return (table(rows, header) + "\n\n" +
            table(ratios, ("poll ÷ push", "bytes (cycle ÷ interval)", "console CPU (cycle ÷ interval)",
                           "console CPU (per second)", "libvirt calls")))


def plot() -> int:
    try:  # an optional extra ([bench]), absent where the checks run: imported by name, used untyped
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        print("bench/fleet --plot needs matplotlib: pip install -e .[bench]", file=sys.stderr)
        return 2
    runs = load()
    if not runs:
        print(f"no saved runs in {RESULTS}", file=sys.stderr)
        return 1
    fig, (lag, wire) = plt.subplots(1, 2, figsize=(13, 5))
    for via, marker in (("direct", "o"), ("rabbitmq", "s")):
        mine = [r for r in runs if r["options"]["via"] == via]
        if not mine:
            continue
        # lag as a share of the interval, against the load: VMs scaled to a 10 s interval (a fleet sampled
        # every 2 s loads the console as one five times its size sampled every 10 s)
        by_load = sorted(mine, key=lambda r: r["domains"] * 10 / r["options"]["interval"])
        x = [r["domains"] * 10 / r["options"]["interval"] for r in by_load]
        push = [r["numbers"]["push"] for r in by_load]
        interval = [r["options"]["interval"] for r in by_load]
        lag.plot(x, [p["lag_sub_p99"] / 1000 / i for p, i in zip(push, interval)], marker=marker, color="C0",
                 label=f"push, p99, {via}")
        lag.plot(x, [p["lag_sub_max"] / 1000 / i for p, i in zip(push, interval)], marker=marker, linestyle=":",
                 color="C2", label=f"push, max, {via}")
        polled = [(xx, r["numbers"]["poll"], r["options"]["interval"]) for xx, r in zip(x, by_load)
                  if r["numbers"].get("poll")]
        if polled:
            lag.plot([v for v, _, _ in polled], [p["refresh_max"] / i for _, p, i in polled], marker=marker,
                     linestyle="--", color="C1", label=f"poll: a VM's refresh period, max, {via}")
        sized = sorted([r for r in mine if r["options"]["interval"] >= 10], key=lambda r: r["domains"])
        vms = [r["domains"] for r in sized]
        wire.plot(vms, [r["numbers"]["push"]["bytes_per_interval"] for r in sized], marker=marker,
                  color="C0", label=f"push, per interval, {via}")
        polled_sized = [(r["domains"], r["numbers"]["poll"]) for r in sized if r["numbers"].get("poll")]
        if polled_sized:
            wire.plot([v for v, _ in polled_sized], [p["bytes_per_cycle"] for _, p in polled_sized], marker=marker,
                      linestyle="--", color="C1", label=f"poll, per cycle, {via}")
    lag.axhline(1.0, color="grey", linewidth=0.8, linestyle="-.")
    lag.annotate("one interval: saturated", (lag.get_xlim()[0], 1.0), fontsize=8, color="grey", va="bottom")
    lag.set(xscale="log", yscale="log", xlabel="VMs × 10 s ÷ interval (the statistics load of a fleet at 10 s)",
            ylabel="lag ÷ interval", title="Console lag (agent's sample → subscriber), as a share of the interval")
    wire.set(xscale="log", yscale="log", xlabel="VMs in the fleet (interval 10–15 s)", ylabel="bytes",
             title="Bytes on the console's connections per interval (push) or cycle (poll)")
    for ax in (lag, wire):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"wrote {PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
