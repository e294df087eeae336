"""Private RabbitMQ nodes on loopback for the broker tier, and a 2-node cluster on this one machine.

``RabbitNode`` is one node in its own directory: its own node name (``virtq-<pid>-<n>@localhost``),
AMQP port and distribution port (free ports, loopback only), ``enabled_plugins`` with the AMQP 1.0
plugin, ``rabbitmq.conf``, data (mnesia), log and pid files. ``start()`` runs
``/usr/lib/rabbitmq/bin/rabbitmq-server`` as a child of this process (never the system service),
waits for the AMQP port and ``rabbitmqctl wait``, and (the first time) sets the ``amq.gen-*`` expiry
policy that every deployment needs (the AMQP 1.0 plugin never deletes the queues its /topic/ and
/exchange/ receivers create; the policy is kept in the node's data, and a cluster shares it).
``stop()`` is ``rabbitmqctl stop`` (SIGKILL after a deadline), ``kill()`` SIGKILLs the Erlang VM (a
crash), ``restart()`` is both; data survive a restart, so a clustered node rejoins.

``RabbitNode(session, tls=TlsConfig(cert, key, ca))`` listens for AMQP over TLS too (another loopback
port, ``tls_port``; ``url_for(user, password, tls=True)`` names it ``localhost``, which the certificate
must carry), verifying client certificates against the CA when clients offer one; ``external=True``
adds SASL EXTERNAL (the bundled rabbitmq_auth_mechanism_ssl plugin; the user is the certificate's CN).
``add_user``, ``set_permissions`` and ``set_topic_permissions`` are rabbitmqctl's (tests/broker/identities.py
gives agents and consoles docs/DEPLOYMENT.md's permissions with them).

The nodes of one process share a ``RabbitSession``: a private HOME holding the Erlang cookie (the
nodes and rabbitmqctl authenticate with it; root's and the system service's cookies are never read
or written) and a private epmd. epmd (the Erlang port mapper) outlives the nodes that register with
it, so the session starts its own on a free port as a child process (``ERL_EPMD_PORT`` in every
node's and rabbitmqctl's environment) and stops it in ``close()``; the system's epmd on port 4369,
and any RabbitMQ running there, are left alone. Every process a session starts carries
``VIRTQ_RABBIT_SESSION=<pid>:<session id>`` in its environment: ``close()`` SIGKILLs whatever of
its own is still left, and a new session SIGKILLs what sessions of processes that are gone left
(``reap_orphans``). To reach a node by hand, run ``/usr/lib/rabbitmq/bin/rabbitmqctl`` in its
environment (``node.env``), or call ``node.ctl(...)``; ``/usr/sbin/rabbitmqctl`` switches to the
rabbitmq user and its cookie, and cannot reach these nodes.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Dict, Iterable, List, Optional, Sequence
from urllib.parse import quote

from virtq.transport import TlsConfig

from ..helpers import pid_alive

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
SERVER = RABBIT_BIN / "rabbitmq-server"
CTL = RABBIT_BIN / "rabbitmqctl"
PLUGIN = "rabbitmq_amqp1_0"
SSL_AUTH_PLUGIN = "rabbitmq_auth_mechanism_ssl"
"""SASL EXTERNAL: a client certificate's CN as the user (bundled with rabbitmq-server)."""
NODE_PREFIX = "virtq-"
SESSION_VAR = "VIRTQ_RABBIT_SESSION"
"""``<pid of the owning process>:<session id>``, in the environment of every process a session starts."""

GEN_EXPIRE_POLICY = ("gen-expire", r"^amq\.gen-", '{"expires":60000}')
"""(name, pattern, definition): what ../shared/notes/rabbitmq-amqp10.md and DEPLOYMENT.md prescribe."""

CTL_TIMEOUT = 60.0
"""Seconds any one rabbitmqctl call may take."""


class HarnessError(Exception):
    """A RabbitMQ node could not be started, stopped or controlled (a loud failure)."""


