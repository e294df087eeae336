"""virtq.testing's pytest plugin, used as a project that installed virtq uses it: no import, no conftest,
just the fixtures (pytest loads the plugin through virtq's ``pytest11`` entry point)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from virtq.agent import Agent
from virtq.console import Console
from virtq.testing import FakeHypervisor, MemoryBus, wait_until

pytestmark = pytest.mark.integration

NODE_XML = Path(__file__).parents[1] / "data" / "node.xml"


def test_the_plugin_is_registered_with_pytest(pytestconfig: pytest.Config) -> None:
    assert [e.value for e in entry_points(group="pytest11") if e.name == "virtq"] == ["virtq.testing.pytest_plugin"]
    assert pytestconfig.pluginmanager.has_plugin("virtq")


def test_the_console_sees_what_the_agent_serves(virtq_console: Console, virtq_agent: Agent) -> None:
    assert [a.name for a in virtq_console.agents] == [virtq_agent.name]
    assert "test" in {d.name for d in virtq_console.domains}


def test_code_under_test_connects_by_url(virtq_agent_url: str) -> None:
    manager = Console(virtq_agent_url, timeout=5)  # what an application does with the URL it is configured with
    manager.start()
    try:
        dom = manager.domains.get("test")
        dom.suspend()
        try:
            wait_until(lambda: manager.domains.get("test").state == 3)  # paused, pushed by the agent
        finally:
            dom.resume()
    finally:
        manager.close()


class TestAnotherHypervisor:
    @pytest.fixture
    def virtq_libvirt_uri(self) -> str:
        return f"test://{NODE_XML}"

    def test_an_overridden_uri_is_served(self, virtq_console: Console) -> None:
        assert {d.name for d in virtq_console.domains} == {"web1", "web2", "db1", "build"}


def test_the_in_memory_pieces(virtq_fake_hypervisor: FakeHypervisor, virtq_bus: MemoryBus, tmp_path: Path) -> None:
    from virtq.schema import default_schema

    with Agent(default_schema(), virtq_fake_hypervisor, virtq_bus.agent_transport(), state_dir=tmp_path):
        console = Console(transports=[virtq_bus.console_transport()], timeout=5)
        console.start()
        try:
            assert {d.name for d in console.domains} == {"test"}
        finally:
            console.close()
