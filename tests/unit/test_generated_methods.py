"""Every method of the generated schema, through the real Dispatcher and the real libvirt adapter.

Three sweeps over all methods, each on a fresh copy of tests/data/node.xml (libvirt's test driver), with
snapshots s1 > s2 > s3 of web1 and checkpoints c1 > c2 > c3 of vault (a running domain with a disk: the test
driver makes checkpoints of those only):

* mocked binding: the libvirt-python method is replaced; the test asserts the exact call (the
  object it is called on, the positional arguments: objects as libvirt handles) and the shaping of
  the result (object references, out-structures as maps, lists, several out-arguments);
* the test driver itself: arguments built from the schema; the answer is either the declared
  out-arguments, each of its declared type, or libvirt's own error (the test driver does not
  implement everything) — never an agent error, a refusal of valid arguments or "not implemented";
* argument validation: unknown, missing and wrongly typed arguments are refused (4) before libvirt.
"""

from __future__ import annotations

import functools
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

import libvirt
import pytest
from pytest_mock import MockerFixture

from virtq.agent.dispatcher import Dispatcher
from virtq.agent.libvirt_streams import SEGMENT_BYTES
from virtq.agent.streams import AgentStreams
from virtq.agent.libvirt_adapter import LibvirtHypervisor, binding_table
from virtq.agent.registry import Registry
from virtq.schema import default_schema, errors, types
from virtq.schema.codec import ExceptionResponse, Message, MethodRequest, MethodResponse, ObjectId
from virtq.schema.model import Argument, Method
from virtq.schema.streams import Descriptor

from ..helpers import NODE_URI

SCHEMA = default_schema()
AGENT = "libvirt.org:virtq:sweep"
EPOCH = 3
METHODS = [(c.name, m) for c in SCHEMA.classes.values() for m in c.methods.values()]
IDS = [f"{c}.{m.name}" for c, m in METHODS]
WITH_INPUTS = [(c, m) for c, m in METHODS if m.inputs]

TARGET = {"Domain": "web1", "Pool": "images", "Volume": "web1.img",  # the object a method is called on
          "DomainSnapshot": "s2", "DomainCheckpoint": "c2"}
OTHER = {"Domain": "web2", "Pool": "isos", "Volume": "debian.iso",  # objects passed as arguments
         "DomainSnapshot": "s1", "DomainCheckpoint": "c1"}
THIRD = {"Domain": "db1", "Pool": "images", "Volume": "db1.qcow2",  # objects returned
         "DomainSnapshot": "s3", "DomainCheckpoint": "c3"}
VAULT = ("<domain type='test'><name>vault</name><memory>65536</memory><os><type>hvm</type></os><devices>"
         "<disk type='file' device='disk'><source file='/var/lib/virtq-test/images/web1.img'/>"
         "<target dev='vda'/></disk></devices></domain>")
CHILDREN = {"DomainSnapshot": ("web1", "snapshotLookupByName"), "DomainCheckpoint": ("vault", "checkpointLookupByName")}
"""The domain whose snapshots (checkpoints) the sweeps use, and how it finds one by name."""


STREAM_POOL = ThreadPoolExecutor(1, thread_name_prefix="sweep-streams")


