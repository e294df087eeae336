"""``virtq top``'s frames and CPU %, without a terminal or a console: console/cli/_topview.py renders a frame
from rows as a pure function, console/cli/_topcpu.py turns pushed samples into CPU %."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import List, Optional

import pytest

from virtq.console.cli._topcpu import CpuMeter, cpu_percent
from virtq.console.cli._topview import SORTS, DomainRow, Fleet, View, host_rows, render, sort_domains

NOW = datetime(2026, 1, 2, 12, 0, 1, tzinfo=timezone.utc)
SECOND = 1_000_000_000
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


def domain(name: str, host: str = "hv01", state: int = RUNNING, cpu: Optional[float] = 10.0,
           memory_mib: int = 1024, vcpus: int = 2, stale: bool = False) -> DomainRow:
    return DomainRow(host, f"agent:{host}", name, None, state, cpu if state == RUNNING else 0.0, memory_mib * 1024,
                     vcpus, stale)


def fleet(*rows: DomainRow, hosts: int = 1, lost: int = 0) -> Fleet:
    return Fleet(list(rows), hosts, lost, NOW)


def body(lines: List[str], head: int = 2) -> List[str]:
    """The table's rows of a frame: after the summary (``head`` lines) and the header."""
    assert lines[head].split()[:2] == ["HOST", "NAME"] or lines[head].startswith("HOST"), lines
    return lines[head + 1:]


def names(lines: List[str], head: int = 2) -> List[str]:
    return [line.split()[1] for line in body(lines, head) if not line.startswith(("+", "*"))]


# --- fitting the terminal ---------------------------------------------------------------------------------

MANY = [domain(f"vm{i:02d}", cpu=float(i)) for i in range(55)]


@pytest.mark.parametrize("lines", [6, 10, 24, 40])
def test_a_frame_fits_the_terminal_and_says_how_many_more(lines: int) -> None:
    frame = render(fleet(*MANY), View(), (80, lines), keys=True)
    assert len(frame) == lines
    assert frame[0].startswith("virtq top - 12:00:01 - 1 host, 55 domains: 55 running")
    assert frame[1].startswith("CPU ") and frame[2].startswith("sort: cpu - keys: c cpu")
    shown = lines - 5  # 3 summary lines, the header, "+N more"
    assert names(frame, 3) == [f"vm{i:02d}" for i in range(54, 54 - shown, -1)]  # busiest first
    assert frame[-1] == f"+{55 - shown} more"


def test_all_rows_that_fit_and_no_more_line() -> None:
    frame = render(fleet(*MANY[:4]), View(), (80, 24))
    assert len(frame) == 2 + 1 + 4 and not any(line.startswith("+") for line in frame)


def test_without_a_size_every_row_is_printed_whole() -> None:
    long_name = "x" * 200
    frame = render(fleet(*MANY, domain(long_name)), View("name"))
    assert len(body(frame)) == 56
    assert names(frame)[-1] == "x" * 39 + "…"  # a long name is cut in the table, whatever the size


def test_lines_are_cut_to_the_width_and_the_summary_survives_a_tiny_terminal() -> None:
    frame = render(fleet(*MANY), View(), (30, 3), keys=True)
    assert len(frame) == 3 and all(len(line) <= 30 for line in frame)
    assert frame[0].startswith("virtq top - 12:00:01")


def test_stale_rows_are_marked_and_explained_within_the_height() -> None:
    rows = [domain(f"vm{i}", host="hv02", stale=True) for i in range(10)]
    frame = render(fleet(*rows, hosts=2, lost=1), View(), (100, 8))
    assert len(frame) == 8
    assert frame[0].startswith("virtq top - 12:00:01 - 2 hosts (1 lost), 10 domains")
    assert frame[-1].startswith("* agent lost") and frame[-2].startswith("+")
    assert body(frame)[0].startswith("hv02*")


def test_no_domains() -> None:
    assert render(fleet(), View(), (80, 24)) == [
        "virtq top - 12:00:01 - 1 host, 0 domains", "CPU 0.0% of 0 running vCPUs - active: 0 domains, 0 vCPUs, 0 MiB",
        "(no domains)"]


def test_agent_supplied_control_characters_are_escaped() -> None:
    frame = render(fleet(domain("evil\x1b[2Jname", host="h\nx")), View())
    assert "\x1b" not in "".join(frame) and "\n" not in "".join(frame)


# --- the summary ---------------------------------------------------------------------------------------------

def test_summary_counts_states_vcpus_memory_and_cpu_of_running_vcpus() -> None:
    rows = [domain("a", cpu=50.0, vcpus=2), domain("b", cpu=100.0, vcpus=1), domain("c", state=PAUSED),
            domain("d", state=SHUTOFF, memory_mib=4096)]
    first, second = render(fleet(*rows), View())[:2]
    assert first == "virtq top - 12:00:01 - 1 host, 4 domains: 2 running, 1 paused, 1 shutoff"
    # (50 % of 2 vCPUs + 100 % of 1) over 3 vCPUs; active = running and paused: 5 vCPUs, 3 GiB
    assert second == "CPU 66.7% of 3 running vCPUs - active: 3 domains, 5 vCPUs, 3072 MiB"


