"""Security through RabbitMQ, on a private node with a TLS listener (``tls_rabbit``): every agent and every
console a broker user of its own, with docs/DEPLOYMENT.md's permissions (``identities.py``), logging in
over amqps with SASL PLAIN (one console by its client certificate, SASL EXTERNAL).

- The broker's certificate is checked (a console that trusts another CA, or names the broker by an
  address its certificate does not carry as a host name, does not connect); bad credentials are refused.
- Identity: RabbitMQ checks every message's user-id against the user that logged in, so the agent's
  policy decides by broker user (``reader`` readonly, ``ops`` operator), and a forged user-id never
  reaches the agent; the console, with ``agent_users="instance"``, believes an agent's messages only
  from the user named like its instance (a rogue agent that calls itself hv01 is ignored).
- Topic permissions confine each user to its keys: no console can push as an agent or answer for
  another console, no agent can send requests, and no one can bind another agent's request key or
  another console's reply key.

Every bad credential and forged identity tried is counted, and the count printed at the end of the module
(``pytest -s``; also in broker-timings.txt), with the refusals of out-of-bounds publishes and binds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from proton import Message
from proton.utils import BlockingConnection

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.agent.policy import Policy
from virtq.console import Console
from virtq.schema import default_schema
from virtq.schema.codec import LOCATE_SUBJECT, MethodRequest, direct_address
from virtq.schema.errors import AccessDeniedError, NotConnectedError
from virtq.testing.rabbitmq import RabbitNode
from virtq.transport import Connection, TlsConfig, profile
from virtq.transport._convert import to_proton
from virtq.transport.profiles import DIRECT_KEY

from ..helpers import DEFAULT_URI
from ..pki import Pki
from .fleet import PAUSED, RUNNING, Fleet, Timings, agent_broker, broker_of, seen, timings_fixture, truth, wait_until
from .identities import AGENT, CONSOLE, add_users
from .rawamqp import Attempt, run

pytestmark = pytest.mark.broker

HONEST, OTHER_AGENT, ROGUE = "hv01", "hv02", "evil"
OPS, READER, AUDITOR = "ops", "reader", "auditor"
POLICY = Policy.parse("[principal ops]\nroles = operator\n[principal reader]\nroles = readonly\n"
                      "[principal auditor]\nroles = readonly\n", default_schema(), "test_broker_security")
"""The agents' policy: by broker user (nobody else, anonymous included, may do anything)."""
TOPIC = "/exchange/amq.topic"
DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "DEPLOYMENT.md"


def password(user: str) -> str:
    return f"pw-{user}-{user[::-1]}"


def name_of(instance: str) -> str:
    return f"libvirt.org:virtq:{instance}"


# --- the count of what was tried ------------------------------------------------------------------------

class Tally:
    """Bad credentials and forged identities tried (and refused), out-of-bounds publishes and binds tried
    (and refused): one summary line for the module."""

    def __init__(self) -> None:
        self.tried: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, what: str, refused: bool) -> None:
        with self._lock:
            self.tried[what] += 1
            self.refused[what] += refused

    def line(self) -> str:
        def part(kinds: List[str]) -> str:
            tried = sum(self.tried[k] for k in kinds)
            refused = sum(self.refused[k] for k in kinds)
            detail = ", ".join(f"{k} {self.refused[k]}/{self.tried[k]}" for k in kinds)
            return f"{tried} tried, {refused} refused ({detail})"

        identities = [k for k in self.tried if not k.startswith(("publish", "bind", "call"))]
        bounds = [k for k in self.tried if k.startswith(("publish", "bind"))]
        calls = [k for k in self.tried if k.startswith("call")]
        return (f"bad credentials and forged identities: {part(identities)}; out-of-bounds publishes and binds: "
                f"{part(bounds)}; calls beyond the caller's role: {part(calls)}")


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Timings]:
    yield from timings_fixture("broker security (RabbitMQ over TLS, a broker user per agent and console)",
                               request, tmp_path_factory)


@pytest.fixture(scope="module")
def tally(timings: Timings) -> Iterator[Tally]:
    tally = Tally()
    yield tally
    if tally.tried:
        timings.add(tally.line())


# --- the node, its users, an honest agent and two consoles -------------------------------------------------

@pytest.fixture(scope="module")
def broker(tls_rabbit: RabbitNode) -> RabbitNode:
    """The session's TLS node with this module's users: agents hv01, hv02, evil; consoles ops, reader; and
    auditor, a console that logs in by its certificate (no password)."""
    add_users(tls_rabbit, agents={user: password(user) for user in (HONEST, OTHER_AGENT, ROGUE)},
              consoles={OPS: password(OPS), READER: password(READER), AUDITOR: ""})
    return tls_rabbit


