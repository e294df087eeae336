"""The ``virtq`` CLI end to end: click's CliRunner against real agents over loopback AMQP,
then real ``virtq`` and ``virtq-agent`` processes.

Exit codes under test (console/cli/_errors.py): 0 ok, 2 usage, 3 unreachable, 4 unknown or
ambiguous reference, 5 remote error (libvirt's included), 6 timeout.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List

import libvirt
import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import agent_url, free_port, port_open

from ..helpers import NODE_URI, VIRTQ, agent_process, failed, ok, run_cli, run_process, stop_process, virtq

pytestmark = pytest.mark.integration


NODE_DOMAINS = {"web1", "web2", "db1", "build"}
NODE_VOLUMES = {"web1.img", "db1.qcow2", "debian.iso"}
DEBIAN_ISO = "/var/lib/virtq-test/isos/debian.iso"
NEW_VOLUME_XML = "<volume><name>scratch.img</name><capacity unit='MiB'>16</capacity></volume>"


# --- helpers -----------------------------------------------------------------------------------------

def table(text: str) -> List[Dict[str, str]]:
    """Rows of a CLI table keyed by lower-cased header, cut where the header's columns start (a cell may
    hold a space: a domain's state "shut off")."""
    header, *lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    columns = header.lower().split()
    bounds = list(zip(starts, starts[1:] + [None]))
    rows = [{c: line[a:b].strip() for c, (a, b) in zip(columns, bounds)} for line in lines]
    assert all(all(row.values()) for row in rows), text
    return rows


def fields(text: str) -> Dict[str, str]:
    """``show``'s ``key:   value`` lines."""
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def hostname(console: Console) -> str:
    (node,) = list(console.nodes)
    return str(node.hostname)


def dead_url() -> str:
    return f"amqp://127.0.0.1:{free_port()}"  # a free port nobody listens on


# --- reading: agents, list, show, xml, methods ---------------------------------------------------------

def test_agents_table_and_json(node_agent: Agent, console: Console) -> None:
    (view,) = list(console.agents)
    rows = table(ok(virtq("agents", urls=[node_agent])))
    assert [(r["name"], r["hostname"], r["url"]) for r in rows] == [
        (node_agent.name, view.hostname, agent_url(node_agent))]
    assert view.hostname

    listed = json.loads(ok(virtq("--json", "agents", urls=[node_agent])))
    assert isinstance(listed, list) and len(listed) == 1
    assert listed[0]["name"] == node_agent.name
    assert listed[0]["epoch"] == view.epoch == node_agent.epoch
    assert listed[0]["url"] == agent_url(node_agent)


IDENTITY = {"nodes": ("hostname", "uuid", "uri"), "domains": ("name", "uuid", "id"), "pools": ("name", "uuid"),
            "volumes": ("name", "key", "path")}


@pytest.mark.parametrize("kind", sorted(IDENTITY))
def test_list_table_and_json_equal_the_console_repositories(kind: str, node_agent: Agent, console: Console) -> None:
    keys = IDENTITY[kind]
    truth = {tuple(getattr(o, k) for k in keys) for o in console.repository(kind)}
    assert truth, f"the console sees no {kind}"

    rows = table(ok(virtq("list", kind, "--all", urls=[node_agent])))
    assert len(rows) == len(truth)
    assert {tuple(int(r[k]) if k == "id" else r[k] for k in keys) for r in rows} == truth
    assert {r["host"] for r in rows} == {hostname(console)}

    records = json.loads(ok(virtq("--json", "list", kind, "--all", urls=[node_agent])))
    assert len(records) == len(truth)
    assert {tuple(r[k] for k in keys) for r in records} == truth
    assert {r["object"] for r in records} == {o.object_id.object_name for o in console.repository(kind)}
    assert {r["agent"] for r in records} == {node_agent.name}


def test_list_shows_the_node_xml_objects(node_agent: Agent) -> None:
    assert {r["name"]: int(r["id"]) for r in table(ok(virtq("list", "domains", "--all", urls=[node_agent])))} == {
        "web1": 1, "web2": 2, "db1": 3, "build": -1}
    assert {r["name"] for r in table(ok(virtq("list", "pools", urls=[node_agent])))} == {"images", "isos"}
    assert {r["name"] for r in table(ok(virtq("list", "volumes", urls=[node_agent])))} == NODE_VOLUMES


