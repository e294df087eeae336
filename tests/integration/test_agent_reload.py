"""SIGHUP (systemctl reload) reads the policy again without dropping anyone; the agent lives on."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from virtq.testing import free_port, wait_until

from ..helpers import NODE_URI, VIRTQ, agent_process, run_process, stop_process

pytestmark = pytest.mark.integration


def test_sighup_reloads_the_policy_and_keeps_serving(tmp_path: Path) -> None:
    policy = tmp_path / "policy.ini"
    policy.write_text("[principal anonymous]\nroles = admin\n")
    port = free_port()
    url = f"amqp://127.0.0.1:{port}"

    def virtq(*args: str) -> "subprocess.CompletedProcess[str]":
        return run_process([str(VIRTQ), "-u", url, "--timeout", "5", *args], tmp_path)

    with agent_process(["--libvirt", NODE_URI, "--listen", url, "--policy", str(policy), "--heartbeat", "1"],
                       port, tmp_path) as (proc, log_path):
        assert virtq("call", "domain", "web1", "suspend").returncode == 0

        policy.write_text("[principal anonymous]\nroles = readonly\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "access policy reloaded" in log_path.read_text(), timeout=10)
        denied = virtq("call", "domain", "web1", "resume")
        assert denied.returncode == 5 and "access denied: anonymous lacks domain:suspend" in denied.stderr
        assert json.loads(virtq("--json", "call", "domain", "web1", "getInfo").stdout)["result"]["state"] == 3

        policy.write_text("[principal anonymous]\nroles = superuser\n")  # a typo: the policy in force stays
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the policy in force" in log_path.read_text(), timeout=10)
        assert "unknown role(s) superuser" in log_path.read_text()
        assert virtq("call", "domain", "web1", "resume").returncode == 5
        assert proc.poll() is None  # SIGHUP used to end the agent (status 129)
        stop_process(proc, log_path)
