"""Address profiles: where QMF's logical addresses live on a given kind of broker.

Everything above the transport speaks QMF's logical addresses (``qmf.default.direct/<agent>``,
``qmf.default.topic`` + subject). A profile maps them to the links a broker accepts, and
back; it is the only code that knows which broker it talks to.

- ``qmf``: the QMF addresses as they are (qpidd, Qpid Dispatch Router, skupper-router):
  topic publishes to ``qmf.default.topic/<subject>``, replies on dynamic receivers.
- ``rabbitmq``: RabbitMQ 3.x's AMQP 1.0 plugin: named links only (no dynamic receivers, no
  anonymous relay), topics on amq.topic as ``/topic/<routing key>``, direct addresses as
  ``/exchange/amq.direct/<key>``, a named per-console reply address, and list bodies wrapped
  in a map (the plugin's framing crashes the session on top-level lists of 2+ elements).
"""

from __future__ import annotations

import abc
import uuid
from typing import Any, Dict, List, Optional, Type

from virtq.schema.codec import DIRECT, LOCATE_SUBJECT, TOPIC, WireMessage

INDICATION_BINDING = "agent.ind.#"
WRAPPED_LIST = "_virtq_list"


class AddressProfile(abc.ABC):
    name = ""

    @abc.abstractmethod
    def agent_sources(self, agent_name: str) -> List[str]:
        """Addresses an agent receives from: its direct address and the locate topic."""

    @abc.abstractmethod
    def topic_source(self, binding: str) -> str:
        """The address to receive the topic's messages whose subject matches ``binding`` (``*``/``#``)."""

    def console_sources(self) -> List[str]:
        """Addresses a console receives indications from."""
        return [self.topic_source(INDICATION_BINDING)]

    @abc.abstractmethod
    def reply_source(self, console_id: str) -> Optional[str]:
        """A console's named reply address, or None for a dynamic receiver."""

    @abc.abstractmethod
    def target(self, wire: WireMessage) -> str:
        """The physical address to send a message with this logical address (and subject) to."""

    @abc.abstractmethod
    def logical(self, source: str) -> str:
        """The logical address of a message received from the link ``source``."""

    def wrap(self, body: Any) -> Any:
        return body

    def unwrap(self, body: Any) -> Any:
        return body


class QmfProfile(AddressProfile):
    name = "qmf"

    def agent_sources(self, agent_name: str) -> List[str]:
        return [f"{DIRECT}/{agent_name}", self.topic_source(LOCATE_SUBJECT)]

    def topic_source(self, binding: str) -> str:
        return f"{TOPIC}/{binding}"

    def reply_source(self, console_id: str) -> Optional[str]:
        return None

    def target(self, wire: WireMessage) -> str:
        if wire.address == TOPIC:
            return f"{TOPIC}/{wire.subject}"
        return wire.address

    def logical(self, source: str) -> str:
        return TOPIC if source.startswith(TOPIC) else source


class RabbitMQProfile(AddressProfile):
    name = "rabbitmq"
    DIRECT_EXCHANGE = "/exchange/amq.direct/"
    TOPIC_EXCHANGE = "/topic/"

    def agent_sources(self, agent_name: str) -> List[str]:
        return [self.DIRECT_EXCHANGE + agent_name, self.topic_source(LOCATE_SUBJECT)]

    def topic_source(self, binding: str) -> str:
        return self.TOPIC_EXCHANGE + binding

    def reply_source(self, console_id: str) -> Optional[str]:
        return f"{self.DIRECT_EXCHANGE}virtq-reply-{console_id}"

    TOPIC_TARGET = "/exchange/amq.topic"
    """Where everything for the topic goes: one link, the routing key taken from each message's subject.
    A link per subject (``/topic/<subject>``) let a broker deliver one agent's messages out of order — a
    statistics sample before the record of the object it describes, which the console then dropped."""

    def target(self, wire: WireMessage) -> str:
        if wire.address == TOPIC:
            return self.TOPIC_TARGET
        if wire.address.startswith(DIRECT + "/"):
            return self.DIRECT_EXCHANGE + wire.address[len(DIRECT) + 1:]
        return wire.address  # a reply address, already physical

    def logical(self, source: str) -> str:
        if source.startswith(self.DIRECT_EXCHANGE):
            return f"{DIRECT}/{source[len(self.DIRECT_EXCHANGE):]}"
        if source.startswith(self.TOPIC_EXCHANGE) or source == self.TOPIC_TARGET:
            return TOPIC
        return source

    def wrap(self, body: Any) -> Any:
        return {WRAPPED_LIST: list(body)} if isinstance(body, (list, tuple)) else body

    def unwrap(self, body: Any) -> Any:
        if isinstance(body, dict) and len(body) == 1 and WRAPPED_LIST in body:
            return body[WRAPPED_LIST]
        return body


PROFILES: Dict[str, Type[AddressProfile]] = {"qmf": QmfProfile, "rabbitmq": RabbitMQProfile}


def profile(name: str) -> AddressProfile:
    try:
        return PROFILES[name]()
    except KeyError:
        raise ValueError(f"unknown addressing profile {name!r}; one of {', '.join(PROFILES)}") from None


def console_id() -> str:
    return uuid.uuid4().hex