@pytest.fixture(scope="module")
def trust(broker_tls: TlsConfig) -> TlsConfig:
    """What agents and consoles are given: the CA that signed the broker's certificate."""
    return TlsConfig(ca=broker_tls.ca)


def amqps(broker: RabbitNode, user: str, secret: Optional[str] = None) -> str:
    return broker.url_for(user, password(user) if secret is None else secret, tls=True)


@pytest.fixture(scope="module")
def fleet(broker: RabbitNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("security-state"))
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def hv01(fleet: Fleet, broker: RabbitNode, trust: TlsConfig) -> Agent:
    """The honest agent: instance hv01, broker user hv01, on its own copy of tests/data/node.xml."""
    return fleet.agent(amqps(broker, HONEST), HONEST, tls=trust, policy=POLICY)


def console_as(fleet: Fleet, broker: RabbitNode, trust: TlsConfig, user: str) -> Console:
    return fleet.console(amqps(broker, user), tls_ca=trust.ca, agent_users="instance")


@pytest.fixture(scope="module")
def ops(fleet: Fleet, broker: RabbitNode, trust: TlsConfig, hv01: Agent) -> Console:
    return console_as(fleet, broker, trust, OPS)


@pytest.fixture(scope="module")
def reader(fleet: Fleet, broker: RabbitNode, trust: TlsConfig, hv01: Agent) -> Console:
    return console_as(fleet, broker, trust, READER)


def web1_state(agent: Agent) -> int:
    """web1's state as libvirt has it, on the agent's own connection (its copy of the node file)."""
    uuid_ = next(d.uuid for d in agent.hypervisor.list_domains() if d.name == "web1")
    return int(agent.hypervisor.invoke("Domain", uuid_, "virDomainGetState", [0])[0])


# --- TLS and credentials ---------------------------------------------------------------------------------

def test_agent_and_console_over_amqps(ops: Console, hv01: Agent, broker: RabbitNode) -> None:
    """PLAIN over TLS, each side its own user: the console lists the agent's domains, calls go through."""
    wait_until(lambda: seen(ops, hv01.name) == truth(hv01.hypervisor), timeout=5)
    assert {d.name for d in ops.domains} == {"web1", "web2", "db1", "build"}
    assert ops.domains.get(f"{HONEST}/web1").getInfo()["state"] == RUNNING
    assert agent_broker(hv01).current_url.startswith("amqps://") and broker_of(ops).current_url.startswith("amqps://")
    assert broker_of(ops).reply_address.startswith(f"/topic/qmf.reply.{OPS}.")  # the key only ops may bind
    assert ops.untrusted == 0


