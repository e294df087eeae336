"""docs/SECURITY.md followed as a newcomer would: its openssl commands, its policy, its agent command line.

The agent listens on amqps://0.0.0.0 (reached here over loopback) with the document's flags on
libvirt's test driver; the read-only certificate lists and reads but cannot destroy, the operator
certificate suspends, and a console without a certificate does not get in at all.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import List

import pytest

from virtq.testing import free_port

from ..helpers import NODE_URI, VIRTQ, agent_process, run_process, stop_process

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"


def block(name: str) -> str:
    """The fenced block that follows ``<!-- test: NAME -->`` in the document."""
    match = re.search(rf"<!-- test: {name} -->\n```\w*\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/SECURITY.md has no '{name}' block"
    return match.group(1)


def agent_command() -> List[str]:
    """The document's virtq-agent command line, as words (line continuations joined)."""
    match = re.search(r"```sh\n(virtq-agent .*?)\n```", DOC.read_text(), re.S)
    assert match
    return match.group(1).replace("\\\n", " ").split()[1:]


def test_the_security_guide_works_as_written(tmp_path: Path) -> None:
    subprocess.run(["bash", "-euo", "pipefail", "-c", block("certificates")], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    (tmp_path / "policy.ini").write_text(block("policy"))
    port = free_port()
    args = agent_command()
    assert args[args.index("--listen") + 1] == "amqps://0.0.0.0:5671"
    assert args[args.index("--libvirt") + 1] == "qemu:///system"
    args[args.index("--listen") + 1] = f"amqps://0.0.0.0:{port}"  # a free port, and libvirt's test driver
    args[args.index("--libvirt") + 1] = NODE_URI
    args = [str(tmp_path / Path(a).name) if a.startswith("/etc/virtq/") else a for a in args]
    url = f"amqps://localhost:{port}"

    def virtq(who: str, *command: str) -> "subprocess.CompletedProcess[str]":
        tls = ["--tls-ca", "ca.crt"] + (["--tls-cert", f"{who}.crt", "--tls-key", f"{who}.key"] if who else [])
        return run_process([str(VIRTQ), "-u", url, "--timeout", "5", *tls, *command], tmp_path)

    with agent_process([*args, "--heartbeat", "1"], port, tmp_path) as (proc, log_path):
        listed = virtq("reader", "--json", "list", "domains", "--all")
        assert listed.returncode == 0, listed.stderr
        assert {d["name"] for d in json.loads(listed.stdout)} == {"web1", "web2", "db1", "build"}
        assert virtq("reader", "xml", "domain", "web1").stdout.lstrip().startswith("<domain")

        denied = virtq("reader", "call", "domain", "web1", "destroy")
        assert denied.returncode == 5
        assert "0x10058: access denied: principal 'reader' lacks domain:stop" in denied.stderr

        suspended = virtq("ops", "call", "domain", "web1", "suspend")
        assert suspended.returncode == 0, suspended.stderr
        assert json.loads(virtq("ops", "--json", "call", "domain", "web1", "getInfo").stdout)["result"]["state"] == 3

        tenant = virtq("tenant-a", "--json", "list", "domains")
        assert {d["name"] for d in json.loads(tenant.stdout)} == {"web1", "web2"}

        anonymous = virtq("", "list", "domains")
        assert anonymous.returncode == 3 and "certificate required" in anonymous.stderr

        stop_process(proc, log_path)
    log = log_path.read_text()
    assert "security: mutual TLS on amqps://0.0.0.0:" in log
    assert "reader: readonly; ops: operator; tenant-a: operator domains=web*; *: inventory" in log
