"""Credentials in AMQP URLs never leak: passwords with /, #, ? or @ stay whole and hidden."""

from __future__ import annotations

import logging

import pytest

from virtq.transport import Connection, TlsConfig, profile
from virtq.transport.urls import redact, split_credentials, with_credentials

NASTY = ["p/ss", "p#ss", "p?ss", "p@ss", "a/b#c?d@e:f", "100%", "sp ace"]


@pytest.mark.parametrize("password", NASTY)
def test_a_password_survives_the_round_trip_and_never_shows(password: str) -> None:
    url = with_credentials("amqps://mq.example:5671", "agent-hv01", password)
    assert password not in redact(url)
    assert redact(url) == "amqps://agent-hv01:***@mq.example:5671"
    bare, user, secret = split_credentials(url)
    assert (bare, user, secret) == ("amqps://mq.example:5671", "agent-hv01", password)


@pytest.mark.parametrize("password", ["p/ss", "p#ss", "p?ss", "p@ss"])
def test_a_password_written_raw_in_the_url_is_hidden_whole(password: str) -> None:
    """Typed straight into --broker or VIRTQ_URL without percent-encoding: the last @ ends it."""
    url = f"amqp://guest:{password}@mq:5672"
    assert redact(url) == "amqp://guest:***@mq:5672"
    assert split_credentials(url) == ("amqp://mq:5672", "guest", password)


def test_urls_without_credentials_are_unchanged() -> None:
    assert redact("amqp://127.0.0.1:5672") == "amqp://127.0.0.1:5672"
    assert split_credentials("amqps://mq:5671") == ("amqps://mq:5671", None, None)
    assert with_credentials("amqp://u:p@mq", "other", "x") == "amqp://u:p@mq"  # the URL's own user wins
    assert redact("amqp://user@mq") == "amqp://user@mq"


@pytest.mark.parametrize("url, warned", [("amqp://u:pw@mq.example:5672", True), ("amqps://u:pw@mq.example:5671", False),
                                         ("amqp://u:pw@127.0.0.1:5672", False), ("amqp://mq.example:5672", False)])
def test_a_password_over_plain_amqp_to_another_host_is_warned_about(url: str, warned: bool,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="virtq.transport"):
        Connection([url], profile("rabbitmq"), role="console", tls=TlsConfig(ca=__file__)).kill()
    messages = [r.getMessage() for r in caplog.records]
    assert any("the password goes in clear over plain AMQP" in m for m in messages) == warned
    assert not any(":pw@" in m for m in messages)
