"""The ``virtq`` command's setup: ``--version``, profiles in virtq.conf, exit codes when some agents are
unreachable, URL checks before connecting (scheme, DNS), and shell completion."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest
from click.testing import Result

from virtq.agent import Agent
from virtq.console.cli import _profiles
from virtq.schema import default_schema
from virtq.testing import agent_url

from ..helpers import VIRTQ, failed, ok, process_env, run_cli
from .test_cli import NODE_DOMAINS, dead_url, table

pytestmark = pytest.mark.integration


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG_CONFIG_HOME, and no system file."""
    monkeypatch.setattr(_profiles, "SYSTEM_FILE", tmp_path / "etc-virtq.conf")
    home = tmp_path / "config"
    (home / "virtq").mkdir(parents=True)
    return home


def cli(home: Path, *args: str, **env: str) -> Result:
    unset: Dict[str, Optional[str]] = {"VIRTQ_URL": None, "VIRTQ_PROFILE": None}
    return run_cli(args, env={**unset, "XDG_CONFIG_HOME": str(home), **env})


def names(text: str) -> set[str]:
    return {r["name"] for r in table(text)}


def test_version_names_the_package_and_the_schema() -> None:
    out = ok(run_cli(["--version"]))
    assert out.startswith("virtq ") and f"(schema {default_schema().hash})" in out
    done = subprocess.run([str(VIRTQ), "--version"], capture_output=True, text=True, timeout=30, env=process_env())
    assert done.returncode == 0 and done.stdout == out


def test_a_named_profile_gives_the_urls(node_agent: Agent, config_home: Path) -> None:
    (config_home / "virtq" / "virtq.conf").write_text(
        f"[default]\nurls = {dead_url()}\ntimeout = 2\n\n[profile lab]\nurls = {agent_url(node_agent)}\ntimeout = 3\n")
    assert names(ok(cli(config_home, "--profile", "lab", "list", "domains", "--all"))) == NODE_DOMAINS
    assert names(ok(cli(config_home, "list", "domains", "--all", VIRTQ_PROFILE="lab"))) == NODE_DOMAINS
    # no profile named: [default], whose URL nobody serves
    assert "unreachable" in failed(cli(config_home, "list", "domains"), 3)
    # the command line wins over the profile
    assert names(ok(cli(config_home, "-u", agent_url(node_agent), "list", "domains", "--all"))) == NODE_DOMAINS


def test_the_user_file_wins_over_the_system_file_key_by_key(node_agent: Agent, config_home: Path) -> None:
    _profiles.SYSTEM_FILE.write_text(f"[profile lab]\nurls = {dead_url()}\naddressing = direct\n")
    (config_home / "virtq" / "virtq.conf").write_text(f"[profile lab]\nurl = {agent_url(node_agent)}\n")
    assert names(ok(cli(config_home, "-p", "lab", "list", "domains", "--all"))) == NODE_DOMAINS


@pytest.mark.parametrize("conf, args, message", [
    ("[profile lab]\nurls = amqp://127.0.0.1:1\n[profile prod]\nurls = amqp://127.0.0.1:2\n", ["-p", "staging"],
     "no profile 'staging'; known profiles: lab, prod"),
    ("[profile lab]\nurlz = amqp://127.0.0.1:1\n", ["-p", "lab"], "unknown key 'urlz'"),
    ("[profile lab]\ntimeout = soon\n", ["-p", "lab"], "profile lab: timeout:"),
])
def test_profile_mistakes_are_usage_errors(config_home: Path, conf: str, args: list[str], message: str) -> None:
    (config_home / "virtq" / "virtq.conf").write_text(conf)
    assert message in failed(cli(config_home, *args, "list", "domains"), 2)