class Unavailable(HarnessError):
    """RabbitMQ cannot run on this machine at all: rabbitmq-server (or epmd) is not installed."""


# --- helpers ------------------------------------------------------------------------------------------


def tls_config(tls: Optional[TlsConfig], port: int, external: bool) -> List[str]:
    """rabbitmq.conf lines of a TLS listener on loopback ``port`` presenting ``tls.cert`` and verifying
    client certificates (when a client offers one) against ``tls.ca``; ``external``: SASL EXTERNAL too,
    the user being the certificate's CN (the rabbitmq_auth_mechanism_ssl plugin, bundled)."""
    if tls is None:
        return []
    if not (tls.cert and tls.key and tls.ca):
        raise HarnessError("a TLS listener needs a certificate, its key and a CA")
    lines = [
        f"listeners.ssl.1 = 127.0.0.1:{port}",
        f"ssl_options.cacertfile = {tls.ca}",
        f"ssl_options.certfile = {tls.cert}",
        f"ssl_options.keyfile = {tls.key}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = false",  # PLAIN clients need none
    ]
    if external:
        lines += ["auth_mechanisms.1 = PLAIN", "auth_mechanisms.2 = AMQPLAIN", "auth_mechanisms.3 = EXTERNAL",
                  "ssl_cert_login_from = common_name"]
    return lines


def find_programs() -> Dict[str, Path]:
    """rabbitmq-server, rabbitmqctl and epmd; Unavailable (with the fix) when any is missing."""
    found: Dict[str, Optional[Path]] = {"rabbitmq-server": SERVER if os.access(SERVER, os.X_OK) else None,
                                        "rabbitmqctl": CTL if os.access(CTL, os.X_OK) else None}
    epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
    found["epmd"] = Path(epmd) if epmd else None
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed: run `bash scripts/install-rabbitmq.sh` "
                          "(`make test` does)")
    if not list(RABBIT_BIN.parent.glob(f"lib/rabbitmq_server-*/plugins/{PLUGIN}-*")):
        raise Unavailable(f"rabbitmq-server has no {PLUGIN} plugin under {RABBIT_BIN.parent}")
    return {name: path for name, path in found.items() if path is not None}


