"""Names the shell completes and the CLI suggests: class names, method names (from the schema, so completion
needs no connection), and "did you mean" for a misspelt choice.

Completion is click's: ``eval "$(_VIRTQ_COMPLETE=bash_source virtq)"`` (``zsh_source``, ``fish_source``)."""

from __future__ import annotations

from typing import Any, List, Optional

import click
from click.shell_completion import CompletionItem

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


def complete_method(ctx: click.Context, param: click.Parameter, incomplete: str) -> List[CompletionItem]:
    """The methods of the class named earlier on the command line (none before it is)."""
    class_name = ctx.params.get("class_name")
    if not isinstance(class_name, str):
        return []
    cls = default_schema().cls(class_name.capitalize())
    return [CompletionItem(name, help=method.libvirt) for name, method in sorted(cls.methods.items())
            if name.startswith(incomplete)]
