"""SIGHUP re-reads the configuration file: what can change live is applied, the rest named (issue 13, item 1).

The reload works on main()'s own click context, made here by ``virtq-agent``'s command from a command
line, so the file, the command line and the environment weigh as they do in the daemon.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, List

import click
import pytest

from virtq.agent import Agent
from virtq.agent import main as agent_main
from virtq.agent.logformat import JsonFormatter, TextFormatter
from virtq.agent.reload import Reloader, reread
from virtq.schema import default_schema
from virtq.testing import FakeHypervisor, MemoryBus

SCHEMA = default_schema()
READONLY = "[principal anonymous]\nroles = readonly\n"
ADMIN = "[principal anonymous]\nroles = admin\n"


def context(*args: str) -> click.Context:
    command = agent_main.main
    assert isinstance(command, click.Command)
    return command.make_context("virtq-agent", list(args))


def write_config(path: Path, **options: str) -> Path:
    path.write_text("[agent]\n" + "".join(f"{k.replace('_', '-')} = {v}\n" for k, v in options.items()))
    return path


@pytest.fixture(autouse=True)
def no_agent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIG", "LIBVIRT", "LISTEN", "HEARTBEAT", "LOG_LEVEL", "LOG_FORMAT", "POLICY"):
        monkeypatch.delenv(f"VIRTQ_AGENT_{name}", raising=False)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    bus = MemoryBus()
    agent = Agent(SCHEMA, FakeHypervisor.with_running_domains(1), bus.agent_transport(), heartbeat=60, interval=60,
                  slow_interval=60, reconcile=600, state_dir=tmp_path)
    agent.start()
    yield agent
    agent.stop()
    bus.close()


@pytest.fixture
def handler() -> Iterator[logging.Handler]:
    """The daemon's stderr handler stands in; the root and proton levels are put back afterwards."""
    root, proton = logging.getLogger(), logging.getLogger("proton")
    levels = root.level, proton.level
    yield logging.StreamHandler()
    root.setLevel(levels[0])
    proton.setLevel(levels[1])


def messages(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "virtq.agent.reload"]


def test_a_reread_takes_the_file_but_the_command_line_wins(tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.conf", heartbeat="5", log_level="debug", broker="amqp://a amqp://b")
    ctx = context("--config", str(config), "--heartbeat", "7")
    assert ctx.params["heartbeat"] == 7.0 and ctx.params["log_level"] == "debug"
    write_config(config, heartbeat="9", interval="3")
    values = reread(ctx, config)
    assert values["heartbeat"] == 7.0  # the command line's
    assert values["interval"] == 3.0  # the file's, typed as the option is
    assert values["log_level"] == "info"  # gone from the file: the default again
    assert values["brokers"] == ()


def test_the_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTQ_AGENT_HEARTBEAT", "4")
    config = write_config(tmp_path / "agent.conf", heartbeat="5")
    ctx = context("--config", str(config))
    write_config(config, heartbeat="6")
    assert reread(ctx, config)["heartbeat"] == 4.0


def test_policy_and_logging_change_live_the_rest_is_named(tmp_path: Path, agent: Agent, handler: logging.Handler,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    readonly, admin = tmp_path / "readonly.ini", tmp_path / "admin.ini"
    readonly.write_text(READONLY)
    admin.write_text(ADMIN)
    config = write_config(tmp_path / "agent.conf", policy=str(readonly), listen="amqp://127.0.0.1:5672")
    ctx = context("--config", str(config))
    reloader = Reloader(ctx, agent, handler)
    write_config(config, policy=str(admin), listen="amqp://127.0.0.1:5673", heartbeat="3", log_level="debug",
                 log_format="json")
    with caplog.at_level(logging.INFO):
        reloader.reload()
        assert logging.getLogger().level == logging.DEBUG  # (caplog puts its own level back afterwards)
    assert agent.policy.describe().endswith("anonymous: admin")
    assert logging.getLogger("proton").level == logging.INFO  # proton's debug lines only at trace
    assert isinstance(handler.formatter, JsonFormatter)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(f"SIGHUP: --listen, --heartbeat changed in {config}: needs a restart")
    assert ctx.params["listen"] == "amqp://127.0.0.1:5672"  # what is in force stays
    assert ctx.params["policy"] == str(admin) and ctx.params["log_level"] == "debug"

    write_config(config, policy=str(admin), listen="amqp://127.0.0.1:5673", heartbeat="3", log_level="trace")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        reloader.reload()
    assert logging.getLogger("proton").level == logging.NOTSET
    assert isinstance(handler.formatter, TextFormatter)  # log-format gone from the file: auto
    assert "SIGHUP: --log-level is now trace" in messages(caplog)


def test_a_broken_file_keeps_the_configuration_but_the_policy_is_read_again(
        tmp_path: Path, agent: Agent, handler: logging.Handler, caplog: pytest.LogCaptureFixture) -> None:
    policy = tmp_path / "policy.ini"
    policy.write_text(READONLY)
    config = write_config(tmp_path / "agent.conf", policy=str(policy), log_level="warning")
    reloader = Reloader(context("--config", str(config)), agent, handler)
    policy.write_text(ADMIN)
    for broken in ("[agent]\nlog-level = loud\n", "[agent]\nport = 1\n", "log-level = debug\n"):
        config.write_text(broken)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            reloader.reload()
        assert reloader.ctx.params["log_level"] == "warning"
        assert any(m.startswith("SIGHUP: keeping the configuration in force: ") for m in messages(caplog)), broken
    assert agent.policy.describe().endswith("anonymous: admin")


def test_a_policy_dropped_from_the_file_gives_the_default_policy(tmp_path: Path, agent: Agent,
                                                                 handler: logging.Handler) -> None:
    policy = tmp_path / "policy.ini"
    policy.write_text(READONLY)
    config = write_config(tmp_path / "agent.conf", policy=str(policy))
    reloader = Reloader(context("--config", str(config)), agent, handler)
    write_config(config)
    reloader.reload()
    assert reloader.ctx.params["policy"] is None
    assert agent.policy.describe().startswith("default ")


def test_without_a_file_only_the_policy_is_read_again(tmp_path: Path, agent: Agent, handler: logging.Handler,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    policy = tmp_path / "policy.ini"
    policy.write_text(READONLY)
    reloader = Reloader(context("--policy", str(policy)), agent, handler)
    policy.write_text("[principal anonymous]\nroles = superuser\n")
    with caplog.at_level(logging.INFO):
        reloader.reload()
    assert any("keeping the policy in force" in m and "superuser" in m for m in messages(caplog))
