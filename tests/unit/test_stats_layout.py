"""The ``packed-1`` layout of pushed statistics (``_stats``): goldens, the layout's choices, and what
consoles and agents of the map form before it make of it.

The goldens are ``golden/stats/<case>.json``, quoted verbatim by docs/PROTOCOL.md section 10 like the other
goldens (tests/unit/test_codec_golden.py). JSON has no binaries, so a golden writes each AMQP binary as the
string ``"binary:<hex>"``, its bytes grouped by the layout's parts (key form byte, keys; column header,
presence bitmap, values); the spaces are only for reading. Regenerate after a deliberate change with::

    VIRTQ_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_stats_layout.py
"""

from __future__ import annotations

import dataclasses
import json
import uuid as uuidlib
from typing import Any, Dict, List, Optional, Sequence

import pytest

from bench.ingest.legacy import legacy_from_wire, legacy_to_wire
from virtq.schema.codec import TOPIC, StatsBatch, StatsIndication, WireMessage, decode, stats_subject
from virtq.schema.errors import ProtocolError
from virtq.transport._convert import encoded_size, roundtrip

from .test_codec_golden import (AGENT, DOMAIN_ID, EPOCH, GOLDEN_DIR, NEW_UUID, PROTOCOL_MD, REGEN, T_UPDATE,
                                VOL_KEY, VOLUME_ID, WEB1_UUID, WEB2_UUID, canonical, render, wire_fields)

STATS_GOLDEN_DIR = GOLDEN_DIR / "stats"
BINARY = "binary:"

# --- the goldens -------------------------------------------------------------------------------------

CASES: Dict[str, StatsBatch] = {
    # a periodic pass: web1 and web2 used CPU, web2 was paused (3), new1 started (1) with every value new
    "stats_indication_domain": StatsBatch(
        DOMAIN_ID, EPOCH, T_UPDATE, (WEB1_UUID, WEB2_UUID, NEW_UUID),
        {"state": [None, 3, 1], "maxMem": [None, None, 524288], "memory": [None, None, 524288],
         "nrVirtCpu": [None, None, 2], "cpuTime": [81_234_000_000, 1_795_296_018_493, 20_000_000]}),
    # string keys: two volumes, sampled every slow interval
    "stats_indication_volume": StatsBatch(
        VOLUME_ID, EPOCH, T_UPDATE, (VOL_KEY, "/var/lib/virtq-test/images/db1.img"),
        {"type": [0, 0], "capacity": [10_737_418_240, 2_147_483_648], "allocation": [2_147_483_648, 1_048_576]}),
}


def message(batch: StatsBatch) -> StatsIndication:
    return StatsIndication(batches=(batch,), agent=AGENT)


def wire_of(batch: StatsBatch) -> WireMessage:
    return message(batch).encode(TOPIC, stats_subject(batch.schema_id.package, batch.schema_id.class_name))


def _groups(data: bytes, size: int) -> List[str]:
    return [data[i:i + size].hex() for i in range(0, len(data), size)]


def show_keys(raw: bytes) -> str:
    if raw[0] == 0x01:
        return BINARY + " ".join(["01", *_groups(raw[1:], 16)])
    return BINARY + " ".join(["02", " 00 ".join(k.hex() for k in raw[1:].split(b"\0"))]).rstrip()


