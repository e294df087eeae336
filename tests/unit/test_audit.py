"""The audit line: one per call, structured, secrets redacted, nothing a caller sends can forge a line."""

from __future__ import annotations

import logging

import pytest

from virtq.agent import audit


def test_one_line_with_every_field(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="virtq.audit"):
        audit.record("ops", "libvirt.org:virtq:hv01", "Domain:abc", "setUserPassword",
                     {"user": "root", "password": "hunter2", "flags": 0}, "ok", 0.0123)
    (rec,) = caplog.records
    assert rec.levelno == audit.NOTICE and rec.levelname == "NOTICE"
    text = rec.getMessage()
    assert text == ('audit principal="ops" agent="libvirt.org:virtq:hv01" object="Domain:abc" '
                    'method="setUserPassword" outcome="ok" duration_ms=12.3 '
                    'arguments={"user":"root","password":"***","flags":0}')
    fields = vars(rec)["audit"]  # the record's extra: what a structured handler reads
    assert fields["principal"] == "ops" and fields["outcome"] == "ok"


def test_denials_are_warnings_and_anonymous_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="virtq.audit"):
        audit.record(None, "a", "Domain:x", "destroy", {}, "denied", 0.0, "access denied: anonymous lacks domain:stop")
    (rec,) = caplog.records
    assert rec.levelno == logging.WARNING
    assert 'principal="anonymous"' in rec.getMessage()
    assert 'reason="access denied: anonymous lacks domain:stop"' in rec.getMessage()


def test_secrets_in_xml_and_long_values_are_cut() -> None:
    xml = "<domain><devices><graphics type='vnc' passwd='topsecret'/></devices></domain>"
    assert "topsecret" not in audit.redact(xml) and "passwd='***'" in audit.redact(xml)
    assert audit.redact("x" * 1000).endswith("…(1000 chars)") and len(audit.redact("x" * 1000)) < 300
    assert audit.redact({"secret": "s", "nested": {"auth_token": "t"}}) == {"secret": "***",
                                                                            "nested": {"auth_token": "***"}}
    assert len(audit.redact(list(range(100)))) == audit.MAX_ITEMS + 1


def test_a_caller_cannot_forge_a_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="virtq.audit"):
        audit.record("evil\naudit principal=\"root\"", "a", "Domain:x\r\n", "destroy", {"k": "v\nw"}, "ok", 0)
    assert "\n" not in caplog.records[0].getMessage() and "\r" not in caplog.records[0].getMessage()


@pytest.mark.parametrize("level, prefix", [(logging.ERROR, "<3>"), (logging.WARNING, "<4>"), (audit.NOTICE, "<5>"),
                                           (logging.INFO, "<6>"), (logging.DEBUG, "<7>")])
def test_journald_priorities(level: int, prefix: str) -> None:
    record = logging.LogRecord("virtq.audit", level, __file__, 1, "audit x", None, None)
    assert audit.JournalFormatter().format(record) == f"{prefix}virtq.audit: audit x"