class StreamDescription:
    """Equal to any valid stream description (its id is the agent's random one)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(Descriptor.from_wire(other), Descriptor)

    def __repr__(self) -> str:
        return "<a stream description>"


class Node:
    """One agent's view of a fresh node.xml: its own libvirt connection, registry and dispatcher."""

    def __init__(self) -> None:
        self.hv = LibvirtHypervisor(NODE_URI)
        self.conn: libvirt.virConnect = self.hv._conn
        web1, vault = self.conn.lookupByName("web1"), self.conn.createXML(VAULT)
        for i in (1, 2, 3):
            web1.snapshotCreateXML(f"<domainsnapshot><name>s{i}</name></domainsnapshot>")
            vault.checkpointCreateXML(f"<domaincheckpoint><name>c{i}</name></domaincheckpoint>")
        self.registry = Registry(SCHEMA, self.hv, AGENT, EPOCH)
        self.registry.sync_all()
        self.streams = AgentStreams(self.hv, lambda wire: None, AGENT, STREAM_POOL)  # what stream methods open
        self.dispatcher = Dispatcher(SCHEMA, self.registry, self.hv, streams=self.streams)

    def close(self) -> None:
        self.streams.stop()
        self.hv.close()

    def name(self, class_name: str, label: Optional[str]) -> str:
        """The object name of the object with that name (volumes: file name)."""
        if class_name == "Node":
            return self.registry.node_name
        (entry,) = [e for e in self.registry.entries(class_name) if getattr(e.identity, "name") == label]
        return f"{class_name}:{entry.key}"

    def ref(self, class_name: str, label: str) -> Dict[str, Any]:
        return self.registry.object_id(self.name(class_name, label)).to_wire()

    def handle(self, class_name: str, label: str) -> Any:
        if class_name == "Domain":
            return self.conn.lookupByName(label)
        if class_name == "Pool":
            return self.conn.storagePoolLookupByName(label)
        if class_name in CHILDREN:
            domain, lookup = CHILDREN[class_name]
            return getattr(self.conn.lookupByName(domain), lookup)(label)
        pool = "isos" if label.endswith(".iso") else "images"
        return self.conn.storagePoolLookupByName(pool).storageVolLookupByName(label)

    def call(self, class_name: str, method: str, arguments: Dict[str, Any]) -> Message:
        request = MethodRequest(object_id=ObjectId(self.name(class_name, TARGET.get(class_name)), AGENT, EPOCH),
                                method_name=method, arguments=arguments, correlation_id="sweep")
        (reply,) = self.dispatcher.call(request).replies
        return reply


@pytest.fixture
def node() -> Iterator[Node]:
    fresh = Node()
    yield fresh
    fresh.close()


def handle_key(value: Any) -> Any:
    """What a libvirt handle designates, read through libvirtmod (the tests patch the classes' methods)."""
    mod = libvirt.libvirtmod
    if isinstance(value, libvirt.virDomain):
        return ("Domain", mod.virDomainGetUUIDString(value._o))
    if isinstance(value, libvirt.virStoragePool):
        return ("Pool", mod.virStoragePoolGetUUIDString(value._o))
    if isinstance(value, libvirt.virStorageVol):
        return ("Volume", mod.virStorageVolGetKey(value._o))
    for class_name, handle_class in (("DomainSnapshot", libvirt.virDomainSnapshot),
                                     ("DomainCheckpoint", libvirt.virDomainCheckpoint)):
        if isinstance(value, handle_class):
            name = getattr(mod, f"vir{class_name}GetName")(value._o)
            return (class_name, f"{mod.virDomainGetUUIDString(value._dom._o)}/{name}")
    if isinstance(value, libvirt.virConnect):
        return ("Node", None)
    if isinstance(value, (list, tuple)):
        return [handle_key(v) for v in value]
    return value


def key_of(node: Node, class_name: str, label: Optional[str]) -> Any:
    return (class_name, None if class_name == "Node" else node.name(class_name, label).partition(":")[2])


# --- 1. every method through a mocked binding ------------------------------------------------------------

SCALAR_IN: Dict[str, Any] = {"lstr": "text-in", "sstr": "short-in", "bool": True, "map": {"k": 1},
                             "list": ["a", "b"], "uuid": "0f0e0d0c-0b0a-4908-8706-050403020100",
                             "int32": -3, "int64": -4, "uint32": 3, "uint64": 2 ** 40}


def sample_input(node: Node, arg: Argument) -> Tuple[Any, Any]:
    """(the wire value, what the binding must receive)."""
    if arg.references and arg.type == "list":
        labels = [OTHER[arg.references], THIRD[arg.references]]
        return ([node.ref(arg.references, label) for label in labels],
                [key_of(node, arg.references, label) for label in labels])
    if arg.references:
        return node.ref(arg.references, OTHER[arg.references]), key_of(node, arg.references, OTHER[arg.references])
    value = 4096 if arg.name == "size" else SCALAR_IN[arg.type]  # a peek's size: within the agent's 4 MiB bound
    return value, value


