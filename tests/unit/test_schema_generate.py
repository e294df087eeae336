"""tools/schemagen: the committed schema and coverage report are the generated ones, every in-scope function is
accounted for, and the naming rule and the generator's refusals behave as docs/SCHEMA.md says."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

import pytest

from tools import schemagen
from tools.schemagen import (CLASSES, GenerateError, build, coverage, load_api, load_exclusions, load_overrides,
                             method_name)
from virtq.schema import default_schema, load
from virtq.schema.coverage import COVERAGE_FILE, format_coverage, load_coverage
from virtq.schema.loader import SCHEMA_FILE

from ..helpers import run_cli

API = load_api()
SCHEMA = default_schema()
ROOT = Path(__file__).parents[2]
BY_NAME = {c.name: c for c in CLASSES}


# --- drift and coverage --------------------------------------------------------------------------------


def test_committed_schema_is_the_generated_one() -> None:
    """Drift: org.libvirt.xml must be what `python -m tools.schemagen` writes from its inputs."""
    generated = build()
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert generated == committed, ("schema/org.libvirt.xml is out of date with base.xml, overrides.xml, "
                                    "exclusions.xml or libvirt-api.xml: run python -m tools.schemagen")


def test_committed_coverage_is_the_generated_one() -> None:
    """Drift: schema/coverage.json, which `virtq schema coverage` prints, is what the generator computes now."""
    assert COVERAGE_FILE.read_text(encoding="utf-8") == coverage(SCHEMA, API).to_file_text(), \
        "schema/coverage.json is out of date: run python -m tools.schemagen"


def test_the_committed_report_reads_back_as_computed() -> None:
    computed, committed = coverage(SCHEMA, API), load_coverage()
    assert committed.to_json() == computed.to_json() and committed.ok
    assert format_coverage(committed) == format_coverage(computed)
    assert committed.api_sha256 == API.sha256 and len(API.sha256) == 64
    assert json.loads(committed.to_file_text()) == json.loads(COVERAGE_FILE.read_text(encoding="utf-8"))


def test_virtq_schema_coverage_prints_the_committed_report(tmp_path: Path) -> None:
    """The CLI reads coverage.json (no generator, no libvirt-api.xml); --api only names the description it was
    computed from: another one is refused, with the way to report on it."""
    printed = run_cli(["schema", "coverage"])
    assert printed.exit_code == 0 and printed.output == format_coverage(coverage(SCHEMA, API)) + "\n"
    assert run_cli(["schema", "coverage", "--api", str(schemagen.API_XML)]).output == printed.output
    other = tmp_path / "libvirt-api.xml"
    other.write_text("<api/>")
    refused = run_cli(["schema", "coverage", "--api", str(other)])
    assert refused.exit_code == 1 and f"python -m tools.schemagen --report --api {other}" in refused.stderr


def test_schema_doc_lists_what_is_generated() -> None:
    """Drift: docs/SCHEMA.md's generated part (coverage, exclusions, methods) matches the schema."""
    text = (ROOT / "docs" / "SCHEMA.md").read_text(encoding="utf-8")
    assert schemagen.render_docs(text, SCHEMA, API) == text, \
        "docs/SCHEMA.md is out of date: run python -m tools.schemagen"
    assert "| `virDomainOpenConsole` |" in text and "| `getXMLDesc` | `virDomainGetXMLDesc` |" in text


def test_generator_check_mode(tmp_path: Path) -> None:
    assert schemagen.main(["--check"]) == 0
    stale, report, docs = tmp_path / "org.libvirt.xml", tmp_path / "coverage.json", tmp_path / "SCHEMA.md"
    stale.write_text("<schema/>")
    docs.write_text(f"# doc\n{schemagen.DOCS_BEGIN}\nold\n{schemagen.DOCS_END}\nend\n")
    outputs = ["--output", str(stale), "--coverage", str(report), "--docs", str(docs)]
    assert schemagen.main(["--check", *outputs]) == 1
    assert stale.read_text() == "<schema/>" and not report.exists()  # --check writes nothing
    assert schemagen.main(outputs) == 0
    assert stale.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(encoding="utf-8")
    assert report.read_text(encoding="utf-8") == COVERAGE_FILE.read_text(encoding="utf-8")
    written = docs.read_text(encoding="utf-8")
    assert written.startswith(f"# doc\n{schemagen.DOCS_BEGIN}\n\n### Coverage") and written.endswith(
        f"{schemagen.DOCS_END}\nend\n")
    docs.write_text("no markers")
    assert schemagen.main(outputs) == 2


