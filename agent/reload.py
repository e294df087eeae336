"""SIGHUP (``systemctl reload``): read the configuration file and the access policy again, keep every connection.

What is in force came from the command line, the environment, the file and the built-in defaults. A reload
reads the file again and works out each option as a start with the same command line and environment would:
an option given on the command line or in the environment keeps its value (they win over the file, as at
start). Of what changed, the access policy and the logging options are applied at once; every other option
(the listen URL, brokers, TLS files, intervals …) is named in a WARNING as needing a restart and stays as it
is. A file that cannot be read or holds a bad value changes nothing; the policy file is still read again
(it is reloaded on its own, as before there was a configuration reload). A policy that does not load keeps
the one in force.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

import click
from click.core import ParameterSource

from virtq.schema import default_schema

from .config import ConfigError, read_options
from .logformat import formatter, set_level
from .policy import Policy, PolicyError, default_policy

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)

LIVE = ("policy", "log_level", "log_format")
"""Parameters a reload applies; the others need a restart."""
CONFIG_PATH = "virtq.agent.config"
"""Where the ``--config`` callback leaves the file's path in the click context's ``meta``."""


def reread(ctx: click.Context, path: Path) -> Dict[str, Any]:
    """Every parameter's value as a start with this command line, this environment and ``path`` would set it.
    Raises ConfigError or click.BadParameter (the file cannot be used)."""
    options = read_options(path, ctx.command)
    values: Dict[str, Any] = {}
    for param in ctx.command.params:
        name = param.name
        if not name or name not in ctx.params:
            continue
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            values[name] = ctx.params[name]
        else:
            values[name] = param.process_value(ctx, options.get(name, param.default))
    return values


def option_name(ctx: click.Context, name: str) -> str:
    param = next(p for p in ctx.command.params if p.name == name)
    return max(param.opts, key=len)


class Reloader:
    """Applies a reload to a running agent; ``ctx`` is main()'s click context (its ``params`` are what is in
    force, and are updated with what a reload applies)."""

    def __init__(self, ctx: click.Context, agent: "Agent", handler: logging.Handler) -> None:
        self.ctx = ctx
        self.agent = agent
        self.handler = handler
        config = ctx.meta.get(CONFIG_PATH)
        self.config: Optional[Path] = Path(config) if config else None

    def reload(self) -> None:
        in_force = self.ctx.params
        wanted: Mapping[str, Any] = in_force
        if self.config is not None:
            try:
                wanted = reread(self.ctx, self.config)
            except (ConfigError, click.BadParameter) as exc:
                log.error("SIGHUP: keeping the configuration in force: %s", exc.format_message()
                          if isinstance(exc, click.ClickException) else exc)
        changed = [name for name in wanted if wanted[name] != in_force.get(name)]
        restart = [option_name(self.ctx, name) for name in changed if name not in LIVE]
        if restart:
            log.warning("SIGHUP: %s changed in %s: needs a restart (systemctl restart virtq-agent); the values "
                        "in force stay until then", ", ".join(restart), self.config)
        for name in changed:
            if name in ("log_level", "log_format"):
                in_force[name] = wanted[name]
                log.info("SIGHUP: %s is now %s", option_name(self.ctx, name), wanted[name])
        set_level(in_force["log_level"])
        self.handler.setFormatter(formatter(in_force["log_format"]))
        self._reload_policy(wanted["policy"])

    def _reload_policy(self, path: Optional[str]) -> None:
        """Read the policy file again (another one if the configuration names another)."""
        if path is None and self.ctx.params["policy"] is None:
            log.info("SIGHUP: no --policy to read again")
            return
        try:
            policy = (Policy.from_file(Path(path), default_schema()) if path else
                      default_policy(default_schema(), self.agent.hypervisor.uri, self.agent.transport.exposed))
        except PolicyError as exc:
            log.error("SIGHUP: keeping the policy in force: %s", exc)
            return
        self.ctx.params["policy"] = path
        self.agent.set_policy(policy)
