"""Address profiles: where QMF's logical addresses live on a given kind of broker.

Everything above the transport speaks QMF's logical addresses (``qmf.default.direct/<agent>``,
``qmf.default.topic`` + subject). A profile maps them to the links a broker accepts, and
back; it is the only code that knows which broker it talks to.

- ``qmf``: the QMF addresses as they are (qpidd, Qpid Dispatch Router, skupper-router):
  topic publishes to ``qmf.default.topic/<subject>``, replies on dynamic receivers.
- ``rabbitmq``: RabbitMQ 3.x's AMQP 1.0 plugin: named links only (no dynamic receivers, no
  anonymous relay), everything on amq.topic — indications and the locate broadcast by their subject,
  requests to an agent as ``qmf.direct.<agent name>``, replies to a console as
  ``qmf.reply.<console's user>.<random id>`` — and list bodies wrapped in a map (the plugin's framing
  crashes the session on top-level lists of 2+ elements). On a topic exchange RabbitMQ checks the
  routing key of every publish and the binding key of every bind against the user's topic
  permissions (with ``{username}`` in the patterns), so each agent and console user can be confined
  to its own keys (docs/DEPLOYMENT.md); amq.direct could not: any user could bind any key on it.
"""

from __future__ import annotations

import abc
import dataclasses
import uuid
from typing import Any, Dict, List, Optional, Tuple, Type

from virtq.schema.codec import DIRECT, LOCATE_SUBJECT, TOPIC, WireMessage

INDICATION_BINDING = "agent.ind.#"
WRAPPED_LIST = "_virtq_list"
DIRECT_KEY = "qmf.direct."
"""Routing keys of requests to one agent (``qmf.direct.<agent name>``), rabbitmq profile."""
REPLY_KEY = "qmf.reply."
"""Routing keys of replies to one console (``qmf.reply.<user>.<console id>``), rabbitmq profile."""
ANONYMOUS_USER = "anonymous"
"""The user word of the reply key of a console that logs in without a user name."""


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
    def reply_source(self, console_id: str, user: Optional[str] = None) -> Optional[str]:
        """A console's named reply address, or None for a dynamic receiver; ``user``: the user the
        console logs in as (None: none), for brokers that confine reply addresses by user."""

    @abc.abstractmethod
    def target(self, wire: WireMessage) -> str:
        """The physical address (the sender link) to send a message with this logical address to."""

    @abc.abstractmethod
    def logical(self, source: str) -> str:
        """The logical address of a message received from the link ``source``."""

    def wrap(self, body: Any) -> Any:
        return body

    def unwrap(self, body: Any) -> Any:
        return body

    def outgoing(self, wire: WireMessage) -> WireMessage:
        """The message as it goes on the wire: its link's address (``target``), the subject the broker
        routes it by, its body wrapped."""
        return dataclasses.replace(wire, address=self.target(wire), body=self.wrap(wire.body))

    def incoming(self, wire: WireMessage) -> WireMessage:
        """A received message as the layers above see it: its logical address and subject, its body
        unwrapped (the principal, size and the rest kept)."""
        return dataclasses.replace(wire, address=self.logical(wire.address), body=self.unwrap(wire.body))


class QmfProfile(AddressProfile):
    name = "qmf"

    def agent_sources(self, agent_name: str) -> List[str]:
        return [f"{DIRECT}/{agent_name}", self.topic_source(LOCATE_SUBJECT)]

    def topic_source(self, binding: str) -> str:
        return f"{TOPIC}/{binding}"

    def reply_source(self, console_id: str, user: Optional[str] = None) -> Optional[str]:
        return None

    def target(self, wire: WireMessage) -> str:
        if wire.address == TOPIC:
            return f"{TOPIC}/{wire.subject}"
        return wire.address

    def logical(self, source: str) -> str:
        return TOPIC if source.startswith(TOPIC) else source


class RabbitMQProfile(AddressProfile):
    """Everything through amq.topic, where topic permissions can confine each user to its own keys.

    Senders: one link, ``/exchange/amq.topic``, the routing key being each message's subject —
    indications and the locate broadcast keep theirs, a request to agent NAME goes as
    ``qmf.direct.NAME``, a reply as the key its reply address names (direct and reply messages
    have no subject of their own). Receivers: ``/topic/<binding key>`` (the plugin binds a queue of
    its own): an agent binds ``qmf.direct.<its name>`` and the locate subject, a console
    ``agent.ind.#`` and ``qmf.reply.<its user>.<random id>``, its reply address being that
    ``/topic/…`` address. Received messages are told apart by their routing key (the subject), never
    by the ``to`` field their sender wrote.
    """

    name = "rabbitmq"
    TOPIC_EXCHANGE = "/topic/"

    TOPIC_TARGET = "/exchange/amq.topic"
    """Where everything goes: one link, the routing key taken from each message's subject.
    A link per subject (``/topic/<subject>``) let a broker deliver one agent's messages out of order — a
    statistics sample before the record of the object it describes, which the console then dropped."""

    UNROUTABLE = REPLY_KEY
    """The routing key of a reply whose address is not a ``qmf.reply.`` key (a request's reply-to may say
    anything): the agent's topic permission lets it publish that (a refused publish would end its session,
    and any console could make every agent reconnect so), and no console's binds it (each binds only
    ``qmf.reply.<user>.…``), so the broker drops it."""

    def agent_sources(self, agent_name: str) -> List[str]:
        return [self.topic_source(DIRECT_KEY + agent_name), self.topic_source(LOCATE_SUBJECT)]

    def topic_source(self, binding: str) -> str:
        return self.TOPIC_EXCHANGE + binding

    def reply_source(self, console_id: str, user: Optional[str] = None) -> Optional[str]:
        return self.topic_source(f"{REPLY_KEY}{user or ANONYMOUS_USER}.{console_id}")

    def target(self, wire: WireMessage) -> str:
        return self.TOPIC_TARGET

    def routing_key(self, wire: WireMessage) -> str:
        """The key a logical message is published with on amq.topic."""
        if wire.address == TOPIC:
            return wire.subject
        if wire.address.startswith(DIRECT + "/"):
            return DIRECT_KEY + wire.address[len(DIRECT) + 1:]
        key = self._key_of(wire.address)
        return key if key.startswith(REPLY_KEY) and len(key) > len(REPLY_KEY) else self.UNROUTABLE

    def outgoing(self, wire: WireMessage) -> WireMessage:
        return dataclasses.replace(wire, address=self.TOPIC_TARGET, subject=self.routing_key(wire),
                                   body=self.wrap(wire.body))

    def incoming(self, wire: WireMessage) -> WireMessage:
        address, subject = self._logical_key(wire.subject)
        return dataclasses.replace(wire, address=address, subject=subject, body=self.unwrap(wire.body))

    def logical(self, source: str) -> str:
        if source == self.TOPIC_TARGET:
            return TOPIC
        return self._logical_key(self._key_of(source))[0] if source.startswith(self.TOPIC_EXCHANGE) else source

    def _key_of(self, address: str) -> str:
        return address[len(self.TOPIC_EXCHANGE):] if address.startswith(self.TOPIC_EXCHANGE) else ""

    def _logical_key(self, key: str) -> Tuple[str, str]:
        """(logical address, subject) of a message routed by ``key``."""
        if key.startswith(DIRECT_KEY):
            return f"{DIRECT}/{key[len(DIRECT_KEY):]}", ""
        if key.startswith(REPLY_KEY):
            return self.topic_source(key), ""
        return TOPIC, key

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
