"""``python -m bench.ingest``: the options, the two processes, the runs in order, the report."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from bench.common import bench_main
from bench.fleetsim.run import Child

from . import __doc__ as DESCRIPTION
from . import sender
from .measure import IngestConsole
from .report import Result, cells
from .traffic import ENCODINGS, FleetPlan, message_size

__all__ = ["main", "run"]

READY_TIMEOUT = 60.0


def _numbers(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _encodings(text: str) -> List[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = set(chosen) - set(ENCODINGS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown encoding(s) {', '.join(sorted(unknown))}")
    return chosen


def run(agents: int = 4, domains: int = 1000, batches: Sequence[int] = (30, 100, 1000),
        subscribers: Sequence[int] = (0, 1, 10), encodings: Sequence[str] = ENCODINGS, seconds: float = 1.5,
        max_records: int = 10**9, in_flight: int = 4000, warmup: float = 0.5, seed: int = 0) -> Result:
    if domains < max(batches):
        raise ValueError(f"--domains ({domains}) must be at least the largest batch ({max(batches)})")
    plan = FleetPlan(agents, domains)
    result = Result(agents, domains, seconds, os.getloadavg()[0])
    result.sizes = {e: [message_size(plan, b, e) for b in batches] for e in encodings}
    ctx = multiprocessing.get_context("spawn")
    applied = ctx.RawValue("q", 0)  # messages the console applied in the current run, read by the sender
    with tempfile.TemporaryDirectory(prefix="virtq-ingest-") as tmp:
        child = Child("ingest-agents", sender.main, (plan, seed, applied), str(Path(tmp) / "agents.log"))
        try:
            if not child.conn.poll(READY_TIMEOUT):
                raise RuntimeError(f"the agents' process did not start within {READY_TIMEOUT:g} s")
            ready = child.conn.recv()
            console = IngestConsole(ready["urls"], applied)
            console.start()
            try:
                loaded = len(console.console.domains)
                if loaded != agents * domains:
                    result.problems.append(f"the console loaded {loaded} domains of {agents * domains}")
                console.run(child, encodings[0], min(100, domains), 0, warmup, max_records, in_flight)
                for rows, subs, encoding in cells(batches, subscribers, encodings):
                    result.runs.append(console.run(child, encoding, rows, subs, seconds, max_records,
                                                   max(2, in_flight // rows)))
            finally:
                console.close()
        finally:
            child.send({"type": "stop"})
            child.process.join(10)
            if child.process.is_alive():
                child.process.kill()
    result.check()
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=4, help="agents pushing (default 4)")
    parser.add_argument("--domains", type=int, default=1000, help="running domains per agent (default 1000)")
    parser.add_argument("--batches", type=_numbers, default=[30, 100, 1000],
                        help="rows per message, comma-separated (default 30,100,1000)")
    parser.add_argument("--subscribers", type=_numbers, default=[0, 1, 10],
                        help="counting callback subscribers, comma-separated (default 0,1,10)")
    parser.add_argument("--encodings", type=_encodings, default=list(ENCODINGS),
                        help="new (the tree's), old (the map form, baseline) or both (default new,old)")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds of pushing per run (default 1.5)")
    parser.add_argument("--max-records", type=int, default=10**9, help="rows per run at most")
    parser.add_argument("--in-flight", type=int, default=4000,
                        help="rows sent and not yet applied at most (default 4000)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds pushed before measuring (default 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    return bench_main(parser, argv, lambda args: run(
        args.agents, args.domains, args.batches, args.subscribers, args.encodings, args.seconds, args.max_records,
        args.in_flight, args.warmup, args.seed))

if __name__ == "__main__":
    sys.exit(main())
