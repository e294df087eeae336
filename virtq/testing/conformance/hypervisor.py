"""What every :class:`~virtq.agent.hypervisor.Hypervisor` must do alike: the hypervisor contract.

The real adapter on libvirt's test driver defines the behaviour; :class:`~virtq.testing.FakeHypervisor`
must match it wherever the agent can tell, so that what a unit test shows with the fake holds with
libvirt. A pytest class that subclasses :class:`HypervisorContract` and provides a ``hypervisor``
fixture inherits every check. The fixture yields a hypervisor holding at least one running domain and
one pool (``test:///default`` does); each check undoes what it changed.
"""

from __future__ import annotations

import contextlib
import threading
import uuid as uuidlib
from typing import Any, Callable, Iterator, List, Optional, Tuple, Type

from virtq.agent.hypervisor import (DOMAIN_INFO_FIELDS, CheckpointIdentity, DomainIdentity, Hypervisor,
                                    HypervisorError, HypervisorEvent, NodeIdentity, PoolIdentity, SnapshotIdentity)

from ..libvirt_xml import domain_xml
from ..waiting import wait_until
from .deliveries import Deliveries

__all__ = ["EventLog", "HypervisorContract"]

RUNNING, PAUSED, SHUTOFF = 1, 3, 5
UNKNOWN = "99999999-9999-4999-8999-999999999999"
NO_DOMAIN_SNAPSHOT, NO_DOMAIN_CHECKPOINT, OPERATION_INVALID = 72, 103, 55
DELETE_CHILDREN = 0x1  # VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN, VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN
CHILD_CLASSES = ("DomainSnapshot", "DomainCheckpoint")


class EventLog(Deliveries[HypervisorEvent]):
    """The sink a check watches with: the events delivered, and the threads they came on."""

    @property
    def events(self) -> List[HypervisorEvent]:
        return self.snapshot()

    def of(self, key: str) -> List[Tuple[str, str, str]]:
        """(name, event, detail) of one object's events, in order."""
        return [(e.name, e.event, e.detail) for e in self.snapshot() if e.key == key]


def _raises(error: Type[Exception], call: Callable[[], Any], code: Optional[int] = None) -> Exception:
    """The exception ``call`` raised; fails unless it is an ``error`` (with libvirt ``code``, if given)."""
    try:
        call()
    except error as exc:
        if code is not None:
            assert getattr(exc, "code", None) == code, f"{exc!r}: code {getattr(exc, 'code', None)}, not {code}"
        return exc
    raise AssertionError(f"no {error.__name__} raised")


