"""A private Prometheus server on loopback: scrapes what a test serves, and answers PromQL about it.

For tests of the metrics virtq serves (``virtq-agent --metrics-listen``, ``virtq exporter``) against the
real consumer: Debian's ``prometheus`` (``bash scripts/install-prometheus.sh``; ``Unavailable`` when it is
missing). ``PrometheusServer()`` runs ``/usr/bin/prometheus`` as a child of this process (never the system
service) on a free loopback port, with its own directory (a generated ``prometheus.yml``, the TSDB, the
log), a 1 s scrape and rule-evaluation interval and ``--web.enable-lifecycle``: ``scrape_targets`` and
``load_rules`` rewrite the configuration and reload it, so that one server, shared by a session, serves
many tests (each giving its own job names). A new target is scraped within a few seconds of the reload
(service discovery hands targets to the scraper at most every 5 s).

Every server carries ``VIRTQ_PROMETHEUS_OWNER=<pid>`` in its environment; a new server SIGKILLs those whose
owning process is gone (a test run that was killed), and removes the temporary directories they used.
``promtool(...)`` runs promtool (``check rules``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, TypeVar

from .ports import free_port
from .processes import kill_all, log_tails, pid_alive
from .waiting import WaitTimeout, wait_until

__all__ = ["HarnessError", "OWNER_VAR", "PROMETHEUS", "PROMTOOL", "PrometheusServer", "Rule", "Sample", "Target",
           "Unavailable", "promtool", "reap_orphans"]

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
OWNER_VAR = "VIRTQ_PROMETHEUS_OWNER"
"""The pid of the process that started a server, in the server's environment (for ``reap_orphans``)."""
TEMP_PREFIX = "virtq-prometheus-"
"""Directories made for servers started without one: ``<TEMP_PREFIX><owner pid>-<random>``."""
HTTP_TIMEOUT = 10.0
R = TypeVar("R")

_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Straight to 127.0.0.1: never through an http_proxy of the environment."""


class HarnessError(Exception):
    """The private Prometheus could not be started, reconfigured or asked (a loud failure)."""


class Unavailable(HarnessError):
    """Prometheus cannot run on this machine: prometheus or promtool is not installed."""


@dataclass(frozen=True)
class Sample:
    """One element of a query's result: the series' labels (``__name__`` among them), value, time (s)."""

    labels: Dict[str, str]
    value: float
    timestamp: float

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


@dataclass(frozen=True)
class Target:
    """One active scrape target, as /api/v1/targets tells it: ``health`` is ``up``, ``down`` or ``unknown``
    (not scraped yet)."""

    job: str
    instance: str
    health: str
    last_error: str
    scrape_url: str
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One loaded rule, as /api/v1/rules tells it: ``kind`` is ``alerting`` or ``recording``; ``state`` (of an
    alerting rule) ``inactive``, ``pending`` or ``firing``; ``health`` ``ok``, ``err`` or ``unknown``."""

    group: str
    name: str
    kind: str
    health: str
    last_error: str
    state: str
    file: str


def find_programs() -> None:
    """Unavailable (with the fix) when prometheus or promtool is missing."""
    missing = [str(path) for path in (PROMETHEUS, PROMTOOL) if not os.access(path, os.X_OK)]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (Debian/Ubuntu: prometheus; virtq's repository: "
                          "`bash scripts/install-prometheus.sh`, which `make test` runs)")


