"""10,000+ hostile messages at a real agent (libvirt's test driver, direct mode) within a minute: every one that
names a reply-to gets an answer (PROTOCOL.md 8.3), control characters in object names are code 4, undecodable
bodies code 7, and afterwards the agent serves a normal request. Sent without waiting for each answer (a proton
Container, not a BlockingConnection), from a seeded generator so a failure can be replayed."""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
from proton import Message as ProtonMessage
from proton.handlers import MessagingHandler
from proton.reactor import Container

from virtq.agent import Agent
from virtq.schema.codec import (OPCODE, AgentLocateRequest, ExceptionResponse, MethodRequest, ObjectId,
                                QueryRequest, decode, direct_address)
from virtq.testing import agent_url
from virtq.transport import DirectListener
from virtq.transport._convert import from_proton, to_proton

from ..conftest import AgentFactory

pytestmark = pytest.mark.integration

MESSAGES = 10_000
SEED = 20261203
WEB1 = "Domain:3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01"


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randrange(-2**63, 2**63)
    if kind == 2:
        return "".join(chr(rng.randrange(0, 0x2000)) for _ in range(rng.randrange(12)))
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    if kind == 4:
        return rng.random()
    if kind == 5:
        return rng.random() < 0.5
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["_object_id", "_method_name", "_arguments", "_what", "_schema_id", "x"]
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


class Shapes:
    """Each shape: (body, properties, wanted code or None for any answer, raw bytes or None)."""

    def __init__(self, agent: Agent, reply_to: str, rng: random.Random) -> None:
        self.agent, self.reply_to, self.rng = agent, reply_to, rng
        self.address = direct_address(agent.name)
        method = MethodRequest(object_id=ObjectId(WEB1, agent.name), method_name="getInfo", arguments={})
        wire = method.encode(self.address)
        self.method_body, self.method_props = dict(wire.body), dict(wire.properties)
        self.shapes: Tuple[Callable[[str], Tuple[Any, Any, Optional[int], Optional[bytes]]], ...] = (
            self.random_body, self.random_opcode, self.control_name, self.undecodable, self.wrong_arguments,
            self.locate)

    def random_body(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        return _value(self.rng), dict(self.method_props), None, None

    def random_opcode(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        opcode = self.rng.choice(["_method_request", "_query_request", "_nothing", "", "_exception"])
        return _value(self.rng), {**self.method_props, OPCODE: opcode}, None, None

    def control_name(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        bad = chr(self.rng.choice([*range(0x00, 0x20), 0x7f]))
        name = WEB1[:self.rng.randrange(len(WEB1))] + bad + "x"
        body = {**self.method_body, "_object_id": ObjectId(name, self.agent.name).to_wire()}
        return body, dict(self.method_props), 4, None

    def undecodable(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        body = {**self.method_body, "PLACEHOLDER": 1}
        data = ProtonMessage(body=body, properties=self.method_props, address=self.address, reply_to=self.reply_to,
                             correlation_id=cid).encode()
        return None, None, 7, data.replace(b"\xa1\x0bPLACEHOLDER", b"\xc0\x0b\x01\xa1\x08AAAAAAAA")

    def wrong_arguments(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        body = {**self.method_body, "_arguments": {"flags": _value(self.rng)}}
        return body, dict(self.method_props), None, None

    def locate(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        wire = AgentLocateRequest(correlation_id=cid, reply_to=self.reply_to).encode(self.address)
        return dict(wire.body), dict(wire.properties), None, None

    def next(self, cid: str) -> Tuple[Any, Any, Optional[int], Optional[bytes]]:
        return self.rng.choice(self.shapes)(cid)


class Fuzzer(MessagingHandler):
    def __init__(self, agent: Agent, n: int, seed: int, deadline: float) -> None:
        super().__init__(prefetch=500)
        self.agent, self.n, self.rng, self.deadline = agent, n, random.Random(seed), deadline
        self.sent = 0
        self.wanted: Dict[str, Optional[int]] = {}
        self.answered: Dict[str, Any] = {}
        self.wrong: Dict[str, Tuple[Optional[int], Any]] = {}
        self.shapes: Optional[Shapes] = None
        self.sender: Any = None
        self.receiver: Any = None
        self.final_cid = "final-query"

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(agent_url(self.agent), reconnect=False)
        self.receiver = event.container.create_receiver(connection, None, dynamic=True)
        event.container.schedule(max(1.0, self.deadline - time.monotonic()), self)

    def on_link_opened(self, event: Any) -> None:
        if event.receiver is not None and self.shapes is None:
            reply_to = event.receiver.remote_source.address
            self.shapes = Shapes(self.agent, reply_to, self.rng)
            self.sender = event.container.create_sender(event.connection, self.shapes.address)

    def on_sendable(self, event: Any) -> None:
        shapes = self.shapes
        assert shapes is not None
        while self.sender.credit > 0 and self.sent < self.n:
            cid = f"fuzz-{self.sent}"
            body, properties, code, data = shapes.next(cid)
            if data is None:
                self.sender.send(ProtonMessage(body=body, properties=properties, address=shapes.address,
                                               reply_to=shapes.reply_to, correlation_id=cid))
            else:
                self.sender.delivery(self.sender.delivery_tag())
                self.sender.stream(data)
                self.sender.advance()
            self.wanted[cid] = code
            self.sent += 1
        if self.sent == self.n and self.final_cid not in self.wanted:
            self.wanted[self.final_cid] = None
            wire = QueryRequest(what="OBJECT_ID", correlation_id=self.final_cid,
                                reply_to=shapes.reply_to).encode(shapes.address)
            self.sender.send(to_proton(wire))

    def on_message(self, event: Any) -> None:
        message = event.message
        cid = str(message.correlation_id)
        if cid not in self.wanted or cid in self.answered:
            return
        reply = decode(from_proton(message, ""))
        self.answered[cid] = reply
        code = self.wanted[cid]
        if code is not None and not (isinstance(reply, ExceptionResponse) and reply.error_code == code):
            self.wrong[cid] = (code, reply)
        if len(self.answered) == len(self.wanted) and self.sent == self.n:
            event.connection.close()

    def on_connection_closed(self, event: Any) -> None:
        event.container.stop()

    def on_timer_task(self, event: Any) -> None:
        event.container.stop()


def test_ten_thousand_hostile_messages_each_get_an_answer(start_agent: AgentFactory) -> None:
    agent = start_agent()
    started = time.monotonic()
    fuzzer = Fuzzer(agent, MESSAGES, SEED, deadline=started + 55)
    Container(fuzzer).run()
    elapsed = time.monotonic() - started
    missing = [cid for cid in fuzzer.wanted if cid not in fuzzer.answered]
    assert fuzzer.sent == MESSAGES
    assert not missing, f"{len(missing)} unanswered, e.g. {missing[:5]} (seed {SEED})"
    assert not fuzzer.wrong, list(fuzzer.wrong.items())[:5]
    assert elapsed < 60, elapsed
    assert isinstance(agent.transport, DirectListener) and agent.transport.alive
