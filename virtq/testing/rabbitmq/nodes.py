"""One private RabbitMQ node on loopback with the AMQP 1.0 plugin.

Its own directory, node name (``virtq-<pid>-<n>@localhost``), AMQP port and distribution port (free
loopback ports), ``enabled_plugins``, ``rabbitmq.conf``, data (mnesia), log and pid files.
``start()`` runs rabbitmq-server as a child of this process (never the system service), waits for
the AMQP port and ``rabbitmqctl wait``, and (the first time) sets the ``amq.gen-*`` expiry policy
every deployment needs (docs/DEPLOYMENT.md). ``stop()`` is ``rabbitmqctl stop`` (SIGKILL after a
deadline), ``kill()`` SIGKILLs the Erlang VM (a crash), ``restart()`` is both; data survive a
restart, so a clustered node rejoins.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from typing import IO, Dict, List, Optional
from urllib.parse import quote

from virtq.transport import TlsConfig

from ..ports import port_open
from ..processes import group_members, kill_all, log_tails, pid_alive, proc_stat
from .programs import CTL, CTL_TIMEOUT, PLUGIN, SERVER, SSL_AUTH_PLUGIN, HarnessError, run_program
from .sessions import RabbitSession, default_session

__all__ = ["GEN_EXPIRE_POLICY", "RabbitNode", "tls_config"]

GEN_EXPIRE_POLICY = ("gen-expire", r"^amq\.gen-", '{"expires":60000}')
"""(name, pattern, definition): what docs/DEPLOYMENT.md prescribes (the AMQP 1.0 plugin never deletes the queues
its /topic/ and /exchange/ receivers create; the policy lives in the node's data, and a cluster shares it)."""


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


class RabbitNode:
    """One private RabbitMQ node on loopback with the AMQP 1.0 plugin; see the module's docstring.

    ``tls=TlsConfig(cert, key, ca)`` listens for AMQP over TLS too (another loopback port, ``tls_port``;
    ``url_for(user, password, tls=True)`` names it ``localhost``, which the certificate must carry),
    verifying client certificates against the CA when clients offer one; ``external=True`` adds SASL
    EXTERNAL (the bundled rabbitmq_auth_mechanism_ssl plugin; the user is the certificate's CN).
    ``add_user``, ``set_permissions`` and ``set_topic_permissions`` are rabbitmqctl's.
    """

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
        return group_members(self._pgid) if self._pgid else []

    def tail(self, lines: int = 30) -> str:
        """The end of the node's console output and log (for error messages)."""
        return log_tails([self.console, self.dir / "log" / f"{self.name}.log"], self.name, lines)

    # --- control ---

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT,
            check: bool = True) -> "subprocess.CompletedProcess[str]":
        """Run ``rabbitmqctl -n <node> <args>`` (~0.3 s); HarnessError when it fails and ``check``."""
        argv = [str(CTL), "-n", self.name, *args]
        result = run_program(argv, self.env, timeout)
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
                    result = run_program([str(CTL), "-n", self.name, "stop", str(self.pid_file)], self.env, timeout)
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
            kill_all(self._children())
            if not self._exited(timeout=10):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reap()

    def _children(self) -> List[int]:
        """The shell's children: the Erlang VM (beam.smp)."""
        assert self._proc is not None
        return [pid for pid in group_members(self._proc.pid)
                if (proc_stat(pid) or ["", "0"])[1] == str(self._proc.pid)]

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
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_all(group_members(pgid))
        self._proc.wait(10)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
