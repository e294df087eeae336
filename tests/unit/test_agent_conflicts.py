"""Agent name conflicts in the tracker: a heartbeat under a followed agent's name with an older epoch is
another live agent (through a broker, where no connection tells them apart), not a restart: one
AgentConflict per episode, no AgentRestarted flapping, and the followed agent's view is kept."""

from __future__ import annotations

import threading
from typing import List, cast

from virtq.console._agents import LOST_AFTER, AgentTracker, Heard
from virtq.console.events import AgentConflict, AgentRestarted, Event
from virtq.console.limits import Limits, LimitWatch
from virtq.console.repository import AgentRepository
from virtq.schema.codec import AgentInfo
from virtq.transport import Transport

NAME = "libvirt.org:virtq:twin"


def test_an_older_epoch_under_a_followed_name_is_a_conflict_told_once() -> None:
    events: List[Event] = []
    now = [100.0]
    agents = AgentRepository()
    tracker = AgentTracker(agents, Limits(), LimitWatch(events.append), events.append, lambda: now[0],
                           threading.Condition())
    tracker.follow(AgentInfo(NAME, 7, 1, 0), "amqp://broker", cast(Transport, object()))
    for _ in range(5):  # the twin (epoch 3) and the followed agent (epoch 7) alternate
        assert tracker.heartbeat(AgentInfo(NAME, 3, 1, 0), "amqp://broker") is Heard.CONFLICT
        assert tracker.heartbeat(AgentInfo(NAME, 7, 1, 0), "amqp://broker") is Heard.KNOWN
    conflicts = [e for e in events if isinstance(e, AgentConflict)]
    assert len(conflicts) == 1 and not [e for e in events if isinstance(e, AgentRestarted)]
    assert conflicts[0].instances == ("epoch 7 via amqp://broker", "epoch 3 via amqp://broker")
    assert agents.get(NAME).epoch == 7 and tracker.conflicts.current() == {NAME: conflicts[0].instances}

    now[0] += LOST_AFTER + 0.5  # the twin went quiet: the episode ends, a new one is told again
    tracker.conflicts.expire(lambda name: LOST_AFTER)
    assert tracker.conflicts.current() == {}
    tracker.heartbeat(AgentInfo(NAME, 3, 1, 0), "amqp://broker")
    assert len([e for e in events if isinstance(e, AgentConflict)]) == 2

    assert tracker.heartbeat(AgentInfo(NAME, 8, 1, 0), "amqp://broker") is Heard.RESTARTED  # a real restart
