"""The hypervisor side of bench/event_latency: an agent on ``test:///default`` and the libvirt connection whose
suspend/resume make the events, in the benchmark's process or in a process of their own.

``test:///default`` is one driver instance per process, so the connection that makes the events lives with the
agent. In its own process (the default) the agent has its own interpreter, as on a real host: the console's
threads and the agent's do not take turns on one GIL, and the bare proton echo the results are compared with runs
in two processes too. In the benchmark's process (``--agent in-process``) it is the setup the earlier runs used.
The child is ``python -m bench.event_host URL``: it serves the agent and answers one line per command read on
stdin (``suspend``, ``resume``, ``quit``) with the wall clock just before the libvirt call and the call's duration.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Tuple

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.agent.libvirt_events import ensure_event_loop
from virtq.schema import default_schema
from virtq.testing import free_port, port_open, wait_until
from virtq.transport import DirectListener

import libvirt  # connections are opened after ensure_event_loop() registered the event loop

URI = "test:///default"
DOMAIN = "test"
OPERATIONS = ("suspend", "resume")


class InProcessHost:
    """The agent and the event-making connection in the process that makes it (the benchmark's with
    ``--agent in-process``, else the child's)."""

    def __init__(self, workdir: Optional[Path] = None, url: Optional[str] = None) -> None:
        ensure_event_loop()
        self._conn = libvirt.open(URI)  # keeps the process's test:///default driver alive for the whole run
        self._dom = self._conn.lookupByName(DOMAIN)
        running(self._dom)
        self.uuid = self._dom.UUIDString()
        self._tmp = tempfile.TemporaryDirectory(prefix="virtq-bench-")
        self.url = url or f"amqp://127.0.0.1:{free_port()}"
        self._agent = Agent(default_schema(), LibvirtHypervisor(URI), DirectListener(self.url), heartbeat=10.0,
                            state_dir=(workdir or Path(self._tmp.name)) / "state")
        self._agent.start()

    def operate(self, operation: str) -> Tuple[int, float]:
        """Suspend or resume the domain: (wall clock in ns just before the call, the call's milliseconds)."""
        return timed_call(getattr(self._dom, operation))

    def stop(self) -> None:
        try:
            self._agent.stop()
            running(self._dom)
        finally:
            self._conn.close()
            self._tmp.cleanup()


class ProcessHost:
    """The agent and the event-making connection in a child process (bench.event_host's main)."""

    def __init__(self) -> None:
        self.url = f"amqp://127.0.0.1:{free_port()}"
        self._child = subprocess.Popen([sys.executable, "-m", "bench.event_host", self.url], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self._child.stdout is not None
        self.uuid = self._child.stdout.readline().strip()  # once the agent serves
        if not self.uuid or not wait_until(lambda: port_open(int(self.url.rsplit(":", 1)[1])), 30):
            self.stop()
            raise RuntimeError("the benchmark's agent process did not start")

    def operate(self, operation: str) -> Tuple[int, float]:
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(operation + "\n")
        wall, call_ms = self._child.stdout.readline().split()
        return int(wall), float(call_ms)

    def stop(self) -> None:
        child = self._child
        try:
            if child.poll() is None:
                assert child.stdin is not None
                child.stdin.write("quit\n")
                child.stdin.flush()
                child.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
        finally:
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()


def timed_call(call: Any) -> Tuple[int, float]:
    wall = time.time_ns()
    start = time.perf_counter_ns()
    call()
    return wall, (time.perf_counter_ns() - start) / 1e6


def running(dom: Any) -> None:
    """Bring the test domain to running (another user of the process may have left it otherwise)."""
    state = dom.info()[0]
    if state == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    elif state != libvirt.VIR_DOMAIN_RUNNING:
        dom.create()


def main(url: str) -> None:
    """The child: serve an agent at ``url``, say the domain's uuid, then run the commands read on stdin."""
    host = InProcessHost(url=url)
    try:
        print(host.uuid, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command not in OPERATIONS:
                break
            wall, call_ms = host.operate(command)
            print(wall, call_ms, flush=True)
    finally:
        host.stop()


if __name__ == "__main__":
    main(sys.argv[1])
