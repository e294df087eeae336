"""proton's Container with a leaner event loop: the bookkeeping events nobody but its I/O handler reads are not
made into Python events (issue 12).

proton-python's Container runs every step of its I/O as an event through the whole handler tree: a socket's
"readable", "writable" and "updated" (the selector's bookkeeping), the engine's "transport has bytes to write",
and a "quiesced" event that does the select(). On a request and its answer that was 18 events on each side, 13 of
them read by proton's own IOHandler alone, and each one wrapped (``Event.wrap`` looks up the event's delivery, link,
session, connection and transport) and offered to every handler of the tree before it reached that IOHandler.

Here those 13 go straight to the IOHandler's methods: a socket selectable's updated / readable / writable /
expired when it is pushed (the selector's sets are only read by the next select(), which happens when no event is
queued; a selectable's INIT and FINAL stay events), PN_TRANSPORT without the wrap, and the select itself when the
collector is empty instead of through a quiesced event. Selectables with a handler of their own (the acceptor,
the wake-up pipe) keep the full path. The engine's events that handlers read (deliveries, flow, endpoint state)
are unchanged, in the same order.

This reaches into proton's Container (its collector, timers, selector and yield flag), written against
proton-python 0.40; ``lean_supported`` checks that they are there, and the plain Container is used otherwise.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

from cproton import (PN_TRANSPORT, ffi, isnull, pn_cast_pn_transport, pn_collector_peek, pn_collector_pop,
                     pn_event_context, pn_event_type)
from cproton import lib as _proton_c
from proton import Event, Transport
from proton.handlers import IOHandler
from proton.reactor import Container
from proton._reactor import GlobalOverrides

_TO_IOHANDLER: Dict[Any, str] = {
    Event.SELECTABLE_UPDATED: "on_selectable_updated",
    Event.SELECTABLE_READABLE: "on_selectable_readable",
    Event.SELECTABLE_EXPIRED: "on_selectable_expired",
}
"""A handlerless selectable's events run at once by the IOHandler method named (its writable: by _write)."""
WRITE_CHUNK = 256 * 1024
"""Bytes of a transport's output copied out for one socket send."""
pn_transport_peek = _proton_c.pn_transport_peek
"""The C function: cproton's wrapper allocates the buffer it copies into."""
_log = logging.getLogger("proton")
_INTERNALS: Tuple[str, ...] = ("_collector", "_yield", "_stop", "_timers", "_selectables", "_selectable",
                               "_previous", "_global_handler", "_handler", "timeout")


class _Shim:
    """What IOHandler's methods read of an event: the selectable or the transport."""

    __slots__ = ("selectable", "context", "transport")

    def __init__(self, selectable: Any = None, transport: Any = None) -> None:
        self.selectable = self.context = selectable
        self.transport = transport


class LeanContainer(Container):
    """A Container whose I/O bookkeeping bypasses the handler tree (see the module's docstring)."""

    def push_event(self, obj: Any, etype: Any) -> None:
        method = _TO_IOHANDLER.get(etype)
        if method is not None and _handlerless(obj):
            getattr(self._overrides().base, method)(_Shim(selectable=obj))
        elif etype is Event.SELECTABLE_WRITABLE and _handlerless(obj):
            self._write(obj)
        else:
            super().push_event(obj, etype)

    def _write(self, selectable: Any) -> None:
        """IOHandler.on_selectable_writable, copying at most WRITE_CHUNK of the transport's output per send:
        proton's copies all of it (``peek(pending)``) for each send, which is quadratic in a large message's
        size when the socket takes a part at a time."""
        transport = selectable._transport
        if not transport:
            return
        pending = transport.pending()
        left = pending
        out = self._output()
        try:
            while left > 0:
                size = min(left, WRITE_CHUNK)
                copied = pn_transport_peek(transport._impl, ffi.from_buffer(out), size)
                transport._check(copied)
                sent = selectable.send(memoryview(out)[:copied])
                transport.pop(sent)
                if sent < size:
                    break  # the socket is full: wait for the next writable
                left = transport.pending()
        except BlockingIOError:
            pass  # the socket filled up between two sends: the rest goes at the next writable
        except OSError as exc:
            _log.error("Couldn't send: %r", exc)  # (proton's words: the log filter in _reactor knows them)
            transport.close_head()
        if transport.pending() != pending:
            self._overrides().base.update(transport, selectable, self.now)

    def _output(self) -> bytearray:
        """The buffer a transport's output is copied into for a socket send, one per container (its thread's):
        proton's ``peek`` makes a new zeroed one and copies it once more to cut it to size, for every send."""
        out: Optional[bytearray] = getattr(self, "_out", None)
        if out is None:
            out = self._out = bytearray(WRITE_CHUNK)
        return out

    def _overrides(self) -> Any:
        """proton's GlobalOverrides: a connection's own handling of an event, else the IOHandler (its ``base``)."""
        return self._global_handler

    def process(self) -> bool:
        """proton's Container.process, with PN_TRANSPORT handed to the IOHandler unwrapped and the select done
        here when no event is queued (proton pushes a quiesced event for it, and yields twice per select)."""
        self.mark()
        collector = self._collector._impl
        overrides = self._overrides()
        io = overrides.base
        while True:
            if self._yield:
                self._yield = False
                return True
            impl = pn_collector_peek(collector)
            if not isnull(impl):
                if pn_event_type(impl) == PN_TRANSPORT:
                    io.on_transport(_Shim(transport=Transport.wrap(pn_cast_pn_transport(pn_event_context(impl)))))
                    self._previous = Event.TRANSPORT
                else:
                    event = Event.wrap(impl)  # type: ignore[no-untyped-call]
                    event.dispatch(event.handler or self._handler)
                    event.dispatch(overrides)
                    self._previous = event.type
                pn_collector_pop(collector)
            elif not self._stop and (self._timers > 0 or self._selectables > 1):
                self._select(io)
                self._previous = Event.REACTOR_QUIESCED
                self.yield_()
            elif self._selectable:
                self._selectable.terminate()
                self._selectable.update()
                self._selectable = None
            else:
                if self._previous is not Event.REACTOR_FINAL:
                    self.push_event(self, Event.REACTOR_FINAL)
                return False

    def _select(self, io: Any) -> None:
        """IOHandler.on_reactor_quiesced: wait for sockets or the next timer, then run what is due."""
        self.timer_deadline  # noqa: B018 - drops cancelled timers from the heap's top, as proton does here
        readable, writable, expired = io._selector.select(self.timeout)
        self.mark()
        for selectable in readable:
            selectable.readable()
        for selectable in writable:
            selectable.writable()
        for selectable in expired:
            selectable.expired()


def _handlerless(obj: Any) -> bool:
    """A selectable whose events only the IOHandler reads: not the acceptor's or the wake-up pipe's."""
    attributes = getattr(obj, "__dict__", None)
    return attributes is not None and "_reactor" in attributes and attributes.get("handler") is None


def lean_supported(container: Any) -> bool:
    """Whether this proton's Container has the internals LeanContainer relies on."""
    overrides = getattr(container, "_global_handler", None)
    return all(hasattr(container, name) for name in _INTERNALS) and type(overrides) is GlobalOverrides \
        and type(getattr(overrides, "base", None)) is IOHandler and hasattr(overrides.base, "_selector")
