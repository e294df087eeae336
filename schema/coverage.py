"""How much of libvirt's API the shipped schema covers, as committed in ``coverage.json``.

The build tool (``python -m tools.schemagen``, in a source tree) accounts for every function of the four
in-scope families of libvirt-api.xml and writes the report next to org.libvirt.xml; a test fails when the
committed file is not what the tool computes now. ``virtq schema coverage`` prints this report: reading it
needs neither libvirt, nor libvirt-api.xml, nor the generator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Tuple

__all__ = ["COVERAGE_FILE", "Category", "Coverage", "CoverageRow", "format_coverage", "load_coverage"]

COVERAGE_FILE = Path(__file__).with_name("coverage.json")
API_DIGEST_KEY = "libvirt_api_sha256"
"""The file's one key that is not the report's: which libvirt-api.xml the report was computed from."""
COUNTS = ("functions", "exposed", "excluded", "unsupported", "unaccounted")


@dataclass(frozen=True)
class Category:
    """A category of exclusions (schema/exclusions.xml)."""

    name: str
    applicable: bool  # True: applicable to the four classes but not exposed (counts against coverage)
    title: str
    reason: str = ""  # exclusions.xml's; not in coverage.json


@dataclass(frozen=True)
class CoverageRow:
    class_name: str
    functions: int  # in-scope functions counted under the class
    exposed: int
    excluded: int  # all exclusions
    unsupported: int  # excluded although applicable (counts against coverage)
    unaccounted: int

    @property
    def applicable(self) -> int:
        return self.exposed + self.unsupported + self.unaccounted

    @property
    def percent(self) -> float:
        return 100.0 * self.exposed / self.applicable if self.applicable else 100.0


@dataclass(frozen=True)
class Coverage:
    api_version: str
    rows: Tuple[CoverageRow, ...]
    categories: Tuple[Tuple[Category, int], ...]
    unaccounted: Tuple[str, ...]  # in-scope functions neither exposed nor excluded
    conflicts: Tuple[str, ...]  # exposed and excluded, or exposed but unknown to libvirt-api.xml
    api_sha256: str = ""  # of the libvirt-api.xml the report was computed from

    @property
    def total(self) -> CoverageRow:
        return CoverageRow("total", *(sum(getattr(r, f) for r in self.rows) for f in COUNTS))

    @property
    def ok(self) -> bool:
        return not self.unaccounted and not self.conflicts

    def to_json(self) -> Dict[str, Any]:
        def row(r: CoverageRow) -> Dict[str, Any]:
            return {"class": r.class_name, "functions": r.functions, "exposed": r.exposed,
                    "excluded": r.excluded, "unsupported": r.unsupported, "applicable": r.applicable,
                    "unaccounted": r.unaccounted, "coverage": round(r.percent, 1)}
        return {"libvirt_api": self.api_version, "classes": [row(r) for r in self.rows], "total": row(self.total),
                "categories": [{"category": c.name, "title": c.title, "applicable": c.applicable, "functions": n}
                               for c, n in self.categories],
                "unaccounted": list(self.unaccounted), "conflicts": list(self.conflicts)}

    def to_file_text(self) -> str:
        """What coverage.json holds: the report as ``virtq --json schema coverage`` prints it, and the digest."""
        data = {**self.to_json(), "ok": self.ok, API_DIGEST_KEY: self.api_sha256}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Coverage":
        rows = tuple(CoverageRow(r["class"], *(int(r[f]) for f in COUNTS)) for r in data["classes"])
        categories = tuple((Category(c["category"], bool(c["applicable"]), c["title"]), int(c["functions"]))
                           for c in data["categories"])
        return cls(str(data["libvirt_api"]), rows, categories, tuple(data["unaccounted"]), tuple(data["conflicts"]),
                   str(data.get(API_DIGEST_KEY, "")))


def load_coverage(path: Path = COVERAGE_FILE) -> Coverage:
    """The committed report (coverage.json, package data)."""
    return Coverage.from_json(json.loads(path.read_text(encoding="utf-8")))


def format_coverage(report: Coverage) -> str:
    """The report as ``virtq schema coverage`` prints it."""
    lines = [f"libvirt API {report.api_version}: functions of virConnect*/virNode*, virDomain*, "
             "virStoragePool*, virStorageVol*", ""]
    header = ("class", "functions", "exposed", "excluded", "unsupported", "applicable", "coverage")
    rows = [(r.class_name, r.functions, r.exposed, r.excluded, r.unsupported, r.applicable, f"{r.percent:.1f}%")
            for r in (*report.rows, report.total)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for i, row in enumerate([header, *rows]):
        if i == len(rows):
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(str(x).ljust(w) if j == 0 else str(x).rjust(w) for j, (x, w) in
                               enumerate(zip(row, widths))))
    lines += ["", "applicable = exposed + unsupported (applicable but not exposed yet); "
              "coverage = exposed / applicable", "", "excluded, by category:"]
    width = max(len(c.name) for c, _ in report.categories)
    for category, count in report.categories:
        kind = "applicable, not supported yet" if category.applicable else "not applicable"
        lines.append(f"  {category.name.ljust(width)}  {count:4d}  {category.title} ({kind})")
    if report.unaccounted:
        lines += ["", f"UNACCOUNTED ({len(report.unaccounted)}): neither exposed nor excluded:"]
        lines += [f"  {name}" for name in report.unaccounted]
    if report.conflicts:
        lines += ["", f"CONFLICTS ({len(report.conflicts)}):"] + [f"  {c}" for c in report.conflicts]
    return "\n".join(lines)
