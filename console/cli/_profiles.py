"""Named connection profiles, like openstacksdk's ``clouds.yaml``: ``/etc/virtq/virtq.conf`` then
``~/.config/virtq/virtq.conf`` (``$XDG_CONFIG_HOME``), INI files whose ``[profile NAME]`` sections (and
``[default]``, used when no profile is named) give urls, addressing, tls-cert, tls-key, tls-ca, timeout and
agent-users. The user's file wins over the system's, key by key; the command line and the environment win
over both (a profile only replaces the built-in defaults)."""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Dict, List, Optional

import click

KEYS = {"urls": "urls", "url": "urls", "addressing": "addressing", "tls-cert": "tls_cert", "tls-key": "tls_key",
        "tls-ca": "tls_ca", "timeout": "timeout", "agent-users": "agent_users"}
"""A profile's keys (underscores accepted too) -> the option they stand for."""
SYSTEM_FILE = Path("/etc/virtq/virtq.conf")


def config_files() -> List[Path]:
    """Where profiles are read from, the one that wins last."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [SYSTEM_FILE, Path(base) / "virtq" / "virtq.conf"]


def _read() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read([str(p) for p in config_files()], encoding="utf-8")
    except configparser.Error as exc:
        raise click.UsageError(f"virtq.conf: {exc}") from exc
    return parser


def profile_names(parser: Optional[configparser.ConfigParser] = None) -> List[str]:
    """The profiles the files define."""
    sections = (parser or _read()).sections()
    return sorted(s.partition(" ")[2].strip() for s in sections if s.startswith("profile "))


def load_profile(name: Optional[str]) -> Dict[str, str]:
    """The option values of profile ``name`` ({} when none is named and there is no ``[default]``); an unknown
    profile or key is a usage error."""
    parser = _read()
    section = "default" if name is None else f"profile {name}"
    if not parser.has_section(section):
        if name is None:
            return {}
        known = ", ".join(profile_names(parser)) or "none (files: " + ", ".join(map(str, config_files())) + ")"
        raise click.UsageError(f"no profile {name!r}; known profiles: {known}")
    values: Dict[str, str] = {}
    for key, value in parser.items(section):
        option = KEYS.get(key.replace("_", "-"))
        if option is None:
            raise click.UsageError(f"virtq.conf [{section}]: unknown key {key!r}; keys: {', '.join(sorted(KEYS))}")
        values[option] = os.path.expanduser(value) if option.startswith("tls_") else value
    return values
