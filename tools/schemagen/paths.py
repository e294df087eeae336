"""Where the generator's inputs and outputs live in the source tree."""

from __future__ import annotations

from pathlib import Path

COMMAND = "python -m tools.schemagen"
"""How the generator is run (from the top of the source tree); the generated files name it."""

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schema"
API_XML = Path("/usr/share/libvirt/api/libvirt-api.xml")
BASE_XML = SCHEMA_DIR / "base.xml"
OVERRIDES_XML = SCHEMA_DIR / "overrides.xml"
EXCLUSIONS_XML = SCHEMA_DIR / "exclusions.xml"
ACL_TSV = SCHEMA_DIR / "libvirt-remote-acl.tsv"
PERMISSIONS_XML = SCHEMA_DIR / "permissions.xml"
OUTPUT_XML = SCHEMA_DIR / "org.libvirt.xml"
COVERAGE_JSON = SCHEMA_DIR / "coverage.json"
CONSTANTS_JSON = SCHEMA_DIR / "constants.json"
DOCS_MD = ROOT / "docs" / "SCHEMA.md"  # its generated part is kept in step
ENUMS_PY = SCHEMA_DIR / "enums.py"  # libvirt's enums the console hands out (DomainState …)
TYPED_STUB = ROOT / "console" / "typed.pyi"  # the snapshots' Protocols, for mypy
