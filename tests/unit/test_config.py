"""The agent's INI configuration file and how virtq-agent merges it with the command line."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List

import click
import pytest
from click.core import ParameterSource
from click.testing import CliRunner, Result

from virtq.agent import libvirt_adapter
from virtq.agent import main as agent_main
from virtq.agent.config import ConfigError, long_options, read_config

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {"libvirt": "libvirt_uri", "listen": "listen", "heartbeat": "heartbeat",
         "state-dir": "state_dir", "log-level": "log_level"}


def write(tmp_path: Path, text: str, name: str = "agent.conf") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- read_config ---------------------------------------------------------------------------------


def test_keys_map_to_parameter_names(tmp_path: Path) -> None:
    path = write(tmp_path, "[agent]\nlibvirt = test:///default\nstate-dir = /var/lib/x\n"
                           "log_level = debug\nheartbeat = 2.5\n")
    assert read_config(path, KNOWN) == {"libvirt_uri": "test:///default", "state_dir": "/var/lib/x",
                                        "log_level": "debug", "heartbeat": "2.5"}


def test_empty_section_gives_no_options(tmp_path: Path) -> None:
    assert read_config(write(tmp_path, "[agent]\n"), KNOWN) == {}


def test_other_sections_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "[console]\nwhatever = 1\n[agent]\nlisten = amqp://0.0.0.0:5672\n")
    assert read_config(path, KNOWN) == {"listen": "amqp://0.0.0.0:5672"}


def test_unknown_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[agent]\nlisten = x\nlibvirt-uri = test:///default\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown option.*bogus") as info:
        read_config(path, KNOWN)
    assert "libvirt-uri" in str(info.value)  # the parameter's name is not an option name
    assert str(path) in str(info.value)


def test_missing_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[virtq]\nlisten = x\n")
    with pytest.raises(ConfigError, match=r"no \[agent\] section"):
        read_config(path, KNOWN)


@pytest.mark.parametrize("text", ["listen = x\n", "[agent]\nlisten = x\nlisten = y\n", "[agent\n"],
                         ids=["no-section-header", "duplicate-key", "broken-header"])
def test_malformed_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(write(tmp_path, text), KNOWN)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.conf", KNOWN)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path, KNOWN)  # a directory
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"[agent]\ninstance = h\xe9\n")
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(path, KNOWN)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- virtq-agent --config ------------------------------------------------------------------------
# A libvirt URI no driver serves makes the command fail fast, before any daemon work, with a
# message naming the URI it was given: that shows which value won.


@pytest.fixture(autouse=True)
def only_bogus_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the config be ignored, fail at once instead of opening the default qemu:///system."""
    real = libvirt_adapter.LibvirtHypervisor

    def guarded(uri: str) -> Any:
        if not uri.startswith("bogus:"):
            pytest.fail(f"virtq-agent opened {uri}")
        return real(uri)

    monkeypatch.setattr(libvirt_adapter, "LibvirtHypervisor", guarded)


@pytest.fixture
def logging_config(monkeypatch: pytest.MonkeyPatch) -> List[Dict[str, Any]]:
    """Record main()'s logging.basicConfig call instead of configuring the test process."""
    calls: List[Dict[str, Any]] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: calls.append(kw))
    return calls


def run(*args: str) -> Result:
    env = {f"VIRTQ_AGENT_{n}": None for n in ("CONFIG", "LIBVIRT", "LISTEN", "HEARTBEAT", "LOG_LEVEL")}
    return CliRunner().invoke(agent_main.main, list(args), env=env)


def test_config_values_become_defaults(tmp_path: Path, logging_config: List[Dict[str, Any]]) -> None:
    path = write(tmp_path, "[agent]\nlibvirt = bogus:///from-config\nlog-level = debug\n")
    result = run("--config", str(path))
    assert result.exit_code == 1, result.output
    assert "cannot open libvirt bogus:///from-config" in result.output
    assert logging_config and logging_config[0]["level"] == "DEBUG"


@pytest.mark.parametrize("order", ["config-first", "config-last"])
def test_command_line_overrides_config(tmp_path: Path, logging_config: List[Dict[str, Any]],
                                       order: str) -> None:
    path = write(tmp_path, "[agent]\nlibvirt = bogus:///from-config\nlog-level = debug\n")
    config = ["--config", str(path)]
    cli = ["--libvirt", "bogus:///from-cli", "--log-level", "error"]
    result = run(*(config + cli if order == "config-first" else cli + config))
    assert result.exit_code == 1, result.output
    assert "cannot open libvirt bogus:///from-cli" in result.output
    assert "from-config" not in result.output
    assert logging_config[0]["level"] == "ERROR"


def test_without_config_the_builtin_defaults_apply(logging_config: List[Dict[str, Any]]) -> None:
    result = run("--libvirt", "bogus:///plain")
    assert result.exit_code == 1
    assert "bogus:///plain" in result.output
    assert logging_config[0]["level"] == "INFO"


