"""Test helpers shipped with the suite: factories that clean up, waiters instead of sleeps."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from click.testing import CliRunner, Result

from virtq.console.cli import cli

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
