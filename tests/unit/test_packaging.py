"""What each installable part needs: the console library installs and imports without libvirt-python (the agent's
extra, a C build) or click (the CLI's extra), and the CLI is built on the console library's public names only. What
a release carries: one version (package, commands, heartbeats), the licence, an sdist with docs/ and contrib/."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Dict, List, Set

from click.testing import CliRunner

from virtq import __version__, package_version
from virtq.agent import Agent
from virtq.agent import main as agent_main
from virtq.schema import default_schema
from virtq.testing import FakeHypervisor, MemoryBus

ROOT = Path(__file__).resolve().parents[2]
CLI_DIR = ROOT / "console" / "cli"
BIN = Path(sys.executable).parent


def test_the_console_library_needs_neither_libvirt_nor_click() -> None:
    """A fresh interpreter in which importing libvirt or click fails imports and constructs the console."""
    script = textwrap.dedent("""
        import sys
        sys.modules["libvirt"] = None  # an import of it raises ImportError
        sys.modules["click"] = None
        import virtq.console
        from virtq.console import Console
        from virtq.schema.coverage import load_coverage
        console = Console(timeout=1)
        try:
            assert console.domains is not None and load_coverage().ok
        finally:
            console.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("libvirt", "libvirtmod", "click")
                        and sys.modules[m] is not None)
        assert not loaded, loaded
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def _requirements() -> Dict[str, Set[str]]:
    """Distribution name -> the extras it is required under ("" for the base install)."""
    found: Dict[str, Set[str]] = {}
    for requirement in importlib.metadata.requires("virtq") or []:
        name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower()
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        found.setdefault(name, set()).add(extra.group(1) if extra else "")
    return found


def test_libvirt_and_click_are_extras() -> None:
    requirements = _requirements()
    assert requirements["libvirt-python"] == {"agent"}
    assert requirements["click"] == {"cli"}
    assert {name for name, extras in requirements.items() if "" in extras} == {"python-qpid-proton", "lxml"}
    assert {"pytest", "pytest-mock", "pytest-timeout"} <= {n for n, e in requirements.items() if "test" in e}


def _console_imports(path: Path) -> List[str]:
    """The virtq.console modules a CLI module imports from (relative imports stay inside the CLI package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level
               and node.module is not None]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    return [m for m in modules if m.startswith("virtq.console")]


def test_the_cli_uses_only_public_console_modules() -> None:
    used = {m for path in sorted(CLI_DIR.glob("*.py")) for m in _console_imports(path)}
    assert "virtq.console" in used
    private = [m for m in used if any(part.startswith("_") for part in m.split("."))]
    assert private == []


# --- version, licence, sdist -------------------------------------------------------------------------------


def test_one_version_everywhere() -> None:
    """setup.cfg takes virtq.__version__ (attr:), and virtq-agent prints what is installed, as virtq does."""
    assert re.search(r"^version = attr: virtq\.__version__$", (ROOT / "setup.cfg").read_text(), re.M)
    assert package_version() == __version__, "the installed virtq is older than this source: pip install -e ."
    expected = f"virtq-agent {__version__} (schema {default_schema().hash})\n"
    assert CliRunner().invoke(agent_main.main, ["--version"]).output == expected
    done = subprocess.run([str(BIN / "virtq-agent"), "-V"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, expected), done.stderr


def test_heartbeats_say_the_version(virtq_bus: MemoryBus) -> None:
    agent = Agent(default_schema(), FakeHypervisor.with_running_domains(1), virtq_bus.agent_transport(),
                  heartbeat=60)
    agent.start()
    try:
        assert agent.info().attributes["version"] == package_version()  # what each heartbeat carries
    finally:
        agent.stop()


def test_the_licence_is_declared_and_shipped() -> None:
    setup = (ROOT / "setup.cfg").read_text()
    assert re.search(r"^license = Apache-2.0$", setup, re.M) and re.search(r"^license_files = LICENSE$", setup, re.M)
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    assert "[LICENSE](LICENSE)" in (ROOT / "README.md").read_text()


def _shipped() -> List[str]:
    """Repository files the sdist must carry, relative to the root."""
    extra = [p for folder in ("docs", "contrib") for p in sorted((ROOT / folder).rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts]
    return [str(p.relative_to(ROOT)) for p in extra] + ["LICENSE", "CHANGELOG.md", "README.md"]


def test_the_sdist_carries_docs_contrib_licence_and_changelog(tmp_path: Path) -> None:
    """Built by setuptools' own PEP 517 backend (no download: the venv's setuptools) from a copy of the tree."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".typecheck", ".mypy_cache", ".pytest_cache", "__pycache__", "*.egg-info", "build", "dist"))
    script = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "dist")], cwd=source, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    name = done.stdout.split()[-1]
    assert name == f"virtq-{__version__}.tar.gz"
    with tarfile.open(tmp_path / "dist" / name) as sdist:
        top = f"virtq-{__version__}/"
        members = {m.name[len(top):] for m in sdist.getmembers() if m.isfile()}
        info = sdist.extractfile(top + "PKG-INFO")
        assert info is not None
        metadata = info.read().decode()
    missing = sorted(set(_shipped()) - members)
    assert not missing, f"the sdist lacks {missing}"
    assert {"schema/org.libvirt.xml", "virtq/py.typed", "agent/main.py"} <= members
    assert re.search(r"^License(-Expression)?: Apache-2.0$", metadata, re.M), metadata[:800]
    assert f"\nVersion: {__version__}\n" in metadata


def test_the_readme_names_what_each_extra_installs() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("Installed as a package"):].split("\n\n")[0]
    for extra in ("agent", "cli", "bench"):
        names = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in setup["options.extras_require"][extra].split()
                 if r[0].isalpha()]
        phrase = re.search(rf"`virtq\[{extra}\]`([^;]*)", paragraph)
        assert phrase, f"README does not say what virtq[{extra}] installs"
        assert [n for n in names if n not in phrase.group(1)] == [], (extra, names, phrase.group(1))


def test_the_changelog_has_the_current_version() -> None:
    """A release bumps __version__; its changelog section must exist (Keep a Changelog's headings)."""
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert headings[0] == "Unreleased"
    assert any(re.fullmatch(rf"{re.escape(__version__)} - \d{{4}}-\d\d-\d\d", h) for h in headings), headings
