"""The agent's metrics for Prometheus: ``virtq-agent --metrics-listen HOST:PORT`` (docs/OPERATIONS.md, Metrics).

Two kinds of values. What the agent *is* now — up, libvirt and transport connected, stuck calls, epoch, objects
per class — is read from the running agent at each scrape and never kept, so it cannot go stale. What the agent
*did* is counted by hooks where it happens: a request from its arrival (the transport's deliver) to its reply
handed to the transport (the publisher's send, where pushes are counted too), sampler passes in the sampler's
loop. The hooks count into plain Python values under one lock: a few microseconds, and they never
raise into those paths (a failing hook logs a rate-limited warning and is forgotten).

prometheus_client is imported only when the endpoint is served (and in ``collect``, which only a served
registry calls): every Agent has its metrics, but one embedded without the [agent] extra — the test kit's fake
hypervisor in a console project — runs without prometheus_client. The names are fixed by issue 13's metrics
contract; method labels are the schema's method names (anything else is ``_unknown``), so no peer can make a
series per request, and no label carries a domain name.
"""

from __future__ import annotations

import bisect
import collections
import functools
import logging
import threading
import time
from typing import (TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterator, List, Mapping, Optional, Protocol,
                    Sequence, Tuple, TypeVar, cast)

from virtq import __version__
from virtq.logs import RateLimited
from virtq.schema import errors
from virtq.schema.codec import (CONTENT, OPCODE, PARTIAL, AgentHeartbeat, AgentLocateRequest, AgentLocateResponse,
                                DataIndication, EventIndication, ExceptionResponse, MethodRequest, MethodResponse,
                                QueryRequest, QueryResponse, StatsIndication, WireMessage)
from virtq.schema.model import Schema
from virtq.transport import DirectListener, Transport, encoded_size, is_loopback

from .health import CallTracker
from .hypervisor import Hypervisor
from .liveness import Liveness
from .reconnector import Reconnector
from .registry import Registry

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)
limited = RateLimited(log)

QUERY, LOCATE, UNKNOWN = "_query", "_locate", "_unknown"
"""Method labels besides the schema's method names; ``_unknown``: a method the schema does not declare, another
opcode, a message that could not be decoded."""
CONTENTS = ("data", "stats", "events", "heartbeat")
CLASSES = ("Node", "Domain", "Pool", "Volume", "DomainSnapshot", "DomainCheckpoint")

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; answers from the registry take well under a millisecond, libvirt calls up to the call timeout (30 s)."""
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; a pass slower than its interval (10 s, 60 s by default) is what an alert looks for."""
MAX_TIMED = 10_000
"""Requests whose start is remembered (a request never answered leaves one behind: the oldest go first)."""

_OUTCOME_BY_CODE = {errors.AccessDeniedError.code: "denied", errors.STATUS_FORBIDDEN: "denied",
                    errors.LibvirtTimeoutError.code: "timeout", errors.STATUS_BUSY: "refused",
                    errors.STATUS_INVALID_PARAMETER: "refused"}
_REPLIES = frozenset({AgentLocateResponse.OPCODE, QueryResponse.OPCODE, MethodResponse.OPCODE,
                      ExceptionResponse.OPCODE})
_CONTENT_BY_TYPE = {"_data": "data", StatsIndication.CONTENT_TYPE: "stats", EventIndication.CONTENT_TYPE: "events"}

Key = Tuple[Optional[str], Optional[str]]
"""A request as it and its reply both name it: the reply address and the correlation id."""
F = TypeVar("F", bound=Callable[..., None])


class Observed(Protocol):
    """What the scrape reads of a running agent (an Agent)."""

    name: str
    instance: str
    schema: Schema
    epoch: int
    stuck_after: float
    hypervisor: Hypervisor
    tracker: CallTracker
    registry: Registry
    transport: Transport
    reconnector: Reconnector
    liveness: Liveness


def hook(method: F) -> F:
    """A hook never raises into the path that calls it."""
    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - counting must never break what is counted
            limited.warning(f"hook {method.__name__}", "metrics: %s failed: %s: %s", method.__name__,
                            type(exc).__name__, exc)
    return cast(F, guarded)


