"""What the RabbitMQ nodes of one process share: a private HOME (the Erlang cookie), a private epmd,
node names and ports; and the clean-up of what sessions of processes that are gone left running."""

from __future__ import annotations

import atexit
import itertools
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Protocol

from ..ports import free_port, port_open
from ..processes import kill_all, pid_alive, proc_stat
from .programs import HarnessError, find_programs

__all__ = ["NODE_PREFIX", "RabbitSession", "SESSION_VAR", "SessionMember", "default_session", "reap_orphans",
           "session_processes"]

NODE_PREFIX = "virtq-"
SESSION_VAR = "VIRTQ_RABBIT_SESSION"
"""``<pid of the owning process>:<session id>``, in the environment of every process a session starts."""


class SessionMember(Protocol):
    """A node, as its session sees it."""

    def stop(self) -> None: ...


def _session_of(pid: int) -> Optional[str]:
    """The SESSION_VAR in a process's environment (None: not a session's, or not readable)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(SESSION_VAR.encode() + b"="):
            value = item.split(b"=", 1)[1].decode(errors="replace")
            return value if re.fullmatch(r"\d+:\w+", value) else None
    return None


def session_processes(session: Optional[str] = None) -> Dict[int, str]:
    """{pid: session id} of live processes started by sessions (by session ``session`` only, if given)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            owner = _session_of(int(entry.name))
            fields = proc_stat(int(entry.name))
            if owner is not None and fields and fields[0] != "Z" and session in (None, owner):
                found[int(entry.name)] = owner
    return found


def reap_orphans() -> List[int]:
    """SIGKILL what sessions of processes that are gone left running (nodes, epmd); returns their pids."""
    orphans = [pid for pid, owner in session_processes().items() if not pid_alive(int(owner.split(":")[0]))]
    kill_all(orphans)
    return orphans


class RabbitSession:
    """What the nodes of one process share: a private HOME (Erlang cookie), a private epmd, node names.

    ``base`` is the directory the nodes' directories go in (a new temporary one, removed by
    ``close()``, when not given; one that is given is left in place, with the nodes' logs).
    """

    def __init__(self, base: Optional[Path] = None) -> None:
        self.programs = find_programs()
        self.id = f"{os.getpid()}:{secrets.token_hex(4)}"
        self._own_base = base is None
        self.base = Path(tempfile.mkdtemp(prefix=f"virtq-rabbitmq-{os.getpid()}-")) if base is None else base
        self.base.mkdir(parents=True, exist_ok=True)
        self.home = self.base / "home"
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20).upper())
            cookie.chmod(0o400)
        self.epmd_port = free_port()
        self.ports: List[int] = [self.epmd_port]
        self.nodes: List[SessionMember] = []
        """The session's nodes (each adds itself), stopped by ``close()``."""
        self._serial = itertools.count(1)
        self._epmd: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()
        self.closed = False
        reap_orphans()
        atexit.register(self.close)

    # Every node and every rabbitmqctl call runs with this environment (plus the node's own variables).
    def base_env(self) -> Dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("RABBITMQ_", "ERL_")) and key not in ("HOME", SESSION_VAR)}
        env.update({
            "HOME": str(self.home),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "LC_ALL": "C.UTF-8",  # the Elixir CLI warns on a latin1 VM
            SESSION_VAR: self.id,
        })
        return env

    def processes(self) -> List[int]:
        """Live processes this session started (nodes, their helpers, epmd, rabbitmqctl calls)."""
        return sorted(session_processes(self.id))

    def new_port(self) -> int:
        with self._lock:
            port = free_port(self.ports)
            self.ports.append(port)
            return port

    def new_name(self) -> str:
        return f"{NODE_PREFIX}{os.getpid()}-{next(self._serial)}@localhost"

    def ensure_epmd(self) -> None:
        """Start the session's epmd (loopback, its own port) unless it runs."""
        with self._lock:
            if self.closed:
                raise HarnessError("the RabbitMQ session is closed")
            if self._epmd is not None and self._epmd.poll() is None:
                return
            argv = [str(self.programs["epmd"]), "-address", "127.0.0.1", "-port", str(self.epmd_port)]
            log = open(self.base / "epmd.log", "ab")
            try:
                self._epmd = subprocess.Popen(argv, env=self.base_env(), stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + 10
            while not port_open(self.epmd_port):
                if self._epmd.poll() is not None or time.monotonic() > deadline:
                    raise HarnessError(f"epmd on port {self.epmd_port} did not start: "
                                       f"{(self.base / 'epmd.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.02)

    def close(self) -> None:
        """Stop every node of the session (in parallel), then its epmd; remove a base made here."""
        if self.closed:
            return
        errors: List[BaseException] = []

        def stop(node: SessionMember) -> None:
            try:
                node.stop()
            except BaseException as exc:  # (reported below, once every node was tried)
                errors.append(exc)

        threads = [threading.Thread(target=stop, args=(node,)) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with self._lock:
            self.closed = True
            if self._epmd is not None:
                if self._epmd.poll() is None:
                    self._epmd.terminate()
                    try:
                        self._epmd.wait(5)
                    except subprocess.TimeoutExpired:
                        self._epmd.kill()
                        self._epmd.wait(5)
                self._epmd = None
        kill_all(self.processes())  # anything a node left (should be nothing)
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)
        atexit.unregister(self.close)
        if errors:
            raise HarnessError(f"stopping RabbitMQ nodes: {errors}")


_default_session: Optional[RabbitSession] = None


def default_session() -> RabbitSession:
    """The process-wide session (a temporary directory), for nodes and clusters made without one."""
    global _default_session
    if _default_session is None or _default_session.closed:
        _default_session = RabbitSession()
    return _default_session