def test_generator_reports_the_coverage_of_an_api_description(capsys: pytest.CaptureFixture[str]) -> None:
    """--report: the committed schema against a libvirt-api.xml, what `virtq schema coverage` prints for its own."""
    assert schemagen.main(["--report"]) == 0
    assert capsys.readouterr().out == format_coverage(load_coverage()) + "\n"
    assert schemagen.main(["--report", "--api", "/no/such/libvirt-api.xml"]) == 2
    assert "install libvirt-dev" in capsys.readouterr().err


def test_every_in_scope_function_is_exposed_or_excluded() -> None:
    report = coverage(SCHEMA, API)
    assert report.unaccounted == () and report.conflicts == () and report.ok
    total = report.total
    assert total.functions == len(API.in_scope()) == total.exposed + total.excluded
    assert total.percent >= 95.0, f"coverage {total.percent:.1f}% < 95%"
    exposed = {m.libvirt for c in SCHEMA.classes.values() for m in c.methods.values()}
    assert total.exposed == len(exposed)
    assert [r.class_name for r in report.rows] == ["Node", "Domain", "Pool", "Volume", "DomainSnapshot",
                                                   "DomainCheckpoint"]
    for row in report.rows:
        assert row.exposed > 0 and row.unaccounted == 0, row


def test_readme_states_the_coverage() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    report = coverage(SCHEMA, API)
    total = report.total
    assert f"| **total** | **{total.exposed}** | **{total.applicable}** | **{total.percent:.1f}%** |" in readme
    for row in report.rows:
        assert f"| {row.exposed} | {row.applicable} | {row.percent:.1f}% |" in readme, row
    not_applicable = total.excluded - total.unsupported
    assert f"All {total.functions} functions" in readme and f"{not_applicable} not applicable" in readme
    assert f"{total.unsupported} applicable but not" in readme


def test_coverage_reports_what_is_missing() -> None:
    """A schema without Domain.suspend leaves virDomainSuspend unaccounted for."""
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    start = text.index('<method name="suspend" libvirt="virDomainSuspend"')
    end = text.index("</method>", start) + len("</method>")  # it has children: its permissions
    report = coverage(load((text[:start] + text[end:]).encode()), API)
    assert report.unaccounted == ("virDomainSuspend",) and not report.ok
    domain = next(r for r in report.rows if r.class_name == "Domain")
    assert domain.unaccounted == 1 and domain.percent < 100.0
    assert "UNACCOUNTED (1)" in format_coverage(report)


def test_exclusions_have_reasons_and_categories_are_counted() -> None:
    exclusions = load_exclusions()
    report = coverage(SCHEMA, API, exclusions)
    counts = {c.name: n for c, n in report.categories}
    assert all(n > 0 for n in counts.values()), counts  # no unused category
    assert sum(counts.values()) == report.total.excluded
    assert {c.name for c, _ in report.categories if c.applicable} == set()  # streams and peeks are methods now
    for fn in API.in_scope():
        exclusion = exclusions.match(fn.name)
        if exclusion is not None:
            assert exclusion.reason, fn.name


def test_loading_the_schema_is_fast() -> None:
    started = time.perf_counter()
    for _ in range(3):
        load()
    assert (time.perf_counter() - started) / 3 < 0.5


# --- the naming rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize("function, class_name, expected", [
    ("virDomainGetXMLDesc", "Domain", "getXMLDesc"),
    ("virStoragePoolRefresh", "Pool", "refresh"),
    ("virConnectGetCapabilities", "Node", "getCapabilities"),
    ("virNodeGetFreeMemory", "Node", "getFreeMemory"),
    ("virDomainDefineXML", "Node", "domainDefineXML"),
    ("virStoragePoolCreateXML", "Node", "storagePoolCreateXML"),
    ("virStorageVolCreateXML", "Pool", "storageVolCreateXML"),
    ("virStoragePoolLookupByVolume", "Volume", "storagePoolLookupByVolume"),
    ("virDomainFSTrim", "Domain", "fsTrim"),
    ("virDomainPMWakeup", "Domain", "pmWakeup"),
    ("virDomainGetID", "Domain", "getID"),
    ("virDomainSnapshotGetXMLDesc", "DomainSnapshot", "getXMLDesc"),
    ("virDomainSnapshotCreateXML", "Domain", "snapshotCreateXML"),
    ("virDomainListAllCheckpoints", "Domain", "listAllCheckpoints"),
    ("virDomainCheckpointListAllChildren", "DomainCheckpoint", "listAllChildren"),
])
def test_naming_rule(function: str, class_name: str, expected: str) -> None:
    assert method_name(function, BY_NAME[class_name]) == expected


