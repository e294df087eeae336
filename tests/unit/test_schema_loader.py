"""The packaged schema (org.libvirt.xml) and the loader's validation of schema files."""

from __future__ import annotations

import inspect
import keyword
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import libvirt
import pytest

from tools.schemagen import load_overrides
from virtq.agent.libvirt_adapter import binding_table
from virtq.schema import SchemaError, default_schema, load
from virtq.schema.loader import SCHEMA_FILE
from virtq.schema.model import NO_DEFAULT, Method

SCHEMA = load()

LIBVIRT_CLASS = {"Node": "virConnect", "Domain": "virDomain", "Pool": "virStoragePool",
                 "Volume": "virStorageVol", "DomainSnapshot": "virDomainSnapshot",
                 "DomainCheckpoint": "virDomainCheckpoint"}


def all_methods() -> List[Tuple[str, Method]]:
    return [(c.name, m) for c in SCHEMA.classes.values() for m in c.methods.values()]


# --- the packaged schema --------------------------------------------------------------------------


def test_packaged_schema_loads() -> None:
    assert SCHEMA.package == "org.libvirt"
    assert set(SCHEMA.classes) == {"Node", "Domain", "Pool", "Volume", "DomainSnapshot", "DomainCheckpoint"}
    from virtq.agent.libvirt_events import DOMAIN_EVENT_KINDS, POOL_EVENT_KINDS, event_name
    assert set(SCHEMA.events) == ({event_name("domain", k) for k in DOMAIN_EVENT_KINDS}
                                  | {event_name("pool", k) for k in POOL_EVENT_KINDS})
    for cls in SCHEMA.classes.values():
        assert cls.package == "org.libvirt"
        assert cls.methods, f"{cls.name} declares no methods"


def test_default_schema_is_the_packaged_file_loaded_once() -> None:
    assert default_schema() is default_schema()
    assert default_schema().hash == SCHEMA.hash


@pytest.mark.parametrize("class_name, properties", [
    ("Node", ["uuid", "hostname", "uri", "configGen"]),
    ("Domain", ["uuid", "name", "id", "node", "configGen"]),
    ("Pool", ["uuid", "name", "node", "configGen"]),
    ("Volume", ["key", "name", "path", "pool", "configGen"]),
])
def test_properties_are_identity_only(class_name: str, properties: List[str]) -> None:
    assert [p.name for p in SCHEMA.cls(class_name).properties] == properties


def test_parent_references_and_index() -> None:
    refs = {(c.name, p.name): p.references for c in SCHEMA.classes.values() for p in c.properties
            if p.references}
    assert refs == {("Domain", "node"): "Node", ("Pool", "node"): "Node", ("Volume", "pool"): "Pool",
                    ("DomainSnapshot", "domain"): "Domain", ("DomainCheckpoint", "domain"): "Domain"}
    for cls in SCHEMA.classes.values():
        for p in cls.properties:
            if p.references:
                assert p.type == "objId"
    indexed = {c.name: [p.name for p in c.properties if p.index] for c in SCHEMA.classes.values()}
    assert indexed == {"Node": ["uuid"], "Domain": ["uuid"], "Pool": ["uuid"], "Volume": ["key"],
                       "DomainSnapshot": ["name", "domain"], "DomainCheckpoint": ["name", "domain"]}


def _renamed() -> Dict[str, Dict[str, str]]:
    """overrides.xml: binding parameters whose wire name is libvirt's C name for them."""
    renamed: Dict[str, Dict[str, str]] = {}
    for function, override in load_overrides().items():
        for spec in override.inputs.values():
            if len(spec.libvirt) == 1 and not keyword.iskeyword(spec.libvirt[0]):
                renamed.setdefault(function, {})[spec.python] = spec.name or spec.libvirt[0]
            elif spec.name:
                renamed.setdefault(function, {})[spec.python] = spec.name
    return renamed


RENAMED = _renamed()


@pytest.mark.parametrize("class_name, method", all_methods(), ids=lambda v: getattr(v, "name", v))
def test_method_names_a_libvirt_function_on_the_right_class(class_name: str, method: Method) -> None:
    table = binding_table()
    assert method.libvirt in table, f"libvirt-python has no {method.libvirt}"
    py_class, py_method = table[method.libvirt]
    assert py_class == LIBVIRT_CLASS[class_name]
    # The agent passes the inputs positionally, in declared order: the binding must take them so,
    # under its parameter names, or under libvirt's C names where overrides.xml maps them.
    params = list(inspect.signature(getattr(getattr(libvirt, py_class), py_method)).parameters)[1:]
    renamed = RENAMED.get(method.libvirt, {})
    positional = [a.name for a in method.arguments if a.is_input or a.type == "stream"]  # the agent fills a stream
    assert positional == [renamed.get(p, p) for p in params]


