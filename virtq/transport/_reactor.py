"""One proton Container on its own thread; other threads hand it work through a wake-up pipe (_Calls)."""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from typing import Any, Callable, Deque, List, Optional, cast

import proton._reactor as proton_reactor
from cproton import ffi
from cproton import lib as _proton_c
from proton import VERSION, Condition, Delivery, Endpoint, Handler, Message, SSLDomain
from proton.handlers import FlowController, IncomingMessageHandler, MessagingHandler
from proton.reactor import Container, EventInjector

from virtq.logs import RateLimited, shown

from ._convert import decode
from ._credit import GatedFlow, Ready, always_ready
from ._heap import keep_bulk_buffers
from ._limits import CLOSE_GRACE, MESSAGE_SIZE_EXCEEDED
from ._loop import LeanContainer, lean_supported

log = logging.getLogger(__name__)
pn_link_recv = _proton_c.pn_link_recv
"""The C function: cproton's wrapper allocates the buffer it copies into."""
_limited = RateLimited(log)


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


class _ProtonLogLimit(logging.Filter):
    """proton logs an error per socket that ends badly ("Couldn't recv: ConnectionResetError"): a flood of
    1,100 connections wrote 1,100 lines. Each kind of line goes out once per window, with a count."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.limited = RateLimited(logging.getLogger("virtq.transport.proton"), window)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = f"{record.msg}".split(":", 1)[0][:60]
        text = record.getMessage()
        level = logging.INFO if routine_disconnect(text) else record.levelno
        self.limited.log(level, kind, "%s", shown(text))
        return False


def routine_disconnect(text: str) -> bool:
    """proton's ERROR for a peer that closed its socket without closing AMQP first (a console killed, a
    network gone): part of running a server, said at INFO."""
    return text.startswith(("Couldn't recv:", "Couldn't send:")) and any(
        error in text for error in ("ConnectionResetError", "BrokenPipeError", "ConnectionAbortedError"))


def _limit_proton_logs() -> None:
    proton_log = logging.getLogger("proton")
    if not any(isinstance(f, _ProtonLogLimit) for f in proton_log.filters):
        proton_log.addFilter(_ProtonLogLimit())


_limit_proton_logs()


PREFETCH = 256
"""Credit each receiving link is kept at (while the consumer is ready: see _credit)."""

_container_lock = threading.Lock()


def _container(handler: Any) -> Container:
    """A Container whose SSL configuration is made only if used (see _LazySSLConfig), with the lean event loop
    (_loop) unless this proton lacks what it needs or VIRTQ_PROTON_LOOP=standard asks for proton's own."""
    with _container_lock:
        original = proton_reactor.SSLConfig
        setattr(proton_reactor, "SSLConfig", _LazySSLConfig)
        try:
            if os.environ.get("VIRTQ_PROTON_LOOP", "lean") != "standard":
                container = LeanContainer(handler)
                if lean_supported(container):
                    return container
                _limited.warning("lean-loop", "proton %s lacks what the lean event loop needs: using proton's own",
                                 ".".join(map(str, VERSION)))
            return Container(handler)
        finally:
            setattr(proton_reactor, "SSLConfig", original)


class _TolerantIncoming(IncomingMessageHandler):
    """proton's incoming-message handler, with two differences that keep a peer from hurting the reactor.

    The size limit is enforced while a message arrives (proton buffers a partial delivery until it is
    complete): past ``max_message_bytes`` the connection is closed with ``amqp:link:message-size-exceeded``
    and nothing more is read from it — a 256 MiB request took the agent to 1.3 GB when the limit was checked
    after decoding. And a message that cannot become a Python value (valid AMQP such as a map keyed by a
    list) goes to the delegate's ``on_undecodable`` rather than raising out of the reactor, which would end
    the reactor thread; by default it is rejected, with one summarised log line and no traceback.
    """

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        if not link.is_receiver:
            return
        if delivery.aborted:
            delivery.settle()
            return
        if not delivery.readable:
            super().on_delivery(event)
            return
        limit = getattr(self.delegate, "max_message_bytes", 0)
        if limit and delivery.pending > limit:
            _too_large(event, delivery, limit)
            return
        if delivery.partial:
            return
        size = delivery.pending
        data = _received(link, size)
        link.advance()
        message = Message()
        try:
            decode(data, message)
        except Exception as exc:  # noqa: BLE001 - valid AMQP with no Python value; one bad message is not fatal
            handled = False
            try:
                handled = bool(cast(Any, self.delegate).on_undecodable(event, message, size, exc))
            except Exception:  # noqa: BLE001
                log.exception("handling an undecodable message")
            delivery.update(Delivery.ACCEPTED if handled else Delivery.REJECTED)
            delivery.settle()
            return
        event.message = message
        if link.state & Endpoint.LOCAL_CLOSED:
            delivery.update(Delivery.RELEASED)
            delivery.settle()
            return
        try:
            self.on_message(event)
            delivery.update(Delivery.ACCEPTED)
        except Exception:  # noqa: BLE001 - a failing hand-over must not end the reactor
            log.exception("handing over a message")
            delivery.update(Delivery.RELEASED)
        delivery.settle()


def _received(link: Any, size: int) -> bytearray:
    """A whole delivery's ``size`` bytes. proton's ``recv`` copies them into a new buffer and then into another cut
    to the size it got, which is already the size asked for: a copy of each message too many (a MiB per chunk)."""
    data = bytearray(size)
    got = pn_link_recv(link._impl, ffi.from_buffer(data), size)
    link._check(got)
    return data if got == size else data[:got]


