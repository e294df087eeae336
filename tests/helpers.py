"""Test helpers shipped with the suite: factories that clean up, waiters instead of sleeps."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest

from click.testing import CliRunner, Result

from virtq.console.cli import cli
from virtq.schema.codec import WireMessage
from virtq.transport.base import Deliver, StateListener, Transport

DATA = Path(__file__).parent / "data"
NODE_XML = DATA / "node.xml"
NODE_URI = f"test://{NODE_XML}"
DEFAULT_URI = "test:///default"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll a cheap local predicate until true (for state that has no notification)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- real processes ------------------------------------------------------------------------------

BIN = Path(sys.executable).parent
VIRTQ = BIN / "virtq"
VIRTQ_AGENT = BIN / "virtq-agent"


def process_env() -> Dict[str, str]:
    """The test process's environment without VIRTQ_* settings (a process sees only its arguments)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VIRTQ")}


def run_process(argv: Sequence[str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, cwd=cwd, env=process_env())


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def agent_process(args: Sequence[str], port: int, tmp_path: Path) -> Iterator[Tuple["subprocess.Popen[bytes]", Path]]:
    """A virtq-agent process listening on ``port``; killed if the test did not stop it."""
    log_path = tmp_path / f"agent-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(VIRTQ_AGENT), *args], stdout=log_file, stderr=log_file, cwd=tmp_path,
                                env=process_env())
    try:
        assert wait_for(lambda: proc.poll() is not None or listening(port), timeout=20)
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


class RecordingTransport(Transport):
    """Records what is sent through it; never delivers anything (tests feed the console by hand)."""

    def __init__(self) -> None:
        self.sent: List[WireMessage] = []
        self.lock = threading.Lock()

    def start(self, deliver: Deliver, on_state: Optional[StateListener] = None, timeout: float = 10.0) -> None:
        pass

    def send(self, message: WireMessage) -> None:
        with self.lock:
            self.sent.append(message)

    def stop(self, timeout: float = 5.0) -> None:
        pass

    @property
    def reply_address(self) -> str:
        return "replies"

    @property
    def connected(self) -> bool:
        return True