def test_some_inputs_take_libvirts_names_where_the_binding_renamed_them() -> None:
    assert [a.name for a in SCHEMA.cls("Domain").methods["blockStats"].inputs] == ["disk"]  # binding: path
    assert [a.name for a in SCHEMA.cls("Node").methods["domainRestore"].inputs] == ["frm"]  # C: from, a keyword


def test_binding_table_is_not_trivially_permissive() -> None:
    """Guards the test above: the table knows classes apart and does not invent functions."""
    table = binding_table()
    assert table["virDomainSuspend"] == ("virDomain", "suspend")
    assert table["virStoragePoolCreate"] == ("virStoragePool", "create")
    assert "virDomainFrobnicate" not in table


def test_arguments() -> None:
    create = SCHEMA.cls("Node").methods["domainCreateXML"]
    assert [(a.name, a.type, a.direction) for a in create.arguments] == [
        ("xmlDesc", "lstr", "I"), ("flags", "uint32", "I"), ("domain", "objId", "O")]
    assert create.arguments[0].default is NO_DEFAULT and create.arguments[0].required
    assert create.arguments[1].default == 0 and not create.arguments[1].required
    assert create.arguments[2].references == "Domain"
    info = SCHEMA.cls("Domain").methods["getInfo"]
    assert info.outputs[0].fields == ("state", "maxMem", "memory", "nrVirtCpu", "cpuTime")
    event = SCHEMA.events["domainLifecycle"]
    assert [(a.name, a.direction) for a in event.arguments] == [
        ("domain", "O"), ("event", "O"), ("detail", "O"), ("data", "O")]
    assert event.schema_id.type == "_event"


# --- hashes ------------------------------------------------------------------------------------------


def test_hash_is_stable_across_loads_and_sources() -> None:
    again = load(SCHEMA_FILE)
    from_bytes = load(SCHEMA_FILE.read_bytes())
    from_str_path = load(str(SCHEMA_FILE))
    assert SCHEMA.hash == again.hash == from_bytes.hash == from_str_path.hash
    assert str(uuid.UUID(SCHEMA.hash)) == SCHEMA.hash
    for name, cls in SCHEMA.classes.items():
        assert from_bytes.cls(name).hash == cls.hash
    assert len({c.hash for c in SCHEMA.classes.values()}) == len(SCHEMA.classes) == 6


def _packaged(old: str, new: str) -> bytes:
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1).encode()


def test_hash_changes_when_a_class_changes() -> None:
    changed = load(_packaged('<method name="suspend" libvirt="virDomainSuspend"',
                             '<method name="frobnicate" libvirt="virDomainFrobnicate"/>'
                             '<method name="suspend" libvirt="virDomainSuspend"'))
    assert changed.hash != SCHEMA.hash
    assert changed.cls("Domain").hash != SCHEMA.cls("Domain").hash
    for name in ("Node", "Pool", "Volume"):  # the other classes keep theirs
        assert changed.cls(name).hash == SCHEMA.cls(name).hash


def test_hash_changes_with_an_argument_type() -> None:
    changed = load(_packaged('<property name="id" type="int32"', '<property name="id" type="int64"'))
    assert changed.hash != SCHEMA.hash
    assert changed.cls("Domain").hash != SCHEMA.cls("Domain").hash


def test_hash_changes_when_an_event_changes() -> None:
    changed = load(_packaged('<arg name="detail" type="sstr"', '<arg name="detail" type="lstr"'))
    assert changed.hash != SCHEMA.hash
    assert changed.events["domainLifecycle"].hash != SCHEMA.events["domainLifecycle"].hash
    assert all(changed.cls(n).hash == c.hash for n, c in SCHEMA.classes.items())


# --- invalid schemas -------------------------------------------------------------------------------

VALID = """<schema package="p">
  <class name="A">
    <property name="uuid" type="uuid"/>
    <property name="b" type="objId" references="B"/>
    <method name="m" libvirt="virDoSomething">
      <arg name="flags" dir="I" type="uint32" default="0"><flag name="FORCE" value="0x1"/></arg>
      <arg name="out" dir="O" type="objId" references="B"/>
    </method>
  </class>
  <class name="B"><property name="uuid" type="uuid"/></class>
  <event name="e"><arg name="a" type="objId" references="A"/></event>
</schema>"""


