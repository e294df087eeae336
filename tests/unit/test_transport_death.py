"""Never a live-but-deaf daemon: a listener whose reactor thread dies says so and, by default, ends the process
(exit status 70) so that its supervisor restarts it; a console's connection that cannot poll its socket fails
with a clear error instead of hanging."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
from typing import List

import pytest

from virtq.schema.errors import NotConnectedError
from virtq.testing import free_port
from virtq.transport import DirectListener, direct_connection
from virtq.transport._direct import EXIT_REACTOR_DIED
from virtq.transport._limits import SELECT_FD_LIMIT

from .select_limit import poll_a_descriptor_out_of_range


def test_a_listener_whose_reactor_dies_calls_on_death() -> None:
    died: List[BaseException] = []
    done = threading.Event()

    def on_death(error: BaseException) -> None:
        died.append(error)
        done.set()

    listener = DirectListener(f"amqp://127.0.0.1:{free_port()}", on_death=on_death)
    listener.start(lambda wire: None)
    high = poll_a_descriptor_out_of_range(listener)
    try:
        assert done.wait(5)
        assert "out of range" in str(died[0])
        assert not listener.alive
        assert listener.acceptor is not None and listener.acceptor.held == 0
    finally:
        listener.stop()
        high.close()


def test_by_default_the_process_exits_when_the_listener_dies() -> None:
    script = f"""
import socket, time
from tests.unit.select_limit import poll_a_descriptor_out_of_range
from virtq.transport import DirectListener
listener = DirectListener("amqp://127.0.0.1:{free_port()}")
listener.start(lambda wire: None)
poll_a_descriptor_out_of_range(listener)
time.sleep(10)
raise SystemExit(0)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == EXIT_REACTOR_DIED, done.stderr
    assert "exiting with status 70" in done.stderr


def test_a_console_in_a_process_out_of_select_range_gets_a_clear_error() -> None:
    held = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * SELECT_FD_LIMIT:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2 * SELECT_FD_LIMIT, hard), hard))
    try:
        while True:  # fill every descriptor below select()'s limit
            sock = socket.socket()
            held.append(sock)
            if sock.fileno() >= SELECT_FD_LIMIT:
                break
        with pytest.raises(NotConnectedError, match="select()"):
            direct_connection(f"amqp://127.0.0.1:{free_port()}").start(lambda wire: None, timeout=2)
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
