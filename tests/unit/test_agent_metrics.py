"""The agent's metrics (agent/metrics.py): hooks that never break what they count, what a scrape reads, the
``--metrics-listen`` option (issue 13 item 3). Over HTTP with libvirt's test driver: tests/integration."""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Tuple

import click
import pytest
from click.testing import CliRunner

from virtq.agent import Agent
from virtq.agent import main as agent_main
from virtq.agent import metrics as metrics_module
from virtq.agent.metrics import AgentMetrics, Histogram, listen_address, method_of, outcome_of
from virtq.agent.policy import Policy
from virtq.agent.reload import Reloader
from virtq.logs import RateLimited
from virtq.schema import default_schema, errors
from virtq.schema.codec import (AgentLocateRequest, ExceptionResponse, Message, MethodRequest, MethodResponse,
                                ObjectId, QueryRequest, QueryResponse, WireMessage)
from virtq.testing import FakeHypervisor, wait_until
from virtq.transport import MemoryBus

from .qmf_client import Client

SCHEMA = default_schema()
METHODS = frozenset(m for c in SCHEMA.classes.values() for m in c.methods)
Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, virtq_bus: MemoryBus) -> Iterator[Client]:
    """An agent of 150 domains (a query of them comes in two batches) and a client, over the memory bus."""
    monkeypatch.setattr(metrics_module, "limited", RateLimited(metrics_module.log))  # a fresh window per test
    with Agent(SCHEMA, FakeHypervisor.with_running_domains(150), virtq_bus.agent_transport(), heartbeat=60,
               interval=60, slow_interval=60, state_dir=tmp_path, policy=Policy.everyone(SCHEMA, "admin", "t")) as agent:
        yield Client(virtq_bus.console_transport(), agent)


def collected(metrics: AgentMetrics) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value for family in metrics.collect() for s in family.samples}


def request(message: Message, cid: str = "c1") -> WireMessage:
    return dataclasses.replace(message, correlation_id=cid, reply_to="reply-here").encode("qmf.default.direct/a")


def reply(message: Message, cid: str = "c1") -> WireMessage:
    return dataclasses.replace(message, correlation_id=cid).encode("reply-here")


def domain_call(name: str) -> MethodRequest:
    return MethodRequest(object_id=ObjectId("Domain:x"), method_name=name)


# --- hooks ----------------------------------------------------------------------------------------------------