def test_minimal_valid_schema() -> None:
    """The base the invalid cases below change one thing in."""
    schema = load(VALID.encode())
    assert set(schema.classes) == {"A", "B"}
    arg = schema.cls("A").methods["m"].arguments[0]
    assert arg.default == 0 and arg.flags == (("FORCE", 1),)


def _invalid(old: str, new: str) -> bytes:
    assert VALID.count(old) >= 1, old
    return VALID.replace(old, new, 1).encode()


@pytest.mark.parametrize("xml, message", [
    pytest.param(_invalid('type="uuid"', 'type="guid"'), "unknown type 'guid'", id="unknown-property-type"),
    pytest.param(_invalid('dir="I" type="uint32"', 'dir="I" type="u32"'), "unknown type", id="unknown-arg-type"),
    pytest.param(_invalid('<arg name="a" type="objId"', '<arg name="a"'), "unknown type None", id="missing-type"),
    pytest.param(_invalid('dir="I"', 'dir="IN"'), "dir must be I, O or IO", id="bad-dir"),
    pytest.param(_invalid('</method>', '</method><method name="m" libvirt="virOther"/>'), "declared twice",
                 id="duplicate-method"),
    pytest.param(_invalid(' libvirt="virDoSomething"', ''), "no libvirt function", id="missing-libvirt"),
    pytest.param(_invalid(' libvirt="virDoSomething"', ' libvirt=""'), "no libvirt function", id="empty-libvirt"),
    pytest.param(_invalid('type="objId" references="B"/>\n    <method',
                          'type="objId" references="C"/>\n    <method'),
                 "A.b: references unknown class C", id="property-references-unknown-class"),
    pytest.param(_invalid('dir="O" type="objId" references="B"', 'dir="O" type="objId" references="Z"'),
                 "references unknown class Z", id="argument-references-unknown-class"),
    pytest.param(_invalid('default="0"', 'default="-1"'), "bad default", id="default-out-of-range"),
    pytest.param(_invalid('default="0"', 'default="zero"'), "bad default", id="default-not-a-number"),
    pytest.param(_invalid('<property name="uuid" type="uuid"/>',
                          '<property name="uuid" type="uuid"/><statistic name="s" type="bool"/><foo/>'),
                 "unexpected element <foo>", id="unknown-element-in-class"),
    pytest.param(_invalid('<event', '<enum name="x"/><event'), "unexpected element <enum>",
                 id="unknown-top-level-element"),
    pytest.param(_invalid('</schema>', ''), "", id="malformed-unclosed"),
    pytest.param(b"<schema package='p'><class name='A'></schema>", "", id="malformed-mismatched"),
    pytest.param(b"", "", id="empty-document"),
    pytest.param(_invalid('<schema package="p">', '<schemata package="p">').replace(b"</schema>", b"</schemata>"),
                 "root must be <schema", id="wrong-root"),
    pytest.param(_invalid('<schema package="p">', '<schema>'), "root must be <schema", id="no-package"),
])
def test_invalid_schemas_raise_schema_error(xml: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message.replace("(", r"\(") if message else None):
        load(xml)


def test_event_argument_referencing_unknown_class() -> None:
    with pytest.raises(SchemaError, match="references unknown class Nope"):
        load(_invalid('<arg name="a" type="objId" references="A"/>', '<arg name="a" type="objId" references="Nope"/>'))


def test_duplicate_class_is_refused() -> None:
    with pytest.raises(SchemaError, match="class B: declared twice"):
        load(_invalid('<event', '<class name="B"><property name="key" type="lstr"/></class><event'))


def test_duplicate_event_is_refused() -> None:
    with pytest.raises(SchemaError, match="event e: declared twice"):
        load(_invalid('</schema>', '<event name="e"/></schema>'))


def test_class_and_event_may_share_a_name() -> None:
    """QMF tells them apart by schema id type (_data / _event)."""
    schema = load(_invalid('</schema>', '<event name="A"/></schema>'))
    assert schema.cls("A").schema_id != schema.events["A"].schema_id


@pytest.mark.parametrize("flag", ['<flag name="FORCE" value="one"/>', '<flag name="FORCE"/>'],
                         ids=["not-a-number", "no-value"])
def test_bad_flag_value(flag: str) -> None:
    with pytest.raises(SchemaError, match="flag"):
        load(_invalid('<flag name="FORCE" value="0x1"/>', flag))


def test_schema_error_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(_invalid('dir="I"', 'dir="X"'))
    with pytest.raises(SchemaError, match="dir must be"):
        load(path)
    path.write_text("<schema package='p'>")
    with pytest.raises(SchemaError):
        load(path)


def test_schema_error_is_a_value_error() -> None:
    assert issubclass(SchemaError, ValueError)