def promtool(*args: str, timeout: float = 60.0) -> "subprocess.CompletedProcess[str]":
    """Run ``promtool <args>`` to its end, output captured (``promtool("check", "rules", path)``)."""
    find_programs()
    try:
        return subprocess.run([str(PROMTOOL), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"promtool {' '.join(args)} did not finish in {timeout:.0f} s") from exc


def _owner_of(pid: int) -> Optional[int]:
    """The OWNER_VAR of a process (None: not a harness's server, or not readable)."""
    try:
        variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    marker = f"{OWNER_VAR}=".encode()
    owner = next((item[len(marker):] for item in variables if item.startswith(marker)), b"")
    return int(owner) if owner.isdigit() else None


def reap_orphans() -> List[int]:
    """SIGKILL the servers whose owning process is gone, and remove the temporary directories such processes
    made; returns the servers' pids."""
    orphans = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            owner = _owner_of(int(entry.name))
            if owner is not None and not pid_alive(owner):
                orphans.append(int(entry.name))
    kill_all(orphans)
    for directory in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        owner_pid = directory.name[len(TEMP_PREFIX):].split("-")[0]
        if owner_pid.isdigit() and not pid_alive(int(owner_pid)):
            shutil.rmtree(directory, ignore_errors=True)
    return orphans


class PrometheusServer:
    """One private Prometheus on loopback; see the module's docstring. ``start()`` (or ``with``) runs it
    and waits until it is ready; ``close()`` stops it and removes a directory made here.

    ``base``: the directory of its configuration, TSDB and log (a new temporary one when not given; one
    that is given is left in place, with the log). ``interval``: scrape and evaluation interval, seconds.
    """

    def __init__(self, base: Optional[Path] = None, interval: float = 1.0) -> None:
        find_programs()
        self._own_base = base is None
        self.base = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")) if base is None else base
        self.base.mkdir(parents=True, exist_ok=True)
        self.interval = interval
        self.port = free_port()
        self.config_file = self.base / "prometheus.yml"
        self.log_file = self.base / "prometheus.log"
        self._jobs: Dict[str, List[str]] = {}
        self._rule_files: List[Path] = []
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()
        self._write_config()

    def __repr__(self) -> str:
        return f"<PrometheusServer {self.url} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> "PrometheusServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The end of the server's log (for error messages)."""
        return log_tails([self.log_file], "prometheus", lines)

    # --- lifecycle ---

    def start(self, timeout: float = 30.0) -> None:
        """Run the server (unless it runs) and wait until /-/ready answers."""
        if self.running:
            return
        reap_orphans()
        argv = [str(PROMETHEUS), f"--config.file={self.config_file}", f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h", "--log.level=warn"]
        env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
        env[OWNER_VAR] = str(os.getpid())
        log: IO[bytes] = open(self.log_file, "ab")
        try:
            self._proc = subprocess.Popen(argv, env=env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise HarnessError(f"cannot start {PROMETHEUS}: {exc}") from exc
        finally:
            log.close()
        atexit.register(self.close)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running or time.monotonic() > deadline:
                code = None if self._proc.poll() is None else self._proc.returncode
                self.stop()
                raise HarnessError(f"prometheus on {self.url} not ready in {timeout:.0f} s (exit {code}):\n"
                                   f"{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM; SIGKILL after 10 s); its data stay for a later ``start()``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        atexit.unregister(self.close)

    def close(self) -> None:
        """Stop the server; remove its directory when this harness made it."""
        self.stop()
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def _ready(self) -> bool:
        try:
            with _LOOPBACK.open(f"{self.url}/-/ready", timeout=1.0) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    # --- configuration ---

    def scrape_targets(self, job: str, targets: Sequence[str]) -> None:
        """Scrape ``targets`` (``host:port``, path /metrics) as job ``job`` from now on (none: drop the job);
        the other jobs stay as they are."""
        with self._lock:
            jobs = {name: hosts for name, hosts in self._jobs.items() if name != job}
            if targets:
                jobs[job] = list(targets)
            self._apply(jobs, self._rule_files)

    def load_rules(self, *paths: Path) -> None:
        """Evaluate the rule files ``paths`` too."""
        with self._lock:
            added = [Path(path).resolve() for path in paths]
            self._apply(self._jobs, self._rule_files + [path for path in added if path not in self._rule_files])

    def _apply(self, jobs: Dict[str, List[str]], rule_files: List[Path]) -> None:
        """Make this the configuration and, when the server runs, have it reload it; when Prometheus rejects
        it (HarnessError with its reason), the previous one is restored."""
        previous = self._jobs, self._rule_files
        self._jobs, self._rule_files = jobs, rule_files
        self._write_config()
        if not self.running:
            return
        try:
            self._request("/-/reload", method="POST")
        except HarnessError:
            self._jobs, self._rule_files = previous
            self._write_config()
            raise

    def _write_config(self) -> None:
        every = f"{self.interval:g}s"
        config = {  # JSON is YAML: no YAML library needed
            "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
            "rule_files": [str(path) for path in self._rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in sorted(self._jobs.items())],
        }
        temporary = self.config_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(config, indent=2) + "\n")
        temporary.replace(self.config_file)

    # --- the HTTP API ---

    def _request(self, path: str, params: Optional[Dict[str, str]] = None, method: str = "GET") -> bytes:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with _LOOPBACK.open(urllib.request.Request(url, method=method), timeout=HTTP_TIMEOUT) as reply:
                return bytes(reply.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace").strip()
            raise HarnessError(f"prometheus {method} {path} {params or ''}: HTTP {exc.code}: {body}") from exc
        except OSError as exc:
            raise HarnessError(f"prometheus {method} {path}: {exc}\n{self.tail()}") from exc

    def _api(self, path: str, params: Optional[Dict[str, str]] = None) -> Any:
        """The ``data`` of an /api/v1 answer (HarnessError with Prometheus's error when it failed)."""
        answer = json.loads(self._request(f"/api/v1/{path}", params))
        if answer.get("status") != "success":
            raise HarnessError(f"prometheus /api/v1/{path} {params or ''}: {answer.get('error')}")
        return answer["data"]

    def query(self, promql: str) -> List[Sample]:
        """The result of an instant query now: a vector's elements, a scalar as one unlabelled sample."""
        data = self._api("query", {"query": promql})
        kind, result = data["resultType"], data["result"]
        if kind in ("scalar", "string"):
            return [Sample({}, float(result[1]), float(result[0]))]
        if kind == "matrix":
            return [Sample(dict(item["metric"]), float(value), float(at))
                    for item in result for at, value in item["values"]]
        return [Sample(dict(item["metric"]), float(item["value"][1]), float(item["value"][0])) for item in result]

    def wait_for(self, promql: str, predicate: Callable[[List[Sample]], object] = bool,
                 timeout: float = 20.0) -> List[Sample]:
        """Query until ``predicate(samples)`` holds (by default: any sample at all), and return the samples;
        WaitTimeout with the last result otherwise."""
        return _until(lambda: self.query(promql), predicate, promql, timeout)

    def wait_for_rules(self, predicate: Callable[[List[Rule]], object], timeout: float = 20.0) -> List[Rule]:
        """Ask for the loaded rules until ``predicate(rules)`` holds (rules are evaluated every interval)."""
        return _until(self.rules, predicate, "the loaded rules", timeout)

    def targets(self, job: Optional[str] = None) -> List[Target]:
        """The active targets (of ``job`` only, if given), with their health."""
        found = []
        for item in self._api("targets", {"state": "active"})["activeTargets"]:
            labels = dict(item.get("labels", {}))
            target = Target(labels.get("job", item.get("scrapePool", "")), labels.get("instance", ""),
                            item.get("health", ""), item.get("lastError", ""), item.get("scrapeUrl", ""), labels)
            if job in (None, target.job):
                found.append(target)
        return found

    def rules(self) -> List[Rule]:
        """Every loaded rule, with its health and (alerting rules) state."""
        return [Rule(group["name"], rule["name"], rule["type"], rule.get("health", ""), rule.get("lastError", ""),
                     rule.get("state", ""), group.get("file", ""))
                for group in self._api("rules")["groups"] for rule in group["rules"]]


def _until(read: Callable[[], R], predicate: Callable[[R], object], what: str, timeout: float) -> R:
    """``read()`` until ``predicate`` holds of what it returned, and return that; WaitTimeout naming ``what``
    and the last reading otherwise."""
    last: List[R] = []

    def holds() -> bool:
        last[:] = [read()]
        return bool(predicate(last[0]))

    try:
        wait_until(holds, timeout=timeout, interval=0.2)
    except WaitTimeout:
        raise WaitTimeout(f"{what}: the condition did not hold within {timeout:g} s; last: {last[0]!r}") from None
    return last[0]