def test_show_domain_and_volume(node_agent: Agent, console: Console) -> None:
    web1 = console.domains.get("web1")
    shown = fields(ok(virtq("show", "domain", "web1", urls=[node_agent])))
    assert shown["name"] == "web1" and shown["uuid"] == web1.uuid and shown["id"] == "1"
    assert shown["class"] == "Domain" and shown["agent"] == node_agent.name
    assert shown["object"] == web1.object_id.object_name

    as_json = json.loads(ok(virtq("--json", "show", "domain", web1.uuid, urls=[node_agent])))
    assert (as_json["name"], as_json["uuid"], as_json["id"]) == ("web1", web1.uuid, 1)

    iso = console.volumes.get(DEBIAN_ISO)
    shown = fields(ok(virtq("show", "volume", DEBIAN_ISO, urls=[node_agent])))
    assert (shown["name"], shown["key"], shown["path"]) == ("debian.iso", iso.key, DEBIAN_ISO)
    assert shown["pool"] == console.pools.get("isos").object_id.object_name


@pytest.mark.parametrize("scope", ["instance", "hostname"])
def test_show_domain_scoped_by_agent(scope: str, node_agent: Agent, console: Console) -> None:
    prefix = node_agent.instance if scope == "instance" else hostname(console)
    shown = fields(ok(virtq("show", "domain", f"{prefix}/web1", urls=[node_agent])))
    assert (shown["name"], shown["uuid"]) == ("web1", console.domains.get("web1").uuid)


def test_xml_prints_the_domain_description(node_agent: Agent, console: Console) -> None:
    out = ok(virtq("xml", "domain", "web1", urls=[node_agent]))
    root = ET.fromstring(out)
    assert root.tag == "domain"
    assert root.findtext("uuid") == console.domains.get("web1").uuid
    assert root.findtext("name") == "web1"


def test_methods_needs_no_connection() -> None:
    result = virtq("methods", "domain", urls=[dead_url()])
    rows = {r["method"]: r for r in table(ok(result))}
    assert rows["getXMLDesc"]["libvirt"] == "virDomainGetXMLDesc"
    assert {"getInfo", "suspend", "resume", "create"} <= set(rows)
    assert result.stderr == ""  # no connection attempted, so no warning either

    listed = {m["method"]: m for m in json.loads(ok(virtq("--json", "methods", "domain", urls=[dead_url()])))}
    assert listed["getXMLDesc"]["libvirt"] == "virDomainGetXMLDesc"
    assert listed["getXMLDesc"]["out"] == ["xml:lstr"]


# --- calling --------------------------------------------------------------------------------------------

def test_suspend_then_getinfo_shows_paused(node_agent: Agent, console: Console) -> None:
    assert ok(virtq("call", "domain", "web1", "suspend", urls=[node_agent])).strip() == "ok"
    info = fields(ok(virtq("call", "domain", "web1", "getInfo", urls=[node_agent])))
    assert info["state"] == f"{libvirt.VIR_DOMAIN_PAUSED} (paused)" == "3 (paused)"  # the code, named
    parsed = json.loads(ok(virtq("--json", "call", "domain", "web1", "getInfo", urls=[node_agent])))
    assert parsed["result"]["state"] == 3
    assert console.domains.get("web1").getInfo()["state"] == libvirt.VIR_DOMAIN_PAUSED


def test_cli_driven_with_a_given_console(node_agent: Agent, console: Console) -> None:
    """obj=<connected Console>: the CLI uses it (the -u URL, which nothing serves, is never dialled)."""
    unused = [dead_url()]
    assert fields(ok(virtq("show", "domain", "build", urls=unused, obj=console)))["id"] == "-1"
    assert ok(virtq("call", "domain", "build", "create", urls=unused, obj=console)).strip() == "ok"
    # The agent pushes the new state before it answers, so the given console already has it.
    assert int(fields(ok(virtq("show", "domain", "build", urls=unused, obj=console)))["id"]) > 0
    assert console.domains.get("build").id > 0
    # The CLI did not close a console it was given.
    assert console.domains.get("build").getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING
    # A fresh CLI console (its own connection) sees the same.
    assert int(fields(ok(virtq("show", "domain", "build", urls=[node_agent])))["id"]) > 0


