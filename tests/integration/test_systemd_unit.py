"""The systemd unit: installed with the real ExecStart, valid, hardened, and the agent runs under its rules.

PID 1 here is not systemd, so the unit is checked with systemd's offline tools (``systemd-analyze verify``
and ``security --offline``) and its syscall rules are applied by tests/integration/sandbox.py: the agent
serves a call and stops cleanly under the unit's SystemCallFilter=, RestrictAddressFamilies= and
MemoryDenyWriteExecute= (issue 13, item 1).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import pytest

from virtq.testing import free_port, port_open, wait_until

from ..helpers import NODE_URI, VIRTQ, VIRTQ_AGENT, process_env, run_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "virtq-agent.service"
INSTALL = ROOT / "scripts" / "install-unit.sh"
MAX_EXPOSURE = 4.0
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed (Debian: apt install systemd)")


def install(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=30)


def installed(root: Path) -> Path:
    return root / "etc" / "systemd" / "system" / "virtq-agent.service"


def test_the_unit_is_installed_with_the_real_agent_path(tmp_path: Path) -> None:
    result = install("--agent", str(VIRTQ_AGENT), "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    unit = installed(tmp_path).read_text()
    assert f"\nExecStart={VIRTQ_AGENT} --config /etc/virtq/agent.conf\n" in unit
    assert unit.replace(f"ExecStart={VIRTQ_AGENT} ", "ExecStart=/usr/bin/virtq-agent ") == UNIT.read_text()
    config = tmp_path / "etc" / "virtq" / "agent.conf"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    config.write_text("[agent]\nlibvirt = test:///default\n")
    assert install("--agent", str(VIRTQ_AGENT), "--root", str(tmp_path)).returncode == 0  # again: idempotent
    assert config.read_text() == "[agent]\nlibvirt = test:///default\n"  # an operator's file is kept


def test_an_agent_in_a_home_directory_keeps_its_home_readable() -> None:
    home = next((h for h in ("/home", "/root") if Path(h).is_dir() and os.access(h, os.W_OK)), None)
    if home is None:
        pytest.skip("no writable /home or /root")
    with tempfile.TemporaryDirectory(dir=home) as venv, tempfile.TemporaryDirectory() as root:
        agent = Path(venv) / "virtq-agent"
        agent.write_text("#!/bin/sh\n")
        agent.chmod(0o755)
        result = install("--agent", str(agent), "--root", root)
        assert result.returncode == 0, result.stderr
        assert "ProtectHome=read-only" in installed(Path(root)).read_text()
        assert "\nProtectHome=yes" not in installed(Path(root)).read_text()


@pytest.mark.parametrize("args, code, message", [
    (["--agent", "/nonexistent/virtq-agent"], 1, "no executable virtq-agent at /nonexistent/virtq-agent"),
    (["--frobnicate"], 2, "unknown argument --frobnicate"),
])
def test_install_refuses_what_it_cannot_do(tmp_path: Path, args: List[str], code: int, message: str) -> None:
    result = install(*args, "--root", str(tmp_path))
    assert result.returncode == code and message in result.stderr
    assert not installed(tmp_path).exists()


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_installed_unit(tmp_path: Path) -> None:
    assert install("--agent", str(VIRTQ_AGENT), "--root", str(tmp_path)).returncode == 0
    result = subprocess.run(["systemd-analyze", "verify", str(installed(tmp_path))], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd_analyze
def test_the_hardening_scores_at_most_4_and_the_document_says_the_score() -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                            text=True, timeout=60)
    found = re.search(r"Overall exposure level for virtq-agent.service: (\d+\.\d) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert f"**{found.group(1)} {found.group(2)}**" in operations, "docs/OPERATIONS.md states another score"


def sandboxed(args: List[str], log: Path) -> "subprocess.Popen[bytes]":
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.integration.sandbox", str(UNIT), "--",
                                 str(VIRTQ_AGENT), *args], stdout=out, stderr=out, cwd=ROOT, env=process_env())


def stopped(proc: "subprocess.Popen[bytes]", log: Path) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the sandboxed agent ignored SIGTERM: {log.read_text()}")
    if code == 77:
        pytest.skip(f"this machine cannot apply the unit's rules (seccomp, PR_SET_MDWE): {log.read_text()}")
    return code


@needs_systemd_analyze
def test_the_agent_serves_under_the_units_syscall_rules(tmp_path: Path) -> None:
    """A call outside SystemCallFilter=, a socket outside RestrictAddressFamilies= or W+X memory kills it."""
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    log = tmp_path / "agent.log"
    proc = sandboxed(["--libvirt", NODE_URI, "--listen", url, "--log-level", "debug"], log)
    try:
        wait_until(lambda: proc.poll() is not None or port_open(port, timeout=0.2), timeout=20)
        if proc.poll() is None:
            answer = run_process([str(VIRTQ), "-u", url, "--timeout", "5", "call", "domain", "web1", "suspend"],
                                 tmp_path)
            assert answer.returncode == 0, answer.stderr + log.read_text()
    finally:
        code = stopped(proc, log)
    assert code == 0, f"exit {code} (-31 or 159: a system call outside the filter): {log.read_text()}"


@needs_systemd_analyze
def test_a_brokered_agent_resolves_and_retries_under_the_units_syscall_rules(tmp_path: Path) -> None:
    """Name resolution and connection attempts (to a broker that is not there) stay within the rules."""
    log = tmp_path / "agent.log"
    proc = sandboxed(["--libvirt", NODE_URI, "--broker", f"amqp://localhost:{free_port()}"], log)
    try:
        # the start waits up to 10 s for a first connection, then goes on retrying in the background
        wait_until(lambda: proc.poll() is not None or "(rabbitmq)" in log.read_text(), timeout=30)  # the banner
        assert "retrying" in log.read_text()
        assert proc.poll() is None, log.read_text()
    finally:
        code = stopped(proc, log)
    assert code == 0, log.read_text()
