"""``virtq list`` and ``virtq show`` as handy as ``virsh list`` and ``virsh dominfo``: the pushed state, memory
and vCPUs of every domain without a call per domain; active domains unless ``--all`` or ``--state``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
from pytest_mock import MockerFixture

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import free_port

from ..helpers import VIRTQ, agent_process, ok, run_process, stop_process, virtq
from .test_cli import fields, hostname, table

pytestmark = pytest.mark.integration

STATES = {"web1": "running", "web2": "running", "db1": "paused", "build": "shut off"}
"""tests/data/node.xml's domains as virsh names their states."""


def listed(*args: str, agent: Agent) -> Dict[str, Dict[str, str]]:
    return {r["name"]: r for r in table(ok(virtq("list", "domains", *args, urls=[agent])))}


def test_list_shows_the_pushed_state_memory_and_vcpus_without_calls(node_agent: Agent, console: Console,
                                                                    mocker: MockerFixture) -> None:
    calls = mocker.spy(node_agent.dispatcher, "call")
    rows = listed("--all", agent=node_agent)
    assert {n: r["state"] for n, r in rows.items()} == STATES
    assert {(r["vcpus"], r["mem(mib)"]) for r in rows.values()} == {("1", "64")}
    assert {r["host"] for r in rows.values()} == {hostname(console)}
    assert calls.call_count == 0  # the pushed statistics, not getInfo per domain


def test_list_without_all_shows_the_active_domains_as_virsh_does(node_agent: Agent) -> None:
    assert {n: r["state"] for n, r in listed(agent=node_agent).items()} == {
        n: s for n, s in STATES.items() if n != "build"}


@pytest.mark.parametrize("states, expected", [
    (["running"], {"web1", "web2"}),
    (["paused"], {"db1"}),
    (["shutoff"], {"build"}),  # inactive, yet shown: --state filters every domain
    (["paused", "shutoff"], {"db1", "build"}),
])
def test_list_state_filter(states: list[str], expected: set[str], node_agent: Agent) -> None:
    args = [a for s in states for a in ("--state", s)]
    assert set(listed(*args, agent=node_agent)) == expected
    as_json = json.loads(ok(virtq("--json", "list", "domains", *args, urls=[node_agent])))
    assert {d["name"] for d in as_json} == expected and {d["state"] for d in as_json} == set(states)


def test_list_json_carries_the_same_fields(node_agent: Agent, console: Console) -> None:
    records = {d["name"]: d for d in json.loads(ok(virtq("--json", "list", "domains", "--all", urls=[node_agent])))}
    assert {n: d["state"] for n, d in records.items()} == {"web1": "running", "web2": "running", "db1": "paused",
                                                          "build": "shutoff"}  # one word each, as --state takes
    for record in records.values():
        assert (record["memory_mib"], record["vcpus"], record["host"]) == (64.0, 1, hostname(console))
        assert {"uuid", "id", "agent", "object", "configGen"} <= set(record)


def test_an_empty_list_says_so(node_agent: Agent) -> None:
    assert ok(virtq("list", "domains", "--state", "crashed", urls=[node_agent])) == "no domains\n"
    assert json.loads(ok(virtq("--json", "list", "domains", "--state", "crashed", urls=[node_agent]))) == []


def test_no_active_domain_says_where_the_others_are(node_agent: Agent, console: Console) -> None:
    for name in ("web1", "web2", "db1"):
        console.domains.get(name).destroy()
    assert console.wait_for(lambda: all(d.id == -1 for d in console.domains))
    out = ok(virtq("list", "domains", obj=console))
    assert out == "no active domains (--all lists inactive ones too)\n"
    assert set(listed("--all", agent=node_agent)) == set(STATES)


def test_state_filters_domains_only(node_agent: Agent) -> None:
    result = virtq("list", "pools", "--state", "running", urls=[node_agent])
    assert result.exit_code == 2 and "--state filters domains only" in result.stderr


def test_show_has_the_latest_statistics_and_config_gen(node_agent: Agent, console: Console) -> None:
    web1 = console.domains.get("web1")
    shown = fields(ok(virtq("show", "domain", "db1", urls=[node_agent])))
    assert shown["state"] == "paused"
    assert shown["memory"] == shown["maxMem"] == "65536 KiB"
    assert shown["nrVirtCpu"] == "1" and shown["cpuTime"].endswith(" ns")
    assert shown["configGen"] == str(console.domains.get("db1").configGen)
    assert shown["host"] == hostname(console)

    as_json = json.loads(ok(virtq("--json", "show", "domain", "web1", urls=[node_agent])))
    assert as_json["state"] == "running" and as_json["stats"]["state"] == 1
    assert as_json["stats"]["memory"] == 65536 and as_json["configGen"] == web1.configGen
    pool = fields(ok(virtq("show", "pool", "images", urls=[node_agent])))
    assert pool["capacity"].endswith(" bytes") and "configGen" in pool


def test_virtq_process_lists_a_real_agent_process(tmp_path: Path) -> None:
    """The installed command against a virtq-agent process on test:///default (one running domain)."""
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    with agent_process(["--libvirt", "test:///default", "--listen", url, "--heartbeat", "1", "--log-level",
                        "warning"], port, tmp_path) as (proc, log_path):
        done = run_process([str(VIRTQ), "-u", url, "list", "domains"], tmp_path)
        assert done.returncode == 0, done.stderr
        (row,) = table(done.stdout)
        assert (row["name"], row["state"], row["vcpus"]) == ("test", "running", "2")
        done = run_process([str(VIRTQ), "-u", url, "list", "domains", "--state", "paused"], tmp_path)
        assert (done.returncode, done.stdout) == (0, "no domains\n")
        stop_process(proc, log_path)
