"""The RabbitMQ programs a private node runs, and how a failure of the harness is told."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional, Sequence

__all__ = ["CTL", "CTL_TIMEOUT", "HarnessError", "PLUGIN", "RABBIT_BIN", "SERVER", "SSL_AUTH_PLUGIN", "Unavailable",
           "find_programs", "run_program"]

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
SERVER = RABBIT_BIN / "rabbitmq-server"
CTL = RABBIT_BIN / "rabbitmqctl"
PLUGIN = "rabbitmq_amqp1_0"
SSL_AUTH_PLUGIN = "rabbitmq_auth_mechanism_ssl"
"""SASL EXTERNAL: a client certificate's CN as the user (bundled with rabbitmq-server)."""
CTL_TIMEOUT = 60.0
"""Seconds any one rabbitmqctl call may take."""


class HarnessError(Exception):
    """A RabbitMQ node could not be started, stopped or controlled (a loud failure)."""


class Unavailable(HarnessError):
    """RabbitMQ cannot run on this machine at all: rabbitmq-server (or epmd) is not installed."""


def find_programs() -> Dict[str, Path]:
    """rabbitmq-server, rabbitmqctl and epmd; Unavailable (with the fix) when any is missing."""
    found: Dict[str, Optional[Path]] = {"rabbitmq-server": SERVER if os.access(SERVER, os.X_OK) else None,
                                        "rabbitmqctl": CTL if os.access(CTL, os.X_OK) else None}
    epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
    found["epmd"] = Path(epmd) if epmd else None
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (Debian/Ubuntu: rabbitmq-server; virtq's "
                          "repository: `bash scripts/install-rabbitmq.sh`, which `make test` runs)")
    if not list(RABBIT_BIN.parent.glob(f"lib/rabbitmq_server-*/plugins/{PLUGIN}-*")):
        raise Unavailable(f"rabbitmq-server has no {PLUGIN} plugin under {RABBIT_BIN.parent}")
    return {name: path for name, path in found.items() if path is not None}


def run_program(argv: Sequence[str], env: Dict[str, str], timeout: float) -> "subprocess.CompletedProcess[str]":
    """Run a RabbitMQ program to its end (output captured); HarnessError when it takes over ``timeout`` s."""
    try:
        return subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from exc