def show_column(raw: bytes, count: int) -> str:
    width, start = raw[0] & 0x0F, 1 + ((count + 7) // 8 if raw[0] & 0x10 else 0)
    return BINARY + " ".join([f"{raw[0]:02x}", *([raw[1:start].hex()] if start > 1 else []),
                              *_groups(raw[start:], width)])


def shown(fields: Dict[str, Any]) -> Dict[str, Any]:
    """The message's fields with each binary written as the golden writes it."""
    body = [dict(batch, _keys=show_keys(batch["_keys"]),
                 _columns={name: show_column(raw, batch["_count"]) for name, raw in batch["_columns"].items()})
            for batch in fields["body"]]
    return dict(fields, body=body)


def binaries(value: Any) -> Any:
    """The golden's values, each ``binary:`` string as its bytes."""
    if isinstance(value, dict):
        return {k: binaries(v) for k, v in value.items()}
    if isinstance(value, list):
        return [binaries(v) for v in value]
    if isinstance(value, str) and value.startswith(BINARY):
        return bytes.fromhex(value[len(BINARY):])
    return value


def golden_text(name: str) -> str:
    path = STATS_GOLDEN_DIR / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with VIRTQ_REGEN_GOLDEN=1")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CASES))
def test_encode_matches_golden(name: str) -> None:
    fields = shown(wire_fields(wire_of(CASES[name])))
    if REGEN:
        STATS_GOLDEN_DIR.mkdir(exist_ok=True)
        (STATS_GOLDEN_DIR / f"{name}.json").write_text(render(fields), encoding="utf-8")
    assert render(fields) == golden_text(name)
    assert binaries(json.loads(golden_text(name))) == wire_fields(wire_of(CASES[name]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_golden_gives_message(name: str) -> None:
    golden = WireMessage(**binaries(json.loads(golden_text(name))))
    assert decode(golden) == message(CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_survives_amqp(name: str) -> None:
    wire = wire_of(CASES[name])
    received = roundtrip(wire)
    assert received == wire
    assert canonical(shown(wire_fields(received))) == canonical(shown(wire_fields(wire)))
    assert decode(received) == message(CASES[name])


def test_no_stale_goldens() -> None:
    assert {p.stem for p in STATS_GOLDEN_DIR.glob("*.json")} == set(CASES)


def test_protocol_doc_shows_the_goldens() -> None:
    doc = PROTOCOL_MD.read_text(encoding="utf-8")
    missing = [name for name in sorted(CASES) if golden_text(name).strip() not in doc]
    assert not missing, f"docs/PROTOCOL.md does not show these goldens verbatim: {missing}"


# --- the layout's choices ------------------------------------------------------------------------------

def column(values: Sequence[Optional[int]]) -> bytes:
    keys = tuple(str(uuidlib.UUID(int=i + 1)) for i in range(len(values)))
    wire: bytes = StatsBatch(DOMAIN_ID, 1, 1, keys, {"c": values}).to_wire()["_columns"]["c"]
    return wire


@pytest.mark.parametrize("values,header", [
    ([0, 255], 0x01), ([256], 0x02), ([65_535], 0x02), ([65_536], 0x04), ([2**32 - 1], 0x04),
    ([2**32], 0x08), ([2**64 - 1, 0], 0x08), ([-1, 127], 0x21), ([-129], 0x22), ([2**31 - 1, -(2**31)], 0x24),
    ([-(2**63), 2**63 - 1], 0x28), ([], 0x01), ([None, 7], 0x11), ([None], 0x11), ([None, -2**40], 0x38),
])
def test_the_width_is_the_smallest_the_values_fit(values: List[Optional[int]], header: int) -> None:
    raw = column(values)
    assert raw[0] == header
    assert StatsBatch.from_wire(roundtrip(wire_of(
        StatsBatch(DOMAIN_ID, 1, 1, tuple(str(uuidlib.UUID(int=i + 1)) for i in range(len(values))),
                   {"c": values}))).body[0]).columns["c"] == values


def test_absent_rows_are_a_bitmap_lsb_first_and_take_no_value_bytes() -> None:
    values: List[Optional[int]] = [None, 5, None, None, None, None, None, None, 7]
    assert column(values) == bytes([0x11, 0b0000_0010, 0b0000_0001, 5, 7])
    assert column([1, 2, 3]) == bytes([0x01, 1, 2, 3])  # every row present: no bitmap
    assert column([None, None]) == bytes([0x11, 0])


def test_keys_are_one_binary_with_their_form_first() -> None:
    upper = "3F0B6A2E-8C41-4D7A-9B15-2E6F4C8D1A01"
    batch = StatsBatch(DOMAIN_ID, 1, 1, (upper, "{7d2c9e54-1b6f-4a38-8e07-5c3a9f2b4d02}"), {})
    raw = batch.to_wire()["_keys"]
    assert raw == b"\x01" + uuidlib.UUID(upper).bytes + uuidlib.UUID(WEB2_UUID).bytes
    assert StatsBatch.from_wire(batch.to_wire()).keys == (WEB1_UUID, WEB2_UUID)  # the canonical text
    volumes = StatsBatch(VOLUME_ID, 1, 1, ("/a", "", "ü"), {})
    assert volumes.to_wire()["_keys"] == b"\x02/a\x00\x00\xc3\xbc"
    assert StatsBatch.from_wire(volumes.to_wire()).keys == ("/a", "", "ü")
    for empty in (StatsBatch(DOMAIN_ID, 1, 1, (), {}), StatsBatch(VOLUME_ID, 1, 1, (), {})):
        assert StatsBatch.from_wire(roundtrip(wire_of(empty)).body[0]) == empty


@pytest.mark.parametrize("batch", [
    StatsBatch(VOLUME_ID, 1, 1, ("a\0b",), {}),  # a NUL would split the key
    StatsBatch(DOMAIN_ID, 1, 1, ("not-a-uuid",), {}),
    StatsBatch(DOMAIN_ID, 1, 1, (WEB1_UUID[:35], WEB1_UUID[35:] + WEB2_UUID), {}),  # uuids only together
    StatsBatch(DOMAIN_ID, 1, 1, (WEB1_UUID,), {"c": [2**64]}),
    StatsBatch(DOMAIN_ID, 1, 1, (WEB1_UUID,), {"c": [-(2**63) - 1]}),
    StatsBatch(DOMAIN_ID, 1, 1, (WEB1_UUID,), {"c": [1, 2]}),  # not one value per key
], ids=["nul-in-key", "bad-uuid", "uuid-across-keys", "above-uint64", "below-int64", "column-length"])
def test_what_cannot_be_packed_is_a_value_error(batch: StatsBatch) -> None:
    with pytest.raises(ValueError):
        batch.to_wire()


# --- other versions ------------------------------------------------------------------------------------

def test_a_console_of_the_map_form_refuses_packed_batches_loudly() -> None:
    """The console before packed-1 read ``_keys`` as a list: the binary makes it raise, never misread."""
    for batch in CASES.values():
        with pytest.raises(ProtocolError, match="_keys missing or not"):
            legacy_from_wire(roundtrip(wire_of(batch)).body[0])


def test_this_console_refuses_the_map_form_and_unknown_layouts_by_name() -> None:
    batch = CASES["stats_indication_domain"]
    old = dataclasses.replace(wire_of(batch), body=[legacy_to_wire(batch)])
    with pytest.raises(ProtocolError, match=r"stats layout \(none: the map form of earlier virtq agents\) is not "
                                            r"supported by this console \(supports packed-1\)"):
        decode(roundtrip(old))
    newer = dataclasses.replace(wire_of(batch), body=[dict(batch.to_wire(), _layout="packed-2")])
    with pytest.raises(ProtocolError, match=r"stats layout 'packed-2' is not supported by this console "
                                            r"\(supports packed-1\)"):
        decode(newer)


# --- the wire budget -----------------------------------------------------------------------------------

def running_vms(count: int) -> StatsBatch:
    """A periodic pass over ``count`` running VMs of which only cpuTime changed (hours to weeks of CPU)."""
    keys = tuple(str(uuidlib.UUID(int=(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC834 % 2**128, version=4))
                 for i in range(count))
    return StatsBatch(DOMAIN_ID, EPOCH, T_UPDATE, keys, {"cpuTime": [10**13 + i * 7_919_000_000_017
                                                                     for i in range(count)]})


def test_a_changed_running_vm_costs_24_bytes_and_its_share_of_the_message() -> None:
    size = {n: encoded_size(wire_of(running_vms(n))) for n in (30, 40, 50)}
    assert size[50] - size[40] == 10 * (16 + 8)  # its uuid and its 8-byte cpuTime, nothing else
    legacy = encoded_size(dataclasses.replace(wire_of(running_vms(30)), body=[legacy_to_wire(running_vms(30))]))
    assert size[30] / 30 <= 42 and size[30] < legacy, (size, legacy)