def test_a_profile_in_a_real_process(node_agent: Agent, tmp_path: Path) -> None:
    (tmp_path / "virtq").mkdir()
    (tmp_path / "virtq" / "virtq.conf").write_text(f"[profile lab]\nurls = {agent_url(node_agent)}\n")
    env: Dict[str, str] = {**process_env(), "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([str(VIRTQ), "-p", "lab", "--json", "list", "domains", "--all"], capture_output=True,
                          text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert {d["name"] for d in json.loads(done.stdout)} == NODE_DOMAINS


def test_some_urls_unreachable_exit_7_unless_partial_ok(node_agent: Agent) -> None:
    url = dead_url()
    result = run_cli(["-u", url, "-u", agent_url(node_agent), "list", "domains", "--all"])
    assert result.exit_code == 7
    assert names(result.stdout) == NODE_DOMAINS  # the output covers the agents that answered
    assert "warning:" in result.stderr and url in result.stderr and "1 of 2 URL(s) unreachable" in result.stderr
    assert ok(run_cli(["--partial-ok", "-u", url, "-u", agent_url(node_agent), "list", "domains"]))
    # watch follows the agents and keeps retrying the URL: its absence at the start does not decide the exit
    result = run_cli(["-u", url, "-u", agent_url(node_agent), "watch", "--timeout", "0.3"])
    assert result.exit_code == 0 and url in result.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:5672", "127.0.0.1:5672"])
def test_a_url_scheme_other_than_amqp_is_a_usage_error(url: str) -> None:
    err = failed(run_cli(["-u", url, "list", "domains"]), 2)
    assert "Usage:" in err and "the scheme must be amqp:// or amqps://" in err


def test_a_dns_failure_is_reported_as_such() -> None:
    err = failed(run_cli(["-u", "amqp://no-such-host.invalid:5672", "--timeout", "2", "list", "domains"]), 3)
    assert "cannot resolve host 'no-such-host.invalid'" in err and "(DNS)" in err
    assert "no answer within" not in err and "Traceback" not in err


def test_a_dns_failure_among_good_urls_is_partial(node_agent: Agent) -> None:
    result = run_cli(["-u", "amqp://no-such-host.invalid:5672", "-u", agent_url(node_agent), "list", "domains"])
    assert result.exit_code == 7 and "cannot resolve host" in result.stderr


def complete(*words: str, **variables: str) -> list[str]:
    """What ``virtq`` completes for the last of ``words`` (bash, via click's _VIRTQ_COMPLETE), in a process
    whose environment has ``variables`` too."""
    env = {**process_env(), **variables, "_VIRTQ_COMPLETE": "bash_complete",
           "COMP_WORDS": " ".join(("virtq", *words)), "COMP_CWORD": str(len(words))}
    done = subprocess.run([str(VIRTQ)], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    return [line.partition(",")[2] for line in done.stdout.splitlines() if line]  # (none: one empty line)


def test_completion_of_commands_classes_and_methods() -> None:
    assert complete("li") == ["list"]
    assert complete("call", "do") == ["domain"]
    assert complete("call", "domain", "web1", "sus") == ["suspend"]
    assert complete("methods", "pool", "getI") == ["getInfo"]
    assert set(complete("list", "")) == {"nodes", "domains", "pools", "volumes", "snapshots", "checkpoints"}
    assert complete("methods", "snapshot", "isC") == ["isCurrent"]


def test_completion_of_object_references_asks_the_agents(node_agent: Agent) -> None:
    url = agent_url(node_agent)
    assert set(complete("-u", url, "call", "domain", "")) == NODE_DOMAINS
    assert complete("-u", url, "show", "domain", "web") == ["web1", "web2"]
    assert complete("-u", url, "call", "domain", "3f0b6a") == ["3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01"]  # web1
    assert complete("-u", url, "call", "domain", "3f0b") == ["3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01"]  # 4 digits
    assert complete("-u", url, "call", "domain", "3f0") == []  # fewer: names only
    assert complete("show", "domain", "db", VIRTQ_URL=url) == ["db1"]  # the agents the environment names
    assert complete("-u", dead_url(), "call", "domain", "") == []  # nothing there: no candidates, no noise


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## The command line"):text.index("## The console library")]


def test_readme_documents_every_exit_code() -> None:
    from virtq.console.cli import _errors
    rows = re.findall(r"^\| (\d) \| ", readme_section(), flags=re.M)
    codes = {0, 1, 2} | {v for k, v in vars(_errors).items() if k.startswith("EXIT_")}
    assert sorted(int(r) for r in rows) == sorted(codes)


def test_readme_profile_example_loads(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = re.search(r"```ini\n(.*?)```", readme_section(), flags=re.S)
    assert example is not None
    (config_home / "virtq" / "virtq.conf").write_text(example.group(1))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    assert _profiles.profile_names() == ["lab", "prod"]
    lab = _profiles.load_profile("lab")
    assert lab["urls"].split() == ["amqps://hv01.lab:5671", "amqps://hv02.lab:5671"]
    assert lab["tls_cert"] == str(Path.home() / ".virtq" / "ops.crt")
    assert _profiles.load_profile("prod")["addressing"] == "rabbitmq"
    assert _profiles.load_profile(None) == {"urls": "amqp://127.0.0.1:5672"}
