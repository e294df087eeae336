"""virtq-agent's logs as journald and a log shipper read them (issue 13, item 5).

The daemon runs as a process. For journald its stderr is a file whose device and inode ``$JOURNAL_STREAM``
names, as systemd does with its journal stream: every line then carries a syslog priority. A console that
drops its TCP connection without closing AMQP (a reset) is routine: INFO, never ERROR.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

from virtq.testing import free_port, wait_until

from ..helpers import NODE_URI, VIRTQ, agent_process, run_process, stop_process

pytestmark = pytest.mark.integration


def reset_connection(port: int) -> None:
    """Open AMQP, then drop the socket with a TCP reset, as a killed console's kernel does."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"AMQP\x00\x01\x00\x00")
        assert sock.recv(8).startswith(b"AMQP")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def call(url: str, cwd: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    return run_process([str(VIRTQ), "-u", url, "--timeout", "5", "call", *args], cwd)


def test_under_journald_every_line_has_its_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.ini"
    policy.write_text("[principal anonymous]\nroles = admin\n")
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    stream = tmp_path / f"agent-{port}.log"  # agent_process writes stderr here: the same inode
    stream.write_bytes(b"")
    stat = os.stat(stream)
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    with agent_process(["--libvirt", NODE_URI, "--listen", url, "--policy", str(policy)], port, tmp_path) as (
            proc, log_path):
        assert call(url, tmp_path, "domain", "web1", "suspend").returncode == 0
        policy.write_text("[principal anonymous]\nroles = readonly\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "access policy reloaded" in log_path.read_text(), timeout=10)
        assert call(url, tmp_path, "domain", "web1", "resume").returncode == 5
        reset_connection(port)
        wait_until(lambda: "Couldn't recv" in log_path.read_text(), timeout=10)
        stop_process(proc, log_path)
    lines = [line for line in log_path.read_text().splitlines() if not line.startswith("virtq-agent ")]  # banner
    assert lines and all(line[:3] in ("<4>", "<5>", "<6>") for line in lines), lines
    assert any(line.startswith('<5>virtq.audit: audit principal="anonymous"') and 'method="suspend"' in line
               for line in lines)
    assert any(line.startswith("<4>virtq.audit: audit") and 'outcome="denied"' in line for line in lines)
    assert any(line.startswith("<6>virtq.agent: security: plain AMQP") for line in lines)
    assert any(line.startswith("<6>virtq.transport.proton: Couldn't recv: ConnectionResetError") for line in lines)


def test_json_lines_for_log_shippers(tmp_path: Path) -> None:
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    with agent_process(["--libvirt", NODE_URI, "--listen", url, "--log-format", "json", "--log-level", "debug"],
                       port, tmp_path) as (proc, log_path):
        assert call(url, tmp_path, "domain", "web1", "suspend").returncode == 0
        reset_connection(port)
        wait_until(lambda: "Couldn't recv" in log_path.read_text(), timeout=10)
        stop_process(proc, log_path)
    records: List[Dict[str, Any]] = [json.loads(line) for line in log_path.read_text().splitlines()
                                     if not line.startswith("virtq-agent ")]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert not [r for r in records if r["level"] in ("error", "critical")], records
    (audited,) = [r for r in records if r["logger"] == "virtq.audit"]
    assert audited["level"] == "notice" and audited["audit"]["method"] == "suspend"
    assert audited["audit"]["outcome"] == "ok"
    assert any(r["level"] == "debug" and r["logger"].startswith("virtq.") for r in records)
    assert not [r for r in records if r["logger"] == "proton" and r["level"] == "debug"]  # only at trace
    disconnects = [r for r in records if r["logger"] == "virtq.transport.proton"]
    assert disconnects and all(r["level"] == "info" for r in disconnects), disconnects
