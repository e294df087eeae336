"""What ~1,017 connections did to a listener: a descriptor >= 1024 in proton's select(). Its own module
because a subprocess (a listener that must end its process) imports it too."""

from __future__ import annotations

import os
import socket

from virtq.transport import DirectListener
from virtq.transport._limits import SELECT_FD_LIMIT

__all__ = ["poll_a_descriptor_out_of_range"]


def poll_a_descriptor_out_of_range(listener: DirectListener) -> socket.socket:
    """Make the listener's reactor poll a descriptor select() cannot watch; the caller closes the socket."""
    sock = socket.socket()
    high = socket.socket(fileno=os.dup2(sock.fileno(), SELECT_FD_LIMIT + 10))
    sock.close()
    container = listener._reactor.container

    def register() -> None:
        selectable = container.selectable(delegate=high)
        selectable.reading = True
        container.update(selectable)

    listener._reactor.call(register)
    return high
