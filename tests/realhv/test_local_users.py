"""Local users on a real hypervisor: the default loopback listener is read-only without a policy.

An unprivileged local user (uid ``nobody``) runs the CLI against the agent's default listener, as it
could before this was secured: it may list and read, and its destroy is refused with libvirt's own
access-denied error while the guest keeps running. Local principals that may change things
authenticate as remote ones do, with a client certificate (TLS on loopback): the other tests of this
tier do exactly that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Iterator, List

import libvirt
import pytest

from virtq.agent import Agent
from virtq.testing import agent_url

from ..conftest import AgentFactory
from .conftest import TinyGuest

pytestmark = pytest.mark.realhv

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]


def as_nobody(args: List[str]) -> subprocess.CompletedProcess[str]:
    """``virtq ARGS`` as uid nobody (the CLI of this checkout, through this interpreter)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*AS_NOBODY, sys.executable, "-m", "virtq.console.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.fixture
def running_guest(real_libvirt: str, tiny_guest: Callable[[], TinyGuest]) -> Iterator[libvirt.virDomain]:
    conn = libvirt.open(real_libvirt)
    try:
        guest = tiny_guest()
        dom = conn.defineXML(guest.xml)
        dom.create()
        yield dom
    finally:
        conn.close()


def test_nobody_can_read_but_not_destroy(start_agent: AgentFactory, real_libvirt: str,
                                         running_guest: libvirt.virDomain) -> None:
    agent: Agent = start_agent(real_libvirt)  # no policy, plain AMQP on loopback: the defaults
    assert agent.policy.source.startswith("default for a real hypervisor on loopback")
    probe = subprocess.run([*AS_NOBODY, "id", "-u"], capture_output=True, text=True, timeout=10)
    assert probe.stdout.strip() == "65534", probe.stderr

    listed = as_nobody(["-u", agent_url(agent), "--json", "list", "domains"])
    assert listed.returncode == 0, listed.stderr
    assert running_guest.name() in listed.stdout

    info = as_nobody(["-u", agent_url(agent), "call", "domain", running_guest.UUIDString(), "getInfo"])
    assert info.returncode == 0, info.stderr

    destroyed = as_nobody(["-u", agent_url(agent), "call", "domain", running_guest.UUIDString(), "destroy"])
    assert destroyed.returncode == 5, destroyed.stdout + destroyed.stderr
    assert "0x10058: access denied: anonymous lacks domain:stop" in destroyed.stderr
    assert running_guest.isActive() == 1
    assert running_guest.info()[0] == libvirt.VIR_DOMAIN_RUNNING
