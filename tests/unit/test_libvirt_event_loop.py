"""libvirt's event loop starts when the agent opens its libvirt connection, never as a side effect of an
import: each test runs in a fresh interpreter, where nothing else has started it yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def threads_after(code: str) -> str:
    """The names of the threads alive after ``code`` ran in a new interpreter."""
    script = textwrap.dedent(code) + "\nimport threading\nprint(sorted(t.name for t in threading.enumerate()))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_importing_the_agent_and_its_libvirt_modules_starts_no_thread() -> None:
    assert threads_after("""
        import virtq.agent
        import virtq.agent.libvirt_adapter
        import virtq.agent.libvirt_events
        import virtq.agent.main
    """) == "['MainThread']"


def test_opening_connections_starts_one_event_loop_thread() -> None:
    assert threads_after("""
        from virtq.agent.libvirt_adapter import LibvirtHypervisor
        first, second = LibvirtHypervisor("test:///default"), LibvirtHypervisor("test:///default")
        first.close()
        second.close()
    """) == "['MainThread', 'libvirt-events']"
