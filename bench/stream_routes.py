"""The ways bench/stream_download.py downloads a volume through virtq, each a ``virtq-agent`` process of its own on
the same libvirtd and a console in the benchmark's process: ``direct`` (the agent listens on loopback) and
``rabbitmq`` (the agent and the console are clients of a private RabbitMQ node, virtq.testing.rabbitmq, the broker
test tier's harness). A route names the processes a download costs CPU in, so that the benchmark can say where
the time goes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from virtq.console import Console
from virtq.testing import free_port, port_open, wait_until
from virtq.testing.processes import log_tails
from virtq.testing.rabbitmq import RabbitNode, RabbitSession, Unavailable

from .fleetsim.metering import cpu_seconds as process_cpu_seconds

AGENT = Path(sys.executable).parent / "virtq-agent"
VIAS = ("direct", "rabbitmq")
BROKER_USER, BROKER_PASSWORD = "guest", "guest"
"""The private node's default user (RabbitNode.url's; loopback only); the agent gets the password the way
docs/DEPLOYMENT.md gives it, from VIRTQ_AGENT_BROKER_PASSWORD, not on its command line."""
POLICY = f"[principal anonymous]\nroles = admin\n[principal {BROKER_USER}]\nroles = admin\n"
"""A benchmark's agents only: anonymous consoles (direct, loopback) and the broker's user may do everything."""


@dataclass
class Route:
    """One way to the volume: its console, and the processes (name -> pid) a download through it runs in."""

    via: str
    console: Console
    processes: Dict[str, int] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads, the fleet's metering); 0 when it is gone."""
    try:
        return process_cpu_seconds(str(pid))
    except OSError:
        return 0.0


def pids_named(command: str) -> List[int]:
    """Live processes whose command name is ``command`` (the libvirtd the harness started or reused)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == command:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def agent_logs(workdir: Path) -> str:
    """The end of every route's agent log, for a run that failed."""
    return log_tails(sorted(workdir.glob("agent-*.log")), "the agents")


def spawn_broker(stack: ExitStack) -> RabbitNode:
    """A private RabbitMQ node, booting (~6 s, side by side with libvirtd); ``open_route`` waits for it."""
    try:
        session = RabbitSession()
    except Unavailable as exc:
        raise SystemExit(f"RabbitMQ unavailable ({exc}): bash scripts/install-rabbitmq.sh, or --via direct") from exc
    stack.callback(session.close)
    node = RabbitNode(session)
    node.spawn()
    return node


def _agent(argv: List[str], env: Dict[str, str], workdir: Path, name: str,
           stack: ExitStack) -> "subprocess.Popen[bytes]":
    log_path = workdir / f"agent-{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the stack
    stack.callback(log.close)
    proc = subprocess.Popen([str(AGENT), *argv, "--log-level", "warning"], stdout=log, stderr=log, env=env)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)
    stack.callback(stop)
    return proc


def open_route(via: str, uri: str, workdir: Path, stack: ExitStack, broker: Optional[RabbitNode] = None) -> Route:
    """Start an agent on libvirt ``uri`` and a console to it, the way ``via`` says; both stopped by the stack."""
    policy = workdir / "policy.ini"
    policy.write_text(POLICY)
    instance = f"bench-{via}-{uuid.uuid4().hex[:8]}"
    argv = ["--libvirt", uri, "--policy", str(policy), "--instance", instance]
    env = dict(os.environ)
    if via == "direct":
        port = free_port()
        proc = _agent([*argv, "--listen", f"amqp://127.0.0.1:{port}"], env, workdir, via, stack)
        if not wait_until(lambda: proc.poll() is not None or port_open(port, timeout=0.2), 30) \
                or proc.poll() is not None:
            raise SystemExit(f"virtq-agent did not start: {(workdir / f'agent-{via}.log').read_text()}")
        console = stack.enter_context(Console(f"amqp://127.0.0.1:{port}", timeout=30))
        return Route(via, console, {"agent": proc.pid})
    if via != "rabbitmq" or broker is None:
        raise ValueError(f"no route {via!r} (one of {', '.join(VIAS)}; rabbitmq needs a broker)")
    broker.wait_ready()
    env["VIRTQ_AGENT_BROKER_PASSWORD"] = BROKER_PASSWORD
    proc = _agent([*argv, "--broker", f"amqp://127.0.0.1:{broker.port}", "--broker-user", BROKER_USER,
                   "--addressing", "rabbitmq"], env, workdir, via, stack)
    console = stack.enter_context(Console(broker.url, addressing="rabbitmq", timeout=30,
                                          agent_users={BROKER_USER: f"libvirt.org:virtq:{instance}"}))
    if not wait_until(lambda: proc.poll() is not None or any(a.name.endswith(instance) for a in console.agents), 30) \
            or proc.poll() is not None:
        raise SystemExit(f"virtq-agent did not join the broker: {(workdir / f'agent-{via}.log').read_text()}")
    return Route(via, console, {"agent": proc.pid, "broker": broker.beam_pid or 0})
