"""The fleet run: worker processes with the agents, a push console and a poll console, each in its own
process, measured in turn on the same fleet, then checked against libvirt's truth.

1. ``--agents`` agents start in ``ceil(agents / per_process)`` worker processes (spawn).
2. The push console loads the fleet; churn starts; after a warm-up the push window runs
   ``--duration`` seconds.
3. The poll console loads the fleet (plus a warm-up cycle) and its window runs ``--poll-duration``
   seconds, one cycle per interval (back to back when a cycle takes longer). The push console
   stays connected (it is checked at the end) but is no longer measured.
4. Churn stops; every worker reports libvirt's truth for its agents; the push console must hold
   exactly that (it converges within seconds), and the poll console's fresh cycle must too.
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from . import consoles, worker
from .consoles import ConsoleConfig
from .tables import table
from .worker import AGENT_THREADS, WorkerConfig

DIRECT_LIMIT = 300
"""Direct mode: a console holds about three file descriptors per agent and proton polls with select(),
which cannot watch a descriptor numbered 1024 or more; beyond this, go through a broker."""


@dataclass
class FleetOptions:
    agents: int = 50
    domains: int = 40
    duration: float = 60.0
    poll_duration: Optional[float] = None  # None: as --duration; 0: no poll baseline
    interval: float = 10.0
    heartbeat: float = 10.0
    slow_interval: float = 60.0
    reconcile: float = 300.0
    via: str = "direct"
    broker: List[str] = field(default_factory=list)
    churn: float = 1.0  # operations per second, whole fleet
    per_process: int = 125
    poll_concurrency: int = 8
    subscriber: str = "thread"  # the push console's subscriber: "thread" (its own) or "inline" (the console's)
    warmup: Optional[float] = None  # None: one interval and a second
    devices: bool = True
    seed: int = 1
    settle: float = 20.0  # seconds the final check may wait for the consoles to converge
    workdir: Optional[str] = None
    live: bool = True

    @property
    def running(self) -> int:
        return round(self.domains * 0.75)

    @property
    def paused(self) -> int:
        return (self.domains - self.running) // 2

    @property
    def shutoff(self) -> int:
        return self.domains - self.running - self.paused

    def check(self) -> None:
        if self.agents < 1 or self.domains < 1:
            raise ValueError("--agents and --domains must be at least 1")
        if self.via == "direct" and self.agents > DIRECT_LIMIT:
            raise ValueError(f"direct mode follows at most {DIRECT_LIMIT} agents from one console process "
                             "(proton polls with select(): no file descriptor above 1023); use --via rabbitmq")
        if self.via != "direct" and not self.broker:
            raise ValueError(f"--via {self.via} needs --broker URL")
        if self.per_process < 1:
            raise ValueError("--per-process must be at least 1")


class Child:
    """One child process and its pipe; messages are kept by type until taken."""

    def __init__(self, name: str, target: Callable[..., None], args: Tuple[Any, ...], log_file: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(*args, child_end, log_file), name=name, daemon=True)
        self.process.start()
        child_end.close()
        self.inbox: Dict[str, List[Dict[str, Any]]] = {}
        self.ticks: List[Dict[str, Any]] = []
        self.gone = False

    def send(self, message: Dict[str, Any]) -> None:
        if not self.gone:
            try:
                self.conn.send(message)
            except (OSError, ValueError):
                self.gone = True

    def take(self, kind: str) -> Optional[Dict[str, Any]]:
        found = self.inbox.get(kind)
        return found.pop(0) if found else None

    @property
    def last_tick(self) -> Dict[str, Any]:
        return self.ticks[-1] if self.ticks else {}


class Fleet:
    def __init__(self, options: FleetOptions, out: TextIO = sys.stdout) -> None:
        options.check()
        self.options = options
        self.out = out
        self._own_workdir = options.workdir is None
        self.workdir = Path(options.workdir or tempfile.mkdtemp(prefix="virtq-fleet-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workers: List[Child] = []
        self.agents: List[Dict[str, Any]] = []
        self.push: Optional[Child] = None
        self.poll: Optional[Child] = None
        self.phase = "starting"
        self.phase_started = time.monotonic()
        self.phase_length = 0.0
        self.problems: List[str] = []
        self.truth: Dict[str, Dict[str, List[Any]]] = {}
        self.push_diff: List[str] = []
        self.poll_diff: List[str] = []
        self._last_line = 0.0
        self._line_shown = False

    # --- children ----------------------------------------------------------------------------------

    def children(self) -> List[Child]:
        return [c for c in self.workers + [self.push, self.poll] if c is not None]

    def pump(self, timeout: float) -> None:
        """Receive what the children sent within ``timeout``; refresh the live line."""
        live = {c.conn: c for c in self.children() if not c.gone}
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            for conn in wait(list(live), min(remaining, 0.25)) if live else []:
                assert isinstance(conn, Connection)  # wait() hands back what it was given
                child = live[conn]
                try:
                    message = child.conn.recv()
                except (EOFError, OSError):
                    child.gone = True
                    del live[conn]
                    continue
                if message.get("type") == "tick":
                    child.ticks.append(message)
                else:
                    child.inbox.setdefault(str(message.get("type")), []).append(message)
            self._live_line()
            if not live:
                time.sleep(min(remaining, 0.1))
            if time.monotonic() >= deadline:
                return

    def expect(self, child: Child, kind: str, timeout: float, what: str) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = child.take(kind)
            if found is not None:
                return found
            failed = child.take("failed")
            if failed is not None:
                raise RuntimeError(f"{what}: {failed.get('error')}")
            if child.gone or not child.process.is_alive():
                raise RuntimeError(f"{what}: {child.name} exited (code {child.process.exitcode}); "
                                   f"see {self.workdir / (child.name + '.log')}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{what}: no answer from {child.name} within {timeout:g}s")
            self.pump(0.2)

    # --- the live line ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self._line_shown:
            self.out.write("\r\033[K")
            self._line_shown = False
        self.out.write(text + "\n")
        self.out.flush()

    def _live_line(self) -> None:
        # on a terminal: one line rewritten every second; in a log: a line every 10 s
        every = 1.0 if self.out.isatty() else 10.0
        if not self.options.live or time.monotonic() - self._last_line < every:
            return
        self._last_line = time.monotonic()
        parts = [self.phase]
        if self.phase_length:
            parts[0] += f" {min(time.monotonic() - self.phase_started, self.phase_length):.0f}/{self.phase_length:.0f}s"
        span = self.options.interval  # rates over the last interval: statistics come in bursts, one per pass
        ticks = [[_tick_before(w.ticks, span), w.ticks[-1]] for w in self.workers if len(w.ticks) >= 2]
        agents = sum(w.last_tick.get("agents", 0) for w in self.workers)
        if ticks:
            cpu = sum(t[1]["cpu"] - t[0]["cpu"] for t in ticks) / max(ticks[0][1]["t"] - ticks[0][0]["t"], 0.1)
            churn = sum(sum(w.last_tick.get("churn", {}).values()) for w in self.workers)
            parts.append(f"agents {agents} (CPU {cpu * 100:.0f}%, churn {churn} ops)")
        for child in (self.push, self.poll):
            if child is None or len(child.ticks) < 2:
                continue
            a, b = _tick_before(child.ticks, span), child.ticks[-1]
            dt = max(b["t"] - a["t"], 0.1)
            rate = (b["records"] + b["samples"] - a["records"] - a["samples"]) / dt
            text = f"{child.name}: {b['agents']} agents {b['domains']:,} VMs, {rate:,.0f} rec/s, " \
                   f"CPU {(b['cpu'] - a['cpu']) / dt * 100:.0f}%"
            if b.get("lag_p99") is not None and not math.isnan(b["lag_p99"]):
                text += f", lag p99 {b['lag_p99']:.0f} ms"
            if b.get("lost"):
                text += f", {b['lost']} lost"
            parts.append(text)
        line = " | ".join(parts)
        if self.out.isatty():
            self.out.write("\r\033[K" + line[:200])
            self._line_shown = True
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def _phase(self, name: str, length: float = 0.0) -> None:
        self.phase, self.phase_started, self.phase_length = name, time.monotonic(), length

    # --- the run -------------------------------------------------------------------------------------

    def start_workers(self) -> None:
        o = self.options
        processes = math.ceil(o.agents / o.per_process)
        slices = [list(range(o.agents))[i::processes] for i in range(processes)]
        self.say(f"fleet: {o.agents} agents × {o.domains} domains ({o.running} running, {o.paused} paused, "
                 f"{o.shutoff} shut off) in {processes} worker process(es), {o.via}, interval {o.interval:g} s; "
                 f"logs in {self.workdir}")
        self._phase("starting agents")
        for i, hosts in enumerate(slices):
            config = WorkerConfig(index=i, hosts=hosts, running=o.running, paused=o.paused, shutoff=o.shutoff,
                                  via=o.via, workdir=str(self.workdir), broker_urls=list(o.broker),
                                  interval=o.interval, slow_interval=o.slow_interval, heartbeat=o.heartbeat,
                                  reconcile=o.reconcile, devices=o.devices, seed=o.seed)
            self.workers.append(Child(f"worker{i}", worker.main, (config,), str(self.workdir / f"worker{i}.log")))
        started = time.monotonic()
        for child in self.workers:
            ready = self.expect(child, "ready", 120 + 0.5 * o.per_process, "starting agents")
            self.agents += ready["agents"]
            self.problems += [f"agent did not start: {e}" for e in ready["errors"]]
        self.say(f"fleet: {len(self.agents)} agents up in {time.monotonic() - started:.1f} s")

    def start_console(self, mode: str) -> Child:
        o = self.options
        config = ConsoleConfig(mode=mode, via=o.via, agent_urls=[a["url"] for a in self.agents],
                               broker_urls=list(o.broker), interval=o.interval, agents=len(self.agents),
                               domains=sum(a["domains"] for a in self.agents) if mode == "push" else 0,
                               load_timeout=60 + 0.2 * len(self.agents), poll_concurrency=o.poll_concurrency,
                               inline=o.subscriber == "inline")
        self._phase(f"loading the {mode} console")
        child = Child(f"{mode}-console", consoles.main, (config,), str(self.workdir / f"{mode}-console.log"))
        if mode == "push":
            self.push = child
        else:
            self.poll = child
        ready = self.expect(child, "ready", config.load_timeout + 120, f"starting the {mode} console")
        self.say(f"{mode} console: {ready['agents']} agents, {ready['domains']:,} domains loaded in "
                 f"{ready['seconds']:.1f} s")
        if ready["agents"] < len(self.agents):
            self.problems.append(f"{mode} console: loaded {ready['agents']} of {len(self.agents)} agents")
        return child

    def set_churn(self, rate: float) -> None:
        total = max(len(self.agents), 1)
        for child in self.workers:
            share = child.last_tick.get("agents", 0) / total
            child.send({"cmd": "churn", "rate": rate * share})
        for child in self.workers:  # acknowledged: a churn thread waiting for its next operation re-reads it
            self.expect(child, "churn", 30, "setting the churn rate")

    def window(self, child: Child, seconds: float) -> Dict[str, Any]:
        """One measuring window of a console; the workers' counters over the same time."""
        before = [dict(w.last_tick) for w in self.workers]
        child.send({"cmd": "window_start"})
        self._phase(f"{child.name.split('-')[0]} window", seconds)
        self.pump(seconds)
        child.send({"cmd": "window_end"})
        result = self.expect(child, "window", 20 * self.options.interval + 120, f"{child.name} window")
        self.pump(1.1)  # a fresh tick from every worker
        after = [dict(w.last_tick) for w in self.workers]
        result["agents_side"] = _workers_delta(before, after)
        return result

    def converge(self) -> None:
        """Stop churn; the push console must hold libvirt's truth, and so must a fresh poll cycle."""
        o = self.options
        self.set_churn(0)
        self._phase("checking against libvirt")
        self.pump(min(2.0, o.interval))
        for child in self.workers:
            child.send({"cmd": "truth"})
        truth: Dict[str, Dict[str, List[Any]]] = {}
        for child in self.workers:
            truth.update(self.expect(child, "truth", 120, "reading libvirt's truth")["truth"])
        self.truth = truth
        deadline = time.monotonic() + o.settle
        push_diff: List[str] = ["no push console"]
        while self.push is not None:
            self.push.send({"cmd": "picture"})
            push_diff = _differences(truth, self.expect(self.push, "picture", 120, "push console picture")["picture"])
            if not push_diff or time.monotonic() >= deadline:
                break
            self.pump(1.0)
        self.push_diff = push_diff
        if push_diff:
            self.problems.append(f"push console differs from libvirt in {len(push_diff)} place(s): "
                                 + "; ".join(push_diff[:5]))
        self.poll_diff = []
        if self.poll is not None:
            self.poll.send({"cmd": "picture"})
            picture = self.expect(self.poll, "picture", 30 * o.interval + 300, "poll console picture")["picture"]
            self.poll_diff = _differences(truth, picture)
            if self.poll_diff:
                self.problems.append(f"poll console differs from libvirt in {len(self.poll_diff)} place(s): "
                                     + "; ".join(self.poll_diff[:5]))
        self.say(f"check: {sum(len(v) for v in truth.values()):,} domains on {len(truth)} agents; push console "
                 f"{'agrees' if not push_diff else 'DIFFERS'}"
                 + (f", poll console {'agrees' if not self.poll_diff else 'DIFFERS'}" if self.poll else ""))

    def run(self) -> "FleetResult":
        o = self.options
        started = time.monotonic()
        self.start_workers()
        push_child = self.start_console("push")
        self.set_churn(o.churn)
        warmup = o.warmup if o.warmup is not None else o.interval + 1
        self._phase("warm-up", warmup)
        self.pump(warmup)
        push = self.window(push_child, o.duration)
        poll: Optional[Dict[str, Any]] = None
        poll_duration = o.duration if o.poll_duration is None else o.poll_duration
        if poll_duration > 0:
            poll_child = self.start_console("poll")
            poll = self.window(poll_child, poll_duration)
        self.converge()
        result = FleetResult(asdict(self.options), push, poll, list(self.problems), time.monotonic() - started,
                             len(self.agents), sum(a["domains"] for a in self.agents))
        return result

    def close(self) -> None:
        """Stop the consoles, then the workers; whatever does not stop in time is terminated."""
        self._phase("stopping")
        for child in [c for c in (self.push, self.poll) if c is not None] + self.workers:
            child.send({"cmd": "stop"})
            if child in self.workers:
                continue
            child.process.join(15)
        deadline = time.monotonic() + 60
        for child in self.workers:
            child.process.join(max(0.1, deadline - time.monotonic()))
        for child in self.children():
            if child.process.is_alive():
                child.process.terminate()
                child.process.join(5)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(5)
            child.conn.close()
        if self._line_shown:
            self.out.write("\r\033[K")
            self.out.flush()
            self._line_shown = False
        if self._own_workdir:
            for log in self.workdir.glob("*.log"):
                if log.stat().st_size:
                    break
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
                return
            for xml in self.workdir.glob("*.xml"):
                xml.unlink()


