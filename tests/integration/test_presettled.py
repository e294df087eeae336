"""A console's receivers ask for messages settled when sent, and a listener sends them so: no disposition per
message (virtq/transport/_client_handler.py PRESETTLED). Looked at on each end's reactor thread."""

from __future__ import annotations

import threading
from typing import Any, Callable, List

from proton import Link

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import wait_until

from ..helpers import DEFAULT_URI


def on_reactor(transport: Any, read: Callable[[], Any]) -> Any:
    """``read()`` run on ``transport``'s reactor thread (only it touches proton objects)."""
    got: List[Any] = []
    done = threading.Event()

    def run() -> None:
        got.append(read())
        done.set()
    assert transport.on_own_thread(run) and done.wait(5)
    return got[0]


def test_a_console_s_links_carry_settled_messages(start_agent: Callable[..., Agent],
                                                   connect: Callable[..., Console]) -> None:
    agent = start_agent(DEFAULT_URI)
    console = connect(agent)
    listener: Any = agent.transport
    handler = listener._handler  # the listener's links, read on its own thread below

    def modes() -> List[int]:
        return [box.link.snd_settle_mode for box in handler._boxes()]
    assert wait_until(lambda: len(on_reactor(listener, modes)) >= 2, 5)  # the console's topic and reply links
    assert set(on_reactor(listener, modes)) == {Link.SND_SETTLED}
    ((_, connection),) = console.connections
    transport: Any = connection
    def receiving() -> List[int]:
        modes, link = [], transport._handler.connection.link_head(0)
        while link:
            if link.is_receiver:
                modes.append(link.snd_settle_mode)
            link = link.next(0)
        return modes
    receivers = on_reactor(transport, receiving)
    assert receivers and set(receivers) == {Link.SND_SETTLED}
    assert console.domains.get("test").getInfo()["state"] == 1  # and everything still flows
