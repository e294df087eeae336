"""What this suite adds to virtq.testing (the kit virtq ships): its data, the CLI in-process, and the
virtq-agent and virtq commands as processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import pytest

from click.testing import CliRunner, Result

from virtq.agent import Agent
from virtq.console import Console
from virtq.console.cli import cli
from virtq.testing import DEFAULT_URI, agent_url, port_open, wait_until

__all__ = ["DATA", "DEFAULT_URI", "NODE_URI", "NODE_XML", "VIRTQ", "VIRTQ_AGENT", "agent_process",
           "failed", "ok", "process_env", "run_cli", "run_process", "stop_process", "virtq"]

DATA = Path(__file__).parent / "data"
NODE_XML = DATA / "node.xml"
NODE_URI = f"test://{NODE_XML}"
"""4 domains (running, running, paused, shut off), 2 pools, 3 volumes; each connection its own copy."""


def run_cli(args: Sequence[str], obj: Any = None, env: Optional[Mapping[str, Optional[str]]] = None) -> Result:
    """Run ``virtq ARGS`` in-process (click's CliRunner, stdout and stderr apart, exceptions raised).

    The CLI configures the root logger for its process; the caller's is restored afterwards."""
    try:  # click < 8.2 mixes stderr into output unless told not to
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2: result.stdout and result.stderr are always separate
        runner = CliRunner()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return runner.invoke(cli, list(args), obj=obj, env=env, catch_exceptions=False)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def virtq(*args: str, urls: Sequence[Union[str, Agent]] = (), obj: Optional[Console] = None) -> Result:
    """Run ``virtq [-u URL]... ARGS`` in-process; ``urls`` are URLs or agents started on loopback
    (virtq.testing.agent_url)."""
    argv: List[str] = []
    for target in urls:
        argv += ["-u", target if isinstance(target, str) else agent_url(target)]
    return run_cli([*argv, *args], obj=obj)


def ok(result: Result) -> str:
    """Assert exit 0; return stdout."""
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return result.stdout


def failed(result: Result, code: int) -> str:
    """Assert the exit code; return stderr (where the message goes), stdout must be empty."""
    assert result.exit_code == code, f"exit {result.exit_code} (wanted {code}): {result.stdout}{result.stderr}"
    assert result.stdout == ""
    return result.stderr


# --- real processes ------------------------------------------------------------------------------

BIN = Path(sys.executable).parent
VIRTQ = BIN / "virtq"
VIRTQ_AGENT = BIN / "virtq-agent"


def process_env() -> Dict[str, str]:
    """The test process's environment without VIRTQ_* settings (a process sees only its arguments)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VIRTQ")}


def run_process(argv: Sequence[str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, cwd=cwd, env=process_env())


@contextlib.contextmanager
def agent_process(args: Sequence[str], port: int, tmp_path: Path) -> Iterator[Tuple["subprocess.Popen[bytes]", Path]]:
    """A virtq-agent process listening on ``port``; killed if the test did not stop it."""
    log_path = tmp_path / f"agent-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(VIRTQ_AGENT), *args], stdout=log_file, stderr=log_file, cwd=tmp_path,
                                env=process_env())
    try:
        wait_until(lambda: proc.poll() is not None or port_open(port, timeout=0.2), timeout=20)
        assert proc.poll() is None, f"virtq-agent exited {proc.returncode}: {log_path.read_text()}"
        yield proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def stop_process(proc: "subprocess.Popen[bytes]", log_path: Path) -> None:
    """SIGTERM, and the agent must exit 0 within 5 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"virtq-agent ignored SIGTERM for 5s: {log_path.read_text()}")
    assert code == 0, log_path.read_text()

