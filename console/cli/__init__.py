"""``virtq``: ad-hoc calls on the console library. Parse, call the console, format.

One module a command family: ``_list`` (list, show), ``_objects`` (call, xml), ``_agents``, ``_watch``,
``_top``, ``_exporter``, ``_schema`` (methods, schema coverage), ``_stream`` (screenshot, volume download|upload),
``_serial`` (console), ``_migrate``; ``_app`` holds the group and its global
options (``_profiles``: virtq.conf; ``_resolve``: URL checks), ``_arguments`` parses a call's arguments,
``_results`` prints its result, ``_complete`` completes and suggests names, ``_output`` is what every
command prints through, ``_errors`` the exit codes: 0 ok; 1 other errors; 2 usage; 3 agent
unreachable / not connected; 4 unknown or ambiguous reference; 5 error reported by the agent (libvirt's
included); 6 timeout; 7 some URLs unreachable (the output covers the others; --partial-ok: 0).
"""

from __future__ import annotations

from ._agents import agents
from ._app import cli
from ._exporter import exporter
from ._list import list_, show
from ._migrate import migrate
from ._objects import call, xml
from ._output import printable, xml_text
from ._schema import methods, schema_group
from ._serial import console
from ._stream import screenshot, volume
from ._top import top
from ._watch import KINDS, Watcher, watch

__all__ = ["KINDS", "Watcher", "cli", "main", "printable", "xml_text"]

for _command in (agents, call, console, exporter, list_, methods, migrate, schema_group, screenshot, show, top, volume,
                 watch, xml):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="virtq")