def test_config_values_are_validated_like_options(tmp_path: Path, logging_config: List[Dict[str, Any]]) -> None:
    path = write(tmp_path, "[agent]\nlibvirt = bogus:///x\nheartbeat = 0.001\n")
    result = run("--config", str(path))
    assert result.exit_code == 2
    assert "heartbeat" in result.output
    assert not logging_config  # refused before main() ran


@pytest.mark.parametrize("text, message", [
    ("[agent]\nlibvirt = bogus:///x\nport = 1\n", "unknown option(s) port"),
    ("[agent]\nconfig = other.conf\n", "unknown option(s) config"),
    ("[agent]\nlibvirt = bogus:///x\nversion = true\n", "unknown option(s) version"),  # not: print and exit
    ("libvirt = bogus:///x\n", "cannot read"),
    ("[other]\n", "no [agent] section"),
], ids=["unknown-key", "config-in-config", "version-in-config", "no-section-header", "no-agent-section"])
def test_bad_config_is_a_usage_error(tmp_path: Path, logging_config: List[Dict[str, Any]],
                                     text: str, message: str) -> None:
    result = run("--config", str(write(tmp_path, text)))
    assert result.exit_code == 2
    assert "--config" in result.output and message in result.output
    assert not logging_config


def test_missing_config_file_is_a_usage_error(tmp_path: Path, logging_config: List[Dict[str, Any]]) -> None:
    result = run("--config", str(tmp_path / "nope.conf"), "--libvirt", "bogus:///x")
    assert result.exit_code == 2
    assert "nope.conf" in result.output
    assert "bogus:///x" not in result.output


def test_every_long_option_can_be_configured() -> None:
    """The contrib example and the command's own options agree (keys are the long options)."""
    command = agent_main.main
    assert isinstance(command, click.Command)
    known = {opt[2:]: p.name for p in command.params if p.name and p.name != "config"
             for opt in p.opts if opt.startswith("--")}
    assert known["libvirt"] == "libvirt_uri"
    options = read_config(ROOT / "contrib" / "agent.conf", known)
    assert options["libvirt_uri"] == "qemu:///system"
    assert set(options) <= set(known.values())


# --- security options ------------------------------------------------------------------------------


def test_plain_listen_off_loopback_is_refused(logging_config: List[Dict[str, Any]]) -> None:
    result = run("--libvirt", "bogus:///x", "--listen", "amqp://0.0.0.0:5672")
    assert result.exit_code == 2, result.output
    assert "refusing to listen on amqp://0.0.0.0:5672: plain AMQP on a non-loopback address" in result.output
    assert "bogus" not in result.output  # refused before libvirt was opened


