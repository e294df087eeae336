"""``virtq-fleet``: start a simulated fleet, measure a push console and a poll baseline on it, report.

    virtq-fleet --agents 50 --domains 40 --duration 60 --interval 10
    virtq-fleet --agents 1000 --domains 40 --via rabbitmq --broker amqp://guest:guest@127.0.0.1:5672 --poll-duration 0

Ctrl-C stops the run cleanly (agents, consoles and worker processes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .run import DIRECT_LIMIT, Fleet, FleetOptions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="virtq-fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=50, help="agents (hosts) in the fleet (default 50)")
    p.add_argument("--domains", type=int, default=40,
                   help="domains per host: 75%% running, the rest paused and shut off (default 40)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of the push window (default 60)")
    p.add_argument("--poll-duration", type=float, default=None,
                   help="seconds of the poll window (default: --duration; 0: no poll baseline)")
    p.add_argument("--interval", type=float, default=10.0, help="statistics interval = poll cycle, s (default 10)")
    p.add_argument("--heartbeat", type=float, default=10.0, help="agent heartbeat, s (default 10)")
    p.add_argument("--via", choices=("direct", "rabbitmq"), default="direct",
                   help=f"direct connections (at most {DIRECT_LIMIT} agents) or through a RabbitMQ broker")
    p.add_argument("--broker", action="append", default=[], help="broker URL (with --via rabbitmq); repeatable")
    p.add_argument("--churn", type=float, default=1.0,
                   help="libvirt operations per second across the fleet: suspend, resume, destroy, create, "
                        "define, undefine (default 1)")
    p.add_argument("--per-process", type=int, default=125, help="agents per worker process (default 125)")
    p.add_argument("--poll-concurrency", type=int, default=8, help="agents the poller asks at once (default 8)")
    p.add_argument("--subscriber", choices=("thread", "inline"), default="thread",
                   help="the push console's counting subscriber: on its own thread (default) or inline")
    p.add_argument("--warmup", type=float, default=None, help="seconds between loading and the push window")
    p.add_argument("--bare", action="store_true", help="domains without devices (small XML)")
    p.add_argument("--seed", type=int, default=1, help="churn's random seed")
    p.add_argument("--workdir", default=None, help="node files and logs (default: a temporary directory)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--no-live", action="store_true", help="no live summary line")
    return p


def options_from(args: argparse.Namespace) -> FleetOptions:
    return FleetOptions(agents=args.agents, domains=args.domains, duration=args.duration,
                        poll_duration=args.poll_duration, interval=args.interval, heartbeat=args.heartbeat,
                        via=args.via, broker=list(args.broker), churn=args.churn, per_process=args.per_process,
                        poll_concurrency=args.poll_concurrency, subscriber=args.subscriber, warmup=args.warmup,
                        devices=not args.bare,
                        seed=args.seed, workdir=args.workdir, live=not args.no_live)


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        fleet = Fleet(options_from(args))
    except ValueError as exc:
        print(f"virtq-fleet: {exc}", file=sys.stderr)
        return 2
    result = None
    try:
        result = fleet.run()
    except KeyboardInterrupt:
        fleet.say("virtq-fleet: interrupted; stopping the fleet")
    except RuntimeError as exc:
        fleet.say(f"virtq-fleet: {exc}")
    finally:
        fleet.close()
    if result is None:
        return 1
    print(result.report())
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return 1 if result.problems else 0
