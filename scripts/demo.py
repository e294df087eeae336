"""`make demo`: a guided tour of virtq on libvirt's built-in test hypervisor, no broker.

Starts virtq-agent on test:///default in direct mode, then drives it with the virtq CLI,
printing each command and its output. Exits non-zero if any step fails.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
AGENT = str(BIN / "virtq-agent")
CLI = str(BIN / "virtq")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(*args: str, head: int = 0) -> str:
    print(f"$ virtq {shlex.join(args)}", flush=True)
    done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)
    out = done.stdout.rstrip("\n")
    lines = out.splitlines()
    shown = lines[:head] + ([f"... ({len(lines) - head} more lines)"] if head and len(lines) > head else []) \
        if head else lines
    for line in shown:
        print(f"  {line}")
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"demo step failed (exit {done.returncode}): virtq {shlex.join(args)}")
    return out


def wait_listening(port: int, agent: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit("virtq-agent exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("virtq-agent did not start listening")


def main() -> None:
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"
    os.environ["VIRTQ_URL"] = url
    say(f"Starting the agent: virtq-agent --libvirt test:///default --listen {url}")
    print("  (libvirt's built-in test hypervisor: one running domain 'test', one storage pool)")
    agent = subprocess.Popen([AGENT, "--libvirt", "test:///default", "--listen", url, "--heartbeat", "2",
                              "--log-level", "warning"])
    try:
        wait_listening(port, agent)
        say("The agents this console can reach (VIRTQ_URL is set, so no -u needed)")
        run("agents")
        say("The node (libvirt's virConnect) and its objects; on the wire they carry identity only")
        run("list", "nodes")
        run("list", "domains")
        run("list", "pools")
        run("list", "volumes")
        say("Everything else comes from methods mirroring the libvirt API: the XML of domain 'test'")
        run("xml", "domain", "test", head=8)
        say("Suspend and resume 'test', watching its state through getInfo (virDomainGetInfo)")
        print("  state: 1 = running, 3 = paused (virDomainState)")
        run("call", "domain", "test", "getInfo")
        run("call", "domain", "test", "suspend")
        state = run("--json", "call", "domain", "test", "getInfo")
        if '"state": 3' not in state:
            raise SystemExit("domain did not become paused")
        run("call", "domain", "test", "resume")
        run("call", "domain", "test", "getInfo")
        say("Errors are typed: libvirt's own error, code 0x10000 + virErrorNumber")
        print("$ virtq call domain test resume   # it is already running")
        done = subprocess.run([CLI, "call", "domain", "test", "resume"], capture_output=True, text=True)
        print(f"  {done.stderr.strip()}  (exit {done.returncode})")
        if done.returncode != 5:
            raise SystemExit("expected a libvirt error (exit 5)")
        say("What a class offers: virtq methods domain")
        run("methods", "domain")
    finally:
        say("Stopping the agent")
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
    print("\nDone. Next: `make test`, and README.md for the concepts.")


if __name__ == "__main__":
    main()
