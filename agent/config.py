"""The agent's configuration file: an INI ``[agent]`` section whose keys are the CLI's long options."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Dict

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
