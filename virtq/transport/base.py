"""The transport seam: what agent and console need from a message carrier, and nothing more.

A transport moves :class:`~virtq.schema.codec.WireMessage` values. ``send`` may be called
from any thread; ``deliver`` (given to ``start``) is called on the transport's own thread
and must return quickly. Implementations: direct AMQP 1.0 over proton (listener for the
agent, connector for the console) and an in-memory bus for unit tests.
"""

from __future__ import annotations

import abc
from typing import Callable, Optional

from virtq.schema.codec import WireMessage

Deliver = Callable[[WireMessage], None]
StateListener = Callable[[bool], None]
"""Told True when the transport is (again) able to carry messages, False when it is not."""
UNDECODABLE = "<undecodable>"
"""The body handed over for a message whose body has no Python value, so the agent answers it with
``_exception`` 7 (the codec refuses a text body where a map is expected) instead of nothing."""
Audience = Callable[[Optional[str], WireMessage], Optional[WireMessage]]
"""What a principal (None: anonymous) may see of a pushed message: the message, a filtered copy, or
None. Called on the transport's thread, once per principal and message; it must not block."""


class Transport(abc.ABC):
    """A message carrier with start / stop / kill, usable as a context manager."""

    _consumer: Optional[Deliver] = None
    """The ``deliver`` start() was given."""

    def deliver(self, wire: WireMessage) -> None:
        """Hand a received message to the ``deliver`` start() was given (on the transport's thread)."""
        if self._consumer is not None:
            self._consumer(wire)

    @abc.abstractmethod
    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        """Begin carrying messages; raise NotConnectedError if that cannot happen within ``timeout``."""

    @abc.abstractmethod
    def send(self, message: WireMessage) -> None:
        """Queue a message for sending; thread-safe. Raises NotConnectedError when it cannot be sent."""

    @abc.abstractmethod
    def stop(self, timeout: float = 5.0) -> None:
        """Close gracefully and join the transport's thread."""

    def kill(self) -> None:
        """Stop at once; never raises."""
        try:
            self.stop(timeout=1.0)
        except Exception:  # noqa: BLE001 - kill must not raise
            pass

    @property
    def exposed(self) -> bool:
        """Whether peers on other hosts can reach this endpoint (a broker, a non-loopback listener): the
        agent's default policy then denies every call."""
        return True

    def set_audience(self, audience: Optional[Audience]) -> None:
        """Filter pushes per subscriber principal. Only a listener (direct mode) has subscribers of its
        own; through a broker the broker's permissions decide who reads what, so this does nothing."""

    def set_ready(self, ready: Callable[[], bool]) -> None:
        """Back-pressure: grant peers credit for more messages only while ``ready()`` (called on the transport's
        thread; it must be cheap, e.g. "my work queue is below its bound"). By default credit is always granted."""

    def on_own_thread(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` on the transport's own thread, soon; False when that thread does not run. A supervisor's
        round trip (the agent's systemd watchdog): ``fn`` not run in time means the thread is wedged. A
        transport without a thread of its own runs ``fn`` at once."""
        fn()
        return True

    @property
    @abc.abstractmethod
    def reply_address(self) -> str:
        """The address replies to this endpoint's requests are sent to ('' for agents)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether ``send`` can carry messages now."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def topic_matches(pattern: str, subject: str) -> bool:
    """AMQP topic matching: ``*`` matches one dot-separated word, ``#`` zero or more."""
    words = subject.split(".") if subject else []
    parts = pattern.split(".") if pattern else []

    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(words)
        if parts[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(words) + 1))
        if j == len(words):
            return False
        return (parts[i] == "*" or parts[i] == words[j]) and match(i + 1, j + 1)

    return match(0, 0)
