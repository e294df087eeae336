"""The console API documentation's examples run, in order, against a real agent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from virtq.agent import Agent
from virtq.agent.libvirt_adapter import LibvirtHypervisor
from virtq.agent.policy import Policy
from virtq.schema import default_schema
from virtq.testing import agent_url

from ..helpers import NODE_URI
from ..streaming import FileStreams
from ..pki import Pki

pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "CONSOLE.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_console_doc_has_examples() -> None:
    assert len(python_blocks(DOC.read_text())) >= 6


def test_console_doc_examples_run(start_agent: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch,
                                  pki: Pki, tmp_path: Path) -> None:
    # statistics every 0.2 s: the examples wait on pushes, not sleeps; volume and console streams from files and
    # an echo (the test driver has none: tests/streaming.py)
    agent = start_agent(FileStreams(LibvirtHypervisor(NODE_URI), tmp_path), interval=0.2)
    monkeypatch.setenv("VIRTQ_URL", agent_url(agent))
    secured = start_agent(NODE_URI, tls=pki.tls("agent", cn="hv01"),
                          policy=Policy.parse("[principal reader]\nroles = readonly\n", default_schema()))
    reader = pki.tls("reader")
    for name, value in (("URL", agent_url(secured)), ("CERT", reader.cert), ("KEY", reader.key), ("CA", reader.ca)):
        monkeypatch.setenv(f"VIRTQ_TLS_{name}", str(value))
    namespace: Dict[str, Any] = {}
    try:
        for number, block in enumerate(python_blocks(DOC.read_text()), 1):
            code = compile(block, f"{DOC.name}[block {number}]", "exec")
            exec(code, namespace)  # noqa: S102 - the documentation's own examples
    finally:
        console = namespace.get("console")
        if console is not None:
            console.close()
