"""``virtq top`` as a real process: under a real pseudo-terminal (alternate screen, frames redrawn in place,
keys without echo, the terminal restored on q and on SIGTERM) and with its output piped (plain frames),
against a real agent on test:///default that samples every 0.2 s."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Callable, Iterator, List

import pytest

from virtq.agent import Agent
from virtq.console.cli._topscreen import ENTER, LEAVE, TERMINATED
from virtq.testing import agent_url

from ..helpers import DEFAULT_URI, VIRTQ, process_env

pytestmark = pytest.mark.integration

COLUMNS, LINES = 100, 12


@pytest.fixture
def agent(start_agent: Callable[..., Agent]) -> Agent:
    return start_agent(DEFAULT_URI, interval=0.2, heartbeat=0.2)


class Terminal:
    """``virtq top`` on the slave side of a pseudo-terminal of COLUMNS x LINES; the test reads the master."""

    def __init__(self, *args: str) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.cooked = termios.tcgetattr(self.slave)
        env = {k: v for k, v in process_env().items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm"
        self.proc = subprocess.Popen([str(VIRTQ), *args], stdin=self.slave, stdout=self.slave,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.output = ""

    def read_until(self, text: str, timeout: float = 15.0, start: int = 0) -> int:
        """Read until ``text`` shows after ``start``; its position in all that was read."""
        deadline = time.monotonic() + timeout
        while (at := self.output.find(text, start)) < 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never shown; read: {self.output[-2000:]!r}"
            if select.select([self.master], [], [], min(remaining, 0.5))[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the process is gone and so is the slave's last writer
                    data = b""
                assert data or self.proc.poll() is None, f"exited {self.proc.poll()} before {text!r}: {self.errors()}"
                self.output += data.decode("utf-8", errors="replace")
        return at

    def frames(self) -> List[str]:
        """Each frame drawn: what follows a home + clear."""
        return self.output.split("\x1b[H\x1b[2J")[1:]

    def wait(self) -> int:
        code = self.proc.wait(10)
        self.read_rest()
        return code

    def read_rest(self) -> None:
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data.decode("utf-8", errors="replace")

    def errors(self) -> str:
        return self.proc.stderr.read().decode() if self.proc.stderr and self.proc.poll() is not None else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: List[Terminal] = []

    def open_terminal(*args: str) -> Terminal:
        opened.append(Terminal(*args))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


def test_top_on_a_terminal_redraws_in_place_sorts_on_keys_and_restores_on_q(
        agent: Agent, terminal: Callable[..., Terminal]) -> None:
    term = terminal("-u", agent_url(agent), "top", "--interval", "0.3", "--sort", "name")
    assert term.read_until(ENTER) == 0  # the alternate screen first, before any frame
    term.read_until("sort: name")
    # test:///default's one domain, running: its CPU % once two samples arrived (0.2 s apart)
    cpu_shown = term.read_until(" running vCPU")
    first = term.frames()[0]
    lines = first.split("\n")
    assert len(lines) <= LINES and all(len(line.rstrip("\r")) <= COLUMNS for line in lines)
    assert lines[0].startswith("virtq top - ") and "1 domain: 1 running" in lines[0]

    os.write(term.master, b"c")
    term.read_until("sort: cpu", start=cpu_shown)  # redrawn at once with the new sort
    assert termios.tcgetattr(term.slave)[3] & (termios.ECHO | termios.ICANON) == 0  # keys: no echo, one at a time
    os.write(term.master, b"q")
    assert term.wait() == 0, term.errors()
    assert term.output.rstrip().endswith(LEAVE)  # back to the shell's screen
    assert "Traceback" not in term.errors()
    assert termios.tcgetattr(term.slave) == term.cooked  # echo and line editing back

    frames = term.frames()
    assert len(frames) >= 3  # redrawn every --interval, in place
    last = frames[-1].replace("\r", "").replace(LEAVE, "").split("\n")
    header = next(i for i, line in enumerate(last) if line.startswith("HOST"))
    assert last[header].split() == ["HOST", "NAME", "STATE", "CPU%", "MEM(MiB)", "VCPUS"]
    row = last[header + 1].split()
    assert row[1:3] == ["test", "running"] and float(row[3]) >= 0.0


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, TERMINATED), (signal.SIGINT, 0)], ids=["TERM", "INT"])
def test_top_restores_the_terminal_on_a_signal(signum: int, code: int, agent: Agent,
                                                terminal: Callable[..., Terminal]) -> None:
    term = terminal("-u", agent_url(agent), "top", "--interval", "0.3")
    term.read_until("HOST")
    term.proc.send_signal(signum)
    assert term.wait() == code, term.errors()
    assert term.output.rstrip().endswith(LEAVE)
    assert termios.tcgetattr(term.slave) == term.cooked
    assert "Traceback" not in term.errors()


def test_top_iterations_ends_on_a_terminal(agent: Agent, terminal: Callable[..., Terminal]) -> None:
    term = terminal("-u", agent_url(agent), "top", "--delay", "0.2", "--iterations", "2", "--per-host")
    assert term.wait() == 0, term.errors()
    frames = term.frames()
    assert len(frames) == 2 and "sort: cpu (per host)" in frames[-1]
    assert term.output.rstrip().endswith(LEAVE)


def test_top_piped_prints_plain_frames(agent: Agent) -> None:
    done = subprocess.run([str(VIRTQ), "-u", agent_url(agent), "top", "--interval", "0.3", "--iterations", "2"],
                          capture_output=True, text=True, timeout=30, env=process_env())
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout  # no screen control when not on a terminal
    frames = done.stdout.rstrip("\n").split("\n\n")
    assert len(frames) == 2
    for frame in frames:
        lines = frame.split("\n")
        assert lines[0].startswith("virtq top - ") and "1 domain: 1 running" in lines[0]
        assert lines[2].split() == ["HOST", "NAME", "STATE", "CPU%", "MEM(MiB)", "VCPUS"]
        assert lines[3].split()[1:3] == ["test", "running"]
    assert float(frames[-1].split("\n")[3].split()[3]) >= 0.0  # two samples by the second frame
