"""The ``packed-1`` statistics codec under random and hostile input.

Random batches (0 to 1,500 rows, random presence, values of every width up to 2**64 - 1 and down to
-2**63, uuid and string keys) survive the agent's encoding, AMQP and the console's decoding unchanged;
malformed batches — each way the layout can be broken, and random damage to valid ones — are refused
with ProtocolError and never another exception.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from virtq.schema import default_schema
from virtq.schema.codec import TOPIC, StatsBatch, StatsIndication, WireMessage, decode
from virtq.schema.errors import ProtocolError
from virtq.transport._convert import roundtrip

SCHEMA = default_schema()
DOMAIN = SCHEMA.cls("Domain").schema_id
VOLUME = SCHEMA.cls("Volume").schema_id
AGENT = "libvirt.org:virtq:5b1f8c3e-9a2d-4e67-b0c4-7d3e2f1a9c55"

EDGES = (0, 1, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1)
"""Values at the edges of each width."""


def random_value(rng: random.Random, bits: int, signed: bool) -> int:
    if rng.random() < 0.1:
        return rng.choice(EDGES if not signed else (0, -1, -128, 127, -(2**63), 2**63 - 1))
    value = rng.getrandbits(bits)
    return value - (1 << (bits - 1)) if signed else value


def random_column(rng: random.Random, count: int) -> List[Optional[int]]:
    bits = rng.choice((1, 8, 16, 32, 64))
    signed = rng.random() < 0.15
    absent = rng.choice((0.0, 0.0, 0.25, 0.5, 0.99, 1.0))
    return [None if rng.random() < absent else random_value(rng, bits, signed) for _ in range(count)]


def random_text_key(rng: random.Random) -> str:
    alphabet = "/abcxyz-_.0123456789 éü漢\U0001f600"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))


def random_batch(rng: random.Random, count: Optional[int] = None) -> StatsBatch:
    if count is None:
        count = rng.choice((0, 1, 2, 7, 8, 9, rng.randrange(0, 1501)))
    uuid_keyed = rng.random() < 0.7
    keys = tuple(str(uuidlib.UUID(int=rng.getrandbits(128))) if uuid_keyed else random_text_key(rng)
                 for _ in range(count))
    columns = {f"s{i}": random_column(rng, count) for i in range(rng.randrange(0, 6))}
    return StatsBatch(DOMAIN if uuid_keyed else VOLUME, rng.randrange(1, 2**40), rng.getrandbits(63), keys,
                      columns)


def wire(batch: StatsBatch) -> WireMessage:
    return StatsIndication(batches=(batch,), agent=AGENT).encode(TOPIC, "agent.ind.stats.x")


@pytest.mark.parametrize("seed", range(8))
def test_random_batches_round_trip_through_amqp(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(30):
        batch = random_batch(rng)
        received = decode(roundtrip(wire(batch)))
        assert isinstance(received, StatsIndication)
        (got,) = received.batches
        assert got == batch
        assert all(type(v) is int for col in got.columns.values() for v in col if v is not None)


def test_the_largest_batch_round_trips() -> None:
    batch = random_batch(random.Random(99), 1500)
    assert decode(roundtrip(wire(batch))) == StatsIndication(batches=(batch,), agent=AGENT)


# --- malformed --------------------------------------------------------------------------------------

VALID = StatsBatch(DOMAIN, 3, 1_700_000_000_000_000_000,
                   tuple(str(uuidlib.UUID(int=i + 1)) for i in range(10)),
                   {"cpuTime": [2**40 + i for i in range(10)], "state": [None, 1] * 5}).to_wire()
VALID_TEXT = StatsBatch(VOLUME, 3, 1, ("/a", "/b"), {"capacity": [1, None]}).to_wire()


def changed(base: Dict[str, Any], **changes: Any) -> Dict[str, Any]:
    return {**base, **changes}


def column(name: str, raw: Any, base: Dict[str, Any] = VALID) -> Dict[str, Any]:
    return changed(base, _columns={**base["_columns"], name: raw})


CPU, STATE = VALID["_columns"]["cpuTime"], VALID["_columns"]["state"]

MALFORMED: List[Tuple[str, Any]] = [
    ("not-a-map", [VALID]),
    ("no-layout", {k: v for k, v in VALID.items() if k != "_layout"}),
    ("unknown-layout", changed(VALID, _layout="packed-9")),
    ("layout-not-a-string", changed(VALID, _layout=1)),
    ("count-missing", {k: v for k, v in VALID.items() if k != "_count"}),
    ("count-negative", changed(VALID, _count=-1)),
    ("count-bool", changed(VALID, _count=True)),
    ("count-string", changed(VALID, _count="10")),
    ("count-too-small", changed(VALID, _count=9)),
    ("count-too-large", changed(VALID, _count=11)),
    ("epoch-missing", {k: v for k, v in VALID.items() if k != "_agent_epoch"}),
    ("sample-ts-float", changed(VALID, _sample_ts=1.5)),
    ("keys-missing", {k: v for k, v in VALID.items() if k != "_keys"}),
    ("keys-a-list", changed(VALID, _keys=[uuidlib.UUID(int=1).bytes])),
    ("keys-empty", changed(VALID, _keys=b"")),
    ("keys-not-16-each", changed(VALID, _keys=VALID["_keys"][:-1])),
    ("keys-one-too-many", changed(VALID, _keys=VALID["_keys"] + bytes(16))),
    ("keys-unknown-form", changed(VALID, _keys=b"\x03" + VALID["_keys"][1:])),
    ("text-keys-not-utf8", changed(VALID_TEXT, _keys=b"\x02/a\x00\xff")),
    ("text-keys-too-few", changed(VALID_TEXT, _keys=b"\x02/a")),
    ("text-keys-too-many", changed(VALID_TEXT, _keys=b"\x02/a\x00/b\x00/c")),
    ("text-keys-for-no-rows", changed(VALID_TEXT, _count=0, _columns={}, _keys=b"\x02/a")),
    ("columns-missing", {k: v for k, v in VALID.items() if k != "_columns"}),
    ("columns-a-list", changed(VALID, _columns=[CPU])),
    ("column-name-not-a-string", changed(VALID, _columns={1: CPU})),
    ("column-a-list", column("cpuTime", [1] * 10)),
    ("column-empty", column("cpuTime", b"")),
    ("column-truncated", column("cpuTime", CPU[:-1])),
    ("column-one-value-short", column("cpuTime", CPU[:-8])),
    ("column-extra-byte", column("cpuTime", CPU + b"\x00")),
    ("width-0", column("cpuTime", b"\x00")),
    ("width-3", column("cpuTime", bytes([0x03]) + bytes(30))),
    ("width-16", column("cpuTime", bytes([0x0F]) + bytes(150))),
    ("reserved-bit", column("cpuTime", bytes([CPU[0] | 0x40]) + CPU[1:])),
    ("bitmap-truncated", column("state", STATE[:2])),
    ("bitmap-missing", column("state", STATE[:1])),
    ("bitmap-bits-past-the-rows", column("state", bytes([0x11, 0xAA, 0x02 | 0x04]) + bytes(6))),
    ("bitmap-more-rows-than-values", column("state", STATE[:-1])),
    ("bitmap-fewer-rows-than-values", column("state", STATE + b"\x01")),
    ("schema-id-not-a-map", changed(VALID, _schema_id="Domain")),
]


@pytest.mark.parametrize("body", [b for _, b in MALFORMED], ids=[i for i, _ in MALFORMED])
def test_malformed_batches_are_protocol_errors(body: Any) -> None:
    with pytest.raises(ProtocolError):
        StatsBatch.from_wire(body)
    with pytest.raises(ProtocolError):
        decode(roundtrip(WireMessage(TOPIC, wire(StatsBatch(DOMAIN, 1, 1, (), {})).properties, [body])))


def test_the_valid_bases_decode() -> None:
    """Each malformed case differs from a batch that decodes: the change alone is refused."""
    assert StatsBatch.from_wire(VALID).columns["state"] == [None, 1] * 5
    assert StatsBatch.from_wire(VALID_TEXT).keys == ("/a", "/b")


Damage = Callable[[random.Random, bytes], bytes]

DAMAGE: List[Damage] = [
    lambda rng, raw: raw[:rng.randrange(0, len(raw) + 1)],  # cut
    lambda rng, raw: raw + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 20))),  # extended
    lambda rng, raw: bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.2 else b for b in raw),  # flipped
    lambda rng, raw: bytes([rng.getrandbits(8)]) + raw[1:],  # a random header / form byte
]


@pytest.mark.parametrize("seed", range(4))
def test_random_damage_gives_a_batch_or_a_protocol_error(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(300):
        body = random_batch(rng, rng.choice((0, 1, 5, 17, 64))).to_wire()
        field = rng.choice(["_keys", *body["_columns"]])
        damage = rng.choice(DAMAGE)
        if field == "_keys":
            body["_keys"] = damage(rng, body["_keys"])
        else:
            body["_columns"][field] = damage(rng, body["_columns"][field])
        if rng.random() < 0.2:
            body["_count"] = max(0, body["_count"] + rng.choice((-1, 1)))
        try:
            StatsBatch.from_wire(body)
        except ProtocolError:
            pass
