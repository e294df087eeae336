"""Live migration through the console between two real libvirtds (tests/realhv/two_hosts.py), each served by
an agent in direct mode: there (the API) and back (`virtq migrate`), an abort mid-way, the source agent
restarted mid-migration, a switch to post-copy, a destination whose libvirtd is down.

After each, the console's repositories equal both libvirts' truth; a subscriber that asks for migration
events sees one DomainMigrated per move (with the downtime) and no ObjectRemoved/ObjectAdded pair."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import libvirt
import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.agent.policy import Policy
from virtq.console import Console, MigrationAbortedError, MigrationFailedError
from virtq.console.events import DomainMigrated, Event, MigrationProgress, ObjectAdded, ObjectRemoved
from virtq.console.subscriptions import Subscription
from virtq.console.typed import Domain
from virtq.schema import default_schema
from virtq.testing import wait_until
from virtq.testing.agents import agent_url, start_local_agent
from virtq.transport import DirectListener

from ..helpers import ok, virtq
from ..pki import Pki
from .conftest import ADMIN_POLICY, IN_CI
from .harness import HarnessError, Unavailable
from .two_hosts import Host, TwoHosts, dirtying_firmware, migratable_guest_xml

pytestmark = pytest.mark.realhv

RUNNING = libvirt.VIR_DOMAIN_RUNNING
STATES: Dict[str, Path] = {}
"""Each agent's state directory, by name (a restarted agent keeps its epoch counter)."""
WATCHED = (DomainMigrated, MigrationProgress, ObjectAdded, ObjectRemoved)


