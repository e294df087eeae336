"""Names the shell completes and the CLI suggests: class names, method names (from the schema, so completion
needs no connection), object references (from the agents, a short look), and "did you mean" for a misspelt choice.

Completion is click's: ``eval "$(_VIRTQ_COMPLETE=bash_source virtq)"`` (``zsh_source``, ``fish_source``)."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import click
from click.shell_completion import CompletionItem

from virtq.console import Console
from virtq.schema import default_schema
from virtq.schema.constants import suggest


class Choice(click.Choice):  # type: ignore[type-arg]  # generic only in newer click
    """click's Choice whose error suggests the closest choice instead of only listing them all."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            hint = suggest(str(value).lower(), [str(c) for c in self.choices], 1)
            if not hint:
                raise
            raise click.BadParameter(f"{value!r}{hint.replace('; did', ' — did')}", ctx, param) from exc


SCHEMA_CLASSES = {"snapshot": "DomainSnapshot", "checkpoint": "DomainCheckpoint"}
"""The CLASS argument's names that are not their schema class's name in lower case."""


def schema_class(name: str) -> str:
    """The schema class a CLASS argument names: domain -> Domain, snapshot -> DomainSnapshot."""
    return SCHEMA_CLASSES.get(name.lower(), name.capitalize())


def complete_method(ctx: click.Context, param: click.Parameter, incomplete: str) -> List[CompletionItem]:
    """The methods of the class named earlier on the command line (none before it is)."""
    class_name = ctx.params.get("class_name")
    if not isinstance(class_name, str):
        return []
    cls = default_schema().cls(schema_class(class_name))
    return [CompletionItem(name, help=method.libvirt) for name, method in sorted(cls.methods.items())
            if name.startswith(incomplete)]


REF_TIMEOUT = 2.0
"""Seconds completion waits for the agents' answers (the console's timeout; a shell waits for it)."""


def complete_ref(ctx: click.Context, param: click.Parameter, incomplete: str) -> List[CompletionItem]:
    """Names (and uuids, once what is typed looks like one) of the objects of the class named before it, from
    the agents the command line or the environment names (-u, --addressing, --tls-*; not a profile). Completion
    must print nothing but candidates: anything that goes wrong completes nothing."""
    class_name = ctx.params.get("class_name")
    root = ctx.find_root().params
    urls = list(root.get("urls") or ())
    if not isinstance(class_name, str) or not urls:
        return []
    logging.getLogger().setLevel(logging.CRITICAL)  # (this process only completes)
    try:
        security: Dict[str, Any] = {k: root.get(k) for k in ("tls_cert", "tls_key", "tls_ca", "agent_users")}
        with Console(urls, timeout=REF_TIMEOUT, addressing=str(root.get("addressing") or "direct"),
                     **security) as console:
            repository = console.repository(class_name)
            names = sorted({str(o.values.get("name", "")) for o in repository} - {""})
            uuids = sorted({str(o.values.get("uuid", "")) for o in repository} - {""}) if len(incomplete) >= 4 \
                and all(c in "0123456789abcdef-" for c in incomplete.lower()) else []
    except Exception:  # noqa: BLE001 - an unreachable agent, a refused policy: no candidates, no noise
        return []
    return [CompletionItem(ref) for ref in names + uuids if ref.startswith(incomplete)]
