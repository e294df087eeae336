"""Credit that follows the consumer: back-pressure from whoever takes delivered messages to the peers' AMQP credit.

proton's FlowController re-grants credit as soon as a message is handed over, so a peer may keep any number of
requests coming however far behind the agent's workers are. Here credit is topped up only while ``ready()``
says the consumer has room; links left without credit are looked at again every RECHECK seconds.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from proton import Endpoint, Handler

RECHECK = 0.05
"""Seconds between looks at starved links while the consumer is not ready."""

Ready = Callable[[], bool]
"""Whether the consumer can take more messages now (called on the reactor thread; must be cheap)."""


def always_ready() -> bool:
    return True


class GatedFlow(Handler):
    """Tops each receiving link's credit up to ``window`` while ``ready()``; grants nothing while it is not.

    Credit is topped up once half the window is used, not after every message: a flow frame per message
    cost both peers' reactors an event each per request and per reply."""

    def __init__(self, window: int, ready: Ready = always_ready) -> None:
        super().__init__()
        self.window = window
        self.ready = ready
        self.starved: Dict[Any, bool] = {}
        self._scheduled = False
        self.withheld = 0
        """Times credit was held back (for tests and figures)."""

    def on_link_local_open(self, event: Any) -> None:
        self._flow(event.link, event.container)

    def on_link_remote_open(self, event: Any) -> None:
        self._flow(event.link, event.container)

    def on_link_flow(self, event: Any) -> None:
        self._flow(event.link, event.container)

    def on_delivery(self, event: Any) -> None:
        self._flow(event.link, event.container)

    def on_link_final(self, event: Any) -> None:
        self.starved.pop(event.link, None)

    def _flow(self, link: Any, container: Any) -> None:
        if link is None or not link.is_receiver or link.state & Endpoint.LOCAL_CLOSED:
            return
        if self.ready():
            self.starved.pop(link, None)
            if link.credit <= self.window // 2:
                link.flow(self.window - link.credit)
            return
        self.withheld += 1
        self.starved[link] = True
        if not self._scheduled and container is not None:
            self._scheduled = True
            container.schedule(RECHECK, self)

    def on_timer_task(self, event: Any) -> None:
        self._scheduled = False
        for link in list(self.starved):
            if link.state & Endpoint.LOCAL_CLOSED or link.state & Endpoint.REMOTE_CLOSED:
                self.starved.pop(link, None)
            else:
                self._flow(link, event.container)
