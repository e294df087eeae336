"""Agents played by hand against a real Console: heartbeats, the load's answer, pushes — each fed through
the console's ingest (``console.ingest.apply``) on the connection (a RecordingTransport) it would come in on."""

from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional, Sequence

from virtq.console import Console
from virtq.schema import default_schema
from virtq.schema.codec import (AgentHeartbeat, AgentInfo, DataIndication, DataRecord, ObjectId, QueryRequest,
                                QueryResponse, StatsBatch, StatsIndication, now_ns)
from virtq.testing import RecordingTransport, wait_until


SCHEMA = default_schema()
DOMAIN = SCHEMA.cls("Domain").schema_id


def domain(agent: str, uuid: str, name: str, epoch: int = 1, deleted: bool = False) -> DataRecord:
    ts = now_ns()
    return DataRecord(ObjectId(f"Domain:{uuid}", agent, epoch), DOMAIN, {"uuid": uuid, "name": name, "id": -1},
                      update_ts=ts, create_ts=ts, delete_ts=ts if deleted else 0)


def heartbeat(agent: str, epoch: int = 1, **attributes: Any) -> AgentHeartbeat:
    return AgentHeartbeat(AgentInfo(agent, epoch, 1, now_ns(), attributes={"hostname": agent.rsplit(":", 1)[-1],
                                                                          **attributes}), agent=agent)


def feed(console: Console, transport: RecordingTransport, message: Any, url: str = "url") -> None:
    console.ingest.apply(url, transport, message.encode("x"))


def push(console: Console, transport: RecordingTransport, agent: str, records: Sequence[DataRecord]) -> None:
    feed(console, transport, DataIndication(records=tuple(records), agent=agent))


def stats(console: Console, transport: RecordingTransport, agent: str, uuids: Sequence[str], epoch: int = 1,
          columns: Optional[Mapping[str, Any]] = None) -> None:
    cols: Dict[str, Any] = {k: [v] * len(uuids) for k, v in (columns or {"cpuTime": 1}).items()}
    feed(console, transport, StatsIndication(batches=(StatsBatch(DOMAIN, epoch, now_ns(), tuple(uuids), cols),),
                                             agent=agent))


def answer_load(console: Console, transport: RecordingTransport, agent: str, records: Sequence[DataRecord],
                answered: int = 0) -> int:
    """Wait for the console's next object query on ``transport`` and answer it as ``agent``; the queries
    answered so far (pass it back)."""
    queries = wait_until(lambda: transport.messages(QueryRequest)[answered:], 5, message="the console's next query")
    request = queries[0]
    feed(console, transport, QueryResponse(items=tuple(records), correlation_id=request.correlation_id, agent=agent))
    return answered + 1


def follow(console: Console, transport: RecordingTransport, agent: str, records: Sequence[DataRecord],
           **attributes: Any) -> None:
    """An honest agent's first heartbeat and its load's answer: the console then follows it."""
    feed(console, transport, heartbeat(agent, **attributes))
    answer_load(console, transport, agent, records)
    wait_until(lambda: agent in console.loading.loaded, 5)
    time.sleep(0.01)
