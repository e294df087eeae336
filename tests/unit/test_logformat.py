"""The daemon's log formats: journald priorities, JSON lines, TRACE for proton (issue 13, item 5)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from virtq.agent import audit
from virtq.agent.logformat import (NOTICE, TRACE, JournalFormatter, JsonFormatter, TextFormatter, formatter,
                                   set_level, stderr_is_journal)
from virtq.transport._reactor import routine_disconnect


def record(level: int, message: str, name: str = "virtq.agent", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize("level, prefix", [(logging.CRITICAL, "<2>"), (logging.ERROR, "<3>"),
                                           (logging.WARNING, "<4>"), (NOTICE, "<5>"), (logging.INFO, "<6>"),
                                           (logging.DEBUG, "<7>"), (TRACE, "<7>")])
def test_journal_priorities(level: int, prefix: str) -> None:
    assert JournalFormatter().format(record(level, "x")) == f"{prefix}virtq.agent: x"


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("virtq.agent", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    lines = JournalFormatter().format(failed).split("\n")
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_json_lines_carry_the_fields_and_the_extras() -> None:
    line = JsonFormatter().format(record(logging.WARNING, "a\nforged line", name="virtq.transport", peer="c1"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "warning" and parsed["logger"] == "virtq.transport"
    assert parsed["message"] == "a\nforged line" and parsed["peer"] == "c1"
    assert parsed["ts"].endswith("Z") and parsed["ts"][10] == "T"
    assert set(parsed) == {"ts", "level", "logger", "message", "peer"}


def test_an_audit_line_in_json_has_its_fields_as_an_object(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="virtq.audit"):
        audit.record("ops", "a1", "Domain:x", "destroy", {"flags": 0}, "ok", 0.002)
    parsed = json.loads(JsonFormatter().format(caplog.records[0]))
    assert parsed["level"] == "notice" and parsed["logger"] == "virtq.audit"
    assert parsed["audit"] == {"principal": "ops", "agent": "a1", "object": "Domain:x", "method": "destroy",
                               "outcome": "ok", "duration": 0.002}


def test_an_exception_goes_in_its_own_field() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        failed = logging.LogRecord("virtq.agent", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    parsed = json.loads(JsonFormatter().format(failed))
    assert parsed["message"] == "failed" and parsed["exception"].endswith("KeyError: 'k'")


def test_the_journal_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stream"
    path.write_text("")
    stat = os.stat(path)
    with open(path, "w") as stream:
        assert stderr_is_journal({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not stderr_is_journal({}, stream)


def test_auto_is_journal_only_when_stderr_is_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert isinstance(formatter("auto"), TextFormatter)
    stat = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    assert isinstance(formatter("auto"), JournalFormatter)
    assert isinstance(formatter("text"), TextFormatter) and isinstance(formatter("json"), JsonFormatter)


@pytest.fixture
def levels() -> Iterator[None]:
    root, proton = logging.getLogger(), logging.getLogger("proton")
    saved = root.level, proton.level
    yield
    root.setLevel(saved[0])
    proton.setLevel(saved[1])


@pytest.mark.usefixtures("levels")
def test_proton_debug_lines_only_at_trace() -> None:
    proton, virtq = logging.getLogger("proton"), logging.getLogger("virtq.agent")
    set_level("debug")
    assert virtq.isEnabledFor(logging.DEBUG) and not proton.isEnabledFor(logging.DEBUG)
    assert proton.isEnabledFor(logging.INFO)
    set_level("trace")
    assert proton.isEnabledFor(logging.DEBUG) and virtq.isEnabledFor(TRACE)
    set_level("info")
    assert not virtq.isEnabledFor(logging.DEBUG) and not proton.isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize("text, routine", [
    ("Couldn't recv: ConnectionResetError(104, 'Connection reset by peer')", True),
    ("Couldn't send: BrokenPipeError(32, 'Broken pipe')", True),
    ("Couldn't recv: OSError(9, 'Bad file descriptor')", False),
    ("Couldn't connect: ConnectionRefusedError(111)", False),
])
def test_a_peer_closing_its_socket_is_routine(text: str, routine: bool) -> None:
    assert routine_disconnect(text) is routine