class HypervisorContract:
    """The checks; needs a ``hypervisor`` fixture (see the module's description)."""

    timeout = 5.0

    @staticmethod
    def running_domain(hypervisor: Hypervisor) -> DomainIdentity:
        for dom in hypervisor.list_domains():
            if dom.id >= 0 and hypervisor.invoke("Domain", dom.uuid, "virDomainGetInfo", [])[0] == RUNNING:
                return dom
        raise AssertionError("the hypervisor under test has no running domain")

    @staticmethod
    def pool(hypervisor: Hypervisor) -> PoolIdentity:
        pools = hypervisor.list_pools()
        assert pools, "the hypervisor under test has no storage pool"
        return pools[0]

    @contextlib.contextmanager
    def watched(self, hypervisor: Hypervisor) -> Iterator[EventLog]:
        log = EventLog()
        hypervisor.watch(log)
        try:
            yield log
        finally:
            hypervisor.unwatch()

    @contextlib.contextmanager
    def defined(self, hypervisor: Hypervisor, memory_kib: int = 65536) -> Iterator[DomainIdentity]:
        """A new (shut off) domain, undefined (and destroyed) afterwards whatever the check left of it."""
        name = f"contract-{uuidlib.uuid4().hex[:8]}"
        dom = hypervisor.invoke("Node", None, "virDomainDefineXML", [domain_xml(name, memory_kib=memory_kib)])
        try:
            yield dom
        finally:
            for function in ("virDomainDestroy", "virDomainUndefine"):
                with contextlib.suppress(HypervisorError):
                    hypervisor.invoke("Domain", dom.uuid, function, [])

    def state(self, hypervisor: Hypervisor, key: str) -> int:
        return int(hypervisor.invoke("Domain", key, "virDomainGetInfo", [])[0])

    # --- identities ------------------------------------------------------------------------------------

    def test_the_node_names_itself(self, hypervisor: Hypervisor) -> None:
        node = hypervisor.node()
        assert isinstance(node, NodeIdentity) and node == hypervisor.node()
        assert len(node.uuid) == 36 and node.hostname and node.uri == hypervisor.uri

    def test_every_listed_object_is_found_by_lookup(self, hypervisor: Hypervisor) -> None:
        domains, pools = hypervisor.list_domains(), hypervisor.list_pools()
        assert len({d.uuid for d in domains}) == len(domains) and domains
        for dom in domains:
            assert hypervisor.lookup("Domain", dom.uuid) == dom
        for pool in pools:
            assert hypervisor.lookup("Pool", pool.uuid) == pool
            for volume in hypervisor.list_volumes(pool.uuid):
                assert volume.pool_uuid == pool.uuid and hypervisor.lookup("Volume", volume.key) == volume
        assert hypervisor.lookup("Node", hypervisor.node().uuid) == hypervisor.node()

    def test_unknown_objects_look_up_as_none_and_unknown_classes_fail(self, hypervisor: Hypervisor) -> None:
        assert [hypervisor.lookup(c, k) for c, k in (("Domain", UNKNOWN), ("Pool", UNKNOWN), ("Volume", "/nowhere"))
                ] == [None, None, None]
        _raises(LookupError, lambda: hypervisor.lookup("Nothing", UNKNOWN))

    # --- calls -----------------------------------------------------------------------------------------

    def test_get_info_and_state_of_a_running_domain(self, hypervisor: Hypervisor) -> None:
        dom = self.running_domain(hypervisor)
        info = hypervisor.invoke("Domain", dom.uuid, "virDomainGetInfo", [])
        assert len(info) == len(DOMAIN_INFO_FIELDS) and all(isinstance(v, int) for v in info)
        assert info[0] == RUNNING and info[1] >= info[2] > 0 and info[3] >= 1
        assert hypervisor.invoke("Domain", dom.uuid, "virDomainGetState", [0])[0] == RUNNING
        assert f"<name>{dom.name}</name>" in hypervisor.invoke("Domain", dom.uuid, "virDomainGetXMLDesc", [0])

    def test_node_calls(self, hypervisor: Hypervisor) -> None:
        dom = self.running_domain(hypervisor)
        assert hypervisor.invoke("Node", None, "virConnectGetHostname", []) == hypervisor.node().hostname
        assert hypervisor.invoke("Node", None, "virNodeGetFreeMemory", []) > 0
        assert hypervisor.invoke("Node", None, "virDomainLookupByName", [dom.name]) == dom
        _raises(HypervisorError, lambda: hypervisor.invoke("Node", None, "virDomainLookupByName", ["nowhere"]), 42)

    def test_pool_info(self, hypervisor: Hypervisor) -> None:
        info = hypervisor.invoke("Pool", self.pool(hypervisor).uuid, "virStoragePoolGetInfo", [])
        assert len(info) == 4 and all(isinstance(v, int) for v in info)

    def test_calls_on_objects_libvirt_does_not_have_raise_not_found(self, hypervisor: Hypervisor) -> None:
        _raises(HypervisorError, lambda: hypervisor.invoke("Domain", UNKNOWN, "virDomainGetInfo", []), 42)
        _raises(HypervisorError, lambda: hypervisor.invoke("Pool", UNKNOWN, "virStoragePoolGetInfo", []), 49)
        _raises(HypervisorError, lambda: hypervisor.invoke("Volume", "/nowhere", "virStorageVolGetInfo", []), 50)

    def test_unknown_functions_wrong_classes_and_missing_keys_are_lookup_errors(
            self, hypervisor: Hypervisor) -> None:
        key = self.running_domain(hypervisor).uuid
        _raises(LookupError, lambda: hypervisor.invoke("Domain", key, "virNoSuchFunction", []))
        _raises(LookupError, lambda: hypervisor.invoke("Node", None, "virDomainGetInfo", []))
        _raises(LookupError, lambda: hypervisor.invoke("Domain", key, "virNodeGetFreeMemory", []))
        _raises(LookupError, lambda: hypervisor.invoke("Domain", None, "virDomainGetInfo", []))

    def test_arguments_the_binding_refuses_are_value_errors(self, hypervisor: Hypervisor) -> None:
        key = self.running_domain(hypervisor).uuid
        _raises(ValueError, lambda: hypervisor.invoke("Domain", key, "virDomainGetInfo", [1, 2, 3]))

    # --- changes and their events -----------------------------------------------------------------------

    def test_suspend_and_resume_change_the_state_and_tell_the_watcher(self, hypervisor: Hypervisor) -> None:
        dom = self.running_domain(hypervisor)
        with self.watched(hypervisor) as log:
            assert hypervisor.invoke("Domain", dom.uuid, "virDomainSuspend", []) == 0
            try:
                assert self.state(hypervisor, dom.uuid) == PAUSED
                assert hypervisor.lookup("Domain", dom.uuid) == dom  # paused keeps its id
            finally:
                assert hypervisor.invoke("Domain", dom.uuid, "virDomainResume", []) == 0
            assert self.state(hypervisor, dom.uuid) == RUNNING
            wait_until(lambda: len(log.of(dom.uuid)) >= 2, self.timeout, message="two lifecycle events")
        assert log.of(dom.uuid) == [("domainLifecycle", "suspended", "paused"),
                                    ("domainLifecycle", "resumed", "unpaused")]
        assert threading.current_thread().name not in log.threads  # events come on a thread of their own

    def test_impossible_transitions_are_hypervisor_errors_and_change_nothing(self, hypervisor: Hypervisor) -> None:
        dom = self.running_domain(hypervisor)
        _raises(HypervisorError, lambda: hypervisor.invoke("Domain", dom.uuid, "virDomainResume", []))
        _raises(HypervisorError, lambda: hypervisor.invoke("Domain", dom.uuid, "virDomainCreate", []))
        assert self.state(hypervisor, dom.uuid) == RUNNING
        hypervisor.invoke("Domain", dom.uuid, "virDomainSuspend", [])
        try:
            _raises(HypervisorError, lambda: hypervisor.invoke("Domain", dom.uuid, "virDomainSuspend", []))
            assert self.state(hypervisor, dom.uuid) == PAUSED
        finally:
            hypervisor.invoke("Domain", dom.uuid, "virDomainResume", [])

    def test_a_domain_defined_started_stopped_and_undefined(self, hypervisor: Hypervisor) -> None:
        with self.watched(hypervisor) as log, self.defined(hypervisor) as dom:
            assert dom.id == -1 and dom in hypervisor.list_domains()
            assert self.state(hypervisor, dom.uuid) == SHUTOFF
            assert hypervisor.invoke("Domain", dom.uuid, "virDomainCreate", []) == 0
            started = hypervisor.lookup("Domain", dom.uuid)
            assert isinstance(started, DomainIdentity) and started.id >= 1
            assert self.state(hypervisor, dom.uuid) == RUNNING
            assert hypervisor.invoke("Domain", dom.uuid, "virDomainDestroy", []) == 0
            assert hypervisor.lookup("Domain", dom.uuid) == dom  # inactive again: id -1
            _raises(HypervisorError, lambda: hypervisor.invoke("Domain", dom.uuid, "virDomainDestroy", []), 55)
            assert hypervisor.invoke("Domain", dom.uuid, "virDomainUndefine", []) == 0
            assert hypervisor.lookup("Domain", dom.uuid) is None and dom not in hypervisor.list_domains()
            wait_until(lambda: len(log.of(dom.uuid)) >= 4, self.timeout, message="four lifecycle events")
        assert [e[1:] for e in log.of(dom.uuid)] == [("defined", "added"), ("started", "booted"),
                                                     ("stopped", "destroyed"), ("undefined", "removed")]

    def test_redefining_updates_and_a_taken_name_is_refused(self, hypervisor: Hypervisor) -> None:
        with self.watched(hypervisor) as log, self.defined(hypervisor) as dom:
            again = hypervisor.invoke("Node", None, "virDomainDefineXML",
                                      [domain_xml(dom.name, dom.uuid, memory_kib=131072)])
            assert again == dom
            assert hypervisor.invoke("Domain", dom.uuid, "virDomainGetInfo", [])[1] == 131072
            _raises(HypervisorError, lambda: hypervisor.invoke("Node", None, "virDomainDefineXML",
                                                               [domain_xml(dom.name, UNKNOWN)]), 9)
            wait_until(lambda: len(log.of(dom.uuid)) >= 2, self.timeout)
        assert [e[1:] for e in log.of(dom.uuid)][:2] == [("defined", "added"), ("defined", "updated")]

    def test_a_running_domain_undefined_stays_until_it_stops(self, hypervisor: Hypervisor) -> None:
        with self.defined(hypervisor) as dom:
            hypervisor.invoke("Domain", dom.uuid, "virDomainCreate", [])
            hypervisor.invoke("Domain", dom.uuid, "virDomainUndefine", [])
            assert self.state(hypervisor, dom.uuid) == RUNNING and hypervisor.lookup("Domain", dom.uuid) is not None
            hypervisor.invoke("Domain", dom.uuid, "virDomainDestroy", [])
            assert hypervisor.lookup("Domain", dom.uuid) is None

    def test_after_unwatch_no_event_is_delivered(self, hypervisor: Hypervisor) -> None:
        log = EventLog()
        hypervisor.watch(log)
        hypervisor.unwatch()
        with self.defined(hypervisor):
            pass
        with self.watched(hypervisor) as marker, self.defined(hypervisor) as dom:
            wait_until(lambda: marker.of(dom.uuid), self.timeout)  # events flow again, so the first had its chance
        assert log.events == []

    # --- snapshots and checkpoints: list_children ------------------------------------------------------------

    def created(self, hypervisor: Hypervisor, dom: DomainIdentity, class_name: str, *names: str) -> List[Any]:
        """Snapshots (or checkpoints) made one after the other, so each is the child of the one before."""
        word = class_name[len("Domain"):]
        return [hypervisor.invoke("Domain", dom.uuid, f"virDomain{word}CreateXML",
                                  [f"<domain{word.lower()}><name>{name}</name></domain{word.lower()}>", 0])
                for name in names]

    def test_list_children_lists_a_domains_snapshots_with_their_identities(self, hypervisor: Hypervisor) -> None:
        with self.defined(hypervisor) as dom:
            assert [list(hypervisor.list_children(c, dom.uuid)) for c in CHILD_CLASSES] == [[], []]
            first, second = self.created(hypervisor, dom, "DomainSnapshot", "first", "second")
            try:
                assert (first, second) == (SnapshotIdentity(dom.uuid, "first"), SnapshotIdentity(dom.uuid, "second"))
                assert first.key == f"{dom.uuid}/first"
                listed = hypervisor.list_children("DomainSnapshot", dom.uuid)
                assert sorted(listed, key=lambda c: c.name) == [first, second] and len(listed) == 2
                assert all(type(c) is SnapshotIdentity for c in listed)
                assert list(hypervisor.list_children("DomainCheckpoint", dom.uuid)) == []
                other = self.running_domain(hypervisor)
                assert not {first, second} & set(hypervisor.list_children("DomainSnapshot", other.uuid))
                assert hypervisor.invoke("DomainSnapshot", second.key, "virDomainSnapshotGetParent", [0]) == first
                _raises(HypervisorError, lambda: hypervisor.invoke("DomainSnapshot", first.key,
                                                                   "virDomainSnapshotGetParent", [0]),
                        NO_DOMAIN_SNAPSHOT)
                _raises(HypervisorError, lambda: hypervisor.invoke("Domain", dom.uuid, "virDomainUndefine", []),
                        OPERATION_INVALID)  # libvirt keeps an inactive domain that has snapshots
                assert hypervisor.invoke("DomainSnapshot", first.key, "virDomainSnapshotDelete", [0]) == 0
                assert list(hypervisor.list_children("DomainSnapshot", dom.uuid)) == [second]
                _raises(HypervisorError, lambda: hypervisor.invoke("DomainSnapshot", second.key,
                                                                   "virDomainSnapshotGetParent", [0]),
                        NO_DOMAIN_SNAPSHOT)  # its parent's deletion made it a root
            finally:
                for snapshot in (first, second):
                    with contextlib.suppress(HypervisorError):
                        hypervisor.invoke("DomainSnapshot", snapshot.key, "virDomainSnapshotDelete", [DELETE_CHILDREN])
            assert list(hypervisor.list_children("DomainSnapshot", dom.uuid)) == []

    def test_list_children_lists_a_running_domains_checkpoints(self, hypervisor: Hypervisor) -> None:
        dom = self.running_domain(hypervisor)
        before = list(hypervisor.list_children("DomainCheckpoint", dom.uuid))
        made: List[Any] = []
        try:
            made += self.created(hypervisor, dom, "DomainCheckpoint", "contract-c1", "contract-c2")
            assert made == [CheckpointIdentity(dom.uuid, "contract-c1"), CheckpointIdentity(dom.uuid, "contract-c2")]
            listed = hypervisor.list_children("DomainCheckpoint", dom.uuid)
            assert sorted(set(listed) - set(before), key=lambda c: c.name) == made and len(listed) == len(before) + 2
            assert hypervisor.invoke("DomainCheckpoint", made[1].key, "virDomainCheckpointGetParent", [0]) == made[0]
        finally:
            for checkpoint in made[:1]:
                with contextlib.suppress(HypervisorError):
                    hypervisor.invoke("DomainCheckpoint", checkpoint.key, "virDomainCheckpointDelete",
                                      [DELETE_CHILDREN])
        assert list(hypervisor.list_children("DomainCheckpoint", dom.uuid)) == before
        _raises(HypervisorError, lambda: hypervisor.invoke("DomainCheckpoint", made[1].key,
                                                           "virDomainCheckpointGetParent", [0]), NO_DOMAIN_CHECKPOINT)

    def test_list_children_of_an_unknown_domain_is_empty_and_of_an_unknown_class_fails(
            self, hypervisor: Hypervisor) -> None:
        """A domain gone between listing and asking has no children (no error): the registry's re-read relies on
        it to drop them. A class that is neither is a LookupError, as in lookup."""
        assert [list(hypervisor.list_children(c, UNKNOWN)) for c in CHILD_CLASSES] == [[], []]
        _raises(LookupError, lambda: hypervisor.list_children("Volume", self.running_domain(hypervisor).uuid))

    # --- statistics and health ---------------------------------------------------------------------------

    def test_bulk_statistics_describe_domains_completely_or_not_at_all(self, hypervisor: Hypervisor) -> None:
        dom = self.running_domain(hypervisor)
        for key, values in hypervisor.bulk_domain_info().items():
            assert set(values) == set(DOMAIN_INFO_FIELDS), key
        assert set(hypervisor.bulk_domain_info_of([dom.uuid])) <= {dom.uuid}
        assert hypervisor.bulk_domain_info_of([UNKNOWN]) == {}

    def test_a_working_connection_is_alive_and_answers_the_probe(self, hypervisor: Hypervisor) -> None:
        assert hypervisor.alive() and hypervisor.connected()
        hypervisor.probe()

    def test_a_reconnect_is_not_a_loss_and_events_flow_again(self, hypervisor: Hypervisor) -> None:
        """The close listener hears only of connections that closed by themselves, not of one reconnect()
        closed; the watch carries over to the new connection."""
        closes: List[str] = []
        hypervisor.on_close(closes.append)
        try:
            with self.watched(hypervisor) as log:
                hypervisor.reconnect()
                assert hypervisor.connected() and hypervisor.alive()
                hypervisor.probe()
                with self.defined(hypervisor) as dom:
                    wait_until(lambda: log.of(dom.uuid), self.timeout, message="an event after the reconnect")
        finally:
            hypervisor.on_close(None)
        assert closes == []
