"""Peer-supplied text in logs: escaped and bounded; repeated warnings rate-limited with counts."""

from __future__ import annotations

import logging
from typing import List

import pytest

from virtq.logs import RateLimited, shown
from virtq.schema import errors


def test_shown_escapes_control_characters_and_bounds_length() -> None:
    assert shown("evil\nINFO forged line\r\x1b[31mred\x00") == "evil\\nINFO forged line\\r\\x1b[31mred\\x00"
    long = shown("x" * 1000)
    assert long.startswith("x" * 200) and long.endswith("…(+800 chars)") and len(long) < 220
    assert shown(b"\n") == "b'\\n'"


def test_rate_limited_logs_once_per_window_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    now: List[float] = [0.0]
    limited = RateLimited(logging.getLogger("virtq.test"), window=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="virtq.test"):
        assert limited.warning("malformed", "malformed message from %s", "a")
        for _ in range(99):
            assert not limited.warning("malformed", "malformed message from %s", "a")
        assert limited.warning("other", "another kind")
        now[0] = 10.5
        assert limited.warning("malformed", "malformed message from %s", "b")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["malformed message from a", "another kind",
                     "malformed message from b (and 99 more like it in the last 10 s)"]
    assert limited.suppressed == 99


def test_busy_and_timeout_errors_travel_typed() -> None:
    busy = errors.remote_error(8, "object busy: Domain:x has 1 libvirt call stuck, the oldest destroy for 42 s")
    assert isinstance(busy, errors.ObjectBusyError)
    timeout = errors.remote_error(0x10044, "Timed out during operation: libvirt did not answer in 30 s")
    assert isinstance(timeout, errors.LibvirtTimeoutError) and timeout.libvirt_code == 68