def test_warming_up_is_said_until_every_running_domain_has_two_samples() -> None:
    rows = [domain("a", cpu=None), domain("b", cpu=None), domain("c", cpu=20.0), domain("d", state=PAUSED)]
    frame = render(fleet(*rows), View("name"))
    assert frame[1].startswith("CPU warming up: 2 of 3 running domains without a second pushed sample yet")
    cells = {line.split()[1]: line.split()[3] for line in body(frame)}
    assert cells == {"a": "-", "b": "-", "c": "20.0", "d": "0.0"}
    assert "warming up" not in render(fleet(rows[2], rows[3]), View())[1]


# --- sorting and the per-host view ---------------------------------------------------------------------------

ROWS = [domain("web", host="hv02", cpu=5.0, memory_mib=512), domain("db", host="hv01", cpu=80.0, memory_mib=8192),
        domain("old", host="hv01", state=SHUTOFF, memory_mib=2048), domain("new", host="hv02", cpu=None),
        domain("idle", host="hv03", state=PAUSED, memory_mib=4096)]


@pytest.mark.parametrize("sort, expected", [
    ("cpu", ["db", "web", "old", "idle", "new"]),  # highest first (then host, name); not known yet last
    ("mem", ["db", "idle", "old", "new", "web"]),
    ("name", ["db", "idle", "new", "old", "web"]),
    ("state", ["db", "new", "web", "idle", "old"]),  # running, paused, shut off (then host, name)
    ("host", ["db", "old", "new", "web", "idle"]),
])
def test_sort_orders(sort: str, expected: List[str]) -> None:
    assert [r.name for r in sort_domains(ROWS, sort)] == expected
    assert names(render(fleet(*ROWS), View(sort))) == expected


def test_keys_change_the_view() -> None:
    view = View()
    assert [view.press(k).sort for k in "cmnshC"] == ["cpu", "mem", "name", "state", "host", "cpu"]
    assert view.press("x") == view and view.press("\x1b") == view
    assert view.press("1").per_host and not view.press("1").press("1").per_host
    assert set(SORTS) == {view.press(k).sort for k in "cmnsh"}


def test_per_host_view_aggregates_domains() -> None:
    hosts = {h.host: h for h in host_rows(ROWS)}
    assert (hosts["hv01"].domains, hosts["hv01"].running, hosts["hv01"].vcpus) == (2, 1, 2)
    assert hosts["hv01"].memory_kib == 8192 * 1024  # the shut off domain holds nothing
    assert hosts["hv01"].cpu == 80.0 and hosts["hv02"].cpu == 5.0  # hv02: "new" warms up
    assert hosts["hv03"].cpu == 0.0 and hosts["hv03"].running == 0

    frame = render(fleet(*ROWS, hosts=3), View("cpu", per_host=True), (100, 24), keys=True)
    assert frame[2].startswith("sort: cpu (per host)")
    assert frame[3].split() == ["HOST", "DOMAINS", "RUNNING", "VCPUS", "CPU%", "MEM(MiB)"]
    assert [line.split()[0] for line in frame[4:]] == ["hv01", "hv02", "hv03"]
    assert frame[4].split() == ["hv01", "2", "1", "2", "80.0", "8192"]
    by_mem = render(fleet(*ROWS), View("mem", per_host=True))
    assert [line.split()[0] for line in by_mem[3:]] == ["hv01", "hv03", "hv02"]


# --- CPU % ------------------------------------------------------------------------------------------------------

def test_cpu_percent_is_cpu_time_over_sample_time_per_vcpu() -> None:
    assert cpu_percent((0, 0), (2 * SECOND, SECOND), 1) == 50.0
    assert cpu_percent((0, 0), (2 * SECOND, 3 * SECOND), 2) == 75.0
    assert cpu_percent((0, 0), (SECOND, SECOND), None) == 100.0
    assert cpu_percent((0, 5 * SECOND), (SECOND, SECOND), 1) is None  # cpuTime went back: restarted
    assert cpu_percent((SECOND, 0), (SECOND, SECOND), 1) is None  # no time passed


def test_meter_needs_two_samples_and_keeps_the_last_two() -> None:
    meter = CpuMeter()
    key = ("agent", "Domain:u1")
    assert meter.percent(key, 1) is None and not meter.knows(key)
    meter.add(key, 10 * SECOND, 4 * SECOND)
    assert meter.percent(key, 1) is None  # warming up
    meter.add(key, 12 * SECOND, 5 * SECOND)
    assert meter.percent(key, 1) == 50.0
    meter.add(key, 12 * SECOND, 9 * SECOND)  # not newer: ignored
    meter.add(key, 11 * SECOND, 9 * SECOND)
    assert meter.percent(key, 1) == 50.0
    meter.add(key, 13 * SECOND, None)  # a batch's "unchanged": idle
    assert meter.percent(key, 1) == 0.0
    meter.add(key, 14 * SECOND, 5 * SECOND + SECOND // 2)
    assert meter.percent(key, 2) == 25.0


def test_meter_ignores_what_is_not_a_pushed_sample() -> None:
    meter = CpuMeter()
    meter.add("a", 0, 5)  # a query's answer: no sample time
    meter.add("a", SECOND, None)  # unchanged, but nothing known to carry over
    meter.add("b", SECOND, True)  # not a count
    assert not meter.knows("a") and not meter.knows("b")


def test_meter_forgets_domains_gone() -> None:
    meter = CpuMeter()
    meter.add("a", SECOND, 1)
    meter.add("b", SECOND, 1)
    meter.retain(["b"])
    assert not meter.knows("a") and meter.knows("b")
