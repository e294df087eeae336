"""``schema/constants.json``: every constant of libvirt's enums by name, so the console can take
``flags=VIR_DOMAIN_XML_INACTIVE|VIR_DOMAIN_XML_SECURE`` and name enum values without importing libvirt."""

from __future__ import annotations

import json
from typing import Dict, List

from .api import Api
from .paths import COMMAND


def render_constants(api: Api) -> str:
    """The file's text: deterministic (sorted, one entry a line), aliases resolved to their values."""
    enums: Dict[str, List[str]] = {kind: [name for name, _ in entries] for kind, entries in sorted(api.enums.items())
                                   if kind}
    document = {"generated_by": COMMAND, "api_version": api.version, "api_sha256": api.sha256,
                "constants": dict(sorted(api.constants.items())), "enums": enums}
    return json.dumps(document, indent=0, sort_keys=True) + "\n"