def method_of(wire: WireMessage, methods: FrozenSet[str]) -> str:
    """A request's method label, read from its wire form without decoding it (on the transport's thread)."""
    opcode = wire.properties.get(OPCODE) if isinstance(wire.properties, Mapping) else None
    if opcode == MethodRequest.OPCODE and isinstance(wire.body, Mapping):
        name = wire.body.get("_method_name")
        return name if isinstance(name, str) and name in methods else UNKNOWN
    return {QueryRequest.OPCODE: QUERY, AgentLocateRequest.OPCODE: LOCATE}.get(str(opcode), UNKNOWN)


def outcome_of(reply: WireMessage, method: str) -> str:
    """ok, or what an ``_exception`` reply's code says: denied (policy), timeout (libvirt did not answer in
    time), refused (object busy or too many calls, a request too large or with arguments the schema refuses,
    one that could not be read), error (libvirt's or any other error)."""
    if reply.properties.get(OPCODE) != ExceptionResponse.OPCODE:
        return "ok"
    code = reply.body["_values"]["error_code"]
    if code == errors.STATUS_EXCEPTION and method == UNKNOWN:
        return "refused"  # (what the agent answers a message it could not decode with)
    return _OUTCOME_BY_CODE.get(code, "error")


def request_key(wire: WireMessage) -> Key:
    """A request as its reply names it too (address and correlation id)."""
    return wire.reply_to, None if wire.correlation_id is None else str(wire.correlation_id)


def content_of(wire: WireMessage) -> Optional[str]:
    """What a sent message pushes (data, stats, events, heartbeat); None for replies."""
    opcode = wire.properties.get(OPCODE)
    if opcode == AgentHeartbeat.OPCODE:
        return "heartbeat"
    if opcode == DataIndication.OPCODE:
        return _CONTENT_BY_TYPE.get(str(wire.properties.get(CONTENT, "_data")))
    return None


class Histogram:
    """Observations per label value in fixed buckets; the caller holds the lock."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts: Dict[str, List[int]] = {}
        self.sums: Dict[str, float] = {}

    def observe(self, label: str, value: float) -> None:
        counts = self.counts.get(label)
        if counts is None:
            counts = self.counts[label] = [0] * (len(self.bounds) + 1)
        counts[bisect.bisect_left(self.bounds, value)] += 1  # (Prometheus' buckets include their bound)
        self.sums[label] = self.sums.get(label, 0.0) + value

    def cumulative(self) -> Dict[str, Tuple[List[Tuple[str, float]], float]]:
        """Per label: Prometheus' cumulative buckets (``le`` → count, ending with ``+Inf``) and the sum."""
        snapshot = {}
        for label, counts in self.counts.items():
            total, buckets = 0, []
            for bound, count in zip([*map(str, self.bounds), "+Inf"], counts):
                total += count
                buckets.append((bound, float(total)))
            snapshot[label] = buckets, self.sums[label]
        return snapshot


