"""A QMF client over any transport (the memory bus, in unit tests): requests in, answers by correlation id,
heartbeats kept apart; for tests that put exact requests to an agent without a Console."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Dict, List, Tuple

from virtq.agent import Agent
from virtq.schema.codec import (AgentHeartbeat, AgentInfo, Message, MethodRequest, ObjectId, QueryResponse, WireMessage,
                                decode, direct_address)
from virtq.transport import Transport


class Client:
    """Requests over a (console) transport to one agent; answers by correlation id, heartbeats kept apart."""

    def __init__(self, transport: Transport, agent: Agent) -> None:
        self.transport = transport
        self.agent = agent
        self.answers: Dict[str, "queue.Queue[Message]"] = {}
        self.heartbeats: "queue.Queue[AgentInfo]" = queue.Queue()
        self._lock = threading.Lock()
        self._ids = 0
        transport.start(self._receive)

    def _box(self, cid: str) -> "queue.Queue[Message]":
        with self._lock:
            return self.answers.setdefault(cid, queue.Queue())

    def _receive(self, wire: WireMessage) -> None:
        message = decode(wire)
        if isinstance(message, AgentHeartbeat):
            self.heartbeats.put(message.info)
        elif wire.correlation_id:
            self._box(wire.correlation_id).put(message)

    def send(self, message: Message) -> str:
        with self._lock:
            self._ids += 1
            cid = f"r{self._ids}"
        wire = message.encode(direct_address(self.agent.name))
        self.transport.send(WireMessage(wire.address, wire.properties, wire.body, wire.subject, cid,
                                        self.transport.reply_address))
        return cid

    def answer(self, cid: str, timeout: float = 5.0) -> List[Message]:
        got: List[Message] = []
        while True:
            message = self._box(cid).get(timeout=timeout)
            got.append(message)
            if not (isinstance(message, QueryResponse) and message.partial):
                return got

    def request(self, message: Message, timeout: float = 5.0) -> List[Message]:
        return self.answer(self.send(message), timeout)

    def call(self, uuid: str, method: str, **arguments: Any) -> str:
        return self.send(MethodRequest(object_id=ObjectId(f"Domain:{uuid}", self.agent.name, self.agent.epoch),
                                       method_name=method, arguments=arguments))

    def timed(self, message: Message, timeout: float = 5.0) -> Tuple[List[Message], float]:
        started = time.monotonic()
        answer = self.request(message, timeout)
        return answer, time.monotonic() - started
