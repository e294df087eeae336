"""Wire bytes of the push design against a poll baseline, on the same host in the same run.

One agent (the real agent code, direct mode) serves a generated test-driver host — by
default 40 domains: 30 running, 5 paused, 5 shut off — and samples statistics every
``--interval`` seconds. Two consoles follow it in turn, each through its own metered
transport and a TCP byte-counting proxy:

push  the ordinary console: it loads the objects once, fetches every domain's XML once,
      then only listens. The window covers ``--intervals`` statistics passes; during it the
      console re-reads every domain's XML through its fetcher at every interval (cached per
      configGen: it must not fetch). Running domains' cpuTime changes at every pass (the
      test driver's cpuTime is the wall clock: the worst case), idle ones never do.
poll  what VDSM's engine did: every cycle, ask for the list of domains (a Domain query,
      which also re-lists libvirt) and call getInfo and getXMLDesc on each of them. It
      subscribes to heartbeats only. ``--cycles`` cycles back to back.

Heartbeats (one per agent per ``--heartbeat`` seconds, whatever the design) are left out of
the per-interval numbers and reported on their own.

    python -m bench.push_vs_poll                       # the make bench run
    python -m bench.push_vs_poll --running 300 --paused 50 --shutoff 50 --intervals 50 --cycles 5
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.console import Console
from virtq.schema import default_schema
from virtq.schema.codec import TOPIC, AgentHeartbeat, QueryRequest, QueryResponse
from virtq.schema.model import SchemaId
from virtq.testing import WaitTimeout, free_port, wait_until
from virtq.transport import DirectListener, encoded_size

from .common import ByteCountingProxy, CountingConnector, Meter, Reading, Tally, ratio
from .fleetsim.metering import MeteredHypervisor
from .fleetsim.tables import table
from .fleetxml import RUNNING, node_uri, write_node_xml

HEARTBEATS_ONLY = f"{TOPIC}/agent.ind.heartbeat.#"
TARGET_BYTES_PER_RUNNING_VM = 60


@dataclass
class PushResult:
    passes: int
    seconds: float
    message_bytes: int  # everything but heartbeats, both directions
    tcp_bytes: int  # everything on the connection
    messages: int
    stats_bytes: int  # Domain statistics messages
    bytes_per_running_vm: float  # Domain statistics bytes / (running domains × passes)
    bytes_per_idle_vm: float  # idle domains' share of the statistics bytes / (idle domains × passes)
    idle_rows: int  # statistics rows for idle domains in the window (0 expected)
    running_rows_per_pass: float
    xml_fetches: int  # in the window
    xml_reads: int  # XML reads the console served from its cache in the window
    libvirt_calls: int
    cold_bytes: int  # loading the objects and fetching each domain's XML once, before the window
    cold_xml_fetches: int
    breakdown: Dict[str, List[int]] = field(default_factory=dict)  # category -> [messages, bytes]

    def per_pass(self, total: float) -> float:
        return total / self.passes if self.passes else math.nan


@dataclass
class PollResult:
    cycles: int
    seconds: float
    message_bytes: int
    tcp_bytes: int
    messages: int
    xml_fetches: int
    libvirt_calls: int
    breakdown: Dict[str, List[int]] = field(default_factory=dict)

    def per_cycle(self, total: float) -> float:
        return total / self.cycles if self.cycles else math.nan


@dataclass
class Result:
    running: int
    paused: int
    shutoff: int
    interval: float
    raw_cpu_time: bool
    xml_bytes: int  # a typical domain's getXMLDesc answer, characters
    heartbeat_bytes: int
    heartbeat_interval: float
    push: PushResult
    poll: PollResult
    problems: List[str] = field(default_factory=list)

    @property
    def domains(self) -> int:
        return self.running + self.paused + self.shutoff

    @property
    def ratio(self) -> float:
        """Poll bytes per cycle over push bytes per interval, whole host (AMQP messages)."""
        return ratio(self.poll.per_cycle(self.poll.message_bytes), self.push.per_pass(self.push.message_bytes))

    @property
    def tcp_ratio(self) -> float:
        return ratio(self.poll.per_cycle(self.poll.tcp_bytes), self.push.per_pass(self.push.tcp_bytes))

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, tcp_ratio=self.tcp_ratio)
        return data

    def report(self) -> str:
        push, poll, n = self.push, self.poll, self.domains
        push_host = push.per_pass(push.message_bytes)
        poll_host = poll.per_cycle(poll.message_bytes)
        poll_no_xml = poll.per_cycle(sum(b for name, (_, b) in poll.breakdown.items() if "getXMLDesc" not in name))
        rows = [
            ("bytes per interval, whole host (AMQP messages)", push_host, poll_host, ratio(poll_host, push_host)),
            ("bytes per interval, whole host (TCP)", push.per_pass(push.tcp_bytes), poll.per_cycle(poll.tcp_bytes),
             self.tcp_ratio),
            ("bytes per VM per interval (all VMs)", push_host / n, poll_host / n, ratio(poll_host, push_host)),
            ("  the same, poll without getXMLDesc (list + getInfo)", push_host / n, poll_no_xml / n,
             ratio(poll_no_xml, push_host)),
            ("bytes per running VM per interval", push.bytes_per_running_vm, poll_host / n,
             ratio(poll_host / n, push.bytes_per_running_vm)),
            ("bytes per idle VM per interval", push.bytes_per_idle_vm, poll_host / n,
             ratio(poll_host / n, push.bytes_per_idle_vm)),
            ("messages per interval", push.per_pass(push.messages), poll.per_cycle(poll.messages),
             ratio(poll.per_cycle(poll.messages), push.per_pass(push.messages))),
            ("XML fetches per interval", push.per_pass(push.xml_fetches), poll.per_cycle(poll.xml_fetches), "–"),
            ("libvirt calls per interval", push.per_pass(push.libvirt_calls), poll.per_cycle(poll.libvirt_calls),
             ratio(poll.per_cycle(poll.libvirt_calls), push.per_pass(push.libvirt_calls))),
        ]
        cpu = "raw test-driver cpuTime (every domain changes)" if self.raw_cpu_time else \
            "QEMU-like cpuTime (paused: frozen, shut off: 0)"
        lines = [
            f"push vs poll: {n} domains ({self.running} running, {self.paused} paused, {self.shutoff} shut off), "
            f"interval {self.interval:g} s, {cpu}",
            f"push window: {push.passes} statistics passes in {push.seconds:.2f} s; "
            f"poll: {poll.cycles} cycles in {poll.seconds:.2f} s ({poll.seconds / max(poll.cycles, 1):.3f} s each)",
            "",
            table([(r[0], *r[1:-1], _times(r[-1])) for r in rows], ("", "push", "poll", "poll/push")),
            "",
            f"push: {push.running_rows_per_pass:.1f} statistics rows per pass for {self.running} running VMs, "
            f"{push.idle_rows} rows for idle VMs; XML read from the console's cache {push.xml_reads} times, "
            f"fetched {push.xml_fetches} times",
            f"push cold start (once per console): {push.cold_bytes:,} B to load the objects and fetch "
            f"{push.cold_xml_fetches} XML documents ({self.xml_bytes:,} characters each)",
            f"heartbeat: {self.heartbeat_bytes} B per agent every {self.heartbeat_interval:g} s, in both designs",
            "",
            "push messages in the window (received by the console unless marked 'sent'):",
            self._breakdown(push.breakdown, push.passes, "pass"),
            "",
            "poll messages:",
            self._breakdown(poll.breakdown, poll.cycles, "cycle"),
            "",
            "targets (issue 4):",
            f"  ≤ {TARGET_BYTES_PER_RUNNING_VM} B per running VM per interval: {push.bytes_per_running_vm:.1f} B "
            f"({'met' if push.bytes_per_running_vm <= TARGET_BYTES_PER_RUNNING_VM else 'NOT met'})",
            f"  0 B for unchanged idle VMs: {push.bytes_per_idle_vm:g} B "
            f"({'met' if push.bytes_per_idle_vm == 0 else 'NOT met'})",
            f"  0 XML fetches in steady state: {push.xml_fetches} ({'met' if push.xml_fetches == 0 else 'NOT met'})",
            f"  push/poll: poll sends {self.ratio:.1f}× the bytes of push (AMQP messages), "
            f"{self.tcp_ratio:.1f}× on TCP",
        ]
        if self.problems:
            lines += ["", "FUNCTIONAL PROBLEMS:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    @staticmethod
    def _breakdown(breakdown: Dict[str, List[int]], count: int, unit: str) -> str:
        rows = [(name, m, b, b / count if count else math.nan, b / m if m else math.nan)
                for name, (m, b) in sorted(breakdown.items(), key=lambda kv: -kv[1][1])]
        return table(rows, ("category", "messages", "bytes", f"bytes per {unit}", "bytes per message"))


def _times(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.1f}×" if math.isfinite(value) else "∞ (push: 0)"


def _breakdown(reading: Reading, exclude: Sequence[str] = ("heartbeat",)) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for side, tallies in (("", reading.received), ("sent ", reading.sent)):
        for name, tally in tallies.items():
            if not name.startswith(tuple(exclude)):
                out[side + name] = [tally.messages, tally.bytes]
    return out


def _agent_calls(hv: MeteredHypervisor, kinds: Sequence[str]) -> int:
    return sum(n for kind, n in hv.calls_by_thread().items() if kind.startswith(tuple(kinds)))


def run(running: int = 30, paused: int = 5, shutoff: int = 5, interval: float = 0.2, intervals: int = 25,
        cycles: int = 5, heartbeat: float = 60.0, raw_cpu_time: bool = False, devices: bool = True,
        workdir: Optional[Path] = None) -> Result:
    """Run both designs against one agent and return the measurements (never asserts timings)."""
    with tempfile.TemporaryDirectory(prefix="virtq-bench-") as tmp:
        base = workdir or Path(tmp)
        node = base / "node.xml"
        spec = write_node_xml(node, "bench-host", running, paused, shutoff, devices)
        states = {d.uuid: d.state for d in spec.domains}
        idle = {f"Domain:{d.uuid}" for d in spec.domains if d.state != RUNNING}
        busy = {f"Domain:{d.uuid}" for d in spec.domains if d.state == RUNNING}
        hv = MeteredHypervisor(LibvirtHypervisor(node_uri(node)), raw=raw_cpu_time)
        url = f"amqp://127.0.0.1:{free_port()}"
        agent = Agent(default_schema(), hv, DirectListener(url), heartbeat=heartbeat, interval=interval,
                      state_dir=base / "state")
        problems: List[str] = []
        agent.start()
        try:
            push = _push(agent, hv, url, len(spec.domains), busy, idle, states, interval, intervals, problems)
            if push.idle_rows and not raw_cpu_time:
                problems.append(f"push: {push.idle_rows} statistics rows for idle domains whose values never "
                                "changed (only changes may be pushed)")
            if push.xml_fetches:
                problems.append(f"push: {push.xml_fetches} XML fetches in steady state (configuration unchanged)")
            poll = _poll(agent, hv, url, len(spec.domains), states, cycles, problems)
            xml_bytes = len(str(hv.invoke("Domain", spec.domains[0].uuid, "virDomainGetXMLDesc", [0])))
            heartbeat_bytes = encoded_size(AgentHeartbeat(agent.info(), agent=agent.name).encode())
        finally:
            agent.stop()
    return Result(running, paused, shutoff, interval, raw_cpu_time, xml_bytes, heartbeat_bytes, heartbeat,
                  push, poll, problems)


def _wrong_states(console: Console, states: Dict[str, int]) -> List[Tuple[str, Any, Any]]:
    """Domains whose pushed state differs from the generated host's (name, seen, expected)."""
    wrong = [(d.name, d.stats.get("state"), states.get(d.uuid)) for d in console.domains
             if d.stats.get("state") != states.get(d.uuid)]
    missing = len(states) - len(console.domains)
    return wrong + [("(missing)", None, missing)] * (missing > 0)