def _tick_before(ticks: List[Dict[str, Any]], span: float) -> Dict[str, Any]:
    """The oldest tick of the last ``span`` seconds (at least the one before the latest)."""
    last = ticks[-1]["t"]
    for tick in ticks[-2::-1]:
        if last - tick["t"] >= span:
            return tick
    return ticks[0]


def _workers_delta(before: List[Dict[str, Any]], after: List[Dict[str, Any]]) -> Dict[str, Any]:
    cpu = seconds = 0.0
    calls: Dict[str, int] = {}
    churn = events = 0
    for a, b in zip(before, after):
        if not a or not b:
            continue
        cpu += b["cpu"] - a["cpu"]
        seconds = max(seconds, b["t"] - a["t"])
        for kind, n in b["calls"].items():
            calls[kind] = calls.get(kind, 0) + n - a["calls"].get(kind, 0)
        churn += sum(b["churn"].values()) - sum(a["churn"].values())
        events += b["events"] - a["events"]
    return {"cpu": cpu, "seconds": seconds, "calls": calls, "churn": churn, "events": events,
            "rss": sum(b.get("rss", 0) for b in after)}


def _differences(truth: Dict[str, Dict[str, List[Any]]], seen: Dict[str, Dict[str, List[Any]]]) -> List[str]:
    out = []
    for agent in sorted(set(truth) | set(seen)):
        want, got = truth.get(agent, {}), seen.get(agent, {})
        host = agent.rsplit(":", 1)[-1]
        for uuid in sorted(set(want) | set(got)):
            if uuid not in got:
                out.append(f"{host}: {want[uuid][0]} missing")
            elif uuid not in want:
                out.append(f"{host}: {got[uuid][0]} should be gone")
            elif list(want[uuid]) != list(got[uuid]):
                out.append(f"{host}: {want[uuid][0]} is {want[uuid]} in libvirt, {got[uuid]} in the console")
    return out