def sample_output(node: Node, arg: Argument) -> Tuple[Any, Any]:
    """(what the mocked binding returns for one out-argument, what the reply must carry)."""
    if arg.references and arg.type == "list":
        labels = [THIRD[arg.references], OTHER[arg.references]]
        return [node.handle(arg.references, label) for label in labels], [node.ref(arg.references, label)
                                                                          for label in labels]
    if arg.references:
        label = THIRD[arg.references]
        return node.handle(arg.references, label), node.ref(arg.references, label)
    if arg.fields and arg.type == "map":
        values = list(range(10, 10 + len(arg.fields)))
        return values, dict(zip(arg.fields, values))
    if arg.fields and arg.type == "list":
        if arg.fields[0] == "domain":  # statistics records: (virDomain, dict)
            items = [(node.handle("Domain", label), {"state.state": i}) for i, label in enumerate(("db1", "web2"))]
            return items, [{"domain": node.ref("Domain", label), "stats": {"state.state": i}}
                           for i, label in enumerate(("db1", "web2"))]
        rows = [tuple(range(i, i + len(arg.fields))) for i in (0, 100)]
        return rows, [dict(zip(arg.fields, row)) for row in rows]
    value = {"lstr": "text-out", "sstr": "short-out", "bool": False, "map": {"x": [1, 2]}, "list": [True, False],
             "uuid": "00000000-0000-4000-8000-000000000042", "int32": -7, "int64": -8, "uint32": 7,
             "uint64": 2 ** 63 + 1, "binary": b"\x00\xffbytes", "stream": None}[arg.type]
    if arg.type == "stream":  # the binding returns nothing for it: the agent describes the stream it opened
        return None, StreamDescription()
    return value, value


@pytest.mark.parametrize("class_name, method", METHODS, ids=IDS)
def test_every_method_through_a_mocked_binding(node: Node, mocker: MockerFixture,
                                               class_name: str, method: Method) -> None:
    py_class, py_method = binding_table()[method.libvirt]
    inputs = {a.name: sample_input(node, a) for a in method.inputs}
    outputs = [sample_output(node, a) for a in method.outputs]
    returns = [o for a, o in zip(method.outputs, outputs) if a.type != "stream"]  # what the binding returns
    returned = returns[0][0] if len(returns) == 1 else tuple(o[0] for o in returns) if returns else 0
    target = key_of(node, class_name, TARGET.get(class_name))  # before the call: it may rename the target
    binding = mocker.patch.object(getattr(libvirt, py_class), py_method, autospec=True, return_value=returned)

    reply = node.call(class_name, method.name, {name: wire for name, (wire, _) in inputs.items()})

    assert isinstance(reply, MethodResponse), reply
    assert reply.arguments == {a.name: expected for a, (_, expected) in zip(method.outputs, outputs)}
    first = binding.call_args_list[0]  # re-reading the target afterwards may call the binding again
    assert first.kwargs == {}
    assert handle_key(first.args[0]) == target
    expected_args = [expected for _, expected in inputs.values()]
    if method.libvirt == "virStorageVolDownload":  # read in segments (agent/libvirt_streams.py): length is the first's
        expected_args[1] = min(SEGMENT_BYTES, expected_args[1]) or SEGMENT_BYTES
    assert [handle_key(a) for a in first.args[1:] if not isinstance(a, libvirt.virStream)] == expected_args


def test_null_reaches_libvirt_as_none(node: Node, mocker: MockerFixture) -> None:
    save = mocker.patch.object(libvirt.virDomain, "saveFlags", autospec=True, return_value=0)
    reply = node.call("Domain", "saveFlags", {"to": "/tmp/x", "dxml": None})
    assert isinstance(reply, MethodResponse) and reply.arguments == {}
    assert save.call_args.args[1:] == ("/tmp/x", None, 0)
    node.call("Domain", "saveFlags", {"to": "/tmp/y"})  # nullable without a default: null
    assert save.call_args.args[1:] == ("/tmp/y", None, 0)


def test_a_cpu_map_is_passed_as_a_tuple(node: Node, mocker: MockerFixture) -> None:
    pin = mocker.patch.object(libvirt.virDomain, "pinVcpu", autospec=True, return_value=0)
    node.call("Domain", "pinVcpu", {"vcpu": 0, "cpumap": [True, False, True]})
    assert pin.call_args.args[1:] == (0, (True, False, True))


def test_wrong_number_of_fields_is_an_agent_error(node: Node, mocker: MockerFixture) -> None:
    mocker.patch.object(libvirt.virDomain, "info", autospec=True, return_value=[1, 2, 3])
    reply = node.call("Domain", "getInfo", {})
    assert isinstance(reply, ExceptionResponse) and reply.error_code == errors.STATUS_EXCEPTION
    assert "libvirt returned 3 values" in reply.error_text and "state maxMem" in reply.error_text


