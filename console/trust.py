"""Which broker users may speak for which agents.

Through a broker every agent and every console authenticates as a user of its own, and a broker that
validates user-ids (RabbitMQ does) delivers each message with its sender's. A console that believed
the agent names written inside messages would let any agent (or anyone who can publish) rename,
delete or fake another agent's objects; with a rule it accepts an agent's messages only from the
user that rule maps to that agent.

Rules: ``instance`` — the user is the agent name's instance part (``libvirt.org:virtq:<instance>``),
the natural deployment where each agent's broker user is named after its host; or a mapping of
user → agent-name glob (``{"hv01": "libvirt.org:virtq:hv01*"}``), written ``USER=GLOB,USER=GLOB`` on
the command line.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Dict, Mapping, Optional, Set, Union

from virtq.schema.codec import (AgentHeartbeat, AgentLocateResponse, DataIndication, EventIndication, Message,
                                QueryResponse)

__all__ = ["AgentTrust", "TrustRule", "claimed_agents", "parse_users"]

TrustRule = Union[None, str, Mapping[str, str]]


class AgentTrust:
    """Decides whether a message's validated sender may speak for the agents the message names."""

    def __init__(self, rule: TrustRule = None) -> None:
        self.rule = rule
        self._users: Dict[str, str] = {}
        if isinstance(rule, str) and rule != "instance":
            self._users = parse_users(rule)
        elif isinstance(rule, Mapping):
            self._users = dict(rule)

    @property
    def enabled(self) -> bool:
        return self.rule is not None

    def allows(self, principal: Optional[str], agent_name: str) -> bool:
        if not self.enabled:
            return True
        if not principal:
            return False
        if self.rule == "instance":
            return agent_name.rsplit(":", 1)[-1] == principal
        pattern = self._users.get(principal)
        return pattern is not None and fnmatch.fnmatchcase(agent_name, pattern)

    def check(self, principal: Optional[str], message: Message) -> Optional[str]:
        """None when every agent the message speaks for is the sender's; else the first that is not."""
        for name in claimed_agents(message):
            if not self.allows(principal, name):
                return name
        return None


def parse_users(text: str) -> Dict[str, str]:
    """``USER=GLOB,USER=GLOB`` as a mapping; ValueError when a part has no ``=``."""
    users: Dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        user, sep, pattern = part.partition("=")
        if not sep or not user or not pattern:
            raise ValueError(f"agent users: {part!r} is not USER=AGENT-NAME-GLOB")
        users[user] = pattern
    return users


def claimed_agents(message: Message) -> Set[str]:
    """Every agent name a message asks to be believed about: its sender field, its agent info, and
    the agent of each object it carries."""
    names = {message.agent} if message.agent else set()
    if isinstance(message, (AgentHeartbeat, AgentLocateResponse)):
        names.add(message.info.name)
    if isinstance(message, (DataIndication, QueryResponse)):
        items = message.records if isinstance(message, DataIndication) else message.items
        names.update(_agent_of(i) for i in items if _agent_of(i))
    if isinstance(message, EventIndication):
        for event in message.events:
            names.update(_agent_of(v) for v in event.values.values() if _agent_of(v))
    return names


def _agent_of(item: Any) -> str:
    object_id = getattr(item, "object_id", item)
    name = getattr(object_id, "agent_name", None)
    if name is None and isinstance(item, Mapping):
        name = item.get("_agent_name")
    return name if isinstance(name, str) else ""
