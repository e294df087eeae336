"""The full path through RabbitMQ (AMQP 1.0 plugin, ``rabbitmq`` address profile): agents on the test
driver reach a private node, and a console finds them there — discovery, queries, method calls, typed
errors, pushed statistics and events, the CLI — all as in direct mode; credentials from the URL, the
agent's options, its configuration file and its environment; list bodies wrapped on the wire.

The agents and the console of this module share the session's node (``rabbit``) and stay up for the
module; no test here stops the node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import libvirt
import pytest
from click.testing import Result
from proton import Message
from proton.utils import BlockingConnection

from virtq.agent import Agent
from virtq.console import Console, RemoteObject
from virtq.console.events import ConfigChanged, DomainStateChanged, LibvirtEvent, StatsUpdated
from virtq.schema.codec import (DataIndication, ObjectId, QueryRequest, QueryResponse, WireMessage, decode,
                                direct_address)
from virtq.schema.errors import (STATUS_USER, LibvirtError, NotConnectedError, RemoteError, UnknownMethodError,
                                 UnknownObjectError)
from virtq.testing import agent_url
from virtq.testing.rabbitmq import RabbitNode
from virtq.transport import profile
from virtq.transport._convert import from_proton
from virtq.transport.profiles import WRAPPED_LIST

from ..conftest import AgentFactory
from ..helpers import NODE_URI, run_cli
from .conftest import ALLOW_ALL_TEXT
from .fleet import PAUSED, RUNNING, Fleet, seen, truth, wait_until
from .identities import add_users

pytestmark = pytest.mark.broker

BIN = Path(sys.executable).parent
VIRTQ_AGENT = BIN / "virtq-agent"
INSTANCES = ("path-0", "path-1", "path-2")
USER = "path-opts"
"""The agent user the wrong-password tests try."""
CREDENTIAL_AGENTS = ("path-opts", "path-conf", "path-env", "path-url")
"""Agents given their credentials each another way; each its own broker user, named like its instance."""
CONSOLE_USER = "path-console"


@pytest.fixture(scope="module")
def fleet(rabbit: RabbitNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("path-state"))
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def agents(fleet: Fleet, rabbit: RabbitNode) -> List[Agent]:
    """Three agents on their own copies of tests/data/node.xml, sampling every 0.3 s."""
    return [fleet.agent(rabbit.url, instance, interval=0.3) for instance in INSTANCES]


@pytest.fixture(scope="module")
def console(fleet: Fleet, rabbit: RabbitNode, agents: List[Agent]) -> Console:
    return fleet.console(rabbit.url)


def password_of(user: str) -> str:
    return f"s3cret-{user}"


@pytest.fixture(scope="module")
def broker_users(rabbit: RabbitNode) -> List[str]:
    """Users of their own (guest may log in anonymously: the plugin's default_user), to see credentials used:
    an agent user per instance and a console user, with the permissions DEPLOYMENT.md gives them."""
    add_users(rabbit, agents={user: password_of(user) for user in CREDENTIAL_AGENTS},
              consoles={CONSOLE_USER: password_of(CONSOLE_USER)})
    return [*CREDENTIAL_AGENTS, CONSOLE_USER]


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ALLOW_ALL for the virtq-agent processes (--policy)."""
    path = tmp_path_factory.mktemp("path-policy") / "policy.ini"
    path.write_text(ALLOW_ALL_TEXT)
    return path


def bare(rabbit: RabbitNode) -> str:
    """The node's URL without credentials."""
    return f"amqp://127.0.0.1:{rabbit.port}"


def channel_users(rabbit: RabbitNode) -> List[str]:
    """Users of the node's open channels (an AMQP 1.0 session is one channel in RabbitMQ 3.x)."""
    rows: Any = rabbit.ctl_json("list_channels", "user")
    return sorted(str(row["user"]) for row in rows)


def one(console: Console, instance: str, name: str) -> RemoteObject:
    return console.repository("domain").get(f"{instance}/{name}")


# --- discovery and queries ------------------------------------------------------------------------------

def test_console_discovers_every_agent_and_mirrors_libvirt(console: Console, agents: List[Agent]) -> None:
    # (found by the locate broadcast; on a loaded machine an answer may miss the 0.5 s window, and the
    # agent's next heartbeat adds it)
    wait_until(lambda: {a.name for a in console.agents} == {a.name for a in agents}, timeout=5)
    wait_until(lambda: all(seen(console, a.name) == truth(a.hypervisor) for a in agents), timeout=5)
    for agent in agents:
        view = console.agents.get(agent.instance)
        assert (view.epoch, view.heartbeat_interval) == (agent.epoch, 1)
        assert seen(console, agent.name) == truth(agent.hypervisor)
        assert [n.agent for n in console.nodes].count(agent.name) == 1
    assert len(console.domains) == 4 * len(agents) and len(console.volumes) == 3 * len(agents)


def test_an_agent_started_after_the_console_is_added_by_its_heartbeat(fleet: Fleet, rabbit: RabbitNode,
                                                                      console: Console) -> None:
    late = fleet.agent(rabbit.url, "path-late")
    try:
        wait_until(lambda: seen(console, late.name) == truth(late.hypervisor), timeout=5)
    finally:
        late.kill()
        fleet.agents.remove(late)


def big_node(path: Path, domains: int) -> str:
    """A node file with ``domains`` domains (and no pools): more objects than one query answer holds."""
    items = "".join(f"<domain type='test'><name>bulk-{i:03d}</name><memory>65536</memory><vcpu>1</vcpu>"
                    f"<os><type>hvm</type></os></domain>" for i in range(domains))
    path.write_text(f"<node><cpu><mhz>2400</mhz><model>i686</model><nodes>1</nodes><sockets>1</sockets>"
                    f"<cores>4</cores><threads>2</threads><active>8</active></cpu><memory>8388608</memory>"
                    f"{items}</node>")
    return f"test://{path}"


def test_a_query_in_several_batches_arrives_whole_and_wrapped(fleet: Fleet, rabbit: RabbitNode, console: Console,
                                                              tmp_path: Path) -> None:
    """250 domains: three query answers (100 records each at most, all but the last ``partial``); on the
    wire each list body travels as ``{"_virtq_list": [...]}``, which RabbitMQ carries (a bare list of two
    or more crashes the session)."""
    bulk = fleet.agent(rabbit.url, "path-bulk", uri=big_node(tmp_path / "bulk.xml", 250), interval=30)
    try:
        wait_until(lambda: console.agents.by_name(bulk.name) is not None, timeout=30)
        replies = console.query(bulk.name, QueryRequest(what="OBJECT"))
        assert [isinstance(r, QueryResponse) and r.partial for r in replies] == [True, True, False]
        records = [r for reply in replies if isinstance(reply, QueryResponse) for r in reply.records]
        assert len(records) == len({r.object_id.object_name for r in records}) == 251  # and the node (no pools)
        wait_until(lambda: seen(console, bulk.name) == truth(bulk.hypervisor), timeout=30)

        # The same query by hand: what RabbitMQ carried, before the profile unwrapped it.
        rabbitmq = profile("rabbitmq")
        reply_to = rabbitmq.reply_source(f"raw{uuid.uuid4().hex[:8]}", "guest")
        assert reply_to is not None
        connection = BlockingConnection(rabbit.url, timeout=5)
        try:
            receiver = connection.create_receiver(reply_to, name=f"r-{reply_to}")
            wire = rabbitmq.outgoing(QueryRequest(what="OBJECT", correlation_id="q1", reply_to=reply_to)
                                     .encode(direct_address(bulk.name)))
            assert (wire.address, wire.subject) == ("/exchange/amq.topic", f"qmf.direct.{bulk.name}")
            sender = connection.create_sender(wire.address, name=f"s-{reply_to}")
            sender.send(Message(body=wire.body, properties=dict(wire.properties), subject=wire.subject,
                                correlation_id="q1", reply_to=wire.reply_to), timeout=5)
            raw: List[WireMessage] = []
            for _ in range(3):
                raw.append(from_proton(receiver.receive(timeout=5), reply_to))
                receiver.accept()
        finally:
            connection.close()
        assert all(isinstance(m.body, dict) and list(m.body) == [WRAPPED_LIST] for m in raw)
        assert [len(m.body[WRAPPED_LIST]) for m in raw] == [100, 100, 51]
        assert [m.correlation_id for m in raw] == ["q1"] * 3
    finally:
        bulk.kill()
        fleet.agents.remove(bulk)


# --- methods and errors, as in direct mode --------------------------------------------------------------

def test_method_calls(console: Console, agents: List[Agent]) -> None:
    agent = agents[0]
    web1 = one(console, agent.instance, "web1")
    # (through a broker the pushes and the reply come through two queues: the state is waited for, not read;
    # docs/CONSOLE.md, Job apartments)
    assert web1.suspend().wait_state("paused", timeout=5).state == PAUSED
    assert web1.getInfo()["state"] == PAUSED == agent.hypervisor.invoke("Domain", web1.uuid, "virDomainGetState",
                                                                        [0])[0]
    job = web1.resume()
    assert job.wait_state("running", timeout=5)
    assert one(console, agent.instance, "web1").state == RUNNING
    assert one(console, agents[1].instance, "web1").state == RUNNING  # the same domain of another agent: untouched
    assert "<name>web1</name>" in console.xml(web1)
    assert seen(console, agent.name) == truth(agent.hypervisor)


def test_a_stream_through_the_broker(console: Console, agents: List[Agent], monkeypatch: pytest.MonkeyPatch) -> None:
    """A screenshot as a stream (docs/PROTOCOL.md §14) through RabbitMQ: chunks, credit, the end's checksum. The
    agent's chunks are made small so that the 33 KB image takes nine of them, more than one window of eight."""
    agent = agents[2]
    monkeypatch.setattr(agent.streams, "chunk", 4096)
    mime, image = one(console, agent.instance, "web1").screenshot()
    conn = libvirt.open(NODE_URI)
    try:
        stream = conn.newStream(0)
        assert conn.lookupByName("web1").screenshot(stream, 0, 0) == mime == "image/png"
        direct = b""
        while chunk := stream.recv(65536):
            direct += chunk
        stream.finish()
    finally:
        conn.close()
    assert len(image) > 8 * 4096 and image == direct


def _errors(console: Console, scope: str, agent_name: str, epoch: int) -> List[Tuple[type, int, str]]:
    """The typed errors of three failing calls: libvirt's, the agent's, the console's own."""
    ghost_uuid = "00000000-0000-4000-8000-00000000dead"
    ghost = RemoteObject(console, console.schema.cls("Domain"), ObjectId(f"Domain:{ghost_uuid}", agent_name, epoch),
                         {"uuid": ghost_uuid, "name": "ghost", "id": -1})
    calls: List[Callable[[], Any]] = [
        lambda: console.domains.get(f"{scope}build").destroy(),  # shut off: libvirt refuses
        lambda: ghost.getInfo(),  # the agent does not know it
        lambda: console.call(console.domains.get(f"{scope}web1"), "noSuchMethod"),  # refused before sending
    ]
    found = []
    for call in calls:
        with pytest.raises((RemoteError, UnknownMethodError)) as err:
            call()
        found.append((type(err.value), err.value.error_code, err.value.error_text))
    return found


def test_errors_are_typed_as_in_direct_mode(console: Console, agents: List[Agent],
                                            start_agent: AgentFactory) -> None:
    direct_agent = start_agent(NODE_URI)
    direct = Console(agent_url(direct_agent), timeout=5)
    direct.start()
    try:
        brokered = _errors(console, f"{agents[0].instance}/", agents[0].name, agents[0].epoch)
        assert brokered == _errors(direct, "", direct_agent.name, direct_agent.epoch)
    finally:
        direct.close()
    (destroy, ghost, unknown) = brokered
    assert destroy[:2] == (LibvirtError, STATUS_USER + libvirt.VIR_ERR_OPERATION_INVALID)
    assert ghost[0] is UnknownObjectError and "Domain:00000000-0000-4000-8000-00000000dead" in ghost[2]
    assert unknown[0] is UnknownMethodError


# --- pushes ---------------------------------------------------------------------------------------------

def test_pushed_statistics_and_events(console: Console, agents: List[Agent]) -> None:
    agent = agents[1]
    db1 = one(console, agent.instance, "db1")
    got: Dict[str, Any] = {}
    with console.subscribe(kinds=(StatsUpdated, LibvirtEvent, DomainStateChanged)) as sub:
        # behind the console's back, on the agent's own libvirt connection: only the agent's pushes tell
        agent.hypervisor.invoke("Domain", db1.uuid, "virDomainResume", [])
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            event = sub.get(0.2)
            if isinstance(event, LibvirtEvent) and event.agent == agent.name \
                    and event.object_id.object_name == db1.object_id.object_name:
                got["event"] = (event.name, event.event, event.detail)
            elif isinstance(event, DomainStateChanged) and event.obj.object_id == db1.object_id:
                got["state"] = (event.old, event.new)
            elif isinstance(event, StatsUpdated) and event.obj.agent == agent.name and "cpuTime" in event.changed:
                got["stats"] = "cpuTime"  # the test driver's cpuTime moves: sampled every 0.3 s
    assert got == {"event": ("domainLifecycle", "resumed", "unpaused"), "state": ("paused", "running"),
                   "stats": "cpuTime"}
    assert one(console, agent.instance, "db1").state == RUNNING
    agent.hypervisor.invoke("Domain", db1.uuid, "virDomainSuspend", [])
    wait_until(lambda: one(console, agent.instance, "db1").state == PAUSED, timeout=5)


def test_an_indication_with_several_records_arrives_whole(console: Console, agents: List[Agent],
                                                          rabbit: RabbitNode) -> None:
    """One data indication carrying four records (a new configuration generation for each domain):
    wrapped on the wire, unwrapped on receipt, all four applied."""
    agent = agents[2]
    names = [f"Domain:{e.key}" for e in agent.registry.entries("Domain")]
    connection = BlockingConnection(rabbit.url, timeout=5)
    try:
        receiver = connection.create_receiver("/topic/agent.ind.data.#", name=f"raw-ind-{uuid.uuid4().hex[:8]}")
        with console.subscribe(kinds=ConfigChanged) as sub:
            records = [r for name in names for r in agent.registry.bump_config(name)]
            assert len(records) == 4
            agent.push(records)
            changed: Set[str] = set()
            while len(changed) < 4:
                event = sub.get(5)
                assert isinstance(event, ConfigChanged), f"only {changed} changed"
                if event.obj.agent == agent.name:
                    changed.add(event.obj.object_id.object_name)
        assert changed == set(names)
        while True:
            message = from_proton(receiver.receive(timeout=5), None)
            receiver.accept()
            if message.properties.get("qmf.agent") == agent.name and isinstance(message.body, dict) \
                    and len(message.body.get(WRAPPED_LIST, [])) == 4:
                break
        assert list(message.body) == [WRAPPED_LIST]
        decoded = decode(WireMessage("", dict(message.properties), message.body[WRAPPED_LIST], message.subject))
        assert isinstance(decoded, DataIndication)
        assert {r.object_id.object_name for r in decoded.records} == set(names)
    finally:
        connection.close()


# --- the CLI --------------------------------------------------------------------------------------------

def virtq(*args: str, env: Dict[str, str] | None = None) -> Result:
    return run_cli(args, env=env)


def test_cli_through_the_broker(rabbit: RabbitNode, console: Console, agents: List[Agent]) -> None:
    listed = virtq("--addressing", "rabbitmq", "-u", rabbit.url, "--json", "list", "domains", "--all")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((r["agent"], r["name"]) for r in rows) == sorted(
        (a.name, name) for a in agents for name in ("web1", "web2", "db1", "build"))

    # the same from the environment, as DEPLOYMENT.md sets it up
    info = virtq("--json", "call", "domain", f"{agents[0].instance}/db1", "getInfo",
                 env={"VIRTQ_URL": rabbit.url, "VIRTQ_ADDRESSING": "rabbitmq"})
    assert info.exit_code == 0, info.stderr
    assert json.loads(info.stdout)["result"]["state"] == PAUSED


# --- credentials ----------------------------------------------------------------------------------------

def test_a_wrong_password_is_a_clear_not_connected_error(rabbit: RabbitNode, broker_users: List[str]) -> None:
    """RabbitMQ refuses the SASL PLAIN exchange (~3 s after the attempt): the console says so at
    once, password hidden, instead of retrying until its timeout; the CLI exits 3 (unreachable) with it.
    (The agent's side: see the daemon test below.)"""
    url = f"amqp://{USER}:wrong-password@127.0.0.1:{rabbit.port}"
    outcome: Dict[str, Any] = {}

    def console() -> None:
        started = time.monotonic()
        try:
            Console(url, timeout=8, addressing="rabbitmq").start()
        except NotConnectedError as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    beside = threading.Thread(target=console, name="wrong-password-console")
    beside.start()  # (RabbitMQ's delay, once for both)
    result = virtq("--addressing", "rabbitmq", "-u", url, "--timeout", "8", "agents")
    beside.join(10)
    message = str(outcome.get("error"))
    print(f"\nwrong password: {message!r} after {outcome['elapsed']:.2f} s")
    assert message == f"cannot connect to amqp://{USER}:***@127.0.0.1:{rabbit.port}: " \
                      "transport error: Authentication failed [mech=PLAIN]"
    assert outcome["elapsed"] < 6
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.strip() == f"Error: unreachable: {message}"


def _agent_process(args: List[str], env: Dict[str, str], log: Path, policy: Path) -> "subprocess.Popen[bytes]":
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIRTQ_AGENT_")}
    environment.update(env)
    with open(log, "wb") as out:
        return subprocess.Popen([str(VIRTQ_AGENT), "--libvirt", NODE_URI, "--heartbeat", "1", "--policy", str(policy),
                                 *args],
                                env=environment, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_credentials_from_the_url_options_config_file_and_environment(
        rabbit: RabbitNode, broker_users: List[str], policy_file: Path, fleet: Fleet, console: Console,
        tmp_path: Path) -> None:
    """An agent given ``amqp://user:pass@host:port``, and ``virtq-agent`` processes given the broker without
    credentials: user and password from --broker-user/--broker-password, from the configuration file (mode
    0600) and from the environment — each agent a user of its own, with DEPLOYMENT.md's agent permissions.
    RabbitMQ lists their sessions under those users; passwords never reach the logs. A wrong password keeps
    one out, and its log says why."""
    url = bare(rabbit)
    config = tmp_path / "agent.conf"
    config.write_text(f"[agent]\nbroker = {url}\naddressing = rabbitmq\nbroker-user = path-conf\n"
                      f"broker-password = {password_of('path-conf')}\ninstance = path-conf\n"
                      f"state-dir = {tmp_path / 'conf'}\n")
    config.chmod(0o600)
    launches = {
        "path-opts": (["--broker", url, "--addressing", "rabbitmq", "--broker-user", "path-opts", "--broker-password",
                       password_of("path-opts"), "--instance", "path-opts", "--state-dir", str(tmp_path / "opts")],
                      {}),
        "path-conf": (["--config", str(config)], {}),
        "path-env": ([], {"VIRTQ_AGENT_BROKER": url, "VIRTQ_AGENT_ADDRESSING": "rabbitmq",
                          "VIRTQ_AGENT_BROKER_USER": "path-env", "VIRTQ_AGENT_BROKER_PASSWORD": password_of("path-env"),
                          "VIRTQ_AGENT_INSTANCE": "path-env", "VIRTQ_AGENT_STATE_DIR": str(tmp_path / "env")}),
        "path-badpw": (["--broker", url, "--addressing", "rabbitmq", "--instance", "path-badpw",
                        "--state-dir", str(tmp_path / "badpw")],
                       {"VIRTQ_AGENT_BROKER_USER": USER, "VIRTQ_AGENT_BROKER_PASSWORD": "wrong-password"}),
    }
    good = set(CREDENTIAL_AGENTS)
    before = {user: channel_users(rabbit).count(user) for user in good}
    processes = {name: _agent_process(args, env, tmp_path / f"{name}.log", policy_file)
                 for name, (args, env) in launches.items()}
    in_url = fleet.agent(f"amqp://path-url:{password_of('path-url')}@127.0.0.1:{rabbit.port}", "path-url")
    try:
        try:
            wait_until(lambda: good <= {a.instance for a in console.agents}, timeout=20)
        except AssertionError:
            logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace")[-1500:] for name in launches}
            raise AssertionError(f"agents seen: {sorted(a.instance for a in console.agents)}; logs: {logs}")
        assert {user: channel_users(rabbit).count(user) - before[user] for user in good} == dict.fromkeys(good, 1)
        assert "path-badpw" not in {a.instance for a in console.agents}
        for name in good:
            view = console.agents.get(name)
            assert seen(console, view.name)["domains"] and len(seen(console, view.name)["domains"]) == 4
        # a console with the least permissions of a console: discovery, a query, a call
        with Console(f"amqp://{CONSOLE_USER}:{password_of(CONSOLE_USER)}@127.0.0.1:{rabbit.port}", timeout=5,
                     addressing="rabbitmq", discovery=0.5) as restricted:
            assert good <= {a.instance for a in restricted.agents}
            assert restricted.domains.get("path-url/web2").getInfo()["state"] == RUNNING
    finally:
        in_url.kill()
        fleet.agents.remove(in_url)
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    bad_log = (tmp_path / "path-badpw.log").read_text(errors="replace")
    assert "Authentication failed" in bad_log and "wrong-password" not in bad_log, bad_log[-2000:]
    for name in ("path-opts", "path-conf", "path-env"):
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert password_of(name) not in log, log[-2000:]
