"""What each installable part needs: the console library installs and imports without libvirt-python (the agent's
extra, a C build) or click (the CLI's extra), and the CLI is built on the console library's public names only."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set

CLI_DIR = Path(__file__).resolve().parents[2] / "console" / "cli"


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