def test_call_node_by_hostname_get_version(node_agent: Agent, console: Console) -> None:
    truth = libvirt.open(NODE_URI)
    try:
        version = truth.getVersion()
    finally:
        truth.close()
    host = hostname(console)
    assert ok(virtq("call", "node", host, "getVersion", urls=[node_agent])).strip() == str(version)
    assert json.loads(ok(virtq("--json", "call", "node", host, "getVersion", urls=[node_agent]))) == {
        "result": version}


def test_storage_vol_create_xml_then_listed(node_agent: Agent, console: Console) -> None:
    out = ok(virtq("call", "pool", "images", "storageVolCreateXML", f"xmlDesc={NEW_VOLUME_XML}", urls=[node_agent]))
    created = dict(pair.partition("=")[::2] for pair in out.split())
    assert created["class"] == "Volume" and created["name"] == "scratch.img"
    images = console.pools.get("images")
    assert created["pool"] == images.object_id.object_name

    rows = {r["name"]: r for r in table(ok(virtq("list", "volumes", urls=[node_agent])))}
    assert set(rows) == NODE_VOLUMES | {"scratch.img"}
    assert rows["scratch.img"]["key"] == created["key"]
    assert rows["scratch.img"]["pool"] == images.object_id.object_name
    assert console.volumes.get(created["key"]).name == "scratch.img"


# --- errors and exit codes ------------------------------------------------------------------------------

def test_unknown_ref_exits_4(node_agent: Agent) -> None:
    err = failed(virtq("call", "domain", "nosuch", "getInfo", urls=[node_agent]), 4)
    assert "no domain matches 'nosuch'" in err


def test_ambiguous_ref_exits_4_and_agent_scope_resolves_it(start_agent: Callable[..., Agent],
                                                            connect: Callable[..., Console]) -> None:
    alpha, beta = start_agent(NODE_URI, instance="alpha"), start_agent(NODE_URI, instance="beta")
    both = [alpha, beta]
    err = failed(virtq("show", "domain", "web1", urls=both), 4)
    assert "'web1' matches 2 domains" in err

    shown = fields(ok(virtq("show", "domain", "alpha/web1", urls=both)))
    assert (shown["name"], shown["agent"]) == ("web1", alpha.name)
    assert ok(virtq("call", "domain", "beta/web1", "suspend", urls=both)).strip() == "ok"
    console = connect(alpha, beta)
    states = {d.agent: d.getInfo()["state"] for d in console.domains if d.name == "web1"}
    assert states == {alpha.name: libvirt.VIR_DOMAIN_RUNNING, beta.name: libvirt.VIR_DOMAIN_PAUSED}

    host = hostname(connect(alpha))  # both agents serve the same host: its name is ambiguous too
    failed(virtq("call", "node", host, "getVersion", urls=both), 4)
    assert fields(ok(virtq("show", "node", f"beta/{host}", urls=both)))["agent"] == beta.name


def test_libvirt_error_exits_5(node_agent: Agent) -> None:
    err = failed(virtq("call", "domain", "web1", "resume", urls=[node_agent]), 5)  # web1 is running
    assert re.search(r"libvirt error 0x1[0-9a-f]{4}: ", err), err
    assert "not paused" in err


def test_unreachable_exits_3() -> None:
    url = dead_url()
    err = failed(virtq("list", "domains", urls=[url]), 3)
    assert "unreachable" in err and url in err