class AgentMetrics:
    """One agent's metrics: hooks for its paths, a collector for a scrape, the HTTP endpoint (``serve``).

    ``agent`` None: the hooks count and nothing live is read (parts built on their own, in tests)."""

    def __init__(self, agent: Optional[Observed] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._agent = agent
        self._methods = frozenset(m for c in agent.schema.classes.values() for m in c.methods) if agent else frozenset()
        self.clock = clock
        self._lock = threading.Lock()
        self._started: Dict[Key, Tuple[float, str]] = {}  # request -> when it arrived, its method label
        self._requests: Dict[Tuple[str, str], int] = {}
        self._durations = Histogram(REQUEST_BUCKETS)
        self._passes = Histogram(PASS_BUCKETS)
        self._events = 0
        self._skipped = 0
        self._pushes = dict.fromkeys(CONTENTS, 0)
        self._bytes = dict.fromkeys(CONTENTS, 0)
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self.registry: Optional[CollectorRegistry] = None
        """The private registry served (None until ``serve``)."""
        self.address: Optional[Tuple[str, int]] = None
        """Where the endpoint listens (the port picked when 0 was asked), while it does."""

    # --- hooks (called on the agent's paths: cheap, never raise) ------------------------------------

    def timing(self, deliver: Callable[[WireMessage], None]) -> Callable[[WireMessage], None]:
        """``deliver`` (the agent's receiving end) noting when each request arrived: a request's duration runs
        from there to its reply handed to the transport (:meth:`sent`)."""
        def timed(wire: WireMessage) -> None:
            self.received(wire)
            deliver(wire)
        return timed

    @hook
    def received(self, wire: WireMessage) -> None:
        """A request arrived (on the transport's thread)."""
        started = self.clock(), method_of(wire, self._methods)
        with self._lock:
            self._started[request_key(wire)] = started
            if len(self._started) > MAX_TIMED:
                del self._started[next(iter(self._started))]

    @hook
    def sent(self, wire: WireMessage) -> None:
        """The transport took a message: a reply ends its request (a query's at its last batch); a push is
        counted by content (bytes: encoded here, only while serving)."""
        opcode = wire.properties.get(OPCODE)
        if opcode in _REPLIES:
            if opcode != QueryResponse.OPCODE or not wire.properties.get(PARTIAL):
                self._answered(wire)
            return
        content = content_of(wire)
        if content is None:
            return
        size = encoded_size(wire) if self._server is not None else 0
        events = len(wire.body) if content == "events" and isinstance(wire.body, (list, tuple)) else 0
        with self._lock:
            self._pushes[content] += 1
            self._bytes[content] += size
            self._events += events

    def _answered(self, reply: WireMessage) -> None:
        now = self.clock()
        with self._lock:
            started = self._started.pop((reply.address, request_key(reply)[1]), None)
        if started is None:
            return  # (not a request that came through the transport, or forgotten: see MAX_TIMED)
        began, method = started
        outcome = outcome_of(reply, method)
        with self._lock:
            self._requests[(method, outcome)] = self._requests.get((method, outcome), 0) + 1
            self._durations.observe(method, now - began)

    @hook
    def sampled(self, kind: str, seconds: float) -> None:
        """A periodic statistics pass of ``kind`` (domains, slow) took ``seconds``."""
        with self._lock:
            self._passes.observe(kind, seconds)

    @hook
    def skipped(self, count: int) -> None:
        """Objects a pass did not get values of (past its deadline, or libvirt failed)."""
        if count:
            with self._lock:
                self._skipped += count

    def sampler_pass(self, kind: str) -> "PassTimer":
        """``with metrics.sampler_pass("domains"): ...`` times one pass (its exceptions pass through)."""
        return PassTimer(self, kind)

    # --- the endpoint ---------------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> Tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` (0: a free port) from a private registry; returns the address.
        Raises OSError when it cannot listen there."""
        from prometheus_client import PlatformCollector, ProcessCollector, start_http_server
        from prometheus_client.registry import CollectorRegistry

        if self._server is not None:
            raise RuntimeError(f"metrics are served already on {self.url}")
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(cast("Collector", self))  # a collector by its collect(); prometheus_client stays lazy
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.registry = registry
        self.address = host, int(self._server.server_address[1])
        if not is_loopback(self.url):
            log.warning("metrics on %s are not authenticated: whoever reaches that address can read them (they "
                        "carry no secrets and no domain names: counts, states, this agent's name and libvirt URI)",
                        self.url)
        log.info("metrics on %s", self.url)
        return self.address

    @property
    def url(self) -> str:
        if self.address is None:
            return ""
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (the port is free again); nothing if not serving."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        self.address = None

    # --- a scrape -------------------------------------------------------------------------------------

    def describe(self) -> List["Metric"]:
        return []  # (no names to check at registration: they are the contract's)

    def collect(self) -> Iterator["Metric"]:
        """Every series of the contract: the agent's state read now, then what the hooks counted."""
        if self._agent is not None:
            try:
                yield from list(self._state(self._agent))
            except Exception as exc:  # noqa: BLE001 - a scrape still gets the counters
                limited.warning("state", "metrics: reading the agent's state failed: %s: %s", type(exc).__name__, exc)
        yield from self._counted()

    def _state(self, agent: Observed) -> Iterator["Metric"]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        info = GaugeMetricFamily("virtq_agent_info", "who the agent is (always 1)",
                                 labels=["agent", "instance", "version", "libvirt_uri"])
        info.add_metric([agent.name, agent.instance, __version__, agent.hypervisor.uri], 1)
        yield info
        yield GaugeMetricFamily("virtq_agent_up", "1 while the agent serves (its heartbeats run), 0 before it "
                                "starts and while it stops", value=1 if agent.liveness.alive else 0)
        connected = agent.reconnector.attributes()["libvirt_connected"]
        yield GaugeMetricFamily("virtq_agent_libvirt_connected", "1 while the libvirt connection is open (as "
                                "heartbeats' libvirt_connected)", value=1 if connected else 0)
        yield GaugeMetricFamily("virtq_agent_libvirt_stuck_calls", "libvirt calls running longer than "
                                "--stuck-after", value=agent.tracker.health(agent.stuck_after).stuck)
        yield GaugeMetricFamily("virtq_agent_transport_connected", "1 while connected to a broker (broker mode) or "
                                "listening (direct mode)", value=1 if agent.transport.connected else 0)
        if isinstance(agent.transport, DirectListener):
            acceptor = agent.transport.acceptor
            yield GaugeMetricFamily("virtq_agent_consoles_connected", "open AMQP connections to the listener",
                                    value=acceptor.held if acceptor is not None else 0)
        yield GaugeMetricFamily("virtq_agent_epoch", "the agent's epoch (moves at every start)", value=agent.epoch)
        objects = GaugeMetricFamily("virtq_agent_objects", "objects served, per class", labels=["class"])
        counts = collections.Counter(e.class_name for e in agent.registry.entries())
        for class_name in CLASSES:
            objects.add_metric([class_name], counts[class_name])
        yield objects
        yield CounterMetricFamily("virtq_agent_libvirt_reconnects", "times the libvirt connection was made again "
                                  "after a loss", value=agent.reconnector.reconnects)

    def _counted(self) -> Iterator["Metric"]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        with self._lock:
            requests, events, skipped = dict(self._requests), self._events, self._skipped
            pushes, sizes = dict(self._pushes), dict(self._bytes)
            durations, passes = self._durations.cumulative(), self._passes.cumulative()
        family = CounterMetricFamily("virtq_agent_requests", "requests answered, by method and outcome (ok, error, "
                                     "denied, refused, timeout)", labels=["method", "outcome"])
        for (method, outcome), count in sorted(requests.items()):
            family.add_metric([method, outcome], count)
        yield family
        for name, text, label, observed in (
                ("virtq_agent_request_duration_seconds", "from a request's arrival to its reply handed to the "
                 "transport", "method", durations),
                ("virtq_agent_sampler_pass_duration_seconds", "periodic statistics passes (domains; slow: node, "
                 "pools, volumes)", "kind", passes)):
            histogram = HistogramMetricFamily(name, text, labels=[label])
            for value, (buckets, total) in sorted(observed.items()):
                histogram.add_metric([value], buckets, total)
            yield histogram
        yield CounterMetricFamily("virtq_agent_events", "libvirt events pushed to consoles", value=events)
        yield CounterMetricFamily("virtq_agent_sampler_skipped", "objects a statistics pass got no values of "
                                  "(past its deadline, or libvirt failed)", value=skipped)
        for name, text, counts in (("virtq_agent_pushes", "messages pushed, by content", pushes),
                                   ("virtq_agent_push_bytes", "encoded bytes pushed, by content (once per "
                                    "message, however many consoles get it)", sizes)):
            family = CounterMetricFamily(name, text, labels=["content"])
            for content in CONTENTS:
                family.add_metric([content], counts[content])
            yield family


class PassTimer:
    """Times one sampler pass for :meth:`AgentMetrics.sampler_pass`."""

    def __init__(self, metrics: AgentMetrics, kind: str) -> None:
        self.metrics = metrics
        self.kind = kind
        self.began = 0.0

    def __enter__(self) -> None:
        self.began = self.metrics.clock()

    def __exit__(self, *exc: object) -> None:
        self.metrics.sampled(self.kind, self.metrics.clock() - self.began)


def listen_address(value: str) -> Tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets) as (host, port); ValueError when it is not one."""
    host, colon, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets: which colon ends it?
    if not colon or not host or any(c in host for c in "[]/@ ") or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9410 or [::1]:9410; port 0 picks a free one)")
    return host, int(port)
