"""Direct mode over mutual TLS: real handshakes with certificates the tests make (tests/pki.py).

Every bad credential is refused with a clear error, and the agent keeps serving the good ones.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable

import pytest

from virtq.agent import Agent
from virtq.agent.policy import Policy
from virtq.console import Console
from virtq.schema import default_schema
from virtq.schema.errors import AccessDeniedError, NotConnectedError
from virtq.testing import agent_url, free_port
from virtq.transport import DirectListener, TlsConfig, TlsError

from ..helpers import NODE_URI
from ..pki import Pki

pytestmark = pytest.mark.integration

POLICY = """
[principal reader]
roles = readonly
[principal ops]
roles = operator
"""


@pytest.fixture
def tls_agent(start_agent: Callable[..., Agent], pki: Pki) -> Agent:
    return start_agent(NODE_URI, tls=pki.tls("agent", cn="hv01"), policy=Policy.parse(POLICY, default_schema()))


def console_for(connect: Callable[..., Console], agent: Agent, tls: TlsConfig, **kwargs: Any) -> Console:
    return connect(agent, tls_cert=tls.cert, tls_key=tls.key, tls_ca=tls.ca, **kwargs)


def refused(agent: Agent, tls: TlsConfig, url: str = "") -> str:
    """The error a console gets when it cannot get through; its text."""
    console = Console([url or agent_url(agent)], timeout=3, tls_cert=tls.cert, tls_key=tls.key, tls_ca=tls.ca)
    with pytest.raises(NotConnectedError) as info:
        console.start()
    return str(info.value)


def still_serves(connect: Callable[..., Console], agent: Agent, pki: Pki) -> None:
    console = console_for(connect, agent, pki.tls("reader"))
    assert {d.name for d in console.domains} == {"web1", "web2", "db1", "build"}


def test_a_valid_certificate_is_the_principal(tls_agent: Agent, connect: Callable[..., Console],
                                              pki: Pki) -> None:
    reader = console_for(connect, tls_agent, pki.tls("reader"))
    web1 = reader.domains.get("web1")
    assert web1.getInfo()["state"] == 1
    with pytest.raises(AccessDeniedError) as info:
        web1.suspend()
    assert info.value.error_code == 0x10058
    assert info.value.error_text == "access denied: principal 'reader' lacks domain:suspend"
    assert tls_agent.hypervisor.invoke("Domain", web1.uuid, "virDomainGetInfo", [])[0] == 1  # still running

    ops = console_for(connect, tls_agent, pki.tls("ops"))
    ops.domains.get("web1").suspend()
    assert tls_agent.hypervisor.invoke("Domain", web1.uuid, "virDomainGetInfo", [])[0] == 3  # paused


@pytest.mark.parametrize("case", ["other CA", "expired", "no certificate"])
def test_bad_client_certificates_are_refused(case: str, tls_agent: Agent, connect: Callable[..., Console],
                                             pki: Pki) -> None:
    if case == "other CA":
        pki.ca("rogue-ca", "rogue CA")
        tls, expected = pki.tls("rogue", ca="rogue-ca"), "unknown ca"
    elif case == "expired":
        tls, expected = pki.tls("stale", days=-1), "certificate expired"
    else:
        tls, expected = TlsConfig(ca=pki.ca()), "certificate required"
    assert expected in refused(tls_agent, tls)
    still_serves(connect, tls_agent, pki)


def test_a_console_verifies_the_agent(tls_agent: Agent, connect: Callable[..., Console], pki: Pki) -> None:
    pki.ca("other-ca", "another CA")
    own_cert = pki.tls("reader")
    trusting_another = TlsConfig(own_cert.cert, own_cert.key, pki.ca("other-ca"))
    assert "certificate verify failed" in refused(tls_agent, trusting_another)
    still_serves(connect, tls_agent, pki)


def test_the_host_name_is_checked(start_agent: Callable[..., Agent], pki: Pki) -> None:
    agent = start_agent(NODE_URI, tls=TlsConfig(*pki.issue("elsewhere", san="subjectAltName=DNS:hv99.example"),
                                                pki.ca()))
    assert "certificate verify failed" in refused(agent, pki.tls("reader"))


def test_plain_amqp_to_the_tls_port_is_refused(tls_agent: Agent, connect: Callable[..., Console],
                                               pki: Pki) -> None:
    with pytest.raises(NotConnectedError):
        Console([agent_url(tls_agent).replace("amqps://", "amqp://")], timeout=3).start()
    still_serves(connect, tls_agent, pki)


def test_tls_client_to_a_plain_port_is_refused(start_agent: Callable[..., Agent], pki: Pki) -> None:
    plain = start_agent(NODE_URI)
    assert refused(plain, pki.tls("reader"), agent_url(plain).replace("amqp://", "amqps://"))


def test_a_tls_listener_without_its_files_never_listens_plain() -> None:
    url = f"amqps://127.0.0.1:{free_port()}"
    with pytest.raises(TlsError, match="needs --tls-cert, --tls-key and --tls-ca"):
        DirectListener(url)
    with pytest.raises(TlsError, match="needs --tls-cert, --tls-key and --tls-ca"):
        DirectListener(url, TlsConfig("agent.crt", "agent.key"))  # no CA for client certificates
    with pytest.raises(TlsError, match="missing or unreadable"):
        DirectListener(url, TlsConfig("/nonexistent.crt", "/nonexistent.key", "/nonexistent-ca.crt"))
    with socket.socket() as probe:  # nothing listens there
        assert probe.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0


def test_the_server_demands_tls_before_amqp(tls_agent: Agent, pki: Pki) -> None:
    """A raw TLS handshake without a client certificate fails at the TLS layer, before any AMQP."""
    host, port = agent_url(tls_agent).split("//")[1].split(":")
    context = ssl.create_default_context(cafile=pki.ca())
    with socket.create_connection((host, int(port)), timeout=3) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
                tls.sendall(b"AMQP\x03\x01\x00\x00")
                tls.recv(1024)
