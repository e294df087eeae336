"""``virtq call`` as handy as virsh: results printed as tables and indented values (never a Python repr),
a line for an empty result, libvirt constants by name, string arguments from files or stdin, and usage
errors (exit 2, nothing sent) that suggest the closest name."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import Result
from pytest_mock import MockerFixture

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import agent_url

from ..helpers import failed, ok, run_cli, virtq
from .test_cli import NEW_VOLUME_XML, hostname, table

pytestmark = pytest.mark.integration

SCRATCH_XML = "<domain type='test'><name>scratch</name><memory>65536</memory><os><type>hvm</type></os></domain>"


def no_repr(text: str) -> str:
    assert not any(mark in text for mark in ("[{", "{'", "['", "ObjectId(", "<Domain")), text
    return text


def test_a_list_of_objects_prints_as_a_table(node_agent: Agent, console: Console) -> None:
    host = hostname(console)
    out = no_repr(ok(virtq("call", "node", host, "listAllDomains", "flags=VIR_CONNECT_LIST_DOMAINS_INACTIVE",
                           urls=[node_agent])))
    (row,) = table(out)  # the columns of virtq list domains
    assert (row["name"], row["id"], row["state"]) == ("build", "-1", "shut off")


def test_empty_results_say_so(node_agent: Agent, console: Console) -> None:
    host = hostname(console)
    out = ok(virtq("call", "node", host, "listAllStoragePools", "flags=VIR_CONNECT_LIST_STORAGE_POOLS_INACTIVE",
                   urls=[node_agent]))
    assert out == "no pools\n"
    assert ok(virtq("call", "node", host, "listDefinedStoragePools", urls=[node_agent])) == "(empty)\n"


def test_lists_and_maps_print_as_indented_values(node_agent: Agent, console: Console) -> None:
    host = hostname(console)
    assert ok(virtq("call", "node", host, "listDefinedDomains", urls=[node_agent])) == "- build\n"
    out = no_repr(ok(virtq("call", "domain", "web1", "getVcpus", urls=[node_agent])))
    lines = out.splitlines()
    assert lines[0] == "info:" and "cpumaps:" in lines
    assert "  -" in lines and any(line.startswith("    number: ") for line in lines), out
    assert "  - True, True, True, True, True, True, True, True" in lines  # node.xml: 8 CPUs


def test_states_print_with_their_names(node_agent: Agent) -> None:
    """A state code is named as libvirt's enums name it (Domain getInfo/getState, Pool getInfo); --json keeps
    the number."""
    info = ok(virtq("call", "domain", "web1", "getInfo", urls=[node_agent])).splitlines()
    assert "state: 1 (running)" in info and "maxMem: 65536" in info, info
    assert ok(virtq("call", "domain", "build", "getState", urls=[node_agent])).splitlines()[0] == "state: 5 (shutoff)"
    assert "state: 2 (running)" in ok(virtq("call", "pool", "images", "getInfo", urls=[node_agent])).splitlines()
    parsed = json.loads(ok(virtq("--json", "call", "domain", "web1", "getInfo", urls=[node_agent])))
    assert parsed["result"]["state"] == 1


def test_flags_by_libvirt_constant_names(node_agent: Agent) -> None:
    flags = "flags=VIR_DOMAIN_XML_INACTIVE|VIR_DOMAIN_XML_SECURE"
    document = ok(virtq("call", "domain", "web1", "getXMLDesc", flags, urls=[node_agent]))
    assert ET.fromstring(document).findtext("name") == "web1"
    assert ET.fromstring(ok(virtq("xml", "domain", "web1", "--flags", "VIR_DOMAIN_XML_INACTIVE",
                                  urls=[node_agent]))).tag == "domain"
    err = failed(virtq("xml", "domain", "web1", "--flags", "VIR_DOMAIN_XML_INACTIV", urls=[node_agent]), 2)
    assert "did you mean VIR_DOMAIN_XML_INACTIVE" in err


def test_string_arguments_from_a_file_and_from_stdin(node_agent: Agent, console: Console, tmp_path: Path) -> None:
    volume = tmp_path / "vol.xml"
    volume.write_text(NEW_VOLUME_XML)
    out = ok(virtq("call", "pool", "images", "storageVolCreateXML", f"xmlDesc=@{volume}", urls=[node_agent]))
    assert "name=scratch.img" in out.split()

    args = ["-u", agent_url(node_agent), "call", "node", hostname(console), "domainDefineXML", "xml=@-"]
    assert "name=scratch" in ok(run_stdin(args, SCRATCH_XML)).split()
    assert console.wait_for(lambda: any(d.name == "scratch" for d in console.domains))

    err = failed(virtq("call", "pool", "images", "storageVolCreateXML", f"xmlDesc=@{tmp_path / 'nope.xml'}",
                       urls=[node_agent]), 2)
    assert "cannot read" in err and "nope.xml" in err


def run_stdin(args: list[str], text: str) -> Result:
    from click.testing import CliRunner

    from virtq.console.cli import cli
    return CliRunner().invoke(cli, args, input=text, catch_exceptions=False)


def test_a_missing_argument_is_a_usage_error(node_agent: Agent, mocker: MockerFixture) -> None:
    calls = mocker.spy(node_agent.dispatcher, "call")
    err = failed(virtq("call", "pool", "images", "storageVolCreateXML", urls=[node_agent]), 2)
    assert "Usage:" in err and "storageVolCreateXML needs xmlDesc=VALUE" in err
    assert calls.call_count == 0


def test_class_names_suggest_the_closest() -> None:
    result = run_cli(["-u", "amqp://127.0.0.1:1", "call", "domian", "web1", "getInfo"])
    assert result.exit_code == 2 and "did you mean domain?" in result.stderr
    result = run_cli(["-u", "amqp://127.0.0.1:1", "list", "domain"])
    assert result.exit_code == 2 and "did you mean domains?" in result.stderr


def test_a_method_name_is_checked_before_connecting() -> None:
    result = run_cli(["-u", "amqp://127.0.0.1:1", "call", "domain", "web1", "suspnd"])
    assert result.exit_code == 2 and "did you mean suspend?" in result.stderr
    assert "unreachable" not in result.stderr


def test_json_results_stay_plain_data(node_agent: Agent, console: Console) -> None:
    parsed = json.loads(ok(virtq("--json", "call", "node", hostname(console), "listDefinedDomains",
                                 urls=[node_agent])))
    assert parsed == {"result": ["build"]}
