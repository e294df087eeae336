"""``python -m bench.ingest``: the options, the two processes, the runs in order, the report."""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from bench.common import bench_main
from bench.fleetsim.run import Child

from . import __doc__ as DESCRIPTION
from . import sender
from .measure import IngestConsole
from .paced import PacedResult, paced
from .pacing import KINDS
from .report import Result, cells
from .traffic import ENCODINGS, FleetPlan, message_size

__all__ = ["main", "run"]

READY_TIMEOUT = 60.0
T = TypeVar("T")


def _numbers(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _choices(known: Sequence[str], what: str) -> Callable[[str], List[str]]:
    """An option's parser: comma-separated names, each one of ``known``."""
    def parse(text: str) -> List[str]:
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        unknown = set(chosen) - set(known)
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(sorted(unknown))}")
        return chosen
    return parse


@contextlib.contextmanager
def _followed(plan: FleetPlan, seed: int) -> Iterator[Tuple[IngestConsole, Child]]:
    """The agents' process (:mod:`.sender`) and a started console following its agents; both ended after."""
    applied = multiprocessing.get_context("spawn").RawValue("q", 0)  # messages applied in a run, the sender reads
    with tempfile.TemporaryDirectory(prefix="virtq-ingest-") as tmp:
        child = Child("ingest-agents", sender.main, (plan, seed, applied), str(Path(tmp) / "agents.log"))
        try:
            if not child.conn.poll(READY_TIMEOUT):
                raise RuntimeError(f"the agents' process did not start within {READY_TIMEOUT:g} s")
            console = IngestConsole(child.conn.recv()["urls"], applied)
            console.start()
            try:
                yield console, child
            finally:
                console.close()
        finally:
            child.send({"type": "stop"})
            child.process.join(10)
            if child.process.is_alive():
                child.process.kill()


def run(agents: int = 4, domains: int = 1000, batches: Sequence[int] = (30, 100, 1000),
        subscribers: Sequence[int] = (0, 1, 10), encodings: Sequence[str] = ENCODINGS, seconds: float = 1.5,
        max_records: int = 10**9, in_flight: int = 4000, warmup: float = 0.5, seed: int = 0) -> Result:
    if domains < max(batches):
        raise ValueError(f"--domains ({domains}) must be at least the largest batch ({max(batches)})")
    plan = FleetPlan(agents, domains)
    result = Result(agents, domains, seconds, os.getloadavg()[0])
    result.sizes = {e: [message_size(plan, b, e) for b in batches] for e in encodings}
    with _followed(plan, seed) as (console, child):
        loaded = len(console.console.domains)
        if loaded != agents * domains:
            result.problems.append(f"the console loaded {loaded} domains of {agents * domains}")
        console.run(child, encodings[0], min(100, domains), 0, warmup, max_records, in_flight)
        for rows, subs, encoding in cells(batches, subscribers, encodings):
            result.runs.append(console.run(child, encoding, rows, subs, seconds, max_records,
                                           max(2, in_flight // rows)))
    result.check()
    return result


def run_paced(agents: int = 10, domains: int = 40, rate: float = 200.0, kinds: Sequence[str] = KINDS,
              rows: int = 30, subscribers: int = 1, seconds: float = 5.0, seed: int = 0) -> PacedResult:
    """Paced runs (bench/ingest/paced.py): ``rate`` messages per second of each kind, one at a time."""
    result = PacedResult(agents, domains, min(rows, domains), subscribers, seconds, os.getloadavg()[0])
    with _followed(FleetPlan(agents, domains), seed) as (console, child):
        paced(console, child, result, kinds, rate)
    result.check()
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, help="agents pushing (default 4; paced: 10)")
    parser.add_argument("--domains", type=int, help="running domains per agent (default 1000; paced: 40)")
    parser.add_argument("--batches", type=_numbers, default=[30, 100, 1000],
                        help="rows per message, comma-separated (default 30,100,1000)")
    parser.add_argument("--subscribers", type=_numbers,
                        help="counting callback subscribers, comma-separated (default 0,1,10; paced: the first, "
                             "default 1)")
    parser.add_argument("--encodings", type=_choices(ENCODINGS, "encoding(s)"), default=list(ENCODINGS),
                        help="new (the tree's), old (the map form, baseline) or both (default new,old)")
    parser.add_argument("--seconds", type=float, help="seconds of pushing per run (default 1.5; paced: 5)")
    parser.add_argument("--max-records", type=int, default=10**9, help="rows per run at most")
    parser.add_argument("--in-flight", type=int, default=4000,
                        help="rows sent and not yet applied at most (default 4000)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds pushed before measuring (default 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    paced_options = parser.add_argument_group("paced runs (a fleet's messages one at a time, not a flood)")
    paced_options.add_argument("--rate", type=float, default=0.0,
                               help="messages per second, spread evenly: paced runs instead of the flood "
                                    "(default 0: off)")
    paced_options.add_argument("--kinds", type=_choices(KINDS, "kind(s)"), default=list(KINDS),
                               help=f"what paced runs send, comma-separated (default {','.join(KINDS)})")
    paced_options.add_argument("--rows", type=int, default=30, help="rows per statistics message (default 30)")
    return bench_main(parser, argv, _run)


def _run(args: argparse.Namespace) -> Union[Result, PacedResult]:
    def given(value: Optional[T], default: T) -> T:
        return default if value is None else value
    if args.rate > 0:
        return run_paced(given(args.agents, 10), given(args.domains, 40), args.rate, args.kinds, args.rows,
                         given(args.subscribers, [1])[0], given(args.seconds, 5.0), args.seed)
    return run(given(args.agents, 4), given(args.domains, 1000), args.batches, given(args.subscribers, [0, 1, 10]),
               args.encodings, given(args.seconds, 1.5), args.max_records, args.in_flight, args.warmup, args.seed)

if __name__ == "__main__":
    sys.exit(main())
