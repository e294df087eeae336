"""``virtq watch`` and ``virtq top``: the CLI following what agents push, against a real agent on
tests/data/node.xml that samples every 0.2 s, over loopback AMQP.

Changes are made from another console on another thread while the command runs in-process
(click's CliRunner, with the watching console passed as ``obj``); ``top`` must not call the agent.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest
from click.testing import Result
from pytest_mock import MockerFixture

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import agent_url, wait_until

from ..helpers import NODE_URI, run_cli

pytestmark = pytest.mark.integration

VIRTQ = Path(sys.executable).parent / "virtq"
Connect = Callable[..., Console]
Follow = Callable[[Agent], Console]
LINE = re.compile(r"^(?P<time>\d\d:\d\d:\d\d\.\d{3}) (?P<host>\S+) (?P<cls>\S+) (?P<name>\S+) (?P<what>.+)$")
SCRATCH_XML = "<domain type='test'><name>scratch</name><memory>65536</memory><os><type>hvm</type></os></domain>"


@pytest.fixture
def fast_agent(start_agent: Callable[..., Agent]) -> Agent:
    """node.xml (web1, web2 running; db1 paused; build shut off) with statistics every 0.2 s."""
    return start_agent(NODE_URI, interval=0.2, heartbeat=0.2)


@pytest.fixture
def follow(connect: Connect) -> Follow:
    """Connect a console and wait until it holds every domain's pushed state: a console that connects
    while the agent's first sampling pass is still running knows none yet ("state unknown -> …")."""

    def open_console(agent: Agent) -> Console:
        console = connect(agent)
        assert console.wait_for(lambda: all("state" in d.stats for d in console.domains), timeout=5)
        return console

    return open_console


def virtq(*args: str, obj: Optional[Console] = None) -> Result:
    return run_cli(args, obj=obj)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    return result.stdout


def lines(text: str) -> List[Dict[str, str]]:
    """``watch`` lines split into their fields."""
    parsed = []
    for line in text.splitlines():
        match = LINE.match(line)
        assert match is not None, f"not a watch line: {line!r}"
        parsed.append(match.groupdict())
    return parsed


class Actor:
    """Runs changes on another thread once the watching command has subscribed."""

    def __init__(self, watcher: Console, mocker: MockerFixture, act: Callable[[], object]) -> None:
        self._subscribed = mocker.spy(watcher, "subscribe")
        self._act = act
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="test-actor", daemon=True)

    def _run(self) -> None:
        try:
            assert wait_until(lambda: self._subscribed.spy_return is not None, timeout=10), "never subscribed"
            self._act()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            self.error = exc

    def __enter__(self) -> "Actor":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(15)
        assert not self._thread.is_alive(), "the actor did not finish"
        if self.error is not None:
            raise self.error


def hostname(console: Console) -> str:
    (node,) = list(console.nodes)
    return str(node.hostname)


# --- watch -------------------------------------------------------------------------------------------------

def test_watch_prints_the_state_change_and_the_libvirt_event(fast_agent: Agent, connect: Connect, follow: Follow,
                                                             mocker: MockerFixture) -> None:
    watcher, actor = follow(fast_agent), connect(fast_agent)
    with Actor(watcher, mocker, lambda: actor.domains.get("web1").suspend()):
        out = ok(virtq("watch", "--count", "2", "--timeout", "10", obj=watcher))
    got = lines(out)
    assert len(got) == 2, out
    assert {(g["host"], g["cls"], g["name"]) for g in got} == {(hostname(watcher), "domain", "web1")}
    whats = [g["what"] for g in got]
    assert any(re.fullmatch(r"state running -> paused( \(suspended/paused\))?", w) for w in whats), out
    assert "domainLifecycle suspended/paused" in whats, out


def test_watch_json_lines_are_plain_data(fast_agent: Agent, connect: Connect, follow: Follow,
                                         mocker: MockerFixture) -> None:
    watcher, actor = follow(fast_agent), connect(fast_agent)
    with Actor(watcher, mocker, lambda: actor.domains.get("web1").suspend()):
        out = ok(virtq("--json", "watch", "--kind", "state", "--kind", "libvirt", "--count", "2",
                       "--timeout", "10", obj=watcher))
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    web1 = watcher.domains.get("web1")
    for record in records:
        assert {"type", "time", "agent", "host", "class", "object", "name", "job", "text"} <= set(record)
        assert (record["agent"], record["host"]) == (fast_agent.name, hostname(watcher))
        assert (record["class"], record["object"], record["name"]) == ("Domain", web1.object_id.object_name, "web1")
        assert record["job"] is None  # the call was another console's: no job of this one owned web1
    by_type = {r["type"]: r for r in records}
    assert set(by_type) == {"state", "libvirt"}
    assert (by_type["state"]["old"], by_type["state"]["new"]) == ("running", "paused")
    assert by_type["state"]["text"].startswith("state running -> paused")
    lifecycle = by_type["libvirt"]
    assert (lifecycle["libvirt"], lifecycle["event"], lifecycle["detail"]) == ("domainLifecycle", "suspended",
                                                                               "paused")
    assert isinstance(lifecycle["timestamp"], int) and lifecycle["data"] == {}


