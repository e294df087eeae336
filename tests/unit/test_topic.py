"""AMQP topic matching as the listener and the memory bus route indications with it."""

from __future__ import annotations

import pytest

from virtq.schema.codec import data_subject, heartbeat_subject
from virtq.transport import topic_matches


@pytest.mark.parametrize("pattern, subject, expected", [
    # exact words
    ("a", "a", True),
    ("a.b.c", "a.b.c", True),
    ("a.b", "a.c", False),
    ("a.b", "a.b.c", False),
    ("a.b.c", "a.b", False),
    ("a.b", "a.bc", False),
    ("ab", "a", False),
])
def test_exact(pattern: str, subject: str, expected: bool) -> None:
    assert topic_matches(pattern, subject) is expected


@pytest.mark.parametrize("pattern, subject, expected", [
    ("*", "a", True),
    ("*", "a.b", False),        # one word, not more
    ("a.*", "a.b", True),
    ("a.*", "a", False),        # exactly one word, not zero
    ("a.*", "a.b.c", False),
    ("*.b", "x.b", True),
    ("*.b", "x.c", False),
    ("a.*.c", "a.zz.c", True),
    ("a.*.c", "a.c", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
])
def test_star_matches_exactly_one_word(pattern: str, subject: str, expected: bool) -> None:
    assert topic_matches(pattern, subject) is expected


@pytest.mark.parametrize("pattern, subject, expected", [
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("a.#", "a", True),         # zero words
    ("a.#", "a.b", True),
    ("a.#", "a.b.c.d", True),
    ("a.#", "b.a", False),
    ("#.c", "c", True),
    ("#.c", "a.b.c", True),
    ("#.c", "a.b.c.d", False),
    ("a.#.d", "a.d", True),
    ("a.#.d", "a.b.c.d", True),
    ("a.#.d", "a.b.c", False),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    ("a.#.*", "a", False),      # '*' still needs its word
    ("a.#.*", "a.b", True),
])
def test_hash_matches_zero_or_more_words(pattern: str, subject: str, expected: bool) -> None:
    assert topic_matches(pattern, subject) is expected


@pytest.mark.parametrize("pattern, subject, expected", [
    ("", "", True),
    ("", "a", False),
    ("a", "", False),
    ("*", "", False),
    ("#", "", True),
])
def test_empty_pattern_and_subject(pattern: str, subject: str, expected: bool) -> None:
    assert topic_matches(pattern, subject) is expected


def test_qmf_indication_subjects() -> None:
    """The console's subscription (agent.ind.#) takes heartbeats and data; narrower bindings filter."""
    heartbeat = heartbeat_subject()
    data = data_subject("org.libvirt", "Domain")
    assert heartbeat == "agent.ind.heartbeat.libvirt_org.virtq"
    assert topic_matches("agent.ind.#", heartbeat)
    assert topic_matches("agent.ind.#", data)
    assert topic_matches("agent.ind.data.#", data)
    assert not topic_matches("agent.ind.data.#", heartbeat)
    assert topic_matches("agent.ind.data.org_libvirt.Domain.#", data)
    assert not topic_matches("agent.ind.data.org_libvirt.Pool.#", data)
    assert not topic_matches("console.#", heartbeat)
