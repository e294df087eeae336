"""How agents advertise migrations (agent/migration.py) and what a console refuses before libvirt is asked
(console/_migration.py): the destination's URI, its consent, the source's domain:migrate."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from virtq.agent import Agent
from virtq.agent.health import CallTracker
from virtq.agent.migration import MigrationEndpoint, accepted_from, implied_uri, lane
from virtq.agent.policy import Policy
from virtq.console import Console, MigrationRefusedError
from virtq.console._migration import principal_at
from virtq.console.repository import AgentView
from virtq.schema import default_schema
from virtq.schema.codec import DataRecord, ObjectId
from virtq.schema.errors import AccessDeniedError
from virtq.transport import TlsConfig

from ..pki import Pki

SCHEMA = default_schema()
A, B = "libvirt.org:virtq:host-a", "libvirt.org:virtq:host-b"
UUID = "7c1a9e52-3f0b-4d8e-9a61-2b5c8d4e7f10"


@pytest.mark.parametrize("connection, expected", [
    ("qemu:///system", "qemu://hv02.example.org/system"),
    ("qemu+tls://hv02/system", "qemu+tls://hv02/system"),
    ("qemu+unix:///system?socket=/run/a/libvirt-sock", "qemu+unix:///system?socket=/run/a/libvirt-sock"),
    ("qemu:///session", "qemu://hv02.example.org/session"),
])
def test_the_uri_a_peer_reaches_this_libvirtd_at(connection: str, expected: str) -> None:
    assert implied_uri(connection, "hv02.example.org") == expected


def test_what_an_agent_advertises() -> None:
    policy = Policy.parse("[principal ops]\nroles = operator\n[principal admin]\nroles = admin\n"
                          "[principal *]\npermissions = domain:migrate domain:read\n", SCHEMA)
    assert accepted_from(policy) == ["*", "admin"]
    endpoint = MigrationEndpoint.of("qemu:///system", "hv02", address="192.0.2.12")
    assert endpoint.attributes(policy) == {"migration_uri": "qemu://hv02/system", "migration_from": ["*", "admin"],
                                           "migration_address": "192.0.2.12"}
    configured = MigrationEndpoint.of("qemu:///system", "hv02", uri="qemu+ssh://hv02/system")
    assert configured.attributes(Policy.nobody("none")) == {"migration_uri": "qemu+ssh://hv02/system",
                                                           "migration_from": []}


def test_a_migrate_call_runs_beside_its_domain_apartment() -> None:
    assert lane("Domain:x", "migrateToURI3") == "Domain:x#migration"
    assert lane("Domain:x", "getJobStats") == lane("Domain:x", "abortJob") == "Domain:x"


def test_heartbeats_carry_the_migration_keys(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent("test:///default", migration_uri="test+tcp://hv/default", migration_address="127.0.0.1")
    attributes = agent.info().attributes
    assert attributes["migration_uri"] == "test+tcp://hv/default"
    assert attributes["migration_address"] == "127.0.0.1"
    assert attributes["migration_from"] == ["*", "anonymous"]  # the test driver on loopback: everything


def test_the_source_needs_domain_migrate(start_agent: Callable[..., Agent], connect: Callable[..., Console]) -> None:
    operators = Policy.parse("[principal anonymous]\nroles = operator\n", SCHEMA)
    console = connect(start_agent("test:///default", policy=operators))
    with pytest.raises(AccessDeniedError, match="lacks domain:migrate"):
        console.call(console.domains.get("test"), "migrateToURI3",
                     {"dconnuri": "test:///default", "params": {}, "flags": 2})


def _console(b_attributes: Any) -> Console:
    console = Console()
    console.agents.put(A, AgentView(A, 1, 1, hostname="hv01", attributes={"migration_uri": "qemu://hv01/system"}))
    console.agents.put(B, AgentView(B, 1, 1, hostname="hv02", attributes=b_attributes))
    console.updater.apply_records([DataRecord(ObjectId(f"Domain:{UUID}", A, 1), SCHEMA.cls("Domain").schema_id,
                                              {"uuid": UUID, "name": "web1", "id": 1, "state": 1}, 10, 1)])
    return console


@pytest.mark.parametrize("attributes, why", [
    ({}, "advertises no migration_uri"),
    ({"migration_uri": "qemu://hv02/system", "migration_from": ["ops"]}, "does not let anonymous migrate"),
    ({"migration_uri": "qemu://hv02/system", "migration_from": []}, "grants domain:migrate to nobody"),
])
def test_a_destination_that_cannot_be_used_is_refused_at_once(attributes: Any, why: str) -> None:
    console = _console(attributes)
    console._urls["amqp://127.0.0.1:1"] = "amqp://127.0.0.1:1"
    console.agents.put(B, AgentView(B, 1, 1, hostname="hv02", url="amqp://127.0.0.1:1", attributes=attributes))
    with pytest.raises(MigrationRefusedError, match=why):
        console.migrate(console.domains.get(UUID), to="hv02")
    with pytest.raises(MigrationRefusedError, match="already"):
        console.migrate(console.domains.get(UUID), to="hv01")


def test_who_a_console_is_to_an_agent(pki: Pki) -> None:
    tls = pki.tls("ops")
    urls = {"amqps://hv01:5671": "amqps://hv01:5671", "amqp://127.0.0.1:5672": "amqp://127.0.0.1:5672"}
    assert principal_at(AgentView(A, 1, 1, url="amqps://hv01:5671"), urls, tls) == "ops"
    assert principal_at(AgentView(A, 1, 1, url="amqp://127.0.0.1:5672"), urls, TlsConfig()) == "anonymous"
    assert principal_at(AgentView(A, 1, 1, url="amqp://broker:5672"), {}, TlsConfig()) is None  # not known here
    assert principal_at(AgentView(A, 1, 1, url="amqp://broker:5672"),
                        {"amqp://broker:5672": "amqp://ann:secret@broker:5672"}, TlsConfig()) == "ann"




def test_a_long_migration_is_not_a_stuck_call() -> None:
    now = [0.0]
    tracker = CallTracker(clock=lambda: now[0])
    with tracker.track("Domain:x virDomainMigrateToURI3"), tracker.track("Domain:x virDomainGetJobStats"):
        now[0] = 60.0
        health = tracker.health(8.0)
    assert (health.stuck, health.stuck_call) == (1, "Domain:x virDomainGetJobStats")