def test_timeout_exits_6(node_agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent holds the call (as a stuck libvirt call would) until after the CLI gave up."""
    release = threading.Event()
    answer = node_agent.dispatcher.call

    def held(request: Any, principal: Any = None) -> Any:
        release.wait(5)
        return answer(request, principal)

    monkeypatch.setattr(node_agent.dispatcher, "call", held)
    try:
        err = failed(virtq("--timeout", "0.3", "call", "domain", "web1", "getInfo", urls=[node_agent]), 6)
    finally:
        release.set()
    assert "timeout" in err and "getInfo" in err


@pytest.mark.parametrize("args, expected", [
    (["frob"], ["no method 'frob'", "virtq methods domain"]),
    (["suspnd"], ["no method 'suspnd'", "did you mean suspend?"]),
    (["getXMLDesc", "flag=0"], ["no argument 'flag'", "did you mean flags?"]),
    (["reboot", "flags=VIR_DOMAIN_REBOOT_ACPI_POWER_BTN|VIR_DOMAIN_REBOT_GUEST_AGENT"],
     ["'VIR_DOMAIN_REBOT_GUEST_AGENT' is no libvirt constant", "did you mean VIR_DOMAIN_REBOOT_GUEST_AGENT"]),
    (["reboot", "flags=x"], ["flags", "'x'"]),
    (["reboot", "bogus=1"], ["no argument 'bogus'", "flags"]),
    (["reboot", "flags"], ["'flags' is not NAME=VALUE"]),
], ids=["unknown-method", "misspelt-method", "misspelt-argument", "misspelt-constant", "bad-value",
        "unknown-argument", "no-equals"])
def test_usage_errors_exit_2(args: List[str], expected: List[str], node_agent: Agent, console: Console) -> None:
    err = failed(virtq("call", "domain", "web1", *args, urls=[node_agent]), 2)
    assert "Usage:" in err
    for text in expected:
        assert text in err
    assert console.domains.get("web1").getInfo()["state"] == libvirt.VIR_DOMAIN_RUNNING  # nothing was called


def test_one_unreachable_url_is_a_warning(node_agent: Agent) -> None:
    url = dead_url()
    result = virtq("--partial-ok", "list", "domains", "--all", urls=[url, node_agent])
    assert {r["name"] for r in table(ok(result))} == NODE_DOMAINS
    assert "warning:" in result.stderr and url in result.stderr


# --- real processes ---------------------------------------------------------------------------------------

def test_cli_process_lists_domains(node_agent: Agent, tmp_path: Path) -> None:
    done = run_process([sys.executable, "-m", "virtq.console.cli", "-u", agent_url(node_agent), "list", "domains",
                        "--all"],
                       tmp_path)
    assert done.returncode == 0, done.stderr
    assert {r["name"] for r in table(done.stdout)} == NODE_DOMAINS

    done = run_process([str(VIRTQ), "-u", agent_url(node_agent), "call", "domain", "nosuch", "getInfo"], tmp_path)
    assert done.returncode == 4 and "no domain matches 'nosuch'" in done.stderr


def test_agent_process_serves_the_cli_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    with agent_process(["--libvirt", "test:///default", "--listen", url, "--heartbeat", "1", "--log-level", "warning"],
                 port, tmp_path) as (proc, log_path):
        done = run_process([str(VIRTQ), "-u", url, "--json", "list", "domains"], tmp_path)
        assert done.returncode == 0, done.stderr
        assert [d["name"] for d in json.loads(done.stdout)] == ["test"]  # test:///default's one domain
        done = run_process([str(VIRTQ), "-u", url, "--json", "call", "domain", "test", "getInfo"], tmp_path)
        assert done.returncode == 0 and json.loads(done.stdout)["result"]["state"] == libvirt.VIR_DOMAIN_RUNNING
        stop_process(proc, log_path)
    assert not port_open(port)


def test_agent_process_honours_its_config_file(tmp_path: Path) -> None:
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    config = tmp_path / "agent.conf"
    config.write_text("[agent]\n"
                      f"libvirt = {NODE_URI}\n"
                      f"listen = {url}\n"
                      "heartbeat = 1\n"
                      "instance = from-file\n"
                      f"state-dir = {tmp_path / 'state'}\n"
                      "log_level = warning\n")
    # The command line wins over the file: --instance overrides the file's instance.
    with agent_process(["--config", str(config), "--instance", "from-cli"], port, tmp_path) as (proc, log_path):
        (agent,) = json.loads(ok(virtq("--json", "agents", urls=[url])))
        assert agent["name"] == "libvirt.org:virtq:from-cli"
        assert agent["uri"] == NODE_URI
        assert agent["epoch"] == 1  # a fresh state-dir from the file
        assert {r["name"] for r in table(ok(virtq("list", "domains", "--all", urls=[url])))} == NODE_DOMAINS
        stop_process(proc, log_path)
    assert (tmp_path / "state" / "epoch").read_text().strip() == "1"


def test_a_password_never_shows_in_cli_errors() -> None:
    """Written raw, with the characters that used to cut it in two (/ # ? @)."""
    secret = "pa/ss#wo?rd@x"
    result = run_cli(["-u", f"amqp://guest:{secret}@127.0.0.1:{free_port()}", "--addressing", "rabbitmq",
                      "--timeout", "1", "-vv", "agents"])
    assert result.exit_code == 3
    assert "guest:***@127.0.0.1" in result.stderr
    for part in ("pa/ss", "wo?rd", "rd@x", secret):
        assert part not in result.stderr and part not in result.stdout