def _check_states(console: Console, states: Dict[str, int], problems: List[str], what: str) -> None:
    console.wait_for(lambda: not _wrong_states(console, states), 5.0)
    wrong = _wrong_states(console, states)
    if wrong:
        problems.append(f"{what}: console holds {len(console.domains)} of {len(states)} domains; "
                        f"wrong states (name, seen, expected): {wrong[:5]}")


def _push(agent: Agent, hv: MeteredHypervisor, url: str, n: int, busy: Set[str], idle: Set[str],
          states: Dict[str, int], interval: float, intervals: int, problems: List[str]) -> PushResult:
    meter = Meter()
    proxy = ByteCountingProxy(int(url.rsplit(":", 1)[1]))
    console = Console(transports=[CountingConnector(proxy.url, meter)], timeout=10.0)
    try:
        console.start()
        if not console.wait_for(lambda: len(console.domains) == n and all("state" in d.stats
                                                                           for d in console.domains), 10.0):
            problems.append(f"push: the console loaded {len(console.domains)} of {n} domains")
        for dom in console.domains:  # the cold cache: one fetch per domain
            console.xml(dom)
        cold = meter.read()
        cold_fetches = console.xml_fetches

        def passes(since: Reading) -> int:
            return (meter.read() - since).received.get("stats/Domain", Tally()).messages

        # Steady state: let two passes go by, then start the window right after a pass arrived.
        warm = meter.read()
        try:
            wait_until(lambda: passes(warm) >= 2, 20 * interval + 5, interval=0.002)
        except WaitTimeout:
            problems.append("push: no statistics passes arrived (running domains change at every pass)")
        before, tcp_before, calls_before = meter.read(), proxy.read(), _agent_calls(hv, ("virtq-sample",))
        fetches_before, started = console.xml_fetches, time.monotonic()
        reads = 0
        next_read = started
        deadline = started + intervals * interval * 4 + 10
        while passes(before) < intervals and time.monotonic() < deadline:
            if time.monotonic() >= next_read:  # a consumer looking at every domain's configuration
                for dom in console.domains:
                    console.xml(dom)
                    reads += 1
                next_read += interval
            time.sleep(0.002)
        after, tcp_after, calls_after = meter.read(), proxy.read(), _agent_calls(hv, ("virtq-sample",))
        seconds = time.monotonic() - started
        xml_fetches = console.xml_fetches - fetches_before
        _check_states(console, states, problems, "push")
    finally:
        console.close()
        proxy.close()

    window = after - before
    got = window.received.get("stats/Domain", Tally())
    if got.messages < intervals:
        problems.append(f"push: only {got.messages} of {intervals} statistics passes arrived in time")
    k = max(got.messages, 1)
    idle_rows = sum(v for name, v in window.stats_rows.items() if name in idle)
    busy_rows = sum(v for name, v in window.stats_rows.items() if name in busy)
    all_rows = sum(v for name, v in window.stats_rows.items() if name.startswith("Domain:"))
    # A domain the sampler skipped (no answer within its deadline) is pushed at a later pass; one never
    # pushed while its cpuTime changed at every pass is a failure.
    silent = [name for name in busy if not window.stats_rows.get(name)]
    if silent:
        problems.append(f"push: {len(silent)} running domain(s) never pushed in the window, e.g. {silent[0]}")
    share = got.bytes * idle_rows / all_rows if all_rows else 0.0
    return PushResult(
        passes=got.messages, seconds=seconds,
        message_bytes=window.bytes(exclude=("heartbeat",)), tcp_bytes=sum(tcp_after) - sum(tcp_before),
        messages=window.messages(exclude=("heartbeat",)), stats_bytes=got.bytes,
        bytes_per_running_vm=(got.bytes - share) / (len(busy) * k) if busy else math.nan,
        bytes_per_idle_vm=share / (len(idle) * k) if idle else math.nan,
        idle_rows=idle_rows, running_rows_per_pass=busy_rows / k, xml_fetches=xml_fetches, xml_reads=reads,
        libvirt_calls=calls_after - calls_before,
        cold_bytes=cold.bytes(exclude=("heartbeat",)), cold_xml_fetches=cold_fetches,
        breakdown=_breakdown(window))


