"""One proton Container on its own thread; other threads hand it work through an EventInjector."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

log = logging.getLogger(__name__)


class ReactorHandler(MessagingHandler):
    """A MessagingHandler that runs callables injected from other threads and records delivery sizes."""

    def __init__(self) -> None:
        super().__init__(prefetch=256, auto_accept=True)
        self.last_delivery_size = 0

    def on_virtq_call(self, event: Any) -> None:
        try:
            event.subject()
        except Exception:  # noqa: BLE001 - a failed hand-over must not kill the reactor
            log.exception("reactor call failed")

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        if delivery.readable and not delivery.partial:
            self.last_delivery_size = delivery.pending


class ReactorThread:
    """Owns the Container and the thread that runs it; only that thread touches proton objects."""

    def __init__(self, handler: ReactorHandler, name: str) -> None:
        self._container = Container(handler)
        self._container.container_id = name
        self._injector = EventInjector()
        self._container.selectable(self._injector)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = threading.Event()

    @property
    def container(self) -> Container:
        return self._container

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._container.run()
        except Exception:  # noqa: BLE001
            log.exception("reactor %s died", self._thread.name)
        finally:
            self._stopped.set()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the reactor thread (soon); safe from any thread."""
        if self._stopped.is_set():
            return
        if threading.current_thread() is self._thread:
            fn()
        else:
            self._injector.trigger(ApplicationEvent("virtq_call", subject=fn))

    def in_reactor(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self, close: Optional[Callable[[], None]] = None, timeout: float = 5.0) -> None:
        """Run ``close`` on the reactor, then stop the container and join the thread."""
        if not self._thread.is_alive():
            return

        def finish() -> None:
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    log.exception("closing %s", self._thread.name)
            self._injector.close()
            self._container.stop()

        self.call(finish)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("reactor %s did not stop within %.1fs", self._thread.name, timeout)