def test_watch_json_added_and_removed_carry_plain_properties(fast_agent: Agent, connect: Connect, follow: Follow,
                                                             mocker: MockerFixture) -> None:
    watcher, actor = follow(fast_agent), connect(fast_agent)

    def define_and_undefine() -> None:
        node = next(iter(actor.nodes))
        node.domainDefineXML(xml=SCRATCH_XML).undefine()

    with Actor(watcher, mocker, define_and_undefine):
        out = ok(virtq("watch", "--json", "--kind", "added", "--kind", "removed", "--count", "2",
                       "--timeout", "10", obj=watcher))
    assert "ObjectId(" not in out and "<Domain" not in out  # no Python reprs
    added, removed = (json.loads(line) for line in out.splitlines())
    assert (added["type"], removed["type"]) == ("added", "removed")
    for record in (added, removed):
        assert record["class"] == "Domain" and record["name"] == "scratch"
        properties = record["properties"]
        assert properties["name"] == "scratch" and properties["id"] == -1
        assert properties["node"] == next(iter(watcher.nodes)).object_id.object_name  # a reference, as its name


def test_watch_class_filter_keeps_only_that_class(fast_agent: Agent, connect: Connect, follow: Follow,
                                                  mocker: MockerFixture) -> None:
    watcher, actor = follow(fast_agent), connect(fast_agent)

    def domains_then_pool() -> None:
        web1 = actor.domains.get("web1")
        web1.suspend()
        web1.resume()  # domain events first: the filter must drop them
        actor.pools.get("images").refresh()

    with Actor(watcher, mocker, domains_then_pool):
        out = ok(virtq("watch", "--class", "pool", "--count", "2", "--timeout", "10", obj=watcher))
    got = lines(out)
    assert len(got) == 2
    assert {(g["cls"], g["name"]) for g in got} == {("pool", "images")}, out


def test_watch_stats_kind_shows_pushed_samples(fast_agent: Agent, connect: Connect, mocker: MockerFixture) -> None:
    watcher = connect(fast_agent)
    calls, queries = mocker.spy(fast_agent.dispatcher, "call"), mocker.spy(fast_agent.dispatcher, "query")
    out = ok(virtq("watch", "--kind", "stats", "--class", "domain", "--count", "4", "--timeout", "10", obj=watcher))
    got = lines(out)
    assert len(got) == 4
    names = {d.name for d in watcher.domains}
    for g in got:
        assert g["cls"] == "domain" and g["name"] in names
        assert re.fullmatch(r"stats( \w+=\d+)+", g["what"]), g["what"]
    assert calls.call_count == 0 and queries.call_count == 0  # pushed, never asked for


def test_watch_leaves_stats_out_by_default(fast_agent: Agent, connect: Connect) -> None:
    watcher = connect(fast_agent)
    wait_until(lambda: all(d.stats_ts for d in watcher.domains), timeout=5)  # samples are flowing
    assert ok(virtq("watch", "--timeout", "0.6", obj=watcher)) == ""  # nothing but statistics happened


def test_watch_timeout_before_count_exits_6(fast_agent: Agent, connect: Connect) -> None:
    result = virtq("watch", "--class", "volume", "--count", "1", "--timeout", "0.3", obj=connect(fast_agent))
    assert result.exit_code == 6, result.stdout + result.stderr
    assert result.stdout == ""
    assert "timeout: 0 of 1 event(s) within 0.3s" in result.stderr


def test_watch_reports_a_lost_agent(fast_agent: Agent, connect: Connect, mocker: MockerFixture) -> None:
    watcher = connect(fast_agent)
    with Actor(watcher, mocker, fast_agent.kill):  # heartbeats stop: lost after 3 intervals (1 s each)
        out = ok(virtq("watch", "--kind", "agent-lost", "--count", "1", "--timeout", "15", obj=watcher))
    (got,) = lines(out)
    assert (got["host"], got["cls"], got["name"]) == (hostname(watcher), "agent", fast_agent.name)
    assert got["what"].startswith("lost (no heartbeat for 3 intervals")
    assert all(d.stale for d in watcher.domains)  # kept, marked stale


