"""Repository.of_agent reads an index kept by upsert/remove (a resync of each of 1,000 agents used to
scan all 40,000 domains: virtq-fleet's console spent its loading time there)."""

from __future__ import annotations

from virtq.console import Console
from virtq.console.objects import RemoteObject
from virtq.schema import default_schema
from virtq.schema.codec import ObjectId

SCHEMA = default_schema()


def _dom(console: Console, agent: str, i: int) -> RemoteObject:
    uuid = f"00000000-0000-4000-8000-{i:012d}"
    return RemoteObject(console, SCHEMA.cls("Domain"), ObjectId(f"Domain:{uuid}", agent, 1),
                        {"uuid": uuid, "name": f"vm{i}", "id": i}, 10 + i)


def test_of_agent_follows_upserts_and_removals() -> None:
    console = Console()
    repo = console.domains
    a = [_dom(console, "agent-a", i) for i in range(5)]
    b = [_dom(console, "agent-b", i) for i in range(3)]
    for obj in a + b:
        repo.upsert(obj)
    assert {o.name for o in repo.of_agent("agent-a")} == {f"vm{i}" for i in range(5)}
    assert len(repo.of_agent("agent-b")) == 3 and repo.of_agent("agent-c") == []
    newer = a[0].with_stats({"state": 1}, 99)
    repo.upsert(newer)
    assert [o for o in repo.of_agent("agent-a") if o.name == "vm0"][0].stats == {"state": 1}
    assert repo.remove(a[1].object_id) is a[1]
    assert repo.remove(a[1].object_id) is None
    assert {o.name for o in repo.of_agent("agent-a")} == {"vm0", "vm2", "vm3", "vm4"}
    for obj in b:
        repo.remove(obj.object_id)
    assert repo.of_agent("agent-b") == [] and len(repo) == 4
    assert sorted(o.name for o in repo) == sorted(o.name for o in repo.of_agent("agent-a"))
