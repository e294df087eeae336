"""`virtq agents` introspection (issue 13, item 4) against a real agent on the test driver: its heartbeats
carry its version, libvirt reconnects and object counts, and the CLI shows them with the heartbeat's age."""

from __future__ import annotations

import json
from typing import Callable

import pytest

from virtq import __version__
from virtq.agent import Agent
from virtq.console import Console

from ..helpers import ok, virtq
from .test_cli import table

pytestmark = pytest.mark.integration

NODE_OBJECTS = {"Node": 1, "Domain": 4, "Pool": 2, "Volume": 3}  # tests/data/node.xml


def test_heartbeats_say_version_reconnects_and_objects(node_agent: Agent, console: Console) -> None:
    attributes = node_agent.info().attributes
    assert attributes["version"] == __version__ and attributes["hypervisor_reconnects"] == 0
    assert attributes["objects"] == NODE_OBJECTS
    agent = console.agents.get(node_agent.name)  # from its locate answer: the same attributes
    assert agent.version == __version__ and agent.objects == NODE_OBJECTS and agent.libvirt_reconnects == 0
    assert agent.schema_hash == console.schema.hash and not agent.schema_mismatch


def test_virtq_agents_columns_and_json(node_agent: Agent, connect: Callable[..., Console]) -> None:
    result = virtq("agents", urls=[node_agent])
    assert result.stderr == ""  # no schema warning: the same schema
    (row,) = table(ok(result))
    assert list(row) == ["name", "hostname", "version", "epoch", "heartbeat", "libvirt", "reconnects", "domains",
                         "pools", "volumes", "url", "state"]
    assert (row["name"], row["version"], row["epoch"], row["libvirt"], row["reconnects"]) == \
        (node_agent.name, __version__, str(node_agent.epoch), "connected", "0")
    assert (row["domains"], row["pools"], row["volumes"], row["state"]) == ("4", "2", "3", "ok")
    assert row["heartbeat"].endswith("s") and int(row["heartbeat"][:-1]) <= 3  # heartbeat every second

    (listed,) = json.loads(ok(virtq("--json", "agents", urls=[node_agent])))
    assert listed["version"] == __version__ and listed["objects"] == NODE_OBJECTS
    assert listed["libvirt"] == "connected" and listed["libvirt_connected"] is True
    assert listed["libvirt_reconnects"] == 0 and listed["transport_reconnects"] == 0
    assert listed["schema_mismatch"] is False and listed["schema_hash"] == node_agent.schema.hash
    assert 0 <= listed["heartbeat_age"] < 3 and listed["heartbeat"] == 1 and listed["state"] == "ok"
