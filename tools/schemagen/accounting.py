"""Coverage: every in-scope function of libvirt-api.xml accounted for, exposed by the schema or excluded.

The report is virtq.schema.coverage's; the generator writes it to schema/coverage.json, which
``virtq schema coverage`` prints.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from virtq.schema import Schema
from virtq.schema.coverage import COUNTS, Coverage, CoverageRow

from .api import Api, load_api
from .classes import CLASSES, family_class
from .exclusions import Exclusions, load_exclusions


def coverage(schema: Schema, api: Optional[Api] = None, exclusions: Optional[Exclusions] = None) -> Coverage:
    """Account for every in-scope function of libvirt-api.xml: exposed by the schema, or excluded."""
    api = api or load_api()
    exclusions = exclusions or load_exclusions()
    exposed = {m.libvirt: c.name for c in schema.classes.values() for m in c.methods.values()}
    counts: Dict[str, Dict[str, int]] = {c.name: dict.fromkeys(COUNTS, 0) for c in CLASSES}
    per_category: Dict[str, int] = {name: 0 for name in exclusions.categories}
    unaccounted: List[str] = []
    conflicts: List[str] = []
    for fn in api.in_scope():
        exclusion = exclusions.match(fn.name)
        cls = exposed.get(fn.name) or family_class(fn.name, fn.args[0].type if fn.args else None)
        row = counts[cls]
        row["functions"] += 1
        if fn.name in exposed:
            row["exposed"] += 1
            if exclusion is not None:
                conflicts.append(f"{fn.name}: exposed as {cls} but excluded by {exclusion.rule}")
        elif exclusion is not None:
            row["excluded"] += 1
            per_category[exclusion.category.name] += 1
            if exclusion.category.applicable:
                row["unsupported"] += 1
        else:
            row["unaccounted"] += 1
            unaccounted.append(fn.name)
    conflicts += [f"{name}: exposed by the schema but not in libvirt-api.xml" for name in sorted(exposed)
                  if name not in api.functions]
    rows = tuple(CoverageRow(c.name, **counts[c.name]) for c in CLASSES)
    categories = tuple((c, per_category[c.name]) for c in exclusions.categories.values())
    return Coverage(api.version, rows, categories, tuple(unaccounted), tuple(conflicts), api.sha256)
