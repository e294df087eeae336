"""Heartbeat health (issue 10, item 1, console side): AgentDegraded when an agent's heartbeat says libvirt is
unresponsive or calls are stuck, AgentRecovered when it is well again — once per transition — and `virtq
agents` shows the state; the CLI prints nothing an agent supplied as terminal control sequences."""

from __future__ import annotations

import json
from typing import Any, Dict, List

from virtq.console import Console
from virtq.console.events import AgentDegraded, AgentRecovered, Event
from virtq.console.health import AgentHealth
from virtq.testing import RecordingTransport, wait_until

from ..helpers import run_cli
from .fake_agents import domain, feed, follow, heartbeat, push

HV01 = "libvirt.org:virtq:hv01"
HV02 = "libvirt.org:virtq:hv02"
STUCK: Dict[str, Any] = {"libvirt": "unresponsive", "stuck": 2, "stuck_age": 42.4, "stuck_call": "destroy"}


def test_health_from_heartbeat_attributes() -> None:
    assert AgentHealth.from_attributes({}).ok  # an older agent says nothing: ok
    assert AgentHealth.from_attributes({"libvirt": "ok", "stuck": 0}).state == "ok"
    assert AgentHealth.from_attributes(STUCK).state == \
        "degraded: libvirt unresponsive, 2 stuck calls, oldest 42 s destroy"
    assert AgentHealth.from_attributes({"libvirt": "ok", "stuck": 1, "stuck_age": 3, "stuck_call": "suspend"}).reason \
        == "1 stuck call, oldest 3 s suspend"
    # ill-typed values from a broken agent are tolerated, a hostile text is escaped
    odd = AgentHealth.from_attributes({"libvirt": 7, "stuck": "many", "stuck_age": "old", "stuck_call": "\x1b[2J"})
    assert odd.libvirt == "unknown" and odd.stuck == 0 and "\x1b" not in odd.reason


def test_degraded_and_recovered_once_per_transition() -> None:
    console = Console(timeout=2)
    transport = RecordingTransport()
    events: List[Event] = []
    subscription = console.subscribe(events.append, kinds=(AgentDegraded, AgentRecovered))
    follow(console, transport, HV01, [domain(HV01, "1", "web1")])
    feed(console, transport, heartbeat(HV01, **STUCK))
    feed(console, transport, heartbeat(HV01, **{**STUCK, "stuck": 3}))  # still degraded: no second event
    wait_until(lambda: len(events) == 1)
    degraded = events[0]
    assert isinstance(degraded, AgentDegraded) and degraded.reason.startswith("libvirt unresponsive, 2 stuck calls")
    assert degraded.agent.health.stuck == 2 and console.agents.get(HV01).health.stuck == 3
    feed(console, transport, heartbeat(HV01, libvirt="ok", stuck=0))
    feed(console, transport, heartbeat(HV01, libvirt="ok", stuck=0))
    wait_until(lambda: len(events) == 2)
    assert isinstance(events[1], AgentRecovered) and events[1].agent.health.ok
    subscription.close()
    console.close()


def test_an_agent_degraded_from_its_first_answer() -> None:
    console = Console(timeout=2)
    events: List[Event] = []
    subscription = console.subscribe(events.append, kinds=AgentDegraded)
    follow(console, RecordingTransport(), HV01, [], libvirt="unresponsive")
    wait_until(lambda: len(events) == 1)
    subscription.close()
    console.close()


def test_virtq_agents_shows_the_state() -> None:
    console = Console(timeout=2)
    one, two = RecordingTransport(), RecordingTransport()
    follow(console, one, HV01, [])
    follow(console, two, HV02, [])
    feed(console, one, heartbeat(HV01, **STUCK))
    result = run_cli(["agents"], obj=console)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[-1] == "STATE"
    assert lines[1].endswith("degraded: libvirt unresponsive, 2 stuck calls, oldest 42 s destroy")
    assert lines[2].endswith(" ok")
    rows = json.loads(run_cli(["--json", "agents"], obj=console).output)
    assert rows[0]["state"].startswith("degraded") and rows[0]["health"]["stuck"] == 2
    assert rows[1]["health"] == {"libvirt": "ok", "stuck": 0, "stuck_age": 0.0, "stuck_call": ""}
    seen = console.agents.get(HV02).last_seen
    console.clock = lambda: seen + 10
    console.check_agents()
    assert run_cli(["agents"], obj=console).output.splitlines()[2].endswith(" lost")
    console.close()


def test_the_cli_escapes_control_characters_an_agent_supplied() -> None:
    console = Console(timeout=2)
    transport = RecordingTransport()
    evil = "web\x1b[2J\x1b]0;owned\x07\rroot\n"
    follow(console, transport, HV01, [domain(HV01, "1", evil)], hostname="hv\x1b[31m01")
    push(console, transport, HV01, [domain(HV01, "1", evil)])
    for args in (["list", "domains", "--all"], ["show", "domain", "1"], ["agents"]):
        result = run_cli(args, obj=console)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output and "\r" not in result.output
        assert "\\x1b" in result.output
    assert "web\\x1b[2J\\x1b]0;owned\\x07\\rroot\\n" in run_cli(["list", "domains", "--all"], obj=console).output
    as_json = run_cli(["--json", "list", "domains", "--all"], obj=console).output
    assert "\x1b" not in as_json and json.loads(as_json)[0]["name"] == evil  # JSON escapes, and keeps the value
    console.close()


def test_watch_knows_the_new_kinds() -> None:
    from virtq.console.cli import KINDS
    from virtq.console.events import LimitReached

    assert KINDS["agent-degraded"] is AgentDegraded and KINDS["agent-recovered"] is AgentRecovered
    assert KINDS["limit"] is LimitReached


def test_watch_lines_of_the_new_kinds_and_xml_output() -> None:
    from datetime import datetime

    from virtq.console.cli import Watcher, xml_text
    from virtq.console.events import LimitReached

    console = Console(timeout=2)
    transport = RecordingTransport()
    follow(console, transport, HV01, [], **STUCK)
    watcher = Watcher(console, ())
    view = console.agents.get(HV01)
    now = datetime(2026, 1, 1, 12, 0, 0)
    assert watcher.line(AgentDegraded(view, view.health.reason), now).endswith(
        "hv01 agent libvirt.org:virtq:hv01 degraded: libvirt unresponsive, 2 stuck calls, oldest 42 s destroy")
    assert watcher.record(AgentRecovered(view), now)["type"] == "agent-recovered"
    assert watcher.line(LimitReached("agents", 5, "agent x not followed"), now).endswith(
        "-- limit agents (5) reached: agent x not followed")
    assert watcher.wants(LimitReached("agents", 5, ""))
    assert xml_text("<a>\n\t<b>\x1b[2J\x9b</b></a>") == "<a>\n\t<b>\\x1b[2J\\x9b</b></a>"
    console.close()
