"""``python -m tools.schemagen``: write (or, with --check, verify) the generated files; --report prints the
coverage of the committed schema against a libvirt-api.xml, writing nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from virtq.schema import SchemaError, default_schema, load
from virtq.schema.coverage import format_coverage

from .accounting import coverage
from .api import load_api
from .constants import render_constants
from .docs import render_docs
from .enums import render_enums
from .errors import GenerateError
from .paths import API_XML, COMMAND, CONSTANTS_JSON, COVERAGE_JSON, DOCS_MD, ENUMS_PY, OUTPUT_XML, TYPED_STUB
from .schemaxml import build
from .stubs import render_stub


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Generate the schema's methods from libvirt's own "
                                     "API description (docs/SCHEMA.md).")
    parser.add_argument("--api", type=Path, default=API_XML, help=f"libvirt-api.xml (default: {API_XML})")
    parser.add_argument("--output", type=Path, default=OUTPUT_XML, help="where to write (default: org.libvirt.xml)")
    parser.add_argument("--coverage", type=Path, default=COVERAGE_JSON,
                        help="where to write the coverage report virtq schema coverage prints "
                             "(default: schema/coverage.json)")
    parser.add_argument("--docs", type=Path, default=DOCS_MD,
                        help="the document whose generated part to update (default: docs/SCHEMA.md, when present)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an output would change")
    parser.add_argument("--report", action="store_true",
                        help="print the committed schema's coverage of --api's functions; exit 1 if some are "
                             "unaccounted for; write nothing")
    return parser


def _outputs(args: argparse.Namespace) -> List[Tuple[Path, str]]:
    """Each output file with the text it must have."""
    api = load_api(args.api)
    text = build(api=api)
    schema = load(text.encode())
    outputs = [(args.output, text), (args.coverage, coverage(schema, api).to_file_text())]
    if args.output == OUTPUT_XML:  # the committed schema's constants (tests that write elsewhere leave them)
        outputs.append((CONSTANTS_JSON, render_constants(api)))
        # the runtime's generated modules: libvirt's enums, and the snapshots' Protocols for mypy
        outputs += [(ENUMS_PY, render_enums(api)), (TYPED_STUB, render_stub(schema))]
    if args.docs.exists():
        outputs.append((args.docs, render_docs(args.docs.read_text(encoding="utf-8"), schema, api)))
    return outputs


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.report:
            report = coverage(default_schema(), load_api(args.api))
            print(format_coverage(report))
            return 0 if report.ok else 1
        outputs = _outputs(args)
    except (GenerateError, FileNotFoundError, SchemaError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    stale = [(path, new) for path, new in outputs
             if (path.read_text(encoding="utf-8") if path.exists() else "") != new]
    if args.check:
        for path, _ in stale:
            print(f"{path} is out of date: run {COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for path, new in stale:
        path.write_text(new, encoding="utf-8")
        print(f"wrote {path}")
    if not stale:
        print("up to date: " + ", ".join(str(path) for path, _ in outputs))
    return 0
