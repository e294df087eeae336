"""The fleet exporter over a console fed by hand (never started: no agent, no network but the exporter's own
loopback HTTP): names, labels, units, absent statistics, lost agents; the text it writes against
prometheus_client's (what it served before) and promtool; the scrape it reuses and shares; its HTTP."""

from __future__ import annotations

import gzip
import os
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Tuple

import click
import pytest

from bench.exporter_baseline import baseline_text
from bench.exporter_scrape import samples
from virtq.console import Console
from virtq.console.cli._exporter import parse_listen
from virtq.console.exporter import DOMAIN_METRICS, Exporter, FleetText
from virtq.console.repository import AgentView
from virtq.schema import default_schema
from virtq.schema.codec import DataRecord, ObjectId, StatsBatch
from virtq.testing.prometheus import PROMTOOL

from ..scrape import Scrape, scrape

SCHEMA = default_schema()
DOMAIN = SCHEMA.cls("Domain").schema_id
HV1, HV2 = "libvirt.org:virtq:hv1-instance", "libvirt.org:virtq:hv2"
RUNNING, PAUSED = 1, 3
GIB_KIB = 1024 * 1024


def record(agent: str, uuid: str, name: str, **stats: Any) -> DataRecord:
    values = {"uuid": uuid, "name": name, "id": 1, "configGen": 1, **stats}
    return DataRecord(ObjectId(f"Domain:{uuid}", agent, 5), DOMAIN, values, 100, 100)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def console(clock: Clock) -> Iterator[Console]:
    """hv1 (host hv1.example.com): web1 sampled, fresh1 not yet; hv2 (no hostname, libvirt disconnected): db1."""
    console = Console(clock=clock)
    console.agents.put(HV1, AgentView(HV1, 5, 2, hostname="hv1.example.com", last_seen=99.0))
    console.agents.put(HV2, AgentView(HV2, 7, 2, last_seen=96.5, attributes={"libvirt_connected": False}))
    console.updater.apply_records([
        record(HV1, "u-web1", "web1", state=RUNNING, cpuTime=2_500_000_000, maxMem=2 * GIB_KIB, memory=GIB_KIB,
               nrVirtCpu=2),
        record(HV1, "u-fresh1", "fresh1"),
        record(HV2, "u-db1", "db1", state=PAUSED, cpuTime=0, maxMem=GIB_KIB, memory=GIB_KIB, nrVirtCpu=1),
    ])
    yield console
    console.close()


def collected(exporter: Exporter) -> Scrape:
    return Scrape(exporter.fleet.text())


def test_domains_with_prometheus_libvirt_exporter_names_units_and_labels(console: Console) -> None:
    got = collected(Exporter(console))
    web1 = {"host": "hv1.example.com", "domain": "web1", "uuid": "u-web1"}
    assert got.value("libvirt_domain_info_state", **web1) == RUNNING
    assert got.value("libvirt_domain_info_cpu_time_seconds_total", **web1) == 2.5
    assert got.value("libvirt_domain_info_maximum_memory_bytes", **web1) == 2 * 2**30
    assert got.value("libvirt_domain_info_memory_usage_bytes", **web1) == 2**30
    assert got.value("libvirt_domain_info_virtual_cpus", **web1) == 2
    assert got.value("libvirt_domain_info_state", domain="db1") == PAUSED
    assert got.labels("libvirt_domain_info_state")[1]["host"] == "hv2"  # no hostname: the agent's instance
    assert got.types["libvirt_domain_info_cpu_time_seconds"] == "counter"
    assert {got.types[m.name] for m in DOMAIN_METRICS if not m.counter} == {"gauge"}


def test_a_domain_not_sampled_yet_has_no_series(console: Console) -> None:
    got = collected(Exporter(console))
    for metric in DOMAIN_METRICS:
        assert [labels["domain"] for labels in got.labels(metric.name)] == ["web1", "db1"]
    assert got.value("libvirt_domains", agent=HV1) == 2  # but it is counted
    console.updater.apply_stats(HV1, [StatsBatch(DOMAIN, 5, 1_000, ("u-fresh1", "u-web1"),
                                                 {"state": [RUNNING, PAUSED], "nrVirtCpu": [4, None]})])
    got = collected(Exporter(console))
    assert got.value("libvirt_domain_info_virtual_cpus", domain="fresh1") == 4
    assert got.value("libvirt_domain_info_memory_usage_bytes", domain="fresh1") is None  # never pushed
    assert got.value("libvirt_domain_info_state", domain="web1") == PAUSED
    assert got.value("libvirt_domain_info_virtual_cpus", domain="web1") == 2  # None: unchanged
    assert got.value("virtq_exporter_stats_records_total") == 2