def started(root: Path) -> TwoHosts:
    """Two libvirtds: skipped where they cannot run (not root, no unshare), except in CI; failed otherwise."""
    try:
        pair = TwoHosts(root)
        pair.start()
        return pair
    except Unavailable as exc:
        message = f"two libvirtds unavailable{' in CI' if IN_CI else ''}: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    except HarnessError as exc:
        pytest.fail(f"two libvirtds failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    pair = started(tmp_path_factory.mktemp("hosts"))
    yield pair
    pair.stop()


def agent_on(host: Host, state: Path, pki: Pki, url: Optional[str] = None) -> Agent:
    """An agent in direct mode on a host's libvirtd (on ``url``: where an agent that stopped listened)."""
    options: Dict[str, Any] = dict(state_dir=state, policy=Policy.parse(ADMIN_POLICY, default_schema()), heartbeat=0.5,
                                   interval=0.5, stuck_after=60.0, migration_address="127.0.0.1")
    if url is None:
        agent = start_local_agent(host.uri, tls=pki.tls("agent", cn="hv"), **options)
    else:
        agent = Agent(default_schema(), LibvirtHypervisor(host.uri),
                      DirectListener(url, tls=pki.tls("agent", cn="hv")), **options)
        agent.start()
    STATES[agent.name] = state
    return agent


@pytest.fixture(scope="module")
def agents(hosts: TwoHosts, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[List[Agent]]:
    """The agents of hosts a and b (a test may replace one: the list is the fixture's)."""
    made: List[Agent] = []
    try:
        for host in (hosts.a, hosts.b):
            made.append(agent_on(host, tmp_path_factory.mktemp(f"agent-{host.name}"), pki))
        yield made
    finally:
        for agent in made:
            agent.kill()


@pytest.fixture(scope="module")
def console(agents: List[Agent], pki: Pki) -> Iterator[Console]:
    tls = pki.tls("admin")
    with Console([agent_url(a) for a in agents], timeout=20, tls_cert=tls.cert, tls_key=tls.key,
                 tls_ca=tls.ca) as opened:
        yield opened


def truth(host: Host) -> Dict[str, int]:
    """uuid -> state of every domain of a libvirtd."""
    conn = libvirt.open(host.uri)
    try:
        return {dom.UUIDString(): dom.state()[0] for dom in conn.listAllDomains(0)}
    finally:
        conn.close()


def view(console: Console, agent: Agent) -> Dict[str, int]:
    return {dom.uuid: dom.stats.get("state", -1) for dom in console.domains.of_agent(agent.name)}


def assert_matches_truth(console: Console, hosts: TwoHosts, agents: List[Agent]) -> None:
    pairs = ((hosts.a, agents[0]), (hosts.b, agents[1]))
    wait_until(lambda: all(view(console, a) == truth(h) for h, a in pairs), 10,
               message=f"the console's domains equal both libvirts' (the last: {[truth(h) for h, _ in pairs]})")


def start_guest(console: Console, host: Host, agent: Agent, firmware: Optional[Path] = None) -> Domain:
    conn = libvirt.open(host.uri)
    try:
        if firmware is None:  # persistent, as a managed guest is
            dom = conn.defineXML(migratable_guest_xml(f"mig-{os.urandom(3).hex()}"))
            dom.create()
        else:
            dom = conn.createXML(migratable_guest_xml(f"dirty-{os.urandom(3).hex()}", firmware), 0)
        uuid = dom.UUIDString()
    finally:
        conn.close()
    wait_until(lambda: view(console, agent).get(uuid) == RUNNING, 10)
    return console.domains.get(uuid)


def collect(events: Subscription) -> List[Event]:
    seen: List[Event] = []
    while (event := events.get(timeout=0.5)) is not None:
        seen.append(event)
    return seen


def assert_one_move(seen: List[Event], source: Agent, destination: Agent) -> DomainMigrated:
    kinds = [type(e).__name__ for e in seen if not isinstance(e, MigrationProgress)]
    assert kinds == ["DomainMigrated"], kinds  # no ObjectRemoved/ObjectAdded pair
    told = next(e for e in seen if isinstance(e, DomainMigrated))
    assert (told.from_agent, told.to_agent) == (source.name, destination.name)
    assert isinstance(told.downtime, int) and 0 <= told.downtime < 5000, told.downtime
    return told


def test_live_migration_there_and_back(console: Console, hosts: TwoHosts, agents: List[Agent]) -> None:
    a, b = agents
    dom = start_guest(console, hosts.a, a)
    with console.subscribe(kinds=WATCHED) as events:
        job = console.migrate(dom, to=b.name)
        moved = job.wait(60)
        seen = collect(events)
    assert moved.uuid == dom.uuid and moved.agent == b.name and moved.stats["state"] == RUNNING
    told = assert_one_move(seen, a, b)
    assert (told.downtime, told.job, told.obj.agent) == (job.downtime, job.id, b.name)
    assert job.progress.get("operation") == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, job.progress
    assert any(isinstance(e, MigrationProgress) and e.job == job.id for e in seen)  # getJobStats, polled
    assert console.domains.get(dom.uuid).agent == b.name
    assert_matches_truth(console, hosts, agents)

    with console.subscribe(kinds=WATCHED) as events:  # and back, through the command line
        out = ok(virtq("migrate", str(dom.name), a.instance, obj=console))
        seen = collect(events)
    assert re.fullmatch(rf"{dom.name} migrated \S+ -> \S+ in [0-9.]+ s, downtime \d+ ms\n", out), out
    assert_one_move(seen, b, a)
    assert console.domains.get(dom.uuid).agent == a.name
    assert_matches_truth(console, hosts, agents)


def test_abort_mid_way_leaves_it_running_on_the_source(console: Console, hosts: TwoHosts,
                                                       agents: List[Agent]) -> None:
    a, b = agents
    dom = start_guest(console, hosts.a, a, dirtying_firmware(hosts.a.root / "dirty.rom"))
    job = console.migrate(dom, to=b.name, bandwidth=1, on_progress=lambda running: running.abort())
    with pytest.raises(MigrationAbortedError):
        job.wait(60)
    assert job.progress  # it was under way
    assert truth(hosts.a).get(dom.uuid) == RUNNING and dom.uuid not in truth(hosts.b)
    assert_matches_truth(console, hosts, agents)
    assert console.domains.get(dom.uuid).agent == a.name


def test_a_migration_switched_to_post_copy(console: Console, hosts: TwoHosts, agents: List[Agent]) -> None:
    a, b = agents
    dom = start_guest(console, hosts.a, a, dirtying_firmware(hosts.a.root / "dirty.rom"))
    slow_to_converge(hosts.a, dom.uuid)  # time to switch
    job = console.migrate(dom, to=b.name, bandwidth=1, postcopy=True,
                          on_progress=lambda running: running.switch_to_postcopy())
    moved = job.wait(60)
    assert job.postcopy and moved.agent == b.name and moved.stats["state"] == RUNNING
    assert truth(hosts.b).get(dom.uuid) == RUNNING and dom.uuid not in truth(hosts.a)
    assert_matches_truth(console, hosts, agents)

    slow_to_converge(hosts.b, dom.uuid)  # and back, through the command line
    told = json.loads(ok(virtq("--json", "migrate", str(dom.name), a.instance, "--bandwidth", "1",
                               "--postcopy-after", "0", obj=console)))
    assert told["postcopy"] is True and told["uuid"] == dom.uuid, told
    assert truth(hosts.a).get(dom.uuid) == RUNNING
    assert_matches_truth(console, hosts, agents)


def slow_to_converge(host: Host, uuid: str) -> None:
    """A maximum downtime of 1 ms: pre-copy goes on until the guest's dirty memory fits in it."""
    conn = libvirt.open(host.uri)
    try:
        conn.lookupByUUIDString(uuid).migrateSetMaxDowntime(1, 0)
    finally:
        conn.close()


def test_the_source_agent_restarted_mid_migration(console: Console, hosts: TwoHosts, agents: List[Agent],
                                                  pki: Pki) -> None:
    """Its answer is lost with it: the console resolves where the domain is from both agents' truth."""
    a, b = agents
    dom = start_guest(console, hosts.a, a)
    under_way = threading.Event()
    job = console.migrate(dom, to=b.name, on_progress=lambda running: under_way.set())
    assert under_way.wait(20)
    a.transport.kill()  # its consoles' connections drop at once: the migrate call's answer is lost
    a.kill()
    agents[0] = agent_on(hosts.a, STATES[a.name], pki, agent_url(a))  # a new epoch, where the console redials
    try:
        moved = job.wait(60)
    except MigrationFailedError:
        where = a.name  # libvirt gave up when the agent's connection closed
    else:
        where = moved.agent
    assert where == (a.name if dom.uuid in truth(hosts.a) else b.name)
    assert_matches_truth(console, hosts, agents)
    assert console.domains.get(dom.uuid).agent == where


def test_destination_libvirtd_down_is_a_typed_error(console: Console, hosts: TwoHosts,
                                                    agents: List[Agent]) -> None:
    a, b = agents
    dom = console.domains.get(next(u for u, s in truth(hosts.a).items() if s == RUNNING))
    hosts.b.stop()
    try:
        with pytest.raises(MigrationFailedError) as failed:
            console.migrate(dom, to=b.name).wait(60)
        assert failed.value.cause is not None
        assert truth(hosts.a).get(dom.uuid) == RUNNING  # nothing lost
        wait_until(lambda: view(console, a).get(dom.uuid) == RUNNING, 10)
        assert console.domains.get(dom.uuid).agent == a.name
    finally:
        with contextlib.suppress(HarnessError):
            hosts.b.start()