@pytest.mark.parametrize("exc", [TypeError("an integer is required"), LookupError("Need non-empty dictionary"),
                                 OverflowError("too big"), ValueError("bad")], ids=lambda e: type(e).__name__)
def test_the_bindings_argument_checks_are_invalid_parameters(node: Node, mocker: MockerFixture,
                                                             exc: Exception) -> None:
    mocker.patch.object(libvirt.virDomain, "setMemoryParameters", autospec=True, side_effect=exc)
    reply = node.call("Domain", "setMemoryParameters", {"params": {"hard_limit": "x"}})
    assert isinstance(reply, ExceptionResponse) and reply.error_code == errors.STATUS_INVALID_PARAMETER
    assert str(exc) in reply.error_text and "virDomainSetMemoryParameters" in reply.error_text


# --- 2. every method on the test driver --------------------------------------------------------------------

REAL_ARGS: Dict[str, Any] = {
    # values the test driver accepts where it implements the function
    "cpumap": [True, False], "xmlCPUs": [], "mountpoints": None, "keycodes": [30], "nkeycodes": 1,
    "iothread_id": 1, "memory": 32768, "nvcpus": 1, "vcpu": 0, "cpuNum": -1, "cellNum": -1, "startCell": 0,
    "maxCells": 1, "cellCount": 1, "pages": [4], "total": True, "time": {"seconds": 1700000000, "nseconds": 0},
    "type": 0, "source": 0, "uri": None, "vcpumap": "0", "state": 1,
}


TYPED_PARAMS: Dict[str, Dict[Union[str, int], Any]] = {
    # typed parameters the binding accepts (it refuses an empty map, and checks names it knows); allocPages's
    # map is page size (KiB) -> count
    "Node.setMemoryParameters": {"shm_pages_to_scan": 100},
    "Domain.setMemoryParameters": {"hard_limit": 1048576},
    "Domain.setBlkioParameters": {"weight": 500},
    "Domain.setNumaParameters": {"numa_nodeset": "0"},
    "Domain.setPerfEvents": {"cmt": False},
    "Domain.setSchedulerParameters": {"weight": 100},
    "Domain.setSchedulerParametersFlags": {"weight": 100},
    "Domain.setInterfaceParameters": {"inbound.average": 100},
    "Node.allocPages": {4: 1},
}


WEB1_UUID, IMAGES_UUID = "3f0b6a2e-8c41-4d7a-9b15-2e6f4c8d1a01", "5e8f2a91-7c34-4d0b-9a6e-1f4b8c2d7e11"
WEB1_IMG = "/var/lib/virtq-test/images/web1.img"
NEW_DOMAIN = ("<domain type='test'><name>sweep</name><memory>65536</memory><os><type>hvm</type></os>"
              "</domain>")
NEW_POOL = "<pool type='dir'><name>sweep</name><target><path>/sweep</path></target></pool>"
NEW_VOLUME = "<volume><name>sweep.img</name><capacity>1024</capacity></volume>"
REAL_CALLS: Dict[str, Dict[str, Any]] = {
    # arguments naming what node.xml has, or describing new objects: the methods that return objects
    "Node.domainLookupByName": {"name": "web1"}, "Node.domainLookupByID": {"id": 1},
    "Node.domainLookupByUUIDString": {"uuidstr": WEB1_UUID}, "Node.storagePoolLookupByName": {"name": "images"},
    "Node.storagePoolLookupByUUIDString": {"uuidstr": IMAGES_UUID}, "Node.storageVolLookupByKey": {"key": WEB1_IMG},
    "Node.storageVolLookupByPath": {"path": WEB1_IMG}, "Pool.storageVolLookupByName": {"name": "web1.img"},
    "Node.domainDefineXML": {"xml": NEW_DOMAIN}, "Node.domainDefineXMLFlags": {"xml": NEW_DOMAIN},
    "Node.domainCreateXML": {"xmlDesc": NEW_DOMAIN}, "Node.storagePoolDefineXML": {"xml": NEW_POOL},
    "Node.storagePoolCreateXML": {"xmlDesc": NEW_POOL}, "Pool.storageVolCreateXML": {"xmlDesc": NEW_VOLUME},
    "Pool.storageVolCreateXMLFrom": {"xmlDesc": NEW_VOLUME,  # the test driver clones within the pool
                                     "clonevol": lambda node: node.ref("Volume", "db1.qcow2")},
    "Domain.snapshotCreateXML": {"xmlDesc": "<domainsnapshot><name>sweep</name></domainsnapshot>"},
    "Domain.snapshotLookupByName": {"name": "s1"},
}


