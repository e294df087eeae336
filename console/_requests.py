"""Requests and their answers: correlation ids, the requests waiting for answers, waiting for one.

A request goes out with an unguessable correlation id; the ingest thread hands each answer to the
request it names (:meth:`Requests.correlate`); the caller blocks in :meth:`Requests.wait` on its own
request only. Requests that can no longer be answered (their connection went down, the console closed)
fail at once instead of timing out.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from virtq.schema import errors
from virtq.schema.codec import DIRECT, Message, QueryResponse
from virtq.transport import Transport

from .subscriptions import refuse_inline_calls

__all__ = ["Pending", "Requests"]


@dataclass
class Pending:
    """A request waiting for its answer (several messages when the answer is partial)."""

    cid: str
    transport: Transport
    apply: bool = False  # apply returned records to the repositories, in wire order
    many: bool = False  # a broadcast (agent locate through a broker): collect answers until the deadline
    agent: str = ""  # the agent asked (its answers must come from it); "" for a broadcast
    replies: List[Message] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: Optional[Exception] = None
    sent: float = field(default_factory=time.monotonic)

    def add(self, message: Message) -> None:
        self.replies.append(message)
        if not self.many and not (isinstance(message, QueryResponse) and message.partial):
            self.done.set()

    def fail(self, error: Exception) -> None:
        """End the wait now: the waiter raises ``error``."""
        self.error = error
        self.done.set()


class Requests:
    """The console's requests in flight."""

    def __init__(self) -> None:
        self._pending: Dict[str, Pending] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.closed = False
        """Set when the console closes: no request goes out any more."""

    def send(self, transport: Transport, request: Message, address: str, apply: bool = False,
             many: bool = False) -> Pending:
        """Send ``request`` to ``address`` and return what to wait on; NotConnectedError when it cannot go."""
        refuse_inline_calls("a %s", request.OPCODE)
        if self.closed:
            raise errors.NotConnectedError("console is closed")
        # Unguessable: every agent behind a broker learns a console's reply address from its locate, and an
        # answer is matched by its correlation id; a guessed id would let one agent answer for another.
        cid = f"c{next(self._ids)}-{secrets.token_hex(8)}"
        asked = address[len(DIRECT) + 1:] if address.startswith(DIRECT + "/") else ""
        pending = Pending(cid, transport, apply, many, agent=asked)
        with self._lock:
            self._pending[cid] = pending
        wire = dataclasses.replace(request, correlation_id=cid, reply_to=transport.reply_address).encode(address)
        try:
            transport.send(wire)
        except errors.NotConnectedError:
            with self._lock:
                self._pending.pop(cid, None)
            raise
        return pending

    def wait(self, pending: Pending, timeout: float, what: str, many: bool = False) -> List[Message]:
        """The answer's messages (``many``: whatever came until ``timeout``); CallTimeoutError without one."""
        ok = pending.done.wait(timeout)
        with self._lock:
            self._pending.pop(pending.cid, None)
        if pending.error is not None:
            raise pending.error
        if many:
            return list(pending.replies)
        if not ok:
            raise errors.CallTimeoutError(f"{what}: no answer within {timeout:g}s")
        return pending.replies

    def ask(self, transport: Transport, request: Message, address: str, timeout: float, what: str,
            apply: bool = False) -> List[Message]:
        """send() and wait() for one answer."""
        return self.wait(self.send(transport, request, address, apply=apply), timeout, what)

    def correlate(self, correlation_id: Optional[str]) -> Optional[Pending]:
        """The request a message with this correlation id answers, if it is still waiting."""
        if correlation_id is None:
            return None
        with self._lock:
            return self._pending.get(correlation_id)

    def fail(self, transport: Optional[Transport], error: Exception) -> None:
        """Requests sent on ``transport`` (None: all) can no longer be answered: they fail now."""
        with self._lock:
            failed = [p for p in self._pending.values() if transport is None or p.transport is transport]
            for p in failed:
                del self._pending[p.cid]
        for p in failed:
            p.fail(error)