def free_port(avoid: Iterable[int] = ()) -> int:
    """A free TCP port on loopback (not one of ``avoid``)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _proc_stat(pid: int) -> Optional[List[str]]:
    """[state, ppid, pgrp, ...] of a live process (fields 3.. of /proc/<pid>/stat), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _group_members(pgid: int) -> List[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


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
            fields = _proc_stat(int(entry.name))
            if owner is not None and fields and fields[0] != "Z" and session in (None, owner):
                found[int(entry.name)] = owner
    return found


def reap_orphans() -> List[int]:
    """SIGKILL what sessions of processes that are gone left running (nodes, epmd); returns their pids."""
    orphans = [pid for pid, owner in session_processes().items() if not pid_alive(int(owner.split(":")[0]))]
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return orphans


def _run(argv: Sequence[str], env: Dict[str, str], timeout: float) -> "subprocess.CompletedProcess[str]":
    try:
        return subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from exc


# --- the session -------------------------------------------------------------------------------------


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
        self.nodes: List[RabbitNode] = []
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

    def node(self, *, tls: Optional[TlsConfig] = None, external: bool = False) -> "RabbitNode":
        """A new node (not started); ``tls``: with a TLS listener too (``external``: and SASL EXTERNAL)."""
        return RabbitNode(self, tls=tls, external=external)

    def cluster(self, size: int = 2) -> "RabbitCluster":
        """A new cluster of ``size`` nodes (not started)."""
        return RabbitCluster(self, size)

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

        def stop(node: RabbitNode) -> None:
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
        for pid in self.processes():  # anything a node left (should be nothing)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)
        atexit.unregister(self.close)
        if errors:
            raise HarnessError(f"stopping RabbitMQ nodes: {errors}")


_default_session: Optional[RabbitSession] = None


def default_session() -> RabbitSession:
    """The process-wide session (a temporary directory), for nodes made without one."""
    global _default_session
    if _default_session is None or _default_session.closed:
        _default_session = RabbitSession()
    return _default_session


# --- a node ------------------------------------------------------------------------------------------


class RabbitNode:
    """One private RabbitMQ node on loopback with the AMQP 1.0 plugin; see the module's docstring."""

    def __init__(self, session: Optional[RabbitSession] = None, *, tls: Optional[TlsConfig] = None,
                 external: bool = False) -> None:
        self.session = session or default_session()
        self.name = self.session.new_name()
        self.tls = tls
        self.external = external and tls is not None
        self.dir = self.session.base / self.name.split("@")[0]
        self.dir.mkdir(parents=True)
        self.port = self.session.new_port()
        self.dist_port = self.session.new_port()
        self.pid_file = self.dir / "rabbitmq.pid"
        self.console = self.dir / "console.log"
        self.started = 0  # how many times start() succeeded
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._pgid = 0  # the process group of the last process started (rabbitmq-server, the VM, helpers)
        self.tls_port = self.session.new_port() if tls is not None else 0
        plugins = [PLUGIN, SSL_AUTH_PLUGIN] if self.external else [PLUGIN]
        (self.dir / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
        (self.dir / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",
            "loopback_users = none",  # guest/guest may log in (over loopback: nothing else listens)
            "distribution.listener.interface = 127.0.0.1",
            f"distribution.listener.port_range.min = {self.dist_port}",
            f"distribution.listener.port_range.max = {self.dist_port}",
            # A clustered node started while its peers are down waits for them: 3 x 10 s, not 10 x 30 s.
            "mnesia_table_loading_retry_timeout = 10000",
            "mnesia_table_loading_retry_limit = 3",
            *tls_config(tls, self.tls_port, self.external),
            "",
        ]))
        self.session.nodes.append(self)

    def __repr__(self) -> str:
        return f"<RabbitNode {self.name} amqp={self.port} {'running' if self.running else 'stopped'}>"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}"

    def url_for(self, user: str = "", password: str = "", *, tls: bool = False) -> str:
        """The node's URL for ``user`` (no credentials when empty), plain or (``tls``) on its TLS listener;
        ``localhost``, a name the node's certificate carries, so that clients check it."""
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else \
            (f"{quote(user, safe='')}@" if user else "")
        if tls:
            if not self.tls_port:
                raise HarnessError(f"{self.name} has no TLS listener (RabbitNode(..., tls=TlsConfig(...)))")
            return f"amqps://{credentials}localhost:{self.tls_port}"
        return f"amqp://{credentials}127.0.0.1:{self.port}"

    @property
    def env(self) -> Dict[str, str]:
        """The environment of the node and of rabbitmqctl calls addressed to it."""
        env = self.session.base_env()
        env.update({
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),  # (absent)
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),  # (absent: not /etc/rabbitmq's)
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    # --- state ---

    @property
    def running(self) -> bool:
        """The node's process is alive (it may still be booting, or have its app stopped)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def beam_pid(self) -> Optional[int]:
        """The Erlang VM's pid (from the pid file), when it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self.running and pid_alive(pid) else None

    def processes(self) -> List[int]:
        """Live processes of the node's last start (its process group): empty once stopped or killed."""
        return _group_members(self._pgid) if self._pgid else []

    def tail(self, lines: int = 30) -> str:
        """The end of the node's console output and log (for error messages)."""
        text = []
        for path in [self.console, self.dir / "log" / f"{self.name}.log"]:
            try:
                content = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if content:
                text.append(f"--- {path} ---\n" + "\n".join(content))
        return "\n".join(text) or f"(no output from {self.name})"

    # --- control ---

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT,
            check: bool = True) -> "subprocess.CompletedProcess[str]":
        """Run ``rabbitmqctl -n <node> <args>`` (~0.3 s); HarnessError when it fails and ``check``."""
        argv = [str(CTL), "-n", self.name, *args]
        result = _run(argv, self.env, timeout)
        if check and result.returncode != 0:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} on {self.name} failed ({result.returncode}): "
                               f"{(result.stdout + result.stderr).strip()[-3000:]}")
        return result

    def ctl_json(self, *args: str) -> object:
        """A rabbitmqctl listing, parsed: ``ctl_json("list_queues", "name", "policy")``."""
        return json.loads(self.ctl(*args, "--formatter", "json", "--quiet").stdout or "null")

    def spawn(self) -> None:
        """Start the node's process (returns at once; ``wait_ready`` waits for it)."""
        if self.running:
            return
        if self._proc is not None:  # it ended by itself (a failed start, a crash): clear up first
            self._reap()
        self.session.ensure_epmd()
        self.pid_file.unlink(missing_ok=True)
        out: IO[bytes] = open(self.console, "ab")
        try:
            self._proc = subprocess.Popen([str(SERVER)], env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise HarnessError(f"cannot start {SERVER}: {exc}") from exc
        finally:
            out.close()
        self._pgid = self._proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the AMQP port answers and ``rabbitmqctl wait`` agrees; then set the expiry policy."""
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise HarnessError(f"RabbitMQ node {self.name} exited with status {code}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"RabbitMQ node {self.name}: port {self.port} not open after {timeout:.0f} s"
                                   f"\n{self.tail()}")
            time.sleep(0.05)
        remaining = max(5.0, deadline - time.monotonic())
        result = self.ctl("wait", "--timeout", str(int(remaining)), str(self.pid_file), timeout=remaining + 10,
                          check=False)
        if result.returncode != 0:
            raise HarnessError(f"rabbitmqctl wait on {self.name} failed: {result.stdout}{result.stderr}"
                               f"\n{self.tail()}")
        if not self.started:  # (a restart keeps it: policies live in the node's data, shared in a cluster)
            self.set_expiry_policy()
        self.started += 1

    def set_expiry_policy(self) -> None:
        name, pattern, definition = GEN_EXPIRE_POLICY
        self.ctl("set_policy", name, pattern, definition, "--apply-to", "queues")

    # --- users (each agent and console a user of its own, as docs/DEPLOYMENT.md sets them up) ---

    def add_user(self, user: str, password: str = "") -> None:
        """A user with ``password`` (read from stdin, as DEPLOYMENT.md does it: never on a command line);
        without one, a user that can log in only by its client certificate (EXTERNAL)."""
        argv = [str(CTL), "-n", self.name, "add_user", user]
        result = subprocess.run(argv, input=f"{password or secrets.token_hex(16)}\n", env=self.env,
                                capture_output=True, text=True, timeout=CTL_TIMEOUT)
        if result.returncode != 0:
            raise HarnessError(f"rabbitmqctl add_user {user} on {self.name} failed: {result.stdout}{result.stderr}")
        if not password:
            self.ctl("clear_password", user)

    def set_permissions(self, user: str, configure: str, write: str, read: str, vhost: str = "/") -> None:
        """Configure, write and read patterns on queues and exchanges (``set_permissions``)."""
        self.ctl("set_permissions", "-p", vhost, user, configure, write, read)

    def set_topic_permissions(self, user: str, write: str, read: str, exchange: str = "amq.topic",
                              vhost: str = "/") -> None:
        """Which routing keys ``user`` may publish (``write``) and bind (``read``) on a topic exchange."""
        self.ctl("set_topic_permissions", "-p", vhost, user, exchange, write, read)

    def start(self, timeout: float = 60.0) -> "RabbitNode":
        """Start the node and wait until it serves AMQP 1.0 (~5 s; the first start of a node ~6 s)."""
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: ``rabbitmqctl stop`` (AMQP clients see a clean close), SIGKILL after ``timeout``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            graceful = False
            if self.beam_pid is not None:
                try:
                    result = _run([str(CTL), "-n", self.name, "stop", str(self.pid_file)], self.env, timeout)
                    graceful = result.returncode == 0 and self._exited(timeout=10)
                except HarnessError:
                    pass
            if not graceful:
                self.kill()
                return
        self._reap()

    def kill(self) -> None:
        """SIGKILL the Erlang VM (a crash: clients see their connections drop), then reap what is left.

        The VM goes first, so that rabbitmq-server (sh, our child) reaps it and exits: an orphaned VM
        would be left to init (which does not reap on every machine)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            for pid in self._children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not self._exited(timeout=10):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reap()

    def _children(self) -> List[int]:
        """The shell's children: the Erlang VM (beam.smp)."""
        assert self._proc is not None
        return [pid for pid in _group_members(self._proc.pid)
                if (_proc_stat(pid) or ["", "0"])[1] == str(self._proc.pid)]

    def restart(self, timeout: float = 60.0) -> "RabbitNode":
        self.stop()
        return self.start(timeout)

    def _exited(self, timeout: float) -> bool:
        """Wait (without reaping) until rabbitmq-server's shell has exited."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                return True
            if info is not None:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _reap(self) -> None:
        """The shell has exited: give the VM's helpers (its process group) a moment, SIGKILL what is
        left, then reap the shell (its zombie keeps the group id from being reused until then)."""
        assert self._proc is not None
        pgid = self._proc.pid
        deadline = time.monotonic() + 2.0
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in _group_members(pgid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc.wait(10)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)


# --- a cluster ---------------------------------------------------------------------------------------


class RabbitCluster:
    """``size`` nodes (2: ``a`` and ``b``) clustered on this machine: the others joined to the first.

    Nodes stop and start individually (``cluster.a.stop()``, ``cluster.a.start()``); a restarted node
    rejoins by itself. RabbitMQ's rule: the node stopped last must start first, or the others wait for
    it (here at most 30 s, then fail).
    """

    def __init__(self, session: Optional[RabbitSession] = None, size: int = 2) -> None:
        if size < 2:
            raise ValueError("a cluster has at least 2 nodes")
        self.session = session or default_session()
        self.nodes = [RabbitNode(self.session) for _ in range(size)]

    @property
    def a(self) -> RabbitNode:
        return self.nodes[0]

    @property
    def b(self) -> RabbitNode:
        return self.nodes[1]

    @property
    def urls(self) -> List[str]:
        return [node.url for node in self.nodes]

    def spawn(self) -> None:
        """Start the nodes' processes side by side (``start`` waits for them and forms the cluster)."""
        for node in self.nodes:
            node.spawn()

    def start(self, timeout: float = 90.0) -> "RabbitCluster":
        """Start the nodes side by side (unless ``spawn`` did), then join each to the first (~3 s each)."""
        try:
            self.spawn()
            for node in self.nodes:
                node.wait_ready(timeout)
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", self.a.name)
                node.ctl("start_app")
            deadline = time.monotonic() + 30
            while set(self.running_nodes()) != {node.name for node in self.nodes}:
                if time.monotonic() > deadline:
                    raise HarnessError(f"cluster did not form: running {self.running_nodes()}")
                time.sleep(0.2)
        except BaseException:
            self.kill()
            raise
        return self

    def running_nodes(self, via: Optional[RabbitNode] = None) -> List[str]:
        """Names of the cluster's running nodes, as a running node (``via``, else the first) sees it."""
        asker = via or next((node for node in self.nodes if node.running), None)
        if asker is None:
            return []
        status = asker.ctl_json("cluster_status")
        running = status.get("running_nodes", []) if isinstance(status, dict) else []
        return sorted(str(name) for name in running)

    def stop(self) -> None:
        """Stop every node (the first last: it can then start first)."""
        for node in reversed(self.nodes):
            node.stop()

    def close(self) -> None:
        """Stop every node at once (quicker than ``stop``; for a cluster whose data are thrown away)."""
        threads = [threading.Thread(target=node.stop) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.kill()  # (whatever a failed stop left)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()
