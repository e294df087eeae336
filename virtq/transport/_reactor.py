"""One proton Container on its own thread; other threads hand it work through an EventInjector."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable, List, Optional, cast

import proton._reactor as proton_reactor
from proton import Delivery, SSLDomain
from proton.handlers import IncomingMessageHandler, MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

log = logging.getLogger(__name__)


class _LazySSLConfig:
    """proton's SSLConfig, except that each SSLDomain is made when first used.

    proton's Container makes a client and a server SSLDomain up front: two OpenSSL contexts, each
    with the system's CA store loaded, about 1.6 MB of memory per Container. Only amqps:// uses
    them, and every transport has a Container of its own: a console following 250 agents directly
    held 400 MB of unused OpenSSL contexts.
    """

    def __init__(self) -> None:
        self._client: Optional[SSLDomain] = None
        self._server: Optional[SSLDomain] = None

    @property
    def client(self) -> SSLDomain:
        if self._client is None:
            self._client = SSLDomain(SSLDomain.MODE_CLIENT)
        return self._client

    @property
    def server(self) -> SSLDomain:
        if self._server is None:
            self._server = SSLDomain(SSLDomain.MODE_SERVER)
        return self._server

    def set_credentials(self, cert_file: str, key_file: str, password: Optional[str]) -> None:
        self.client.set_credentials(cert_file, key_file, password)
        self.server.set_credentials(cert_file, key_file, password)

    def set_trusted_ca_db(self, certificate_db: str) -> None:
        self.client.set_trusted_ca_db(certificate_db)
        self.server.set_trusted_ca_db(certificate_db)


_container_lock = threading.Lock()


def _container(handler: Any) -> Container:
    """A Container whose SSL configuration is made only if used (see _LazySSLConfig)."""
    with _container_lock:
        original = proton_reactor.SSLConfig
        setattr(proton_reactor, "SSLConfig", _LazySSLConfig)
        try:
            return Container(handler)
        finally:
            setattr(proton_reactor, "SSLConfig", original)


class _TolerantIncoming(IncomingMessageHandler):
    """proton's incoming-message handler, except that a message that cannot be decoded
    (valid AMQP that has no Python value, e.g. a map keyed by a list) is rejected and
    logged instead of raising out of the reactor, which would end the reactor thread."""

    def on_delivery(self, event: Any) -> None:
        try:
            super().on_delivery(event)
        except Exception:  # noqa: BLE001 - one bad message must not stop the reactor
            delivery = event.delivery
            log.warning("rejecting a message on link %s that could not be received", delivery.link.name,
                        exc_info=True)
            if not delivery.settled:
                delivery.update(Delivery.REJECTED)
                delivery.settle()


class ReactorHandler(MessagingHandler):
    """A MessagingHandler that runs callables injected from other threads and records delivery sizes."""

    def __init__(self) -> None:
        super().__init__(prefetch=256, auto_accept=True)
        self.handlers = [_TolerantIncoming(True, weakref.proxy(self)) if type(h) is IncomingMessageHandler else h
                         for h in cast(List[Any], self.handlers)]
        self.last_delivery_size = 0

    # Peers' error conditions are reported by the transports themselves; proton's defaults would
    # log them again as errors. Same endpoint handling as MessagingHandler, quieter.

    def on_connection_error(self, event: Any) -> None:
        log.info("connection closed with error: %s", event.connection.remote_condition)

    def on_session_error(self, event: Any) -> None:
        log.info("session closed with error: %s", event.session.remote_condition)
        event.connection.close()

    def on_link_error(self, event: Any) -> None:
        log.info("link %s closed with error: %s", event.link.name, event.link.remote_condition)
        event.connection.close()

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
        self._container = _container(handler)
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

    @property
    def running(self) -> bool:
        """The reactor thread is alive and has not stopped."""
        return self._thread.is_alive() and not self._stopped.is_set()

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