@dataclass
class FleetResult:
    options: Dict[str, Any]
    push: Dict[str, Any]
    poll: Optional[Dict[str, Any]]
    problems: List[str]
    seconds: float
    agents: int
    domains: int

    # --- derived numbers -------------------------------------------------------------------------------

    @property
    def interval(self) -> float:
        return float(self.options["interval"])

    def per_interval(self, side: Dict[str, Any], total: float) -> float:
        intervals = side["seconds"] / self.interval
        return total / intervals if intervals else math.nan

    def push_numbers(self) -> Dict[str, float]:
        p = self.push
        running = self.agents * round(self.options["domains"] * 0.75)
        stats = p["categories"].get("stats/Domain", [0, 0])
        agents_side = p["agents_side"]
        wire = p["tcp_sent"] + p["tcp_received"]
        return {
            "records_per_s": (p["records"] + p["samples"]) / p["seconds"],
            "lag_repo_p50": p["lag_repo"]["p50"], "lag_repo_p99": p["lag_repo"]["p99"],
            "lag_repo_max": p["lag_repo"]["max"],
            "lag_sub_p50": p["lag_sub"]["p50"], "lag_sub_p99": p["lag_sub"]["p99"], "lag_sub_max": p["lag_sub"]["max"],
            "lag_event_p50": p["lag_event"]["p50"], "lag_event_p99": p["lag_event"]["p99"],
            "bytes_per_interval": self.per_interval(p, wire),
            "bytes_per_vm": self.per_interval(p, wire) / self.domains,
            "stats_bytes_per_running_vm": self.per_interval(p, stats[1]) / running if running else math.nan,
            "cpu_pct": 100 * p["cpu"] / p["seconds"],
            "cpu_per_interval": self.per_interval(p, p["cpu"]),
            "rss_mb": p["rss"] / 2 ** 20,
            "xml_fetches_per_interval": self.per_interval(p, p["xml_fetches"]),
            "config_changes": p["config_changes"], "xml_fetches": p["xml_fetches"],
            **self._agent_numbers(agents_side),
        }

    def poll_numbers(self) -> Dict[str, float]:
        p = self.poll
        assert p is not None
        cycles = max(p["cycles"], 1)
        wire = p["tcp_sent"] + p["tcp_received"]
        return {
            "records_per_s": p["answers"] / p["seconds"],
            "cycles": p["cycles"], "cycle_p50": p["cycle_seconds"]["p50"], "cycle_max": p["cycle_seconds"]["max"],
            "refresh_p50": p["refresh"]["p50"], "refresh_p99": p["refresh"]["p99"], "refresh_max": p["refresh"]["max"],
            "bytes_per_cycle": wire / cycles, "bytes_per_interval": self.per_interval(p, wire),
            "bytes_per_vm": wire / cycles / self.domains,
            "cpu_pct": 100 * p["cpu"] / p["seconds"], "cpu_per_cycle": p["cpu"] / cycles,
            "cpu_per_interval": self.per_interval(p, p["cpu"]),
            "rss_mb": p["rss"] / 2 ** 20, "xml_fetches_per_cycle": p["xml_fetches"] / cycles,
            "failures": p["failures"],
            **self._agent_numbers(p["agents_side"]),
        }

    def _agent_numbers(self, side: Dict[str, Any]) -> Dict[str, float]:
        intervals = side["seconds"] / self.interval if side["seconds"] else math.nan
        own = sum(n for kind, n in side["calls"].items() if kind in AGENT_THREADS)
        return {"agent_cpu_ms_per_interval_per_100_vms": 1000 * side["cpu"] / intervals / (self.domains / 100),
                "libvirt_calls_per_interval_per_agent": own / intervals / self.agents,
                "agent_cpu_pct": 100 * side["cpu"] / side["seconds"] if side["seconds"] else math.nan,
                "churn_ops": side["churn"], "events": side["events"], "agent_rss_mb": side["rss"] / 2 ** 20}

    def ratios(self) -> Dict[str, float]:
        if self.poll is None:
            return {}
        push, poll = self.push_numbers(), self.poll_numbers()
        return {"bytes": _ratio(poll["bytes_per_cycle"], push["bytes_per_interval"]),
                "console_cpu": _ratio(poll["cpu_per_cycle"], push["cpu_per_interval"]),
                "console_cpu_per_time": _ratio(poll["cpu_pct"], push["cpu_pct"]),
                "libvirt_calls": _ratio(poll["libvirt_calls_per_interval_per_agent"],
                                        push["libvirt_calls_per_interval_per_agent"])}

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["numbers"] = {"push": self.push_numbers(), "poll": self.poll_numbers() if self.poll else None,
                           "ratios": self.ratios()}
        return data

    # --- the report ------------------------------------------------------------------------------------

    def report(self) -> str:
        o = self.options
        push = self.push_numbers()
        poll = self.poll_numbers() if self.poll else None

        def both(label: str, key_push: Optional[str], key_poll: Optional[str], ratio: bool = False) -> Tuple[Any, ...]:
            a = push.get(key_push, math.nan) if key_push else math.nan
            b = poll.get(key_poll, math.nan) if (poll and key_poll) else math.nan
            return (label, a, b, f"{_ratio(b, a):,.1f}×" if ratio and poll else "")

        rows = [
            both("bytes on the wire per interval (push) / per cycle (poll)", "bytes_per_interval", "bytes_per_cycle",
                 True),
            both("  per VM", "bytes_per_vm", "bytes_per_vm", True),
            both("  bytes per wall-clock interval", "bytes_per_interval", "bytes_per_interval", True),
            both("statistics bytes per running VM per interval", "stats_bytes_per_running_vm", None),
            both("console CPU per interval (push) / per cycle (poll), s", "cpu_per_interval", "cpu_per_cycle", True),
            both("console CPU, % of one core", "cpu_pct", "cpu_pct", True),
            both("console RSS, MB", "rss_mb", "rss_mb"),
            both("ingest, records/s (poll: answers/s)", "records_per_s", "records_per_s"),
            both("lag sample → repository p50, ms", "lag_repo_p50", None),
            both("lag sample → repository p99, ms", "lag_repo_p99", None),
            both("lag sample → repository max, ms", "lag_repo_max", None),
            both("lag sample → subscriber p50, ms", "lag_sub_p50", None),
            both("lag sample → subscriber p99, ms", "lag_sub_p99", None),
            both("lag sample → subscriber max, ms", "lag_sub_max", None),
            both("lag libvirt event → subscriber p99, ms", "lag_event_p99", None),
            both("poll: cycle duration p50 / max, s", None, "cycle_p50"),
            both("poll: a domain's refresh period p50, s", None, "refresh_p50"),
            both("poll: a domain's refresh period max, s", None, "refresh_max"),
            both("XML fetches per interval (push) / per cycle (poll)", "xml_fetches_per_interval",
                 "xml_fetches_per_cycle"),
            both("agent CPU per interval per 100 VMs, ms", "agent_cpu_ms_per_interval_per_100_vms",
                 "agent_cpu_ms_per_interval_per_100_vms", True),
            both("agents' CPU, % of one core (all workers)", "agent_cpu_pct", "agent_cpu_pct"),
            both("libvirt calls per interval per agent", "libvirt_calls_per_interval_per_agent",
                 "libvirt_calls_per_interval_per_agent", True),
        ]
        head = (f"fleet: {self.agents} agents × {o['domains']} domains = {self.domains:,} VMs "
                f"({o['via']}, interval {o['interval']:g} s, churn {o['churn']:g} ops/s); push window "
                f"{self.push['seconds']:.0f} s" + (f", poll window {self.poll['seconds']:.0f} s with "
                                                    f"{self.poll['cycles']} cycles" if self.poll else ""))
        lines = [head, "", table(rows, ("", "push", "poll", "poll/push"))]
        lines += ["", f"push: {push['config_changes']} configuration changes (domains added or configGen moved) in "
                      f"the window, {push['xml_fetches']} XML fetches; churn {push['churn_ops']} operations, "
                      f"{push['events']} libvirt events handled by the agents"]
        lost = self.push.get("agent_events", {})
        if lost:
            lines.append("push: agents lost or back in the window (heartbeats seen late): "
                         + ", ".join(f"{n} {kind}" for kind, n in sorted(lost.items())))
        if self.poll:
            lines.append(f"poll: {self.poll['cycles']} cycles, {self.poll['requests']:,} requests, "
                         f"{self.poll['failures']} failed")
            if poll and poll["cycle_max"] > self.interval:
                lines.append(f"poll: a cycle took up to {poll['cycle_max']:.1f} s, longer than the "
                             f"{self.interval:g} s interval: the poller cannot keep up")
        if self.problems:
            lines += ["", "PROBLEMS:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _ratio(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b
