"""The agent's configuration file: an INI ``[agent]`` section whose keys are the CLI's long options."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any, Dict

import click

SECTION = "agent"


class ConfigError(ValueError):
    pass


def read_config(path: Path, known: Dict[str, str]) -> Dict[str, str]:
    """Options from ``path`` keyed by parameter name.

    ``known`` maps long option names (``state-dir``) to parameter names (``state_dir``);
    keys may be written with dashes or underscores.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not parser.has_section(SECTION):
        raise ConfigError(f"{path}: no [{SECTION}] section")
    options = {key.replace("_", "-"): value for key, value in parser.items(SECTION)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return {known[key]: value for key, value in options.items()}


def long_options(command: click.Command) -> Dict[str, str]:
    """The command's long option names (``state-dir``) and their parameter names (``state_dir``): the settings,
    whose values reach the command, not ``--config`` (a file does not name another) or ``--version``."""
    return {opt[2:]: p.name for p in command.params if p.name and p.expose_value
            for opt in p.opts if opt.startswith("--")}


def read_options(path: Path, command: click.Command) -> Dict[str, Any]:
    """``read_config`` for ``command``: a repeatable option's values are separated by spaces."""
    options: Dict[str, Any] = dict(read_config(path, long_options(command)))
    for option in command.params:
        if option.name in options and option.multiple:
            options[option.name] = options[option.name].split()
    return options