def _poll(agent: Agent, hv: MeteredHypervisor, url: str, n: int, states: Dict[str, int], cycles: int,
          problems: List[str]) -> PollResult:
    meter = Meter()
    proxy = ByteCountingProxy(int(url.rsplit(":", 1)[1]))
    console = Console(transports=[CountingConnector(proxy.url, meter, subscribe_to=HEARTBEATS_ONLY)], timeout=10.0)
    domain_class = SchemaId(agent.schema.package, "Domain")
    bad: List[str] = []

    def cycle() -> None:
        replies = console.query(agent.name, QueryRequest(what="OBJECT", schema_id=domain_class))
        records = [r for reply in replies if isinstance(reply, QueryResponse) for r in reply.records]
        if len(records) != n:
            bad.append(f"the domain list had {len(records)} of {n} domains")
        for record in records:
            info = console.call(record.object_id, "getInfo")
            xml = console.call(record.object_id, "getXMLDesc")
            uuid = str(record.values.get("uuid"))
            if not isinstance(info, dict) or info.get("state") != states.get(uuid) or uuid not in str(xml):
                bad.append(f"{record.values.get('name')}: getInfo {info!r:.60} or XML wrong")

    try:
        console.start()
        if not console.wait_for(lambda: len(console.domains) == n, 10.0):
            problems.append(f"poll: the console loaded {len(console.domains)} of {n} domains")
        cycle()  # warm-up
        before, tcp_before = meter.read(), proxy.read()
        calls_before = _agent_calls(hv, ("virtq-worker",))
        started = time.monotonic()
        for _ in range(cycles):
            cycle()
        seconds = time.monotonic() - started
        after, tcp_after = meter.read(), proxy.read()
        calls_after = _agent_calls(hv, ("virtq-worker",))
    finally:
        console.close()
        proxy.close()
    if bad:
        problems.append(f"poll: {len(bad)} wrong answer(s), e.g. {bad[0]}")
    window = after - before
    return PollResult(
        cycles=cycles, seconds=seconds, message_bytes=window.bytes(exclude=("heartbeat",)),
        tcp_bytes=sum(tcp_after) - sum(tcp_before), messages=window.messages(exclude=("heartbeat",)),
        xml_fetches=window.sent.get("method_request/getXMLDesc", Tally()).messages,
        libvirt_calls=calls_after - calls_before, breakdown=_breakdown(window))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running", type=int, default=30, help="running domains (default 30)")
    parser.add_argument("--paused", type=int, default=5, help="paused domains (default 5)")
    parser.add_argument("--shutoff", type=int, default=5, help="shut-off domains (default 5)")
    parser.add_argument("--interval", type=float, default=0.2, help="statistics interval, seconds (default 0.2)")
    parser.add_argument("--intervals", type=int, default=25, help="statistics passes in the push window (25)")
    parser.add_argument("--cycles", type=int, default=5, help="poll cycles (default 5)")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="agent heartbeat interval, s (default 60)")
    parser.add_argument("--raw-cpu-time", action="store_true",
                        help="keep the test driver's cpuTime (the wall clock, for paused and shut-off domains "
                             "too) instead of QEMU's behaviour")
    parser.add_argument("--bare", action="store_true", help="domains without devices (small XML)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args.running, args.paused, args.shutoff, args.interval, args.intervals, args.cycles,
                 args.heartbeat, args.raw_cpu_time, not args.bare)
    print(result.report())
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