def test_generated_methods_keep_the_names_of_the_hand_written_schema() -> None:
    """Every method of the schema before generation is still there, with the same arguments."""
    before: Dict[str, Dict[str, List[str]]] = {
        "Node": {"getCapabilities": ["capabilities"], "getInfo": ["info"], "getHostname": ["hostname"],
                 "getVersion": ["hvVer"], "getLibVersion": ["libVer"], "getFreeMemory": ["freeMemory"],
                 "domainDefineXML": ["xml", "domain"], "domainCreateXML": ["xmlDesc", "flags", "domain"],
                 "storagePoolDefineXML": ["xml", "flags", "pool"],
                 "storagePoolCreateXML": ["xmlDesc", "flags", "pool"]},
        "Domain": {"getXMLDesc": ["flags", "xml"], "getInfo": ["info"], "create": [], "destroy": [],
                   "suspend": [], "resume": [], "shutdown": [], "reboot": ["flags"], "undefine": []},
        "Pool": {"getXMLDesc": ["flags", "xml"], "getInfo": ["info"], "create": ["flags"], "destroy": [],
                 "refresh": ["flags"], "undefine": [], "storageVolCreateXML": ["xmlDesc", "flags", "volume"]},
        "Volume": {"getXMLDesc": ["flags", "xml"], "getInfo": ["info"], "delete": ["flags"]},
    }
    for class_name, methods in before.items():
        for name, args in methods.items():
            method = SCHEMA.cls(class_name).methods[name]
            assert [a.name for a in method.arguments] == args, f"{class_name}.{name}"
    assert SCHEMA.cls("Domain").methods["getInfo"].outputs[0].fields == (
        "state", "maxMem", "memory", "nrVirtCpu", "cpuTime")


def test_flags_are_uint32_default_0_with_their_constants() -> None:
    flags = [a for c in SCHEMA.classes.values() for m in c.methods.values() for a in m.inputs
             if a.name == "flags"]
    assert len(flags) > 150
    assert all(a.type in ("uint32", "uint64") and a.default == 0 for a in flags)
    reboot = SCHEMA.cls("Domain").methods["reboot"].inputs[0]
    assert ("VIR_DOMAIN_REBOOT_ACPI_POWER_BTN", 1) in reboot.flags


# --- the generator refuses incomplete inputs ------------------------------------------------------------


def _exclusions_without(tmp_path: Path, *functions: str) -> Path:
    text = schemagen.EXCLUSIONS_XML.read_text(encoding="utf-8")
    for function in functions:
        line = next(l for l in text.splitlines() if f'function="{function}"' in l)
        text = text.replace(line + "\n", "")
    path = tmp_path / "exclusions.xml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_function_that_cannot_be_shaped_is_refused_not_dropped(tmp_path: Path) -> None:
    overrides = dict(load_overrides())
    del overrides["virDomainOpenConsole"]  # its virStreamPtr argument is shaped there (type stream)
    with pytest.raises(GenerateError) as info:
        schemagen.generate(API, overrides=overrides)
    (problem,) = info.value.problems
    assert problem.startswith("virDomainOpenConsole") and "overrides.xml" in problem


def test_a_function_without_binding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="virConnectListDomains: libvirt-python has no binding"):
        schemagen.generate(API, exclusions=load_exclusions(_exclusions_without(tmp_path, "virConnectListDomains")))


def test_stale_rules_and_overrides_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "exclusions.xml"
    path.write_text(schemagen.EXCLUSIONS_XML.read_text(encoding="utf-8").replace(
        "</exclusions>", '<exclude function="virDomainFrobnicate" category="fd"/></exclusions>'))
    overrides = dict(load_overrides())
    overrides["virDomainFrob"] = overrides["virDomainGetInfo"]
    with pytest.raises(GenerateError) as info:
        schemagen.generate(API, overrides=overrides, exclusions=load_exclusions(path))
    assert sorted(info.value.problems) == [
        "exclusions.xml: rule 'virDomainFrobnicate' matches no in-scope function",
        "overrides.xml: virDomainFrob is not an in-scope libvirt function"]


def test_an_excluded_function_cannot_also_be_shaped() -> None:
    overrides = dict(load_overrides())
    overrides["virDomainOpenGraphics"] = overrides["virDomainGetInfo"]
    with pytest.raises(GenerateError, match="virDomainOpenGraphics: excluded .* but shaped in overrides.xml"):
        schemagen.generate(API, overrides=overrides)


def test_base_must_not_declare_methods(tmp_path: Path) -> None:
    base = tmp_path / "base.xml"
    base.write_text(schemagen.BASE_XML.read_text(encoding="utf-8").replace(
        "</class>", '<method name="x" libvirt="virX"/></class>', 1), encoding="utf-8")
    with pytest.raises(GenerateError, match="methods are generated"):
        build(base=base)