def real_input(node: Node, method: str, arg: Argument, tmp: str) -> Any:
    if arg.name in REAL_CALLS.get(method, {}):
        value = REAL_CALLS[method][arg.name]
        return value(node) if callable(value) else value
    if arg.type == "map" and method in TYPED_PARAMS:
        return TYPED_PARAMS[method]
    if arg.name in REAL_ARGS and conforms_input(arg, REAL_ARGS[arg.name]):
        return REAL_ARGS[arg.name]
    if arg.references and arg.type == "list":
        return [node.ref(arg.references, OTHER[arg.references])]
    if arg.references:
        return node.ref(arg.references, OTHER[arg.references])
    if arg.name in ("to", "frm", "file"):
        return f"{tmp}/saved"
    return {"lstr": "x", "sstr": "x", "bool": False, "map": {}, "list": [],
            "uuid": str(uuid.uuid4())}.get(arg.type, 0)


def conforms_input(arg: Argument, value: Any) -> bool:
    if value is None:
        return arg.nullable
    try:
        types.check(arg.type, value)
    except types.TypeCheckError:
        return False
    return True


def conforms(arg: Argument, value: Any) -> bool:
    """A reply value of the declared type (null allowed: the binding answers None for 'nothing')."""
    if value is None:
        return True
    if arg.references and arg.type == "list":
        return isinstance(value, list) and all(v["_object_name"].startswith(arg.references + ":") for v in value)
    if arg.references:
        return isinstance(value, dict) and value["_object_name"].startswith(arg.references + ":")
    if arg.fields and arg.type == "map":
        return isinstance(value, dict) and tuple(value) == arg.fields
    if arg.fields and arg.type == "list":
        return isinstance(value, list) and all(isinstance(v, dict) and tuple(v) == arg.fields for v in value)
    try:
        types.check(arg.type, value)
    except types.TypeCheckError:
        return arg.type == "int32" and isinstance(value, int)  # C ints the binding widens (unsigned)
    return True


@functools.lru_cache(maxsize=None)
def real_outcome(class_name: str, method_name: str, tmp: str) -> Tuple[str, Any]:
    """('ok', arguments) or ('error', (code, text)) of one call on a fresh node.xml."""
    node = Node()
    try:
        method = SCHEMA.cls(class_name).methods[method_name]
        reply = node.call(class_name, method_name, {a.name: real_input(node, f"{class_name}.{method_name}", a, tmp)
                                                    for a in method.inputs})
    finally:
        node.close()
    if isinstance(reply, MethodResponse):
        return "ok", reply.arguments
    assert isinstance(reply, ExceptionResponse)
    return "error", (reply.error_code, reply.error_text)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("sweep"))


@pytest.mark.parametrize("class_name, method", METHODS, ids=IDS)
def test_every_method_on_the_test_driver(tmp_dir: str, class_name: str, method: Method) -> None:
    kind, detail = real_outcome(class_name, method.name, tmp_dir)
    if kind == "error":
        code, text = detail
        assert code >= errors.STATUS_USER, f"not libvirt's error: {code} {text}"  # the test driver's refusal
        return
    assert set(detail) == {a.name for a in method.outputs}
    for arg in method.outputs:
        assert conforms(arg, detail[arg.name]), (arg, detail[arg.name])