def start_consoles(cases: Dict[str, Tuple[str, TlsConfig]], timeout: float) -> Dict[str, str]:
    """Start a console per case side by side; what each start raised (NotConnectedError's text)."""
    errors: Dict[str, str] = {}

    def start(what: str, url: str, tls: TlsConfig) -> None:
        try:
            Console(url, timeout=timeout, addressing="rabbitmq", tls_cert=tls.cert, tls_key=tls.key,
                    tls_ca=tls.ca).start()
            errors[what] = "connected"
        except NotConnectedError as exc:
            errors[what] = str(exc)

    threads = [threading.Thread(target=start, args=(what, url, tls)) for what, (url, tls) in cases.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return errors


def test_tls_is_checked_both_ways(broker: RabbitNode, trust: TlsConfig, pki: Pki, tally: Tally) -> None:
    """A console that trusts another CA, or names the broker by an address its certificate does not carry as
    a host name, refuses the broker; the broker refuses a client certificate from a CA it does not trust.
    Each console's start fails with a clear NotConnectedError (after its timeout: a TLS failure is retried)."""
    rogue_ca = pki.ca("mq-rogue-ca", "rogue CA")
    rogue = pki.tls("mq-rogue-client", cn=AUDITOR, ca="mq-rogue-ca")
    url = amqps(broker, OPS)
    cases = {
        "broker certificate of another CA": (url, TlsConfig(ca=rogue_ca)),
        # (the certificate names localhost, and 127.0.0.1 as an IP address: proton checks host names only)
        "broker certificate for another name": (url.replace("@localhost:", "@127.0.0.1:"), trust),
        "client certificate of another CA": (broker.url_for(AUDITOR, tls=True),
                                             TlsConfig(rogue.cert, rogue.key, trust.ca)),
    }
    expected = {"broker certificate of another CA": "certificate verify failed",
                "broker certificate for another name": "certificate verify failed",
                "client certificate of another CA": "unknown ca"}
    errors = start_consoles(cases, timeout=2)
    for what in cases:
        tally.count(what, expected[what] in errors.get(what, ""))
    assert {what: expected[what] in errors.get(what, "") for what in cases} == dict.fromkeys(cases, True), errors
    assert all("SSL Failure" in text and password(OPS) not in text for text in errors.values()), errors


def test_bad_credentials_are_refused(broker: RabbitNode, trust: TlsConfig, pki: Pki, tally: Tally) -> None:
    """A wrong password (PLAIN), and a client certificate whose CN is no broker user (EXTERNAL): each
    console's start fails with NotConnectedError as soon as RabbitMQ answers (~3 s after the attempt)."""
    stranger = pki.tls("mq-stranger", cn="stranger")
    cases = {
        "wrong password": (amqps(broker, OPS, "not-the-password"), trust),
        "certificate of no user": (broker.url_for("stranger", tls=True),
                                   TlsConfig(stranger.cert, stranger.key, trust.ca)),
    }
    started = time.monotonic()
    errors = start_consoles(cases, timeout=8)
    elapsed = time.monotonic() - started
    for what in cases:
        tally.count(what, "Authentication failed" in errors.get(what, ""))
    assert errors == {
        "wrong password": f"cannot connect to amqps://{OPS}:***@localhost:{broker.tls_port}: "
                          "transport error: Authentication failed [mech=PLAIN]",
        "certificate of no user": f"cannot connect to amqps://stranger@localhost:{broker.tls_port}: "
                                  "transport error: Authentication failed [mech=EXTERNAL]"}
    assert elapsed < 6


def test_a_console_may_log_in_by_its_certificate(broker: RabbitNode, hv01: Agent, pki: Pki, trust: TlsConfig,
                                                 fleet: Fleet) -> None:
    """SASL EXTERNAL: the certificate's CN is the broker user — and, with no user in the URL, the user the
    console's messages carry and the word of its reply key."""
    auditor = pki.tls("mq-auditor", cn=AUDITOR)
    console = fleet.console(broker.url_for(tls=True), tls_cert=auditor.cert, tls_key=auditor.key,
                            tls_ca=trust.ca, agent_users="instance")
    wait_until(lambda: seen(console, hv01.name) == truth(hv01.hypervisor), timeout=5)
    assert broker_of(console).reply_address.startswith(f"/topic/qmf.reply.{AUDITOR}.")
    with pytest.raises(AccessDeniedError):
        console.domains.get(f"{HONEST}/web1").suspend()  # readonly: the agent knows it as auditor


# --- identity: the agent's policy by broker user, user-ids checked by the broker ---------------------------

def test_the_agent_authorizes_by_broker_user(ops: Console, reader: Console, hv01: Agent, tally: Tally) -> None:
    wait_until(lambda: seen(reader, hv01.name) == truth(hv01.hypervisor), timeout=5)
    web1 = reader.domains.get(f"{HONEST}/web1")
    assert web1.getInfo()["state"] == RUNNING  # readonly may read
    with pytest.raises(AccessDeniedError) as denied:
        web1.suspend()
    tally.count("call beyond readonly (suspend)", denied.value.error_code == AccessDeniedError.code)
    assert denied.value.error_code == AccessDeniedError.code == 0x10058  # VIR_ERR_ACCESS_DENIED
    assert denied.value.error_text == "access denied: principal 'reader' lacks domain:suspend"
    assert web1_state(hv01) == RUNNING

    ops.domains.get(f"{HONEST}/web1").suspend()
    assert web1_state(hv01) == PAUSED
    ops.domains.get(f"{HONEST}/web1").resume()
    assert web1_state(hv01) == RUNNING


def test_a_forged_user_id_never_reaches_the_agent(broker: RabbitNode, reader: Console, hv01: Agent, trust: TlsConfig,
                                                  tally: Tally) -> None:
    """reader, authenticated as reader, sends ops's suspend (user-id ops): RabbitMQ ends its session
    (precondition-failed) before routing it; the same message with its own user-id is routed, and denied."""
    web1 = reader.domains.get(f"{HONEST}/web1")
    request = MethodRequest(object_id=web1.object_id, method_name="suspend", correlation_id="forged-1",
                            reply_to=broker_of(reader).reply_address).encode(direct_address(hv01.name))
    wire = profile("rabbitmq").outgoing(request)
    forged = run(Attempt(amqps(broker, READER), trust, send_to=TOPIC, messages=[to_proton(wire, OPS)]))[0]
    tally.count("forged user-id (reader as ops)", forged.ended.startswith("amqp:precondition-failed"))
    assert forged.ended.startswith("amqp:precondition-failed: PRECONDITION_FAILED - user_id property set to "
                                   "'ops' but authenticated user was 'reader'"), forged.ended
    assert forged.accepted == 0
    # With its own user-id: routed (the broker accepts it), and denied by the agent as reader's.
    honest = run(Attempt(amqps(broker, READER), trust, send_to=TOPIC, messages=[to_proton(wire, READER)]))[0]
    assert (honest.accepted, honest.ended) == (1, "")
    assert web1.getInfo()["state"] == RUNNING  # (a later request, answered)
    assert web1_state(hv01) == RUNNING


# --- topic permissions ---------------------------------------------------------------------------------------

def _publish(broker: RabbitNode, trust: TlsConfig, user: str, key: str) -> Attempt:
    """(what it carries does not matter: the broker decides by the routing key)"""
    message = Message(body={"probe": key}, subject=key, user_id=user.encode())
    return Attempt(amqps(broker, user), trust, send_to=TOPIC, messages=[message])


def _bind(broker: RabbitNode, trust: TlsConfig, user: str, key: str) -> Attempt:
    return Attempt(amqps(broker, user), trust, receive=[f"/topic/{key}"])


def bindings(broker: RabbitNode, key: str) -> int:
    rows: object = broker.ctl_json("list_bindings", "source_name", "routing_key")
    return sum(1 for row in rows if isinstance(row, dict) and row.get("source_name") == "amq.topic"
               and row.get("routing_key") == key) if isinstance(rows, list) else 0


def test_topic_permissions_confine_each_user_to_its_keys(broker: RabbitNode, trust: TlsConfig, ops: Console,
                                                         reader: Console, hv01: Agent, tally: Tally) -> None:
    """Side by side, what each may not do (refused by the broker) and, for contrast, what it may."""
    honest_key = DIRECT_KEY + hv01.name
    reader_reply = broker_of(reader).reply_address[len("/topic/"):]
    heartbeat = "agent.ind.heartbeat.libvirt_org.virtq"
    refused = {
        "publish agent.ind (a console's fake push)": _publish(broker, trust, OPS, heartbeat),
        "publish qmf.reply (a console answering for another)": _publish(broker, trust, OPS, reader_reply),
        "publish qmf.direct (an agent's request)": _publish(broker, trust, OTHER_AGENT, honest_key),
        "publish console.request (an agent's broadcast)": _publish(broker, trust, OTHER_AGENT, LOCATE_SUBJECT),
        "bind another agent's qmf.direct key": _bind(broker, trust, OTHER_AGENT, honest_key),
        "bind qmf.direct.# (an agent)": _bind(broker, trust, OTHER_AGENT, "qmf.direct.#"),
        "bind another console's reply key": _bind(broker, trust, OPS, reader_reply),
        "bind qmf.reply.# (a console)": _bind(broker, trust, OPS, "qmf.reply.#"),
        "bind # (a console)": _bind(broker, trust, OPS, "#"),
    }
    allowed = {
        "publish the locate broadcast (a console)": _publish(broker, trust, OPS, LOCATE_SUBJECT),
        "publish agent.ind (an agent)": _publish(broker, trust, OTHER_AGENT, heartbeat),
        "bind its own qmf.direct key": _bind(broker, trust, OTHER_AGENT, DIRECT_KEY + name_of(OTHER_AGENT)),
        "bind its own reply key": _bind(broker, trust, OPS, f"qmf.reply.{OPS}.{uuid.uuid4().hex}"),
    }
    run(*refused.values(), *allowed.values())
    for what, attempt in refused.items():
        tally.count(what, attempt.refused)
    outcome = {what: attempt.ended or "not refused" for what, attempt in refused.items()}
    assert all(attempt.refused and not attempt.accepted for attempt in refused.values()), outcome
    assert all(a.ended.startswith("amqp:unauthorized-access") for w, a in refused.items() if w.startswith("publish"))
    assert all(not a.opened for w, a in refused.items() if w.startswith("bind"))  # the link never opened
    assert {what: attempt.ended for what, attempt in allowed.items()} == dict.fromkeys(allowed, "")
    assert all(len(a.opened) == 1 for a in allowed.values())
    assert bindings(broker, honest_key) == 1  # the honest agent's own, no other
    assert bindings(broker, reader_reply) == 1
    log = (broker.dir / "log" / f"{broker.name}.log").read_text(errors="replace")
    assert f"access to topic '{honest_key}' in exchange 'amq.topic' in vhost '/' refused for user " \
           f"'{OTHER_AGENT}'" in log


def test_a_reply_to_outside_qmf_reply_neither_escapes_nor_costs_the_agent_its_session(
        broker: RabbitNode, trust: TlsConfig, ops: Console, hv01: Agent) -> None:
    """A request whose reply-to names another key (here: agent.ind.…, as if to make the agent's answer pass
    for a push): the agent answers under ``qmf.reply.``, which its permissions allow and nobody binds —
    refused, the publish would have ended its session, and any console could make every agent reconnect."""
    connection = BlockingConnection(broker.url, timeout=5)  # guest: no topic permissions, sees everything
    try:
        stray = connection.create_receiver("/topic/qmf.reply.", name=f"stray-{uuid.uuid4().hex[:8]}")
        web1 = ops.domains.get(f"{HONEST}/web1")
        request = MethodRequest(object_id=web1.object_id, method_name="getInfo", correlation_id="stray-1",
                                reply_to="/topic/agent.ind.data.fake").encode(direct_address(hv01.name))
        sent = run(Attempt(amqps(broker, OPS), trust, send_to=TOPIC,
                           messages=[to_proton(profile("rabbitmq").outgoing(request), OPS)]))[0]
        assert (sent.accepted, sent.ended) == (1, "")
        answer = stray.receive(timeout=5)
        stray.accept()
    finally:
        connection.close()
    assert answer.correlation_id == "stray-1" and answer.subject == "qmf.reply."
    assert agent_broker(hv01).connected and agent_broker(hv01).reconnects == 0
    assert web1.getInfo()["state"] == RUNNING


# --- identity at the console ---------------------------------------------------------------------------------

def test_a_rogue_agent_claiming_another_agents_name_is_ignored(fleet: Fleet, broker: RabbitNode, trust: TlsConfig,
                                                               ops: Console, hv01: Agent, tally: Tally) -> None:
    """evil, a broker user with an agent's permissions, runs an agent that calls itself hv01 (on libvirt's
    test:///default: domain "test"). The broker lets it push (agent.ind.* is an agent's); the console drops
    everything it sends, since only user hv01 may speak for hv01, and keeps the honest agent's objects."""
    url = amqps(broker, ROGUE)
    rabbitmq = profile("rabbitmq")

    def transport(name: str) -> Connection:
        # (it may bind only its own user's request key, not hv01's: the broker would refuse that)
        sources = [rabbitmq.topic_source(DIRECT_KEY + name_of(ROGUE)), rabbitmq.topic_source(LOCATE_SUBJECT)]
        return Connection([url], rabbitmq, role="agent", agent_name=name, tls=trust, sources=sources,
                          require_connection=False)

    before = ops.untrusted
    impostor = Agent(default_schema(), LibvirtHypervisor(DEFAULT_URI), transport, instance=HONEST, heartbeat=1.0,
                     interval=0.5, state_dir=fleet.state / "impostor", policy=POLICY)
    fleet.agents.append(impostor)
    impostor.start()
    try:
        wait_until(lambda: ops.untrusted >= before + 2, timeout=5)  # its heartbeats (1 s apart), at least
        tally.count("rogue agent claiming hv01 (messages dropped)", True)
        assert seen(ops, hv01.name) == truth(hv01.hypervisor)
        assert "test" not in {d.name for d in ops.domains}
        assert ops.agents.get(HONEST).epoch == hv01.epoch
    finally:
        impostor.kill()
        fleet.agents.remove(impostor)
    print(f"\nrogue agent: {ops.untrusted - before} of its messages dropped by the console")


# --- the document ---------------------------------------------------------------------------------------------

def test_deployment_md_grants_exactly_these_permissions() -> None:
    """What the tier's users get is what docs/DEPLOYMENT.md tells operators to run."""
    text = DEPLOYMENT.read_text()
    for permissions in (AGENT, CONSOLE):
        assert f"'{permissions.configure}' '{permissions.write}' '{permissions.read}'" in text
        assert f"amq.topic '{permissions.topic_write}' '{permissions.topic_read}'" in text
