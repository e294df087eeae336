"""systemd's notify protocol, spoken to a real datagram socket (issue 13, item 1)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

from virtq.agent.notify import Notifier, watchdog_interval

from ..notify_socket import NotifySocket


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[NotifySocket]:
    manager = NotifySocket(tmp_path / "notify")
    yield manager
    manager.close()


def test_each_message_is_one_datagram_of_key_value_lines(manager: NotifySocket) -> None:
    notifier = Notifier(manager.address)
    assert notifier.enabled
    assert notifier.ready("serving 3 domains; libvirt ok")
    assert manager.drain() == ["READY=1", "STATUS=serving 3 domains; libvirt ok"]
    notifier.reloading()
    reloading = manager.drain()
    assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
    assert int(reloading[1].split("=")[1]) > 0
    notifier.watchdog()
    assert manager.drain() == ["WATCHDOG=1"]
    notifier.stopping()
    assert manager.drain()[0] == "STOPPING=1"


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"virtq-test-{uuid.uuid4()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert sock.recv(4096) == b"STATUS=hello"


def test_without_a_manager_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog()


def test_a_manager_gone_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="virtq.agent.notify"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    assert len(caplog.records) == 1 and "cannot notify the service manager" in caplog.records[0].getMessage()


@pytest.mark.parametrize("environ, seconds", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
], ids=["unset", "set", "our-pid", "other-pid", "zero", "garbage"])
def test_the_watchdog_interval_comes_from_the_environment(environ: Dict[str, str], seconds: Optional[float]) -> None:
    assert watchdog_interval(environ) == seconds
