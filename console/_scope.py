"""Scopes: the repositories seen through a set of agents (a cluster) — seed 000's configurable set."""

from __future__ import annotations

from typing import Iterable, Iterator

from virtq.schema import errors

from .objects import RemoteObject
from .repository import Repository

__all__ = ["Scope", "ScopedRepository"]


class ScopedRepository:
    """A repository seen through a scope: only the objects of some agents."""

    def __init__(self, repo: Repository[RemoteObject], agents: Iterable[str]) -> None:
        self._repo = repo
        self.agent_names = frozenset(agents)
        self.class_name = repo.class_name

    def __iter__(self) -> Iterator[RemoteObject]:
        return iter([o for o in self._repo if o.agent in self.agent_names])

    def __len__(self) -> int:
        return sum(1 for o in self._repo if o.agent in self.agent_names)

    def get(self, ref: str) -> RemoteObject:
        found = [o for o in self if ref in (o.values.get("uuid"), o.values.get("name"), o.values.get("key"),
                                            o.values.get("path"), o.values.get("hostname"),
                                            o.object_id.object_name)]
        if not found:
            raise errors.UnknownRefError(f"no {self._repo.kind[:-1]} matches {ref!r} in this scope")
        if len(found) > 1:
            raise errors.AmbiguousRefError(f"{ref!r} matches {len(found)} {self._repo.kind} in this scope")
        return found[0]


class Scope:
    """nodes/domains/pools/volumes/snapshots/checkpoints of a set of agents."""

    def __init__(self, agent_names: Iterable[str], nodes: Repository[RemoteObject],
                 domains: Repository[RemoteObject], pools: Repository[RemoteObject],
                 volumes: Repository[RemoteObject], snapshots: Repository[RemoteObject],
                 checkpoints: Repository[RemoteObject]) -> None:
        names = frozenset(agent_names)
        self.agent_names = names
        self.nodes = ScopedRepository(nodes, names)
        self.domains = ScopedRepository(domains, names)
        self.pools = ScopedRepository(pools, names)
        self.volumes = ScopedRepository(volumes, names)
        self.snapshots = ScopedRepository(snapshots, names)
        self.checkpoints = ScopedRepository(checkpoints, names)
