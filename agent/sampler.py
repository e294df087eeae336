"""Statistics sampling: cheap libvirt calls on a schedule, pushed only when values changed.

Every ``interval`` seconds one pass over all domains — virConnectGetAllDomainStats (no-wait)
where the hypervisor supports it, virDomainGetInfo per domain otherwise — and one
``_stats`` indication with just the values that changed. Pools, volumes and the node
are sampled every ``slow_interval``. Per-object calls run on a small pool with a
deadline: a domain that does not answer in time is skipped and reported, and is not
asked again until its stuck call returns, so it never delays the others. The bulk call has
the same deadline (and is not made again while one is stuck past it). Passes run side by side —
a sample after a call or an event never waits for a periodic pass — and each object's values are
applied in the order the passes asked: a pass that began before a call cannot overwrite what the
sample after the call read (a sequence number per pass, as the registry's syncs have).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from virtq.schema.codec import StatsBatch, now_ns
from virtq.schema.model import SchemaId

from .hypervisor import DOMAIN_INFO_FIELDS, Hypervisor, HypervisorError
from .metrics import AgentMetrics
from .registry import Registry

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[StatsBatch]], None]

# class -> (libvirt function giving its statistics, field names in libvirt's order)
SOURCES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "Domain": ("virDomainGetInfo", DOMAIN_INFO_FIELDS),
    "Pool": ("virStoragePoolGetInfo", ("state", "capacity", "allocation", "available")),
    "Volume": ("virStorageVolGetInfo", ("type", "capacity", "allocation")),
    "Node": ("virNodeGetFreeMemory", ("freeMemory",)),
}


@dataclass(frozen=True)
class SampleReport:
    """What one pass did, for logs, tests and benchmarks."""

    class_name: str
    sampled: int
    changed: int
    skipped: Tuple[str, ...]  # object names that did not answer in time
    libvirt_calls: int


class Sampler:
    def __init__(self, registry: Registry, hypervisor: Hypervisor, publish: Publish, *, interval: float = 10.0,
                 slow_interval: float = 60.0, timeout: Optional[float] = None, workers: int = 4,
                 metrics: Optional[AgentMetrics] = None) -> None:
        self._registry = registry
        self._hv = hypervisor
        self._publish = publish
        self.interval = interval
        self.slow_interval = slow_interval
        self.timeout = timeout if timeout is not None else max(0.1, interval / 2)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="virtq-sample")
        self._last: Dict[str, Dict[str, Any]] = {}  # object name -> values last pushed
        self._lock = threading.Lock()
        self._stuck: Set[str] = set()
        self._bulk_stuck = False  # a bulk call is in flight past its deadline: not asked again until it returns
        self._passes = itertools.count(1)
        self._applied: Dict[str, int] = {}  # object name -> the newest pass whose values were applied to it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="virtq-sampler", daemon=True)
        self.reports: List[SampleReport] = []  # the latest pass per class
        self.libvirt_calls = 0
        self.metrics = metrics or AgentMetrics()  # (times the periodic passes, counts what they skip)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def alive(self) -> bool:
        """The periodic passes' thread runs (the systemd watchdog asks: agent/watchdog.py)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        next_slow = 0.0
        elapsed = 0.0
        while not self._stop.is_set():
            try:
                with self.metrics.sampler_pass("domains"):
                    self.sample("Domain")
                if elapsed >= next_slow:
                    with self.metrics.sampler_pass("slow"):
                        for class_name in ("Node", "Pool", "Volume"):
                            self.sample(class_name)
                    next_slow = elapsed + self.slow_interval
            except Exception:  # noqa: BLE001 - the sampler must keep sampling
                log.exception("statistics pass failed")
            self._stop.wait(self.interval)
            elapsed += self.interval

    # --- sampling --------------------------------------------------------------------------------

    def resend(self, names: Iterable[str]) -> List[StatsBatch]:
        """Batches with every known value of these objects (after values could not be delivered)."""
        with self._lock:
            known = {n: dict(self._last[n]) for n in names if n in self._last}
        batches = []
        for class_name, (_, fields) in SOURCES.items():
            rows = sorted((n, v) for n, v in known.items() if n.startswith(class_name + ":"))
            if rows:
                columns = {f: [v.get(f) for _, v in rows] for f in fields}
                batches.append(StatsBatch(self._schema_id(class_name), self._registry.epoch, now_ns(),
                                          tuple(n.partition(":")[2] for n, _ in rows), columns))
        return batches

    def latest(self, name: str) -> Optional[Mapping[str, Any]]:
        """The values last pushed for an object (query answers include them)."""
        with self._lock:
            values = self._last.get(name)
            return dict(values) if values is not None else None

    def sample(self, class_name: str, keys: Optional[Sequence[str]] = None) -> SampleReport:
        """Sample objects of one class (all, or ``keys``) and publish what changed.

        Takes its pass number before asking libvirt: a sample after a method call, which begins after
        the call returned, is never overwritten by a pass that began earlier and ends later.
        """
        with self._lock:
            number = next(self._passes)
        return self._sample(class_name, keys, number)

    def _sample(self, class_name: str, keys: Optional[Sequence[str]], number: int) -> SampleReport:
        entries = [e for e in self._registry.entries(class_name) if keys is None or e.key in keys]
        values: Dict[str, Dict[str, Any]] = {}
        calls = 0
        if class_name == "Domain" and (keys is None or entries):
            bulk, made = self._bulk(None if keys is None else [e.key for e in entries])
            calls += made
            values.update({f"Domain:{uuid}": info for uuid, info in bulk.items()})
        missing = [e for e in entries if f"{class_name}:{e.key}" not in values]
        fetched, skipped, made = self._fetch_each(class_name, [e.key for e in missing])
        values.update(fetched)
        calls += made
        live = {f"{class_name}:{e.key}" for e in entries}
        batch = self._diff(class_name, {n: v for n, v in values.items() if n in live},
                           forget=live if keys is None else None, number=number)
        with self._lock:
            self.libvirt_calls += calls
        self.metrics.skipped(len(live.difference(values)))
        if skipped:
            log.warning("%d %s(s) did not answer within %.1fs and were skipped: %s", len(skipped), class_name,
                        self.timeout, ", ".join(sorted(skipped)[:5]))
        if batch is not None:
            self._publish([batch])
        report = SampleReport(class_name, len(entries), len(batch.keys) if batch else 0, tuple(sorted(skipped)),
                              calls)
        self.reports = [r for r in self.reports if r.class_name != class_name] + [report]
        return report

    def _bulk(self, keys: Optional[List[str]]) -> Tuple[Dict[str, Dict[str, int]], int]:
        """The bulk call, with the pass's deadline; none while an earlier one is stuck past its own."""
        with self._lock:
            if self._bulk_stuck:
                return {}, 0
        # Keyed samples (after events and calls) read the same counters as the periodic pass.
        call: Callable[[], Dict[str, Dict[str, int]]] = self._hv.bulk_domain_info if keys is None else \
            functools.partial(self._hv.bulk_domain_info_of, keys)
        try:
            future = self._pool.submit(call)
        except RuntimeError:  # stopped
            return {}, 0
        try:
            return future.result(timeout=self.timeout), 1
        except concurrent.futures.CancelledError:  # the sampler stopped before the call began
            return {}, 0
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._bulk_stuck = True
            future.add_done_callback(self._bulk_returned)  # (at once if it returned meanwhile)
            log.warning("bulk domain statistics did not answer within %.1fs: asking domains one by one",
                        self.timeout)
        except HypervisorError as exc:
            log.warning("bulk domain statistics failed: %s", exc.message)
        return {}, 1

    def _bulk_returned(self, _future: object = None) -> None:
        with self._lock:
            self._bulk_stuck = False

    def _fetch_each(self, class_name: str, keys: List[str]) -> Tuple[Dict[str, Dict[str, Any]], List[str], int]:
        function, fields = SOURCES[class_name]
        futures: Dict[concurrent.futures.Future[Any], str] = {}
        skipped: List[str] = []
        for key in keys:
            name = f"{class_name}:{key}"
            with self._lock:
                if name in self._stuck:
                    skipped.append(name)
                    continue
            target = None if class_name == "Node" else key
            try:
                future = self._pool.submit(self._hv.invoke, class_name, target, function, [])
            except RuntimeError:  # stopped meanwhile (a late call returning after the agent stopped)
                break
            futures[future] = name
        done, not_done = _settled(futures, self.timeout)
        for future in not_done:  # stuck past the deadline: not asked again until its call returns
            with self._lock:
                self._stuck.add(futures[future])
            future.add_done_callback(functools.partial(self._unstick, futures[future]))  # (at once if done now)
        skipped += [futures[f] for f in not_done]
        values: Dict[str, Dict[str, Any]] = {}
        for future in done:
            name = futures[future]
            if future.cancelled():  # the sampler stopped before the call began
                continue
            try:
                result = future.result()
            except HypervisorError as exc:  # vanished meanwhile, or a libvirt failure: the reconcile decides
                log.debug("%s of %s failed: %s", function, name, exc.message)
                continue
            row = [result] if len(fields) == 1 else list(result)
            values[name] = {f: int(v) for f, v in zip(fields, row)}
        return values, skipped, len(futures)

    def _unstick(self, name: str, _future: object = None) -> None:
        with self._lock:
            self._stuck.discard(name)

    def _diff(self, class_name: str, values: Dict[str, Dict[str, Any]],
              forget: Optional[Set[str]], number: int) -> Optional[StatsBatch]:
        """Keep what changed since the last push; None when nothing did."""
        changed: List[Tuple[str, Dict[str, Any]]] = []
        with self._lock:
            if forget is not None:  # (not what a newer pass has seen: it may be newer than this pass's list)
                for name in [n for n in self._last if n.startswith(class_name + ":") and n not in forget
                             and self._applied.get(n, 0) < number]:
                    del self._last[name]
                    self._applied.pop(name, None)
            for name, new in sorted(values.items()):
                if self._applied.get(name, 0) > number:
                    continue  # a pass that began later has applied its values already
                self._applied[name] = number
                old = self._last.get(name, {})
                delta = {f: v for f, v in new.items() if old.get(f) != v}
                if delta:
                    changed.append((name, delta))
                    self._last[name] = {**old, **new}
        if not changed:
            return None
        fields = [f for f in SOURCES[class_name][1] if any(f in delta for _, delta in changed)]
        columns = {f: [delta.get(f) for _, delta in changed] for f in fields}
        keys = tuple(name.partition(":")[2] for name, _ in changed)
        return StatsBatch(self._schema_id(class_name), self._registry.epoch, now_ns(), keys, columns)

    def _schema_id(self, class_name: str) -> SchemaId:
        return self._registry.schema.cls(class_name).schema_id


def _settled(futures: Iterable["concurrent.futures.Future[Any]"], timeout: float
             ) -> Tuple[List["concurrent.futures.Future[Any]"], List["concurrent.futures.Future[Any]"]]:
    """(done, not done) after waiting at most ``timeout`` for all. Not ``concurrent.futures.wait``: a future the
    stop cancels does not wake it, and a late call's sample then held the agent's stop for the whole deadline."""
    deadline = time.monotonic() + timeout
    pending = list(futures)
    for future in pending:
        try:
            future.exception(max(0.0, deadline - time.monotonic()))
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            pass
    done = [f for f in pending if f.done()]
    return done, [f for f in pending if f not in done]