def test_a_failing_hook_never_breaks_the_request_it_counts(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    def broken_clock() -> float:
        raise OSError("clock gone")

    client.agent.metrics.clock = broken_clock  # every request hook fails from here on
    with caplog.at_level(logging.WARNING, logger="virtq.agent.metrics"):
        (answer,) = client.request(QueryRequest(what="OBJECT_ID", schema_id=None))[-1:]
    assert isinstance(answer, QueryResponse) and len(answer.items) > 0
    assert any("metrics: received failed: OSError: clock gone" in r.getMessage() for r in caplog.records)
    assert not any(name == "virtq_agent_requests_total" for name, _ in collected(client.agent.metrics))


def test_an_unreadable_reply_is_still_sent(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    """A reply the hook cannot read (an _exception without its map: only a bug would send one) goes out."""
    metrics = client.agent.metrics
    metrics.received(request(domain_call("suspend")))
    broken = WireMessage("reply-here", {"qmf.opcode": "_exception"}, None, "", "c1")
    with caplog.at_level(logging.WARNING, logger="virtq.agent.metrics"):
        assert client.agent.publisher.send(broken)
    assert any("metrics: sent failed: TypeError" in r.getMessage() for r in caplog.records)


def test_a_scrape_whose_state_read_fails_still_has_the_counters(client: Client, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def failing(class_name: object = None) -> List[object]:
        raise RuntimeError("registry in pieces")

    monkeypatch.setattr(client.agent.registry, "entries", failing)  # (no real registry fails like this)
    with caplog.at_level(logging.WARNING, logger="virtq.agent.metrics"):
        samples = collected(client.agent.metrics)
    assert ("virtq_agent_events_total", frozenset()) in samples
    assert ("virtq_agent_epoch", frozenset()) not in samples
    assert any("reading the agent's state failed: RuntimeError" in r.getMessage() for r in caplog.records)


def test_a_query_in_batches_counts_once_with_its_duration(client: Client) -> None:
    answers = client.request(QueryRequest(what="OBJECT", schema_id=SCHEMA.cls("Domain").schema_id))
    assert len(answers) == 2  # 150 domains: two batches
    samples = collected(client.agent.metrics)
    assert samples[("virtq_agent_requests_total", frozenset({("method", "_query"), ("outcome", "ok")}))] == 1
    assert samples[("virtq_agent_request_duration_seconds_count", frozenset({("method", "_query")}))] == 1


def test_a_call_past_its_deadline_is_a_timeout_one_behind_it_refused_and_the_stuck_call_shows(
        tmp_path: Path, virtq_bus: MemoryBus) -> None:
    hv = FakeHypervisor.with_running_domains(1)
    uuid = hv.list_domains()[0].uuid
    hv.gates.close("virDomainSuspend", uuid)  # libvirt does not answer this one
    try:
        with Agent(SCHEMA, hv, virtq_bus.agent_transport(), heartbeat=60, interval=60, slow_interval=60,
                   state_dir=tmp_path, call_timeout=0.3, stuck_after=0.05, object_queue=0,
                   policy=Policy.everyone(SCHEMA, "admin", "t")) as agent:
            client = Client(virtq_bus.console_transport(), agent)
            late = client.call(uuid, "suspend")
            hv.gates.entered[("virDomainSuspend", uuid)].wait(5)
            (busy,) = client.answer(client.call(uuid, "resume"))
            (timeout,) = client.answer(late)
            assert isinstance(busy, ExceptionResponse) and busy.error_code == errors.STATUS_BUSY
            assert isinstance(timeout, ExceptionResponse) and timeout.error_code == errors.LibvirtTimeoutError.code
            samples = collected(agent.metrics)
            hv.gates.open_all()  # (before the agent stops: it waits for calls in flight)
    finally:
        hv.gates.open_all()
    assert samples[("virtq_agent_requests_total", frozenset({("method", "suspend"), ("outcome", "timeout")}))] == 1
    assert samples[("virtq_agent_requests_total", frozenset({("method", "resume"), ("outcome", "refused")}))] == 1
    assert samples[("virtq_agent_libvirt_stuck_calls", frozenset())] == 1


def test_a_lost_libvirt_connection_and_its_reconnect_show(client: Client) -> None:
    hv = client.agent.hypervisor
    assert isinstance(hv, FakeHypervisor)
    hv.disconnect("eof")  # libvirtd went away
    wait_until(lambda: collected(client.agent.metrics)[("virtq_agent_libvirt_connected", frozenset())] == 0)
    hv.down = False  # and is back
    wait_until(lambda: collected(client.agent.metrics)[("virtq_agent_libvirt_reconnects_total", frozenset())] == 1,
               timeout=10)
    assert collected(client.agent.metrics)[("virtq_agent_libvirt_connected", frozenset())] == 1


def test_a_sampler_pass_is_timed_even_when_it_fails() -> None:
    times = iter([10.0, 12.5])
    metrics = AgentMetrics(clock=lambda: next(times))
    with pytest.raises(ValueError):
        with metrics.sampler_pass("domains"):
            raise ValueError("libvirt went away")
    samples = collected(metrics)
    assert samples[("virtq_agent_sampler_pass_duration_seconds_count", frozenset({("kind", "domains")}))] == 1
    assert samples[("virtq_agent_sampler_pass_duration_seconds_sum", frozenset({("kind", "domains")}))] == 2.5
    assert samples[("virtq_agent_sampler_pass_duration_seconds_bucket",
                    frozenset({("kind", "domains"), ("le", "2.5")}))] == 1


def test_requests_never_answered_are_forgotten_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_TIMED", 2)
    metrics = AgentMetrics()
    for cid in ("a", "b", "c"):
        metrics.received(request(QueryRequest(what="OBJECT", schema_id=None), cid))
    for cid in ("a", "b", "c"):
        metrics.sent(reply(QueryResponse(), cid))
    samples = collected(metrics)
    assert samples[("virtq_agent_requests_total", frozenset({("method", "_query"), ("outcome", "ok")}))] == 2


@pytest.mark.parametrize("code, method, outcome", [
    (errors.AccessDeniedError.code, "suspend", "denied"),
    (errors.STATUS_FORBIDDEN, "suspend", "denied"),
    (errors.LibvirtTimeoutError.code, "suspend", "timeout"),
    (errors.STATUS_BUSY, "suspend", "refused"),
    (errors.STATUS_INVALID_PARAMETER, "suspend", "refused"),
    (errors.STATUS_EXCEPTION, "_unknown", "refused"),  # could not be decoded
    (errors.STATUS_EXCEPTION, "suspend", "error"),  # an internal error
    (errors.STATUS_UNKNOWN_METHOD, "_unknown", "error"),
    (errors.STATUS_USER + 55, "suspend", "error"),  # libvirt's
])
def test_outcomes_are_what_the_reply_says(code: int, method: str, outcome: str) -> None:
    assert outcome_of(reply(ExceptionResponse(error_code=code)), method) == outcome
    assert outcome_of(reply(MethodResponse()), method) == "ok"


def test_method_labels_are_bounded_by_the_schema() -> None:
    assert method_of(request(domain_call("suspend")), METHODS) == "suspend"
    assert method_of(request(domain_call("a-new-label-per-request-123")), METHODS) == "_unknown"
    assert method_of(request(QueryRequest(what="OBJECT", schema_id=None)), METHODS) == "_query"
    assert method_of(request(AgentLocateRequest()), METHODS) == "_locate"
    odd = request(domain_call("suspend"))
    assert method_of(WireMessage(odd.address, odd.properties, {"_method_name": ["x"]}), METHODS) == "_unknown"
    assert method_of(WireMessage(odd.address, ["not", "a", "map"], None), METHODS) == "_unknown"  # type: ignore


def test_histogram_buckets_are_cumulative_and_include_their_bound() -> None:
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 7.0):
        histogram.observe("x", seconds)
    assert histogram.cumulative() == {"x": ([("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)], 7.65)}


def test_importing_or_embedding_the_agent_needs_no_prometheus_client() -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from virtq.agent import Agent; from virtq.schema import default_schema\n"
            "from virtq.schema.codec import WireMessage; from virtq.testing import FakeHypervisor, MemoryBus\n"
            "agent = Agent(default_schema(), FakeHypervisor.with_running_domains(1), MemoryBus().agent_transport())\n"
            "agent.metrics.sent(WireMessage('x', {'qmf.opcode': '_agent_heartbeat_indication'}, {}))\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


# --- the endpoint and the option ----------------------------------------------------------------------------

def test_serving_says_where_and_warns_off_loopback(caplog: pytest.LogCaptureFixture) -> None:
    metrics = AgentMetrics()
    with caplog.at_level(logging.INFO, logger="virtq.agent.metrics"):
        host, port = metrics.serve("127.0.0.1", 0)
        assert port > 0 and metrics.url == f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(RuntimeError):
            metrics.serve("127.0.0.1", 0)
        metrics.close()
        exposed = AgentMetrics()
        exposed.serve("0.0.0.0", 0)
        exposed.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.INFO, f"metrics on http://127.0.0.1:{port}/metrics") in said
    warnings = [text for level, text in said if level == logging.WARNING]
    assert len(warnings) == 1 and "http://0.0.0.0:" in warnings[0] and "not authenticated" in warnings[0]
    assert "no secrets and no domain names" in warnings[0]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # closed


def test_a_port_in_use_is_an_error_the_caller_sees() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            AgentMetrics().serve("127.0.0.1", taken.getsockname()[1])


@pytest.mark.parametrize("text, address", [("127.0.0.1:9410", ("127.0.0.1", 9410)), ("[::1]:0", ("::1", 0)),
                                           ("localhost:65535", ("localhost", 65535)), (" 0.0.0.0:1 ", ("0.0.0.0", 1))])
def test_listen_addresses(text: str, address: Tuple[str, int]) -> None:
    assert listen_address(text) == address


@pytest.mark.parametrize("text", ["9410", ":9410", "host:", "host:port", "host:65536", "::1:9410", "[::1]",
                                  "http://host:9410", "a b:1", "host:-1"])
def test_malformed_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        listen_address(text)


def test_the_option_refuses_a_malformed_address_before_anything_starts() -> None:
    result = CliRunner().invoke(agent_main.main, ["--libvirt", "test:///nowhere", "--metrics-listen", "9410"])
    assert result.exit_code == 2
    assert "Invalid value for '--metrics-listen'" in result.output and "is not HOST:PORT" in result.output


def context(*args: str) -> click.Context:
    command = agent_main.main
    assert isinstance(command, click.Command)
    return command.make_context("virtq-agent", list(args))


def test_the_config_file_sets_it_and_a_reload_names_it_as_needing_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("METRICS_LISTEN", "CONFIG", "POLICY", "LOG_LEVEL", "LOG_FORMAT"):
        monkeypatch.delenv(f"VIRTQ_AGENT_{name}", raising=False)
    config = tmp_path / "agent.conf"
    config.write_text("[agent]\nmetrics-listen = [::1]:9410\n")
    ctx = context("--config", str(config))
    assert ctx.params["metrics_listen"] == ("::1", 9410)
    assert context("--config", str(config), "--metrics-listen", "127.0.0.1:0").params["metrics_listen"] == \
        ("127.0.0.1", 0)
    assert context().params["metrics_listen"] is None  # off by default
    config.write_text("[agent]\nmetrics-listen = 127.0.0.1:9411\n")
    bus = MemoryBus()
    agent = Agent(SCHEMA, FakeHypervisor.with_running_domains(1), bus.agent_transport(), state_dir=tmp_path)
    root = logging.getLogger()
    level = root.level
    try:
        with caplog.at_level(logging.INFO, logger="virtq.agent.reload"):
            Reloader(ctx, agent, logging.StreamHandler()).reload()
    finally:
        root.setLevel(level)
        bus.close()
    assert any("--metrics-listen changed" in r.getMessage() and "needs a restart" in r.getMessage()
               for r in caplog.records)
    assert ctx.params["metrics_listen"] == ("::1", 9410)  # what is in force stays
