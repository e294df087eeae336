"""Starting and stopping endpoints gives back every file descriptor they took.

proton's EventInjector never closes its wake-up pipe, so each reactor used to leak two descriptors at its
stop. A manager that makes a Console per task, or a process that starts and stops agents, then crept up to
select()'s limit of 1,024 — after which the listener refuses every connection (found by the full suite:
the real-hypervisor tier, running after ~900 leaked pipes, saw its TLS handshakes cut)."""

from __future__ import annotations

import os

from virtq.testing import connected_console, running_agent


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_consoles_and_agents_leave_no_descriptors_behind() -> None:
    with running_agent() as agent:
        with connected_console(agent) as console:
            assert len(console.domains) >= 1  # warm-up: libvirt's and proton's one-time descriptors
        before = _open_descriptors()
        for _ in range(10):
            with connected_console(agent) as console:
                assert len(console.domains) >= 1
        assert _open_descriptors() - before <= 1  # one may still be closing
    before = _open_descriptors()
    for _ in range(5):
        with running_agent():
            pass
    assert _open_descriptors() - before <= 1
