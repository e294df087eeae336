"""The typed library: the generated Protocols make mypy check a manager's calls, states are libvirt's enums
(still the wire's integers), and a console used before start() says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, cast

import libvirt
import pytest

from tools.schemagen import load_api
from tools.schemagen.enums import render_enums
from tools.schemagen.paths import ENUMS_PY, TYPED_STUB
from tools.schemagen.stubs import render_stub
from virtq.console import Console, DomainState, NotStartedError, PoolState, RemoteObject, VolumeType
from virtq.console.events import DomainStateChanged
from virtq.schema import default_schema
from virtq.schema.states import DOMAIN_STATES, as_enum, state_code
from virtq.testing import RecordingTransport

from .fake_agents import domain, follow, stats

ROOT = Path(__file__).resolve().parents[2]
HV01 = "libvirt.org:virtq:hv01"
WEB = "11111111-1111-1111-1111-111111111111"

SAMPLES: Dict[str, str] = {
    "good.py": """
        from typing import Iterable, List
        from virtq.console import Console, DomainState
        from virtq.console.typed import Domain, DomainGetInfoResult, Pool

        def manage(console: Console) -> List[str]:
            web1: Domain = console.domains.get("web1")
            info: DomainGetInfoResult = web1.getInfo()
            running: bool = web1.state == DomainState.RUNNING and info["state"] == DomainState.RUNNING
            web1.suspend().wait_state(DomainState.PAUSED, timeout=5)
            xml: str = web1.getXMLDesc(flags=0)
            domains: Iterable[Domain] = console.domains
            pool: Pool = console.pools.get("default")
            return [xml, str(running)] + [d.name for d in domains] + [v.path for v in pool.listAllVolumes()]
    """,
    "unannotated.py": """
        from typing import List
        from virtq.console import Console, DomainState, PoolState

        def manage(console: Console) -> List[str]:
            web1 = console.domains.get("web1")  # no annotation: the repository hands out Domain
            web1.suspend().wait_state(DomainState.PAUSED, timeout=5)
            names = [d.name for d in console.domains] + [n.hostname for n in console.nodes.of_agent("hv01")]
            pools = [p for p in console.pools if p.state == PoolState.RUNNING]
            found = console.domains.by_id(web1.object_id)
            snapshots, _ = console.domains.statistics(["cpuTime"])
            return names + [console.xml(web1), str(console.call(web1, "getInfo"))] + [
                v.path for p in pools for v in p.listAllVolumes()] + [
                found.getXMLDesc(flags=0) if found else ""] + [d.uuid for d in snapshots] + [
                v.key for v in console.volumes]
    """,
    "misspelled.py": """
        from virtq.console import Console

        def manage(console: Console) -> None:
            console.domains.get("web1").suspnd()
    """,
    "wrong_type.py": """
        from virtq.console import Console

        def manage(console: Console) -> None:
            for dom in console.domains:
                dom.getXMLDesc(flags="VIR_DOMAIN_XML_INACTIVE")
    """,
}


def test_the_generated_modules_are_up_to_date() -> None:
    """Drift: schema/enums.py and console/typed.pyi are what `python -m tools.schemagen` writes."""
    assert ENUMS_PY.read_text() == render_enums(load_api()), "schema/enums.py: run python -m tools.schemagen"
    assert TYPED_STUB.read_text() == render_stub(default_schema()), "console/typed.pyi: run python -m tools.schemagen"


def test_mypy_checks_a_managers_method_names_and_argument_types(tmp_path: Path) -> None:
    """Real mypy on sample managers: a misspelled method and a wrongly typed argument fail, correct ones pass, with
    or without annotations (``console.domains`` is a ``Repository[Domain]``)."""
    tree = tmp_path / "virtq"
    tree.mkdir()
    for entry in (ROOT / "virtq").iterdir():  # the installed layout: virtq.console is console/, …
        (tree / entry.name).symlink_to(entry)
    for package in ("agent", "console", "schema"):
        (tree / package).symlink_to(ROOT / package)
    for name, text in SAMPLES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
                           "--cache-dir", str(tmp_path / "cache"), *SAMPLES], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    errors = sorted(line for line in done.stdout.splitlines() if ": error:" in line)
    assert [line.split(":")[0] for line in errors] == ["misspelled.py", "wrong_type.py"], done.stdout + done.stderr
    assert '"Domain" has no attribute "suspnd"; maybe "suspend"?' in errors[0]
    assert 'Argument "flags" to "getXMLDesc" of "Domain" has incompatible type "str"; expected "int"' in errors[1]


def test_the_enums_are_libvirts_constants() -> None:
    assert {s.name: s.value for s in DomainState} == {
        n[len("VIR_DOMAIN_"):]: getattr(libvirt, n) for n in dir(libvirt)
        if n.startswith("VIR_DOMAIN_") and n[len("VIR_DOMAIN_"):] in DomainState.__members__}
    assert len(DomainState) == libvirt.VIR_DOMAIN_PMSUSPENDED + 1
    assert PoolState.RUNNING == libvirt.VIR_STORAGE_POOL_RUNNING and VolumeType.BLOCK == libvirt.VIR_STORAGE_VOL_BLOCK
    assert DOMAIN_STATES[3] == "paused" and [DomainState.PAUSED] == [3]  # the names and the wire's integers stay


def test_states_convert_by_class_and_name() -> None:
    assert as_enum("Domain", "state", 3) is DomainState.PAUSED and as_enum("Pool", "state", 2) is PoolState.RUNNING
    assert as_enum("Volume", "type", 1) is VolumeType.BLOCK
    assert as_enum("Domain", "state", 99) == 99 and as_enum("Domain", "cpuTime", 3) == 3  # unknown code; no enum
    assert state_code("Domain", "paused") == state_code("Domain", "PAUSED") == state_code("Domain", 3) == 3
    assert state_code("Pool", "running") == 2 and state_code("Pool", PoolState.INACTIVE) == 0
    with pytest.raises(ValueError, match="unknown state 'sleeping'; one of nostate, running"):
        state_code("Domain", "sleeping")


def test_snapshots_hand_out_states_as_enums_and_keep_the_wire_values() -> None:
    console = Console(timeout=2)
    try:
        transport = RecordingTransport()
        follow(console, transport, HV01, [domain(HV01, WEB, "web1")])
        stats(console, transport, HV01, [WEB], columns={"state": 3, "cpuTime": 7})
        web1 = console.domains.get(WEB)
        assert web1.state is DomainState.PAUSED and [web1.state] == [3] and web1.state_name == "paused"
        assert type(web1.stats["state"]) is int and web1.cpuTime == 7
    finally:
        console.close()


def test_state_changes_carry_the_enum() -> None:
    event = DomainStateChanged(cast(RemoteObject, None), "running", "paused")
    assert (event.old_state, event.new_state) == (DomainState.RUNNING, DomainState.PAUSED)
    assert DomainStateChanged(cast(RemoteObject, None), "unknown", "running").old_state is None


def test_a_console_read_before_start_raises() -> None:
    console = Console("amqp://127.0.0.1:1", timeout=0.2)
    try:
        for read in (lambda: list(console.domains), lambda: len(console.pools), lambda: console.volumes.get("x")):
            with pytest.raises(NotStartedError, match=r"before console.start\(\)") as raised:
                read()
            assert isinstance(raised.value, RuntimeError)
    finally:
        console.close()
    assert list(console.domains) == []  # closed: nothing to read, and no error


def test_at_run_time_the_typed_names_are_the_runtime_classes() -> None:
    from virtq.console import typed
    assert {getattr(typed, name) for name in ("Domain", "Pool", "Volume", "Node", "Snapshot")} == {RemoteObject}
    assert getattr(typed, "DomainGetInfoResult") is dict
    with pytest.raises(AttributeError):
        getattr(typed, "DomainGetInfoResults")