def _too_large(event: Any, delivery: Any, limit: int) -> None:
    """Close the connection that sends a message over the limit (the peer reads why in the close), and abort
    it CLOSE_GRACE seconds later if the peer has not closed by then."""
    connection = delivery.link.connection
    _limited.warning("too-large", "closing a connection that sent a message of more than %d bytes on link %s",
                     limit, shown(delivery.link.name))
    delivery.settle()
    if not connection.state & Endpoint.LOCAL_CLOSED:
        connection.condition = Condition(MESSAGE_SIZE_EXCEEDED, f"a message exceeded the limit of {limit} bytes")
        connection.close()
    delivery.link.close()
    event.container.schedule(CLOSE_GRACE, _Abort(connection))


class _Abort(Handler):
    """A timer task: abort a connection's transport unless it has closed by then."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def on_timer_task(self, event: Any) -> None:
        transport = self.connection.transport
        if transport is not None and not transport.closed:
            transport.close_tail()
            transport.close_head()


class ReactorHandler(MessagingHandler):
    """A MessagingHandler that runs callables injected from other threads and records delivery sizes."""

    def __init__(self, ready: Ready = always_ready) -> None:
        super().__init__(prefetch=PREFETCH, auto_accept=True)
        self.flow = GatedFlow(PREFETCH, ready)
        self.handlers = [_TolerantIncoming(True, weakref.proxy(self)) if type(h) is IncomingMessageHandler
                         else self.flow if isinstance(h, FlowController) else h
                         for h in cast(List[Any], self.handlers)]
        self.last_delivery_size = 0
        self.max_message_bytes = 0
        """Largest message taken (0: any); see _TolerantIncoming."""

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

    def on_undecodable(self, event: Any, message: Message, size: int, error: Exception) -> bool:
        """A message that is valid AMQP but has no Python value arrived; True if it was handled (it is then
        accepted), False to reject it. By default: logged in one line, rejected."""
        _limited.warning("undecodable", "rejecting a message on link %s that could not be decoded: %s",
                         shown(event.link.name), shown(error))
        return False

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        if delivery.readable and not delivery.partial and not delivery.aborted:
            self.last_delivery_size = delivery.pending


class _Calls(EventInjector):
    """proton's EventInjector, made cheaper: the calls other threads queue are run straight from the wake-up
    (no proton event per call, which proton dispatched through every handler), and the pipe is written only
    when the reactor is not already due to wake — a burst of sends (an event's records, the event, its
    statistics) costs the reactor one wake-up, not one each."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Deque[Callable[[], None]] = collections.deque()
        self._armed = False  # a byte is in the pipe that the reactor has not read yet
        self._lock = threading.Lock()

    def add(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self.calls.append(fn)
            if self._armed:
                return
            self._armed = True
        os.write(self.pipe[1], b"!")

    def on_selectable_readable(self, event: Any) -> None:
        os.read(self.pipe[0], 512)
        with self._lock:
            self._armed = False  # a call queued from now on writes again: it is run at the next wake-up
            due = len(self.calls)  # (those queued meanwhile wait for it: the reactor's I/O is not starved)
        for _ in range(due):
            fn = self.calls.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001 - a failed hand-over must not kill the reactor
                log.exception("reactor call failed")
        if self._closed:
            selectable = event.context
            selectable.terminate()
            selectable.update()


class ReactorThread:
    """Owns the Container and the thread that runs it; only that thread touches proton objects."""

    def __init__(self, handler: ReactorHandler, name: str,
                 on_death: Optional[Callable[[BaseException], None]] = None) -> None:
        """``on_death``: called (on the dying thread) if the reactor ends with an exception rather than by
        stop(); a daemon must not outlive its reactor (see DirectListener)."""
        self._container = _container(handler)
        self._on_death = on_death
        self.death: Optional[BaseException] = None
        self._container.container_id = name
        self._injector = _Calls()
        self._container.selectable(self._injector)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = threading.Event()
        self._pipe_lock = threading.Lock()  # no trigger() writes to a pipe descriptor once it is closed

    @property
    def container(self) -> Container:
        return self._container

    def start(self) -> None:
        keep_bulk_buffers()
        self._thread.start()

    def _run(self) -> None:
        try:
            self._container.run()
        except BaseException as exc:  # noqa: BLE001 - said, then handed to on_death
            self.death = exc
            log.critical("reactor %s died: %s", self._thread.name, exc, exc_info=True)
            self._stopped.set()
            if self._on_death is not None:
                self._on_death(exc)
        finally:
            self._close_pipe()  # the container is done with it

    def discard(self) -> None:
        """Give back what a reactor that never started holds (its wake-up pipe)."""
        if not self._thread.is_alive() and not self._stopped.is_set():
            self._stopped.set()
            self._close_pipe()

    def _close_pipe(self) -> None:
        """proton's EventInjector (and so _Calls) never closes its pipe: two descriptors per reactor, leaked at
        every stop (a process that makes Consoles in a loop ran out of select()'s 1,024)."""
        with self._pipe_lock:
            self._stopped.set()
            pipe, self._injector.pipe = self._injector.pipe, (-1, -1)
        for fd in pipe:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the reactor thread (soon; queued until it starts); safe from any thread."""
        self._submit(fn, before_start=True)

    def call_while_running(self, fn: Callable[[], None]) -> bool:
        """Like call(), but only while the thread runs: False (``fn`` dropped) before start and after stop."""
        return self._submit(fn, before_start=False)

    def _submit(self, fn: Callable[[], None], before_start: bool) -> bool:
        if self._stopped.is_set():
            return False
        if threading.current_thread() is self._thread:
            fn()
            return True
        with self._pipe_lock:  # checked and queued in one step: the thread cannot stop in between
            if self._stopped.is_set() or not (before_start or self._thread.is_alive()):
                return False
            self._injector.add(fn)
            return True

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
        else:
            self._close_pipe()
