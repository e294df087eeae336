"""libvirt's permissions enforced per principal, over real libvirt (tests/data/node.xml) and mutual TLS.

Each principal is a client certificate's CN. Allowed calls reach libvirt; denied ones get
VIR_ERR_ACCESS_DENIED (0x10058) and libvirt's state is what it was (read through the agent's own
libvirt connection, which bypasses the policy). A scoped principal sees and changes only its objects,
through queries, pushes and calls.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

import pytest

from virtq.agent import Agent
from virtq.agent.hypervisor import Hypervisor
from virtq.agent.policy import Policy
from virtq.console import Console
from virtq.console.events import DomainStateChanged, Event, ObjectAdded
from virtq.schema import default_schema
from virtq.schema.codec import ExceptionResponse
from virtq.schema.errors import AccessDeniedError
from virtq.testing import agent_url, domain_xml
from virtq.transport._convert import to_proton

from ..helpers import NODE_URI
from ..pki import Pki
from .rawclient import RawClient

pytestmark = pytest.mark.integration

POLICY = """
[principal reader]
roles = readonly
[principal ops]
roles = operator
[principal root]
roles = admin

[role tenant-admin]
permissions = connect:getattr connect:read connect:search_domains domain:*
[principal tenant]
roles = tenant-admin
domains = web*
"""

WEB1, WEB2, DB1, BUILD = (
    "3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01", "7d2c9e54-1b6f-4a38-8e07-5c3a9f2b4d02",
    "a6e1f3c8-5d27-4b9e-a2f4-8b0d6e7c3f03", "c94b7d10-2e8a-4f63-b5c1-0d9e3a6f8b04")
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


def state(hv: Hypervisor, dom: str) -> int:
    return int(hv.invoke("Domain", dom, "virDomainGetInfo", [])[0])


def domain_names(hv: Hypervisor) -> List[str]:
    return sorted(d.name for d in hv.list_domains())


def volume_names(hv: Hypervisor) -> List[str]:
    return sorted(v.name for p in hv.list_pools() for v in hv.list_volumes(p.uuid))


def pool_autostart(hv: Hypervisor) -> Any:
    pool = next(p for p in hv.list_pools() if p.name == "images")
    return hv.invoke("Pool", pool.uuid, "virStoragePoolGetAutostart", [])


@dataclass(frozen=True)
class Case:
    """One call, the libvirt state it may change, and which built-in roles may make it."""

    name: str
    act: Callable[[Console], Any]
    observe: Callable[[Hypervisor], Any]
    allowed: Dict[str, bool]
    changes: bool  # when allowed, libvirt's state is different afterwards


def node(console: Console) -> Any:
    return next(iter(console.nodes))


CASES = [
    Case("Node.getCapabilities", lambda c: node(c).getCapabilities(), domain_names,
         {"reader": True, "ops": True, "root": True}, False),
    Case("Node.domainDefineXML", lambda c: node(c).domainDefineXML(domain_xml("newbie")), domain_names,
         {"reader": False, "ops": False, "root": True}, True),
    Case("Domain.getInfo", lambda c: c.domains.get("web1").getInfo(), lambda hv: state(hv, WEB1),
         {"reader": True, "ops": True, "root": True}, False),
    Case("Domain.getXMLDesc SECURE", lambda c: c.domains.get("web1").getXMLDesc(flags=1),
         lambda hv: state(hv, WEB1), {"reader": False, "ops": False, "root": True}, False),
    Case("Domain.suspend", lambda c: c.domains.get("web2").suspend(), lambda hv: state(hv, WEB2),
         {"reader": False, "ops": True, "root": True}, True),
    Case("Domain.create", lambda c: c.domains.get("build").create(), lambda hv: state(hv, BUILD),
         {"reader": False, "ops": True, "root": True}, True),
    Case("Domain.destroy", lambda c: c.domains.get("web1").destroy(), lambda hv: state(hv, WEB1),
         {"reader": False, "ops": True, "root": True}, True),
    Case("Domain.undefine", lambda c: c.domains.get("build").undefine(), domain_names,
         {"reader": False, "ops": False, "root": True}, True),
    Case("Pool.getInfo", lambda c: c.pools.get("images").getInfo(), pool_autostart,
         {"reader": True, "ops": True, "root": True}, False),
    Case("Pool.setAutostart", lambda c: c.pools.get("images").setAutostart(1), pool_autostart,
         {"reader": False, "ops": False, "root": True}, True),
    Case("Pool.refresh", lambda c: c.pools.get("images").refresh(), volume_names,
         {"reader": False, "ops": True, "root": True}, False),
    Case("Volume.getInfo", lambda c: c.volumes.get("web1.img").getInfo(), volume_names,
         {"reader": True, "ops": True, "root": True}, False),
    Case("Volume.delete", lambda c: c.volumes.get("web1.img").delete(), volume_names,
         {"reader": False, "ops": False, "root": True}, True),
]


@pytest.fixture
def policy_agent(start_agent: Callable[..., Agent], pki: Pki) -> Agent:
    return start_agent(NODE_URI, tls=pki.tls("agent", cn="hv01"), policy=Policy.parse(POLICY, default_schema()))


def as_principal(connect: Callable[..., Console], agent: Agent, pki: Pki, cn: str, **kwargs: Any) -> Console:
    tls = pki.tls(cn)
    return connect(agent, tls_cert=tls.cert, tls_key=tls.key, tls_ca=tls.ca, **kwargs)


@pytest.mark.parametrize("principal", ["reader", "ops", "root"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_builtin_roles(case: Case, principal: str, policy_agent: Agent, connect: Callable[..., Console],
                       pki: Pki) -> None:
    console = as_principal(connect, policy_agent, pki, principal)
    hv = policy_agent.hypervisor
    before = case.observe(hv)
    if case.allowed[principal]:
        case.act(console)
        assert (case.observe(hv) != before) == case.changes
    else:
        with pytest.raises(AccessDeniedError) as info:
            case.act(console)
        assert info.value.error_code == 0x10058
        assert info.value.error_text.startswith(f"access denied: principal '{principal}' lacks ")
        assert case.observe(hv) == before


def test_the_denial_names_the_missing_permission(policy_agent: Agent, connect: Callable[..., Console],
                                                 pki: Pki) -> None:
    ops = as_principal(connect, policy_agent, pki, "ops")
    with pytest.raises(AccessDeniedError, match=r"^\[0x10058\] access denied: principal 'ops' lacks "
                                                r"domain:read_secure$"):
        ops.domains.get("web1").getXMLDesc(flags=1)
    assert "<domain" in ops.domains.get("web1").getXMLDesc(flags=0)  # the flag is what needs it


def test_a_certificate_the_policy_does_not_name_is_granted_nothing(
        policy_agent: Agent, pki: Pki) -> None:
    tls = pki.tls("stranger")
    console = Console([agent_url(policy_agent)], timeout=3, tls_cert=tls.cert, tls_key=tls.key, tls_ca=tls.ca)
    try:  # the certificate is good, so it gets in and locates the agent, but may not even list its objects
        with pytest.raises(AccessDeniedError, match="principal 'stranger' is granted nothing"):
            console.start()
        assert len(console.domains) == 0
    finally:
        console.close()


# --- a tenant scoped to web* ----------------------------------------------------------------------

def test_a_tenant_sees_only_its_domains(policy_agent: Agent, connect: Callable[..., Console], pki: Pki) -> None:
    tenant = as_principal(connect, policy_agent, pki, "tenant")
    assert sorted(d.name for d in tenant.domains) == ["web1", "web2"]
    assert len(tenant.pools) == 0 and len(tenant.volumes) == 0  # no pools = line: no pools
    assert len(tenant.nodes) == 1
    listed = node(tenant).listAllDomains()
    assert sorted(d.name for d in listed) == ["web1", "web2"]


def test_a_tenant_touches_only_its_domains(policy_agent: Agent, connect: Callable[..., Console],
                                           pki: Pki) -> None:
    tenant = as_principal(connect, policy_agent, pki, "tenant")
    root = as_principal(connect, policy_agent, pki, "root")
    hv = policy_agent.hypervisor
    tenant.domains.get("web2").suspend()
    assert state(hv, WEB2) == PAUSED
    db1 = root.domains.get("db1")
    attempts: List[Callable[[], object]] = [
        lambda: tenant.call(db1, "resume"),  # a snapshot from another console: sent as it is
        lambda: tenant.call(db1, "destroy"),
        lambda: node(tenant).domainLookupByName("db1"),
        lambda: node(tenant).domainLookupByUUIDString(DB1),
        lambda: node(tenant).domainDefineXML(domain_xml("db2"))]
    for attempt in attempts:
        with pytest.raises(AccessDeniedError, match="outside its scope"):
            attempt()
    assert state(hv, DB1) == PAUSED and "db2" not in domain_names(hv)
    node(tenant).domainDefineXML(domain_xml("web3"))  # its own name: allowed
    assert "web3" in domain_names(hv)
    assert tenant.wait_for(lambda: "web3" in {d.name for d in tenant.domains}, 5)


def test_a_tenant_is_pushed_only_its_domains(policy_agent: Agent, connect: Callable[..., Console],
                                             pki: Pki) -> None:
    tenant = as_principal(connect, policy_agent, pki, "tenant")
    root = as_principal(connect, policy_agent, pki, "root")
    seen: List[Event] = []
    web_changed = threading.Event()

    def record(event: Event) -> None:
        seen.append(event)
        if isinstance(event, DomainStateChanged) and event.obj.name == "web1":
            web_changed.set()

    subscription = tenant.subscribe(record)
    try:
        root.domains.get("db1").resume()  # not the tenant's: nothing of it may reach the tenant
        node(root).domainDefineXML(domain_xml("db9"))
        root.domains.get("web1").suspend()  # the tenant's: pushed after the others, on the same connection
        assert web_changed.wait(5)
        names = {getattr(getattr(e, "obj", None), "name", None) for e in seen}
        assert "db1" not in names and "db9" not in names
        assert not any(isinstance(e, ObjectAdded) and e.obj.name == "db9" for e in seen)
        assert root.wait_for(lambda: "db9" in {d.name for d in root.domains}, 5)  # the root console did see it
    finally:
        subscription.close()
    assert sorted(d.name for d in tenant.domains) == ["web1", "web2"]


def test_changes_and_denials_are_audited_once_reads_are_not(policy_agent: Agent, connect: Callable[..., Console],
                                                            pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    reader = as_principal(connect, policy_agent, pki, "reader")
    ops = as_principal(connect, policy_agent, pki, "ops")
    root = as_principal(connect, policy_agent, pki, "root")
    with caplog.at_level(logging.INFO, logger="virtq.audit"):
        reader.domains.get("web1").getInfo()  # a read: not audited
        ops.domains.get("web2").suspend()
        with pytest.raises(AccessDeniedError):
            reader.domains.get("web1").destroy()
        root.domains.get("web1").setUserPassword("root", "hunter2")
    lines = [r.getMessage() for r in caplog.records if r.name == "virtq.audit"]
    assert len(lines) == 3, lines
    assert lines[0].startswith('audit principal="ops" ') and 'method="suspend" outcome="ok"' in lines[0]
    assert f'object="Domain:{WEB2}"' in lines[0] and f'agent="{policy_agent.name}"' in lines[0]
    assert 'principal="reader"' in lines[1] and 'outcome="denied"' in lines[1] and "lacks domain:stop" in lines[1]
    assert 'principal="root"' in lines[2] and 'method="setUserPassword" outcome="ok"' in lines[2]
    assert '"password":"***"' in lines[2] and "hunter2" not in lines[2]


def test_a_user_id_written_in_the_message_is_not_believed_in_direct_mode(start_agent: Callable[..., Agent]) -> None:
    """Only TLS says who a console is here: a user-id the sender wrote itself (no broker checked it) is
    ignored, so claiming to be 'root' over plain AMQP stays anonymous."""
    policy = Policy.parse("[principal root]\nroles = admin\n[principal anonymous]\nroles = readonly\n",
                          default_schema())
    agent = start_agent(NODE_URI, policy=policy)
    with RawClient(agent) as client:
        wire = client.method_wire(f"Domain:{WEB1}", "destroy")
        client.sender.send(to_proton(wire, user_id="root"))
        reply = client.reply_for(wire.correlation_id)
    assert isinstance(reply, ExceptionResponse)
    assert (reply.error_code, reply.error_text) == (0x10058, "access denied: anonymous lacks domain:stop")
    assert state(agent.hypervisor, WEB1) == RUNNING
