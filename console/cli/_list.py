"""``virtq list`` and ``virtq show``: objects across agents, like ``virsh list`` and ``virsh dominfo``, from what
the agents pushed (the state, memory and vCPUs of a domain are its latest statistics: no call is made)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import click

from virtq.console import Console, RemoteObject, describe
from virtq.schema.codec import ObjectId
from virtq.schema.states import DOMAIN_STATES

from ._app import class_arg, state_of
from ._complete import Choice, complete_ref
from ._output import emit_json, host_name, printable, table

COLUMNS: Dict[str, Sequence[str]] = {
    "Node": ("hostname", "uuid", "uri"),
    "Domain": ("name", "uuid", "id", "vcpus", "mem(MiB)", "state"),
    "Pool": ("name", "uuid"),
    "Volume": ("name", "key", "path", "pool"),
    "DomainSnapshot": ("domain", "name"),
    "DomainCheckpoint": ("domain", "name"),
}
"""The table's columns after HOST; a domain's STATE stays last (its words may hold a space, as virsh's do)."""
VIRSH_STATES: Dict[int, str] = {0: "no state", 1: "running", 2: "idle", 3: "paused", 4: "in shutdown",
                                5: "shut off", 6: "crashed", 7: "pmsuspended"}
"""virDomainState as ``virsh list`` prints it; ``--json`` and ``--state`` use the one-word names of
virtq.schema.states (the ones ``virsh list --state-shutoff`` … and ``virtq watch`` use)."""
KINDS = ("nodes", "domains", "pools", "volumes", "snapshots", "checkpoints")


def state_word(code: Any) -> str:
    """A pushed virDomainState as virsh prints it ('-' before the first sample)."""
    return VIRSH_STATES.get(code, "unknown") if isinstance(code, int) else "-"


def is_active(dom: RemoteObject) -> bool:
    """Running, paused … : what ``virsh list`` shows without ``--all`` (libvirt: an id other than -1)."""
    dom_id = dom.values.get("id")
    return isinstance(dom_id, int) and dom_id != -1


def domain_fields(dom: RemoteObject) -> Dict[str, Any]:
    """The pushed state, memory and vCPUs of a domain, as ``--json`` gives them (None: not sampled yet)."""
    code, memory = dom.stats.get("state"), dom.stats.get("memory")
    return {"state": DOMAIN_STATES.get(code, "unknown") if isinstance(code, int) else None,
            "memory_mib": memory / 1024 if isinstance(memory, int) else None, "vcpus": dom.stats.get("nrVirtCpu")}


def _text_fields(dom: RemoteObject) -> Dict[str, Any]:
    fields = domain_fields(dom)
    mib = fields["memory_mib"]
    return {"state": state_word(dom.stats.get("state")), "mem(MiB)": "-" if mib is None else f"{mib:.0f}",
            "vcpus": "-" if fields["vcpus"] is None else fields["vcpus"]}


def object_row(obj: RemoteObject) -> Dict[str, Any]:
    """An object as a row of ``list``'s table (HOST aside): its identity, a domain's state, vCPUs and memory."""
    return {**describe(obj), **(_text_fields(obj) if obj.class_name == "Domain" else {})}


def domain_name(console: Console, obj: RemoteObject) -> str:
    """The name of the domain a snapshot or checkpoint belongs to ("" when the console does not hold it)."""
    ref = obj.values.get("domain")
    dom = console.find(ref) if isinstance(ref, ObjectId) else None
    return str(dom.values.get("name", "")) if dom is not None else ""


def _sorted(console: Console, items: Iterable[RemoteObject]) -> List[RemoteObject]:
    return sorted(items, key=lambda o: (host_name(console, o.agent), domain_name(console, o),
                                        str(o.values.get("name", o.values.get("uuid", "")))))


def _chosen(objs: List[RemoteObject], show_all: bool, states: Tuple[str, ...]) -> List[RemoteObject]:
    if states:
        return [o for o in objs if domain_fields(o)["state"] in states]
    return objs if show_all else [o for o in objs if is_active(o)]


@click.command("list")
@click.argument("kind", type=Choice(KINDS, case_sensitive=False))
@click.option("-a", "--all", "show_all", is_flag=True, help="Domains: inactive ones too (as virsh list --all).")
@click.option("--state", "states", multiple=True, type=Choice(sorted(DOMAIN_STATES.values())),
              help="Domains: only those in this state, active or not (repeat for several).")
@click.pass_context
def list_(ctx: click.Context, kind: str, show_all: bool, states: Tuple[str, ...]) -> None:
    """List nodes, domains, pools, volumes, snapshots or checkpoints across agents.

    Like virsh list, domains are the active ones (running, paused …) unless --all or --state is given;
    their STATE, vCPUs and memory are the latest pushed statistics."""
    state = state_of(ctx)
    if states and kind.lower() != "domains":
        raise click.UsageError("--state filters domains only")
    console = state.console(ctx)
    repo = console.repository(kind)
    objs = _sorted(console, repo)
    if repo.class_name == "Domain":
        objs = _chosen(objs, show_all, states)
    extra = domain_fields if repo.class_name == "Domain" else None
    if state.as_json:
        emit_json([{"host": host_name(console, o.agent), **describe(o), **(extra(o) if extra else {})}
                   for o in objs])
        return
    if not objs:
        active = not (show_all or states) and repo.class_name == "Domain"
        click.echo(f"no active {repo.kind} (--all lists inactive ones too)" if active else f"no {repo.kind}")
        return
    rows = [{"host": host_name(console, o.agent), **object_row(o)} for o in objs]
    if "domain" in COLUMNS[repo.class_name]:  # a snapshot's or checkpoint's: the domain's name, not its object name
        rows = [{**row, "domain": domain_name(console, o) or row["domain"]} for row, o in zip(rows, objs)]
    table(rows, ("host", *COLUMNS[repo.class_name]))


def shown_stats(obj: RemoteObject) -> Dict[str, Any]:
    """The latest pushed statistics with their units, a domain's state as virsh words."""
    units = {s.name: s.unit for s in obj.schema.statistics}
    shown: Dict[str, Any] = {}
    for name, value in sorted(obj.stats.items()):
        if name == "state" and obj.class_name == "Domain":
            shown[name] = state_word(value)
        else:
            unit: Optional[str] = units.get(name)
            shown[name] = f"{value} {unit}" if unit else value
    return shown


@click.command()
@class_arg
@click.argument("ref", shell_complete=complete_ref)
@click.pass_context
def show(ctx: click.Context, class_name: str, ref: str) -> None:
    """Show one object (REF: uuid, name, key, path or AGENT/NAME): identity, configGen and the latest pushed
    statistics (a domain's state, memory, vCPUs, CPU time)."""
    state = state_of(ctx)
    console = state.console(ctx)
    obj = console.repository(class_name).get(ref)
    if state.as_json:
        extra = domain_fields(obj) if obj.class_name == "Domain" else {}
        emit_json({**describe(obj), "host": host_name(console, obj.agent), "stats": dict(obj.stats), **extra})
        return
    lines = {**describe(obj), "host": host_name(console, obj.agent), **shown_stats(obj)}
    width = max(len(k) for k in lines) + 2
    for key, value in lines.items():
        click.echo(f"{key + ':':<{width}}{printable(value)}")
