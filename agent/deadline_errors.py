"""What a caller is told when its call missed its deadline: its object was busy (the call never started) or
libvirt did not answer in time (it did), naming the libvirt function that hangs."""

from __future__ import annotations

from virtq.schema import errors
from virtq.schema.model import Schema

from .apartments import Apartments, Ticket
from .health import CallTracker
from .registry import class_of


def deadline_error(ticket: Ticket, timeout: float, apartments: Apartments, tracker: CallTracker,
                   schema: Schema) -> errors.RemoteError:
    """The error for a call past its deadline: busy if it never started, libvirt's timeout if it did."""
    if ticket.started is None:
        running = apartments.running(ticket.name)
        behind = f", behind {running.label} running for {apartments.clock() - (running.started or 0):.0f} s" \
            if running is not None and running.started is not None else ""
        return errors.ObjectBusyError(f"object busy: {ticket.name} has 1 libvirt call stuck{behind}; this "
                                      f"{ticket.label} was not started within {timeout:g} s")
    current = tracker.current(ticket.thread) if ticket.thread is not None else None
    function = current.what.rpartition(" ")[2] if current is not None else _libvirt_function(ticket, schema)
    return errors.LibvirtTimeoutError(f"Timed out during operation: libvirt did not answer {function} "
                                      f"within {timeout:g} s")


def _libvirt_function(ticket: Ticket, schema: Schema) -> str:
    cls = schema.classes.get(class_of(ticket.name)[0])
    method = cls.method(ticket.label) if cls is not None else None
    return method.libvirt if method is not None else ticket.label