def test_agents_and_the_exporter_itself(console: Console) -> None:
    got = collected(Exporter(console))
    hv1, hv2 = {"host": "hv1.example.com", "agent": HV1}, {"host": "hv2", "agent": HV2}
    series = ("libvirt_up", "libvirt_domains", "virtq_fleet_agent_up", "virtq_fleet_agent_last_heartbeat_age_seconds",
              "virtq_fleet_agent_epoch")
    assert [got.value(n, **hv1) for n in series] == [1, 2, 1, 1.0, 5]
    assert [got.value(n, **hv2) for n in series] == [0, 1, 1, 3.5, 7]  # libvirt disconnected; up all the same
    assert (got.value("virtq_exporter_agents"), got.value("virtq_exporter_stats_records_total")) == (1 + 1, 0)


def test_a_lost_agents_domains_are_counted_not_shown(console: Console, clock: Clock) -> None:
    clock.now = 103.0  # hv2 last heard 6.5 s ago, over 3 intervals of 2 s; hv1 4 s ago
    assert [v.name for v in console.check_agents()] == [HV2]
    got = collected(Exporter(console))
    assert (got.value("virtq_fleet_agent_up", agent=HV2), got.value("libvirt_up", agent=HV2)) == (0, 0)
    assert got.value("libvirt_domains", agent=HV2) == 1
    assert got.value("libvirt_domain_info_state", domain="db1") is None
    assert got.value("virtq_fleet_agent_up", agent=HV1) == 1 and got.value("libvirt_domain_info_state",
                                                                            domain="web1") == RUNNING


def test_values_that_are_not_numbers_are_left_out(console: Console) -> None:
    console.updater.apply_records([record(HV1, "u-odd", "odd", state="running", nrVirtCpu=True, memory=512)])
    got = collected(Exporter(console))
    assert got.value("libvirt_domain_info_state", domain="odd") is None
    assert got.value("libvirt_domain_info_virtual_cpus", domain="odd") is None
    assert got.value("libvirt_domain_info_memory_usage_bytes", domain="odd") == 512 * 1024


IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
"""In CI promtool is installed (as for tests/prometheus): its absence fails the test instead of skipping it."""


def hostile(console: Console) -> None:
    """Names that need escaping, a lost agent's domain, values that are no numbers, floats that are none."""
    console.updater.apply_records([
        record(HV1, "u-q", 'a"b\\c', state=RUNNING, cpuTime=7, maxMem=3, memory=2, nrVirtCpu=1),
        record(HV1, "u-nl", "line\nbreak", state=float("inf"), cpuTime=float("nan"), memory=-float("inf")),
        record(HV1, "u-odd", "odd", state="running", nrVirtCpu=True, maxMem=1.5)])


def test_the_text_holds_what_prometheus_client_wrote(console: Console, clock: Clock) -> None:
    """Parsed by prometheus_client's parser, the exporter's text and prometheus_client's own over the same
    console hold the same families and samples: escaped labels, non-finite values, left-out values, lost agents."""
    hostile(console)
    fleet = FleetText(console)
    assert 'domain="a\\"b\\\\c"' in fleet.text() and 'domain="line\\nbreak"' in fleet.text()
    for now in (100.0, 103.0):  # then hv2 is lost
        clock.now = now
        console.check_agents()
        text, reference = fleet.text(), baseline_text(console).decode()
        assert samples(text) == samples(reference)
        assert [(f.name, f.type, f.documentation) for f in Scrape(text).families] == \
            [(f.name, f.type, f.documentation) for f in Scrape(reference).families]
    assert Scrape(text).value("libvirt_domain_info_state", domain="line\nbreak") == float("inf")


