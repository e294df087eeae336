"""Broker users as docs/DEPLOYMENT.md sets them up: one per agent, one per console, each confined to its
own routing keys on amq.topic.

The AMQP 1.0 plugin declares a queue ``amq.gen-…`` for every receiver and binds it to amq.topic, and
publishes to amq.topic for every sender (the ``rabbitmq`` profile: virtq/transport/profiles.py), so the
ordinary permissions are the same for everyone; the topic permissions, checked on every publish (write:
the routing key) and every bind (read: the binding key), are what sets an agent apart from a console and
one user from another. Each pattern here is the document's, character for character (a test checks).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Tuple

from virtq.testing.rabbitmq import RabbitNode


@dataclass(frozen=True)
class Permissions:
    """``set_permissions`` (configure, write, read) and ``set_topic_permissions`` on amq.topic (write, read)."""

    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str

    def grant(self, node: RabbitNode, user: str) -> None:
        node.set_permissions(user, self.configure, self.write, self.read)
        node.set_topic_permissions(user, self.topic_write, self.topic_read)


QUEUES = r"^amq\.gen-.*$"
"""The plugin's server-named queues: declared (configure), bound (write) and consumed (read) by their owner."""
QUEUES_AND_TOPIC = r"^(amq\.gen-.*|amq\.topic)$"
"""Publishing needs write on the exchange, binding a queue read on it (and write on the queue)."""

AGENT = Permissions(
    configure=QUEUES, write=QUEUES_AND_TOPIC, read=QUEUES_AND_TOPIC,
    topic_write=r"^(agent\.ind\..*|qmf\.reply\..*)$",
    topic_read=r"^(console\.request\..*|qmf\.direct\.libvirt\.org:virtq:{username})$",
)
"""An agent whose broker user is its instance name (``libvirt.org:virtq:<user>``): it pushes indications and
answers any console; it hears the locate broadcast and the requests to its own name only."""

CONSOLE = Permissions(
    configure=QUEUES, write=QUEUES_AND_TOPIC, read=QUEUES_AND_TOPIC,
    topic_write=r"^(console\.request\..*|qmf\.direct\..*)$",
    topic_read=r"^(agent\.ind\..*|qmf\.reply\.{username}\..*)$",
)
"""A console: it broadcasts the locate request and sends requests to any agent; it hears every agent's
indications and the replies to its own user only."""


def add_agent_user(node: RabbitNode, user: str, password: str = "") -> None:
    """The broker user of the agent with instance ``user`` (no password: it logs in by certificate)."""
    node.add_user(user, password)
    AGENT.grant(node, user)


def add_console_user(node: RabbitNode, user: str, password: str = "") -> None:
    node.add_user(user, password)
    CONSOLE.grant(node, user)


def add_users(node: RabbitNode, agents: Optional[Mapping[str, str]] = None,
              consoles: Optional[Mapping[str, str]] = None) -> None:
    """Agent and console users ({user: password}; "" for a user that logs in by certificate), a few at a
    time (rabbitmqctl takes ~0.3 s a call, mostly the CLI's own start)."""
    made: List[Tuple[Callable[[RabbitNode, str, str], None], str, str]] = [
        *((add_agent_user, user, secret) for user, secret in (agents or {}).items()),
        *((add_console_user, user, secret) for user, secret in (consoles or {}).items())]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for done in [pool.submit(add, node, user, secret) for add, user, secret in made]:
            done.result()
