"""Migration failures through the whole stack, on libvirt's test driver (which cannot migrate): libvirt's refusal
is a typed MigrationFailedError (``virtq migrate`` exits 5), the domain stays where it was, and subscribers that
follow moves are told nothing. The successful paths need two real libvirtds: tests/realhv/test_real_migration.py."""

from __future__ import annotations

from typing import Callable

import pytest

from virtq.agent import Agent
from virtq.console import Console, MigrationFailedError
from virtq.console.events import DomainMigrated, ObjectAdded, ObjectRemoved

from ..helpers import NODE_URI, virtq

pytestmark = pytest.mark.integration


def test_libvirt_refusing_leaves_the_domain_where_it_was(start_agent: Callable[..., Agent],
                                                         connect: Callable[..., Console]) -> None:
    source, destination = start_agent(NODE_URI), start_agent("test:///default", instance="destination")
    console = connect(source, destination)
    web1 = console.domains.get("web1")
    with console.subscribe(kinds=(DomainMigrated, ObjectAdded, ObjectRemoved)) as moves:
        job = console.migrate(web1, to="destination")
        with pytest.raises(MigrationFailedError) as failed:
            job.wait(10)
        assert moves.get(timeout=0.3) is None
    assert failed.value.cause is not None and job.done
    assert console.domains.get("web1").agent == source.name
    result = virtq("migrate", "web1", "destination", obj=console)
    assert result.exit_code == 5 and "failed" in result.stderr, result.stderr
    assert virtq("migrate", "web1", "nowhere", obj=console).exit_code == 4  # no such agent