def test_the_test_driver_answers_most_methods(tmp_dir: str) -> None:
    answered = [f"{c}.{m.name}" for c, m in METHODS if real_outcome(c, m.name, tmp_dir)[0] == "ok"]
    assert len(answered) >= 130, len(answered)
    shaped = {"Node.getInfo", "Node.getCPUMap", "Node.getAllDomainStats", "Node.domainListGetStats",
              "Node.listAllDomains", "Node.listAllStoragePools", "Node.getSecurityModel", "Domain.getInfo",
              "Domain.getState", "Domain.getVcpus", "Domain.getCPUStats", "Domain.getControlInfo",
              "Domain.getSecurityLabel", "Domain.getSchedulerType", "Domain.getTime", "Pool.getInfo",
              "Pool.listAllVolumes", "Volume.getInfo", "Volume.storagePoolLookupByVolume", "Node.domainDefineXML",
              "Node.domainCreateXML", "Node.storagePoolDefineXML", "Node.domainLookupByName",
              "Node.storageVolLookupByKey", "Pool.storageVolCreateXML", "Pool.storageVolCreateXMLFrom",
              "Domain.snapshotCreateXML", "Domain.listAllSnapshots", "Domain.snapshotCurrent",
              "Domain.snapshotLookupByName", "Domain.revertToSnapshot", "DomainSnapshot.getParent",
              "DomainSnapshot.listAllChildren", "DomainSnapshot.delete", "DomainCheckpoint.getParent",
              "DomainCheckpoint.listAllChildren", "DomainCheckpoint.getXMLDesc", "DomainCheckpoint.delete"}
    assert shaped <= set(answered), shaped - set(answered)


# --- 3. argument validation for every method -------------------------------------------------------------

WRONG: Dict[str, Any] = {"lstr": 5, "sstr": "x" * 300, "bool": 1, "map": [1], "list": "x", "objId": "Domain:x",
                         "uuid": "not-a-uuid", "int32": "1", "int64": 1.5, "uint32": -1, "uint64": 2 ** 64}


@pytest.fixture
def refusing(node: Node, mocker: MockerFixture) -> Iterator[Callable[[str, str, Dict[str, Any]], str]]:
    """Calls that must be refused with 4 before the hypervisor is asked."""
    invoke = mocker.patch.object(node.hv, "invoke", autospec=True)

    def refused(class_name: str, method: str, arguments: Dict[str, Any]) -> str:
        reply = node.call(class_name, method, arguments)
        assert isinstance(reply, ExceptionResponse), reply
        assert reply.error_code == errors.STATUS_INVALID_PARAMETER, reply.error_text
        return reply.error_text

    yield refused
    invoke.assert_not_called()


def valid_arguments(node: Node, method: Method) -> Dict[str, Any]:
    return {a.name: sample_input(node, a)[0] for a in method.inputs}


@pytest.mark.parametrize("class_name, method", METHODS, ids=IDS)
def test_unknown_argument(node: Node, refusing: Callable[..., str], class_name: str, method: Method) -> None:
    text = refusing(class_name, method.name, {**valid_arguments(node, method), "bogus": 1})
    assert "unknown argument(s) bogus" in text


@pytest.mark.parametrize("class_name, method", WITH_INPUTS, ids=[f"{c}.{m.name}" for c, m in WITH_INPUTS])
def test_wrong_type_and_missing_arguments(node: Node, refusing: Callable[..., str], class_name: str,
                                          method: Method) -> None:
    valid = valid_arguments(node, method)
    for arg in method.inputs:
        wrong = WRONG["objId"] if arg.references and arg.type == "objId" else WRONG[arg.type]
        text = refusing(class_name, method.name, {**valid, arg.name: wrong})
        assert f"argument {arg.name}" in text
        if arg.required:
            text = refusing(class_name, method.name, {k: v for k, v in valid.items() if k != arg.name})
            assert f"missing argument {arg.name}" in text


def test_object_arguments_must_be_this_agents_objects_of_the_declared_class(
        node: Node, refusing: Callable[..., str]) -> None:
    web2 = node.ref("Domain", "web2")
    args = {"xmlDesc": "<volume/>", "flags": 0}
    assert "is a Domain, not a Volume" in refusing("Pool", "storageVolCreateXMLFrom", {**args, "clonevol": web2})
    gone = {**web2, "_object_name": "Volume:/no/such/volume"}
    assert "no such object: Volume:/no/such/volume" in refusing("Pool", "storageVolCreateXMLFrom",
                                                                {**args, "clonevol": gone})
    other = {**node.ref("Volume", "debian.iso"), "_agent_name": "libvirt.org:virtq:elsewhere"}
    assert "belongs to agent" in refusing("Pool", "storageVolCreateXMLFrom", {**args, "clonevol": other})
    assert "is a Pool, not a Domain" in refusing("Node", "domainListGetStats",
                                                 {"doms": [web2, node.ref("Pool", "isos")]})
    assert "argument doms" in refusing("Node", "domainListGetStats", {"doms": [web2, "web1"]})