def test_insecure_listen_warns(logging_config: List[Dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="virtq.agent"):
        result = run("--libvirt", "bogus:///x", "--listen", "amqp://0.0.0.0:5672", "--insecure-listen")
    assert result.exit_code == 1 and "cannot open libvirt bogus:///x" in result.output  # it went on
    assert any("INSECURE: plain AMQP on amqp://0.0.0.0:5672" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("args, message", [
    (["--listen", "amqps://0.0.0.0:5671"], "amqps:// needs --tls-cert, --tls-key and --tls-ca"),
    (["--listen", "amqps://0.0.0.0:5671", "--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key",
      "--tls-ca", "/nonexistent-ca.crt"], "missing or unreadable"),
    (["--listen", "ftp://127.0.0.1:21"], "the scheme must be amqp:// or amqps://"),
], ids=["amqps-without-files", "unreadable-files", "bad-scheme"])
def test_tls_listen_without_usable_files_is_a_start_error(logging_config: List[Dict[str, Any]], args: List[str],
                                                          message: str) -> None:
    result = run("--libvirt", "bogus:///x", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_bad_policy_file_is_a_usage_error(tmp_path: Path, logging_config: List[Dict[str, Any]]) -> None:
    policy = write(tmp_path, "[principal ops]\nroles = operater\n", "policy.ini")
    result = run("--libvirt", "bogus:///x", "--policy", str(policy))
    assert result.exit_code == 2
    assert "unknown role(s) operater" in result.output and "[principal ops]" in result.output


@pytest.mark.parametrize("mode, warned", [(0o644, True), (0o640, True), (0o600, False)])
def test_a_readable_config_file_with_a_password_is_warned_about(tmp_path: Path, logging_config: List[Dict[str, Any]],
                                                                mode: int, warned: bool) -> None:
    path = write(tmp_path, "[agent]\nlibvirt = bogus:///x\nbroker = amqp://mq:5672\nbroker-password = s3cret\n")
    path.chmod(mode)
    result = run("--config", str(path))
    assert ("holds a broker password and is readable by others than its owner" in result.output) == warned
    assert "s3cret" not in result.output


def test_the_readme_documents_every_agent_option() -> None:
    command = agent_main.main
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [opt for p in command.params for opt in p.opts if opt.startswith("--") and f"`{opt}" not in readme]
    assert not missing, f"README's agent option table lacks {missing}"


# --- every option: contrib/agent.conf and VIRTQ_AGENT_<OPTION> ---------------------------------------

def contrib_examples() -> Dict[str, str]:
    """contrib/agent.conf's value for each key, commented-out examples included (the first one a key has)."""
    found: Dict[str, str] = {}
    text = (ROOT / "contrib" / "agent.conf").read_text(encoding="utf-8")
    for key, value in re.findall(r"^#? ?([a-z][a-z-]*) = (.*)$", text, flags=re.M):
        found.setdefault(key, value)
    return found


def setting_options() -> Dict[str, str]:
    """Every long option but --config (it names the file) and --version (it prints and exits)."""
    options = long_options(agent_main.main)
    assert "config" not in options and "version" not in options and "libvirt" in options
    return options


def documented_variable(option: str) -> str:
    """README's rule: the long option in capitals with _ for -."""
    return "VIRTQ_AGENT_" + option.upper().replace("-", "_")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in [v for v in os.environ if v.startswith("VIRTQ_AGENT_")]:
        monkeypatch.delenv(variable)
    return monkeypatch


def test_contrib_agent_conf_names_every_option() -> None:
    missing = sorted(set(setting_options()) - set(contrib_examples()))
    assert not missing, f"contrib/agent.conf lacks {missing}"
    assert sorted(set(contrib_examples()) - set(setting_options())) == []


@pytest.mark.parametrize("option", sorted(setting_options()))
def test_every_option_reads_its_documented_variable(clean_environment: pytest.MonkeyPatch, tmp_path: Path,
                                                    option: str) -> None:
    """VIRTQ_AGENT_<OPTION> set to contrib/agent.conf's example gives what that line in a --config file gives."""
    name, value = setting_options()[option], contrib_examples()[option]
    from_file = agent_main.main.make_context("virtq-agent", ["--config", str(write(tmp_path, f"[agent]\n{option} = "
                                                                                        f"{value}\n"))])
    clean_environment.setenv(documented_variable(option), value)
    from_environment = agent_main.main.make_context("virtq-agent", [])
    assert from_environment.get_parameter_source(name) is ParameterSource.ENVIRONMENT
    assert from_environment.params[name] == from_file.params[name]


def test_the_configuration_file_comes_from_its_variable(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("VIRTQ_AGENT_CONFIG", str(ROOT / "contrib" / "agent.conf"))
    context = agent_main.main.make_context("virtq-agent", [])
    assert context.get_parameter_source("libvirt_uri") is ParameterSource.DEFAULT_MAP
    assert context.params["libvirt_uri"] == "qemu:///system" and context.params["state_dir"] == "/var/lib/virtq-agent"


def test_libvirt_uri_the_old_variable_name_still_works(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("VIRTQ_AGENT_LIBVIRT_URI", "test:///old-name")
    assert agent_main.main.make_context("virtq-agent", []).params["libvirt_uri"] == "test:///old-name"
    clean_environment.setenv("VIRTQ_AGENT_LIBVIRT", "test:///documented")  # both set: the documented one
    assert agent_main.main.make_context("virtq-agent", []).params["libvirt_uri"] == "test:///documented"


def test_command_line_then_environment_then_file(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = ["--config", str(write(tmp_path, "[agent]\nlibvirt = test:///file\nheartbeat = 3\n"))]
    clean_environment.setenv("VIRTQ_AGENT_LIBVIRT", "test:///environment")
    params = agent_main.main.make_context("virtq-agent", config).params
    assert (params["libvirt_uri"], params["heartbeat"]) == ("test:///environment", 3.0)
    params = agent_main.main.make_context("virtq-agent", [*config, "--libvirt", "test:///command-line"]).params
    assert params["libvirt_uri"] == "test:///command-line"


def test_the_version_is_not_taken_from_the_environment(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("VIRTQ_AGENT_VERSION", "1")  # would print the version and exit instead of serving
    assert agent_main.main.make_context("virtq-agent", []).params["libvirt_uri"] == "qemu:///system"


def test_the_readme_gives_each_options_default() -> None:
    """Rows of README's option table whose default is a literal (`10`, `info` …) say what click defaults to."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(--[a-z-]+)[^|]*\| `([^`|]+)` \|", readme, flags=re.M)
    defaults = {opt: p.default for p in agent_main.main.params for opt in p.opts}
    assert len(rows) >= 12
    wrong = [(opt, text, defaults[opt]) for opt, text in rows
             if (f"{defaults[opt]:g}" if isinstance(defaults[opt], float) else str(defaults[opt])) != text]
    assert not wrong, f"README's option table disagrees with virtq-agent: {wrong}"