def test_watch_process_stops_on_ctrl_c_with_exit_0(fast_agent: Agent) -> None:
    url = agent_url(fast_agent)
    proc = subprocess.Popen([str(VIRTQ), "-u", url, "watch", "--kind", "stats"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # a sample arrives within 0.2 s of the connection
        assert LINE.match(first.rstrip("\n")), first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Aborted" not in err and "Traceback" not in err


# --- top ---------------------------------------------------------------------------------------------------

def tables(text: str) -> List[List[Dict[str, str]]]:
    """``top``'s tables (one per iteration, blank-line separated): summary lines, a header, rows."""
    found = []
    for block in text.strip("\n").split("\n\n"):
        summary, *lines = block.splitlines()
        assert summary.startswith("virtq top - "), block
        at = next(i for i, line in enumerate(lines) if line.startswith("HOST"))
        header, rows = lines[at], lines[at + 1:]
        columns = header.lower().split()
        assert columns == ["host", "name", "state", "cpu%", "mem(mib)", "vcpus"], header
        found.append([dict(zip(columns, row.split())) for row in rows])
    return found


def cpu(row: Dict[str, str]) -> float:
    return float(row["cpu%"])  # ValueError for "-": not computed


def test_top_from_pushes_only(fast_agent: Agent, follow: Follow, mocker: MockerFixture) -> None:
    console = follow(fast_agent)
    calls, queries = mocker.spy(fast_agent.dispatcher, "call"), mocker.spy(fast_agent.dispatcher, "query")
    out = ok(virtq("top", "--interval", "1", "--iterations", "2", obj=console))
    first, last = tables(out)
    assert {r["name"] for r in first} == {r["name"] for r in last} == {"web1", "web2", "db1", "build"}
    rows = {r["name"]: r for r in last}
    assert {n: r["state"] for n, r in rows.items()} == {"web1": "running", "web2": "running", "db1": "paused",
                                                        "build": "shutoff"}
    for name in ("web1", "web2"):
        assert cpu(rows[name]) >= 0.0  # numeric: computed from two pushed samples
    assert rows["db1"]["cpu%"] == rows["build"]["cpu%"] == "0.0"
    assert all(r["mem(mib)"] == "64" and r["vcpus"] == "1" for r in last)
    assert all(r["host"] == hostname(console) for r in last)
    assert [r["name"] for r in last][:2] in (["web1", "web2"], ["web2", "web1"])  # sorted by CPU, busiest first
    assert calls.call_count == 0, "top called methods on the agent"
    assert queries.call_count == 0, "top queried the agent"


def test_top_cpu_percent_is_cpu_time_over_sample_time(fast_agent: Agent, follow: Follow) -> None:
    """libvirt's test driver reports cpuTime as the wall clock: a running domain uses about one CPU."""
    console = follow(fast_agent)
    (record,) = (json.loads(line) for line in ok(virtq("--json", "top", "--interval", "1", "--iterations", "1",
                                                        "--sort", "name", obj=console)).splitlines())
    domains = record["domains"]
    assert [d["name"] for d in domains] == ["build", "db1", "web1", "web2"]  # --sort name
    by_name = {d["name"]: d for d in domains}
    for name in ("web1", "web2"):
        assert 50.0 < by_name[name]["cpu"] < 150.0, by_name[name]
    assert by_name["db1"]["cpu"] == by_name["build"]["cpu"] == 0.0
    assert by_name["web1"]["memory_mib"] == 64.0 and by_name["web1"]["vcpus"] == 1
    assert by_name["web1"]["agent"] == fast_agent.name and by_name["web1"]["stale"] is False


def test_top_follows_a_state_change(fast_agent: Agent, connect: Connect, follow: Follow, mocker: MockerFixture) -> None:
    console, actor = follow(fast_agent), connect(fast_agent)
    with Actor(console, mocker, lambda: actor.domains.get("web2").suspend()):
        out = ok(virtq("top", "--interval", "0.5", "--iterations", "2", "--sort", "name", obj=console))
    last = {r["name"]: r for r in tables(out)[-1]}
    assert last["web2"]["state"] == "paused" and last["web2"]["cpu%"] == "0.0"


# --- usage errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (["watch", "--kind", "everything"], "--kind"),
    (["watch", "--class", "network"], "--class"),
    (["watch", "--count", "0"], "--count"),
    (["watch", "--timeout", "0"], "--timeout"),
    (["watch", "--count", "many"], "--count"),
    (["top", "--interval", "0"], "--interval"),
    (["top", "--iterations", "0"], "--iterations"),
    (["top", "--sort", "fastest"], "--sort"),
    (["top", "extra"], "extra"),
])
def test_bad_options_are_usage_errors(args: Sequence[str], option: str) -> None:
    result = virtq("-u", "amqp://127.0.0.1:1", *args)  # refused before anything connects
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert option in result.stderr


def test_watch_help_lists_the_kinds() -> None:
    text = ok(virtq("watch", "--help"))
    for kind in ("agent-added", "agent-lost", "agent-restarted", "added", "removed", "state", "config", "stats",
                 "libvirt"):
        assert re.search(rf"^\s+{kind}\s+\S", text, flags=re.M), kind