def test_promtool_accepts_the_text(console: Console) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        message = f"{PROMTOOL} not installed (bash scripts/install-prometheus.sh)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    hostile(console)
    checked = subprocess.run([str(PROMTOOL), "check", "metrics"], input=FleetText(console).text(),
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_scrape_with_nothing_applied_since_reuses_the_domains(console: Console, clock: Clock) -> None:
    fleet = FleetText(console)
    first = fleet.text()
    clock.now = 100.5
    second = fleet.text()
    assert fleet.domain_renders == 1
    assert Scrape(second).value("virtq_fleet_agent_last_heartbeat_age_seconds", agent=HV1) == 1.5  # made anew
    assert first.split("# HELP libvirt_up")[0] == second.split("# HELP libvirt_up")[0]
    console.updater.apply_stats(HV1, [StatsBatch(DOMAIN, 5, 1_000, ("u-web1",), {"state": [PAUSED]})])
    assert Scrape(fleet.text()).value("libvirt_domain_info_state", domain="web1") == PAUSED
    assert fleet.domain_renders == 2
    console.updater.apply_records([record(HV1, "u-web1", "web2")])  # a record: the labels are made again
    assert Scrape(fleet.text()).value("libvirt_domain_info_state", domain="web2") == PAUSED
    clock.now = 103.0
    console.check_agents()  # hv2 lost: its domains go
    assert Scrape(fleet.text()).value("libvirt_domain_info_state", domain="db1") is None
    assert fleet.domain_renders == 4


def test_a_scrape_that_comes_during_another_shares_it(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scrapers do not double the CPU: the second waits for the render running and serves it, even when
    something was applied meanwhile."""
    fleet = FleetText(console)
    reading, second_came, release = threading.Event(), threading.Event(), threading.Event()
    statistics = console.domains.statistics

    def slow_statistics(names: Any) -> Any:
        reading.set()
        assert release.wait(10)
        return statistics(names)

    monkeypatch.setattr(console.domains, "statistics", slow_statistics)
    bodies: List[str] = []

    def scrape_once(came: threading.Event) -> None:
        came.set()
        bodies.append(fleet.text())

    first = threading.Thread(target=scrape_once, args=(threading.Event(),))
    first.start()
    assert reading.wait(10)
    console.updater.apply_stats(HV1, [StatsBatch(DOMAIN, 5, 1_000, ("u-web1",), {"state": [PAUSED]})])
    second = threading.Thread(target=scrape_once, args=(second_came,))
    second.start()
    assert second_came.wait(10)
    threading.Event().wait(0.2)  # the second scrape is waiting for the first
    release.set()
    first.join(10)
    second.join(10)
    assert len(bodies) == 2 and bodies[0] == bodies[1] and fleet.domain_renders == 1


def fetch(url: str, **headers: str) -> Tuple[int, Dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers, method=headers.pop("method", "GET"))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_served_over_http(console: Console) -> None:
    with Exporter(console, "127.0.0.1", 0) as exporter:
        host, port = exporter.address
        assert host == "127.0.0.1" and port > 0 and exporter.loopback
        assert exporter.url == f"http://127.0.0.1:{port}/metrics"
        got = scrape(exporter.url)
        assert got.value("libvirt_domain_info_state", domain="web1") == RUNNING
        assert "process_cpu_seconds_total" not in got.samples  # only the fleet's
        status, headers, body = fetch(exporter.url)
        assert (status, headers["Content-Type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
        assert "Content-Encoding" not in headers and int(headers["Content-Length"]) == len(body)
        status, headers, zipped = fetch(exporter.url, **{"Accept-Encoding": "deflate, gzip;q=0.8"})
        assert (status, headers["Content-Encoding"]) == (200, "gzip") and gzip.decompress(zipped) == body
        assert "Content-Encoding" not in fetch(exporter.url, **{"Accept-Encoding": "gzip;q=0"})[1]
        status, headers, empty = fetch(exporter.url, method="HEAD")
        assert (status, empty, int(headers["Content-Length"])) == (200, b"", len(body))
        assert fetch(exporter.url + "?debug=1")[0] == 200
        assert fetch(exporter.url.replace("/metrics", "/"))[0] == 404
        assert fetch(exporter.url.replace("/metrics", "/metricsx"))[0] == 404
    assert not Exporter(console, "0.0.0.0", 0).loopback


def test_an_address_in_use_is_an_os_error(console: Console) -> None:
    with Exporter(console, "127.0.0.1", 0) as taken:
        with pytest.raises(OSError):
            Exporter(console, "127.0.0.1", taken.address[1]).start()


@pytest.mark.parametrize("listen, expected", [("127.0.0.1:9177", ("127.0.0.1", 9177)), ("[::1]:0", ("::1", 0)),
                                              (":9177", ("0.0.0.0", 9177)), ("localhost:80", ("localhost", 80))])
def test_listen_addresses(listen: str, expected: Tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9177", "host:", "host:port", "host:70000"])
def test_listen_addresses_that_are_not(listen: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_listen(listen)
