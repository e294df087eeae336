"""The harness's nodes, and what RabbitMQ 3.x's AMQP 1.0 plugin does, as executable facts.

A raw proton client (``proton.utils.BlockingConnection``) checks what the ``rabbitmq`` address profile
relies on (../shared/notes/rabbitmq-amqp10.md): named links on ``/topic/<key>`` (wildcards) and
``/exchange/amq.direct/<key>``; subject, application properties, correlation_id and reply_to kept; map
bodies kept at any depth, while a top-level list body of two or more elements crashes the publisher's
connection; the queue every such receiver leaves behind, and the expiry policy that removes it; a
cluster that carries messages from node to node and survives a node stopping or crashing.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, cast

import pytest
from proton import Array, ConnectionException, Data, Message, Timeout
from proton.utils import BlockingConnection, BlockingReceiver, LinkDetached

from virtq.testing import wait_until
from virtq.testing.rabbitmq import GEN_EXPIRE_POLICY, RabbitCluster, RabbitNode

pytestmark = pytest.mark.broker

TIMEOUT = 10.0
QUIET = 0.3
"""How long to listen to be sure nothing arrives (deliveries on loopback take ~1 ms)."""


def uid() -> str:
    return uuid.uuid4().hex[:8]


def open_conn(url: str) -> BlockingConnection:
    return BlockingConnection(url, timeout=TIMEOUT)


def close_quietly(conn: BlockingConnection) -> None:
    try:
        conn.close()
    except (ConnectionException, LinkDetached):
        pass  # (the broker aborted it)


@pytest.fixture
def conn(rabbit: RabbitNode) -> Iterator[BlockingConnection]:
    connection = open_conn(rabbit.url)
    yield connection
    close_quietly(connection)


def receive(receiver: BlockingReceiver, timeout: float = TIMEOUT) -> Any:
    """The next message (typed Any: its fields are checked by value)."""
    message = receiver.receive(timeout=timeout)
    receiver.accept()
    return message


def nothing_arrives(receiver: BlockingReceiver) -> bool:
    try:
        message = receiver.receive(timeout=QUIET)
    except Timeout:
        return True
    receiver.accept()
    pytest.fail(f"unexpected message: {message}")


def roundtrip(conn: BlockingConnection, message: Message) -> Any:
    """Send ``message`` through amq.direct to a receiver of our own, and return what arrives."""
    address = f"/exchange/amq.direct/roundtrip-{uid()}"
    receiver = conn.create_receiver(address, name=f"r-{uid()}")
    sender = conn.create_sender(address, name=f"s-{uid()}")
    sender.send(message, timeout=TIMEOUT)
    return receive(receiver)  # (links are not closed: see test_closing_a_link_never_completes_and_its_queue_leaks)


# --- one node ----------------------------------------------------------------------------------------


def test_node_is_private_and_on_loopback(rabbit: RabbitNode) -> None:
    assert rabbit.name.startswith(f"virtq-{os.getpid()}-") and rabbit.name.endswith("@localhost")
    assert rabbit.url == f"amqp://guest:guest@127.0.0.1:{rabbit.port}"
    status: Any = rabbit.ctl_json("status")
    listeners = {(item["protocol"], item["interface"], item["port"]) for item in status["listeners"]}
    assert listeners == {("amqp", "127.0.0.1", rabbit.port), ("clustering", "127.0.0.1", rabbit.dist_port)}
    assert "rabbitmq_amqp1_0" in status["active_plugins"]
    assert status["enabled_plugin_file"] == str(rabbit.dir / "enabled_plugins")
    assert status["config_files"] == [str(rabbit.dir / "rabbitmq.conf")]
    assert rabbit.beam_pid in rabbit.processes()
    assert set(rabbit.processes()) <= set(rabbit.session.processes())


def test_topic_addresses_with_wildcards(conn: BlockingConnection) -> None:
    everything = conn.create_receiver("/topic/agent.ind.#", name=f"ind-all-{uid()}")
    one_word = conn.create_receiver("/topic/agent.ind.*.x.y", name=f"ind-star-{uid()}")
    too_short = conn.create_receiver("/topic/agent.ind.heartbeat.*", name=f"ind-short-{uid()}")
    heartbeat = conn.create_sender("/topic/agent.ind.heartbeat.x.y", name=f"hb-{uid()}")
    elsewhere = conn.create_sender("/topic/agent.other.x.y", name=f"other-{uid()}")
    properties = {"qmf.opcode": "_agent_heartbeat_indication", "qmf.agent": "x.y", "method": "indication",
                  "epoch": 3}
    body = {"_values": {"epoch": 3, "timestamp": 1_700_000_000_000_000_000}, "_name": "x.y"}

    elsewhere.send(Message(body={"not": "for us"}, subject="agent.other.x.y"), timeout=TIMEOUT)
    heartbeat.send(Message(body=body, subject="agent.ind.heartbeat.x.y", properties=properties), timeout=TIMEOUT)

    for receiver in (everything, one_word):
        message = receive(receiver)
        assert message.body == body
        assert message.subject == "agent.ind.heartbeat.x.y"
        assert message.properties == properties
    assert nothing_arrives(everything)  # (the agent.other message did not match)
    assert nothing_arrives(too_short)  # `*` is exactly one word


def test_direct_exchange_request_and_reply(conn: BlockingConnection) -> None:
    """The QMF request/response shape: a request to the agent's direct address, carrying the
    console's own direct address as reply_to; the reply sent there with the request's correlation_id."""
    agent_address = f"/exchange/amq.direct/agent-{uid()}"
    console_address = f"/exchange/amq.direct/console-{uid()}"
    agent_in = conn.create_receiver(agent_address, name=f"agent-in-{uid()}")
    console_in = conn.create_receiver(console_address, name=f"console-in-{uid()}")
    bystander = conn.create_receiver(f"/exchange/amq.direct/other-{uid()}", name=f"other-{uid()}")
    to_agent = conn.create_sender(agent_address, name=f"to-agent-{uid()}")

    to_agent.send(Message(body={"_object_id": {"_object_name": "domain/1"}, "_method_name": "suspend"},
                          correlation_id="req-42", reply_to=console_address, subject="agent-1",
                          properties={"qmf.opcode": "_method_request", "method": "request"}), timeout=TIMEOUT)
    request = receive(agent_in)
    assert request.correlation_id == "req-42"
    assert request.reply_to == console_address
    assert request.properties == {"qmf.opcode": "_method_request", "method": "request"}
    assert request.body["_method_name"] == "suspend"

    to_console = conn.create_sender(request.reply_to, name=f"reply-{uid()}")
    to_console.send(Message(body={"_arguments": {}}, correlation_id=request.correlation_id,
                            properties={"qmf.opcode": "_method_response", "method": "response"}), timeout=TIMEOUT)
    reply = receive(console_in)
    assert reply.correlation_id == "req-42"
    assert reply.properties["qmf.opcode"] == "_method_response"
    assert reply.body == {"_arguments": {}}
    assert nothing_arrives(bystander)


def _link_opens(url: str, dynamic: bool) -> bool:
    """Whether a dynamic receiver (or else an anonymous-relay sender, with a null target) opens in 1 s."""
    connection = BlockingConnection(url, timeout=1.0)
    try:
        if dynamic:
            connection.create_receiver(None, dynamic=True, name=f"dynamic-{uid()}")
        else:
            connection.create_sender(None, name=f"anonymous-{uid()}")
    except Timeout:
        return False
    finally:
        close_quietly(connection)
    return True


def test_dynamic_receivers_and_anonymous_senders_never_open(rabbit: RabbitNode) -> None:
    """The plugin never answers their attach: the profile uses named links and per-console reply addresses."""
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda dynamic: _link_opens(rabbit.url, dynamic), [True, False])) == [False, False]


SURVIVING_BODIES = {
    "map with a list": {"l": [1, 2, 3]},
    "map with a list of maps": {"records": [{"a": 1, "b": "x"}, {"a": 2, "b": [1, 2]}]},
    "map in a map with a list": {"m": {"l": ["x", "y"]}},
    "QMF list body wrapped in a map": {"_list": [{"_values": {"state": 1}}, {"_values": {"state": 5}}]},
    "empty map": {},
    "empty list": [],
    "list of one element": [1],
    "list of one map": [{"a": 1, "b": [1, 2]}],
    "list of one list of two": [[1, 2]],
    "string": "s",
    "int": 7,
}


@pytest.mark.parametrize("body", list(SURVIVING_BODIES.values()), ids=list(SURVIVING_BODIES))
def test_bodies_that_survive(conn: BlockingConnection, body: Any) -> None:
    assert roundtrip(conn, Message(body=body)).body == body


def test_list_as_amqp_sequence_or_array_survives(conn: BlockingConnection) -> None:
    """Only an amqp-value list breaks: the same values as an amqp-sequence section, or an AMQP array, pass."""
    sequence = roundtrip(conn, Message(body=[1, 2], inferred=True))
    assert sequence.body == [1, 2] and sequence.inferred
    array = roundtrip(conn, Message(body=cast(Any, Array(0, Data.INT, 1, 2, 3))))
    assert list(array.body.elements) == [1, 2, 3]


def test_message_without_body_gains_an_empty_data_section(conn: BlockingConnection) -> None:
    """Sent with no body section, it arrives with an empty data section (binary b"", not None)."""
    body = roundtrip(conn, Message(subject="nobody")).body
    assert body is not None and bytes(body) == b""


CRASHING_BODIES = {
    "list of two ints": [1, 2],
    "list of two strings": ["a", "b"],
    "list of two maps (QMF's query response)": [{"a": 1}, {"b": 2}],
    "tuple of two": (1, 2),
    "list of two lists": [[1], [2]],
}


def _publish(url: str, address: str, body: Any) -> Optional[str]:
    """Publish on a connection of its own; the error it ended with, or None when the send was settled."""
    publisher = open_conn(url)
    try:
        publisher.create_sender(address, name=f"pub-{uid()}").send(Message(body=body), timeout=TIMEOUT)
    except ConnectionException as exc:
        return str(exc)
    finally:
        close_quietly(publisher)
    return None


def test_top_level_lists_of_two_or_more_crash_the_publishing_connection(rabbit: RabbitNode,
                                                                        conn: BlockingConnection) -> None:
    """RabbitMQ 3.10 decodes an amqp-value list as if it were a described record (badarg in
    amqp10_framing:fill_from_list): the publisher's session crashes and its connection is aborted
    (framing-error, ~3 s later); the message is lost. Other connections, and the node, carry on."""
    address = f"/exchange/amq.direct/crash-{uid()}"
    receiver = conn.create_receiver(address, name=f"crash-r-{uid()}")
    started = time.monotonic()
    with ThreadPoolExecutor(len(CRASHING_BODIES)) as pool:  # (each takes ~3 s: side by side)
        outcomes = dict(zip(CRASHING_BODIES, pool.map(lambda body: _publish(rabbit.url, address, body),
                                                      CRASHING_BODIES.values())))
    elapsed = time.monotonic() - started
    print(f"\ncrashing bodies: {len(CRASHING_BODIES)} publishers aborted in {elapsed:.1f} s")
    for label, error in outcomes.items():
        assert error is not None and "amqp:connection:framing-error" in error, (label, error)
    assert nothing_arrives(receiver)  # lost, not delivered

    assert _publish(rabbit.url, address, {"after": "the crashes"}) is None
    assert receive(receiver).body == {"after": "the crashes"}  # this connection was never affected
    assert rabbit.running


def _queues(node: RabbitNode) -> Dict[str, Dict[str, Any]]:
    rows: Any = node.ctl_json("list_queues", "name", "policy", "consumers")
    return {row["name"]: row for row in rows}


def test_expiry_policy_is_set(rabbit: RabbitNode) -> None:
    name, pattern, definition = GEN_EXPIRE_POLICY
    policies: Any = rabbit.ctl_json("list_policies")
    assert [(p["name"], p["pattern"], p["apply-to"], p["definition"]) for p in policies] == \
        [(name, pattern, "queues", definition)] == [("gen-expire", r"^amq\.gen-", "queues", '{"expires":60000}')]


def test_closing_a_link_never_completes_and_its_queue_leaks(rabbit: RabbitNode, conn: BlockingConnection) -> None:
    """RabbitMQ answers a closing detach (closed=true) with a plain detach (closed absent): proton never
    sees the link closed (BlockingLink.close() times out; a MessagingHandler gets no on_link_closed), and
    the broker treats it as a detach: a /topic/ receiver's queue (amq.gen-*) stays, with no consumer.
    The policy applies to it; with a 1 s expiry instead of 60 s (a higher-priority policy, for this test
    only) it goes. Close the connection (that completes) rather than waiting for links to close."""
    before = set(_queues(rabbit))
    receiver = conn.create_receiver(f"/topic/leak.{uid()}.#", name=f"leak-{uid()}")
    queues = _queues(rabbit)
    (queue,) = set(queues) - before
    assert queue.startswith("amq.gen-")
    assert queues[queue]["policy"] == "gen-expire"
    assert queues[queue]["consumers"] == 1

    conn.timeout = 0.5
    with pytest.raises(Timeout):
        receiver.close()  # type: ignore[no-untyped-call]
    conn.timeout = TIMEOUT
    assert _queues(rabbit)[queue]["consumers"] == 0  # detached, but the queue stays: the leak

    rabbit.ctl("set_policy", "gen-expire-fast", r"^amq\.gen-", '{"expires":1000}', "--priority", "1",
               "--apply-to", "queues")
    try:
        wait_until(lambda: queue not in _queues(rabbit), timeout=15, interval=0.5)
    finally:
        rabbit.ctl("clear_policy", "gen-expire-fast")


# --- the cluster -------------------------------------------------------------------------------------


def _topic_flows(publish_on: RabbitNode, receive_on: RabbitNode) -> None:
    """A message published on one node reaches a /topic/ receiver attached to the other."""
    key = f"cluster.{uid()}"
    receiving, publishing = open_conn(receive_on.url), open_conn(publish_on.url)
    try:
        receiver = receiving.create_receiver(f"/topic/{key}.#", name=f"c-r-{uid()}")
        sender = publishing.create_sender(f"/topic/{key}.agent.ind", name=f"c-s-{uid()}")
        sender.send(Message(body={"from": publish_on.name}, subject=f"{key}.agent.ind",
                            properties={"qmf.opcode": "_data_indication"}), timeout=TIMEOUT)
        message = receive(receiver)
        assert message.body == {"from": publish_on.name}
        assert message.properties == {"qmf.opcode": "_data_indication"}
    finally:
        close_quietly(publishing)
        close_quietly(receiving)


def test_cluster_is_formed(rabbit_cluster: RabbitCluster) -> None:
    a, b = rabbit_cluster.a, rabbit_cluster.b
    assert rabbit_cluster.running_nodes(via=a) == rabbit_cluster.running_nodes(via=b) == sorted([a.name, b.name])
    assert rabbit_cluster.urls == [a.url, b.url] and a.port != b.port and a.dist_port != b.dist_port
    policies: Any = b.ctl_json("list_policies")  # b's own were reset by the join: a's apply cluster-wide
    assert [p["name"] for p in policies] == ["gen-expire"]


def test_cluster_publish_on_a_receive_on_b(rabbit_cluster: RabbitCluster) -> None:
    _topic_flows(rabbit_cluster.a, rabbit_cluster.b)
    _topic_flows(rabbit_cluster.b, rabbit_cluster.a)


def test_cluster_node_stops_and_rejoins_then_one_crashes(rabbit_cluster: RabbitCluster) -> None:
    """Last in the module, and the session's last cluster test (the cluster is shared; this module runs
    after test_broker_cluster.py): it leaves b killed (the fixture's teardown copes)."""
    a, b = rabbit_cluster.a, rabbit_cluster.b
    timings: List[str] = []

    processes = a.processes()
    assert a.beam_pid in processes
    started = time.monotonic()
    a.stop()
    timings.append(f"stop a {time.monotonic() - started:.1f} s")
    assert not a.running and a.beam_pid is None
    assert not a.processes() and not set(processes) & set(a.session.processes())
    assert rabbit_cluster.running_nodes(via=b) == [b.name]
    _topic_flows(b, b)  # b serves alone

    started = time.monotonic()
    a.start()
    timings.append(f"start a {time.monotonic() - started:.1f} s")
    wait_until(lambda: rabbit_cluster.running_nodes(via=b) == sorted([a.name, b.name]), timeout=15, interval=0.2)
    _topic_flows(a, b)  # a rejoined by itself

    processes = b.processes()
    started = time.monotonic()
    b.kill()  # a crash
    timings.append(f"kill b {time.monotonic() - started:.2f} s")
    assert not b.running and not b.processes()
    assert not set(processes) & set(a.session.processes())
    wait_until(lambda: rabbit_cluster.running_nodes(via=a) == [a.name], timeout=15, interval=0.2)
    print("\ncluster node timings: " + ", ".join(timings))
