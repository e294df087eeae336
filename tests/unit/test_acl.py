"""Method permissions: the schema carries libvirt's own (schema/libvirt-remote-acl.tsv) or, for what that table does
not cover, schema/permissions.xml's; conditions mean what libvirt's gendispatch.pl makes of them; the loader and the
generator refuse what would leave a method unprotected or mean something else."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple

import pytest

from tools import schemagen
from tools.schemagen import ACL_TSV, GenerateError, load_api, load_permission_rules
from virtq.schema import Permission, SchemaError, default_schema, load
from virtq.schema.model import PERMISSION_OBJECTS, Method

SCHEMA = default_schema()
API = load_api()
RULES = load_permission_rules()
METHODS: List[Tuple[str, Method]] = [(c.name, m) for c in SCHEMA.classes.values() for m in c.methods.values()]


def _table(path: Path = ACL_TSV) -> Dict[str, Tuple[str, ...]]:
    """The TSV read on its own (not through the generator): C function -> its @acl values."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["proc", "number", "acl", "aclfilter", "c_function"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 347 and [int(r[1]) for r in rows] == list(range(1, 348))
    return {r[4]: tuple(r[2].split(",")) for r in rows if r[4]}


TABLE = _table()


def _annotations(method: Method) -> FrozenSet[str]:
    return frozenset(p.annotation for p in method.permissions)


# --- where the permissions come from ---------------------------------------------------------------


def test_the_table_is_libvirts_as_the_readme_describes_it() -> None:
    assert len(TABLE) == 278
    assert TABLE["virDomainGetXMLDesc"] == ("domain:read", "domain:read_secure:VIR_DOMAIN_XML_SECURE",
                                            "domain:read_secure:VIR_DOMAIN_XML_MIGRATABLE")


@pytest.mark.parametrize("class_name, method", [(c, m) for c, m in METHODS if m.libvirt in TABLE],
                         ids=lambda v: getattr(v, "name", v))
def test_methods_in_libvirts_table_have_exactly_its_permissions(class_name: str, method: Method) -> None:
    """Drift: every method whose function has a row carries that row's @acl values, conditions included."""
    acl = TABLE[method.libvirt]
    if acl == ("none",):  # libvirt checks nothing here; an exposed method still needs a permission
        assert method.libvirt in RULES, f"{method.libvirt}: @acl none and no permissions.xml entry"
        assert _annotations(method) == frozenset(RULES[method.libvirt].acl)
    elif method.libvirt in RULES:  # tightened where libvirt later did: the rule names what it replaces
        rule = RULES[method.libvirt]
        assert rule.replaces == acl, f"{method.libvirt}: replaces= must be the table's values"
        assert _annotations(method) == frozenset(rule.acl)
    else:
        assert _annotations(method) == frozenset(acl), f"{class_name}.{method.name}"
        assert len(method.permissions) == len(acl)


def test_tightened_methods_are_never_readable_by_a_read_only_role() -> None:
    """Guest-agent commands and host file reads: libvirt's later fixes, which the 2014 table predates."""
    tightened = {m.libvirt: m for _, m in METHODS if m.libvirt in RULES and RULES[m.libvirt].replaces}
    assert set(tightened) == {"virDomainGetTime", "virDomainGetHostname", "virDomainSaveImageGetXMLDesc",
                              "virDomainSetSchedulerParameters"}
    for method in tightened.values():
        assert "domain:write" in {str(p) for p in method.required({})}


def test_a_tightening_must_name_what_it_replaces() -> None:
    rule = schemagen.PermissionRule("virDomainGetTime", ("domain:write",), "a test", ("domain:getattr",))
    (problem,) = _problems(virDomainGetTime=rule)
    assert "replaces domain:getattr, but libvirt-remote-acl.tsv" in problem


def test_none_is_never_the_answer_for_an_exposed_method() -> None:
    """The table's `none` rows are events, authentication … and one exposed method: isSecure, which
    permissions.xml protects."""
    exposed_none = sorted(m.libvirt for _, m in METHODS if TABLE.get(m.libvirt) == ("none",))
    assert exposed_none == ["virConnectIsSecure"]
    assert [str(p) for p in SCHEMA.cls("Node").methods["isSecure"].permissions] == ["connect:getattr"]


def test_the_other_methods_have_permissions_xmls_with_a_reason() -> None:
    others = {m.libvirt: m for _, m in METHODS if m.libvirt not in TABLE}
    tightened = {name for name, rule in RULES.items() if rule.replaces}
    assert set(RULES) == set(others) | {"virConnectIsSecure"} | tightened
    for function, method in others.items():
        assert _annotations(method) == frozenset(RULES[function].acl), function
        assert len(RULES[function].reason) > 40, function
    assert len(others) == 65 and len(METHODS) - len(others) == 202


def test_permissions_xml_prefers_libvirts_newer_annotations() -> None:
    """Spot checks against libvirt's current remote_protocol.x (the reasons name the procedures)."""
    domain = SCHEMA.cls("Domain").methods
    assert _annotations(domain["setUserPassword"]) == {"domain:set_password"}
    assert _annotations(domain["getGuestInfo"]) == {"domain:write"}
    assert _annotations(domain["managedSaveGetXMLDesc"]) == {
        "domain:read", "domain:read_secure:VIR_DOMAIN_SAVE_IMAGE_XML_SECURE"}
    assert domain["managedSaveGetXMLDesc"].permissions[1].mask == 0x1  # an alias of VIR_DOMAIN_XML_SECURE
    assert "REMOTE_PROC_DOMAIN_SET_USER_PASSWORD (357)" in RULES["virDomainSetUserPassword"].reason


NEWER = Path(__file__).parents[1] / "data" / "libvirt-remote-acl-since-2014.tsv"
CITED = re.compile(r"(REMOTE_PROC_[A-Z0-9_]+) \((\d+)\)")


def test_permissions_xml_is_libvirts_newer_acl_where_it_cites_a_procedure() -> None:
    """Every entry naming a procedure newer than the table has exactly that procedure's @acl, as transcribed from
    libvirt 10.2's src/remote/remote_protocol.x (tests/data/README.md); none is cited that is not there."""
    rows = [line.split("\t") for line in NEWER.read_text(encoding="utf-8").splitlines()[1:]]
    newer = {function: (proc, int(number), tuple(acl.split(","))) for proc, number, acl, function in rows}
    cited = {f: CITED.search(r.reason) for f, r in RULES.items() if "newer than the table" in r.reason}
    assert set(cited) == set(newer) and len(newer) == 48
    for function, match in cited.items():
        proc, number, acl = newer[function]
        assert match is not None and (match[1], int(match[2])) == (proc, number), function
        if function == "virDomainInterfaceAddresses":  # write whatever the source argument: stricter, never looser
            assert RULES[function].acl == ("domain:read", "domain:write") and acl[1].startswith("domain:write::")
        else:
            assert RULES[function].acl == acl, function
    for function in ("virDomainCheckpointCreateXML", "virDomainBackupBegin", "virDomainBackupGetXMLDesc"):
        assert "Verified against libvirt's src/remote/remote_protocol.x of libvirt 10.2" in RULES[function].reason
    backup = SCHEMA.cls("Domain").methods["backupBegin"]
    assert _annotations(backup) == {"domain:checkpoint", "domain:block_write"}  # never a read-only principal's


def test_the_doc_lists_every_method_that_permissions_xml_decides() -> None:
    text = (Path(__file__).parents[2] / "docs" / "SCHEMA.md").read_text(encoding="utf-8")
    for class_name, method in METHODS:
        if method.libvirt in RULES:  # a row of the permissions.xml table, not (only) of the methods'
            assert f"| {class_name} `{method.name}` | `{method.libvirt}` | " in text, method.libvirt
    assert "## Permissions" in text and "gendispatch.pl" in text


# --- every method is protected --------------------------------------------------------------------


@pytest.mark.parametrize("class_name, method", METHODS, ids=lambda v: getattr(v, "name", v))
def test_every_method_has_a_permission_that_always_applies(class_name: str, method: Method) -> None:
    assert method.permissions, f"{class_name}.{method.name} has no permission"
    assert any(not p.condition for p in method.permissions), f"{class_name}.{method.name}: only conditional ones"
    assert method.required({}), f"{class_name}.{method.name}: a call with flags 0 would need nothing"
    assert {p.object for p in method.permissions} <= PERMISSION_OBJECTS
    if any(p.condition for p in method.permissions):
        assert "flags" in [a.name for a in method.inputs], f"{class_name}.{method.name}: a condition on no flags"


# --- condition semantics: what gendispatch.pl generates ------------------------------------------------


def _gendispatch(condition: str, flags: int, constants: Mapping[str, int]) -> bool:
    """The C test libvirt's src/rpc/gendispatch.pl (generate_acl) prints for `@acl: object:perm:condition`,
    built the way it builds it and evaluated (the expression is valid Python with the same meaning):

        if ($flags =~ /^\\!/) { $flags = substr $flags, 1; print "((flags & ($flags)) == 0) &&\\n"; }
        else { print "((flags & ($flags)) == ($flags)) &&\\n"; }
    """
    if condition.startswith("!"):
        expression = f"((flags & ({condition[1:]})) == 0)"
    else:
        expression = f"((flags & ({condition})) == ({condition}))"
    return bool(eval(expression, {"__builtins__": {}}, {"flags": flags, **constants}))  # noqa: S307


def _required(class_name: str, method_name: str, flags: object) -> List[str]:
    return sorted(p.annotation for p in SCHEMA.cls(class_name).methods[method_name].required({"flags": flags}))


XML_SECURE, XML_INACTIVE, XML_MIGRATABLE = 0x1, 0x2, 0x8
LIVE, CONFIG, FORCE = 0x1, 0x2, 0x4  # VIR_DOMAIN_AFFECT_LIVE, _CONFIG; VIR_DOMAIN_DEVICE_MODIFY_FORCE
SAVE_IF_CURRENT = "domain:save:!VIR_DOMAIN_AFFECT_CONFIG|VIR_DOMAIN_AFFECT_LIVE"
SAVE_IF_CONFIG = "domain:save:VIR_DOMAIN_AFFECT_CONFIG"


@pytest.mark.parametrize("class_name, method_name, flags, expected", [
    ("Domain", "getXMLDesc", 0, ["domain:read"]),
    ("Domain", "getXMLDesc", XML_INACTIVE, ["domain:read"]),
    ("Domain", "getXMLDesc", XML_SECURE, ["domain:read", "domain:read_secure:VIR_DOMAIN_XML_SECURE"]),
    ("Domain", "getXMLDesc", XML_MIGRATABLE, ["domain:read", "domain:read_secure:VIR_DOMAIN_XML_MIGRATABLE"]),
    ("Domain", "getXMLDesc", XML_SECURE | XML_MIGRATABLE | XML_INACTIVE,
     ["domain:read", "domain:read_secure:VIR_DOMAIN_XML_MIGRATABLE", "domain:read_secure:VIR_DOMAIN_XML_SECURE"]),
    # !CONFIG|LIVE: neither flag set (AFFECT_CURRENT); the '!' negates the whole list
    ("Domain", "attachDeviceFlags", 0, ["domain:write", SAVE_IF_CURRENT]),
    ("Domain", "attachDeviceFlags", LIVE, ["domain:write"]),
    ("Domain", "attachDeviceFlags", CONFIG, ["domain:write", SAVE_IF_CONFIG]),
    ("Domain", "attachDeviceFlags", LIVE | CONFIG, ["domain:write", SAVE_IF_CONFIG]),
    ("Domain", "attachDeviceFlags", FORCE, ["domain:write", SAVE_IF_CURRENT]),
    ("Domain", "attachDeviceFlags", FORCE | LIVE, ["domain:write"]),
    ("Domain", "setVcpusFlags", 0x8, ["domain:write", SAVE_IF_CURRENT, "domain:write:VIR_DOMAIN_VCPU_GUEST"]),
    ("Domain", "reboot", 0x1, ["domain:init_control"]),
    ("Domain", "reboot", 0x2, ["domain:init_control", "domain:write:VIR_DOMAIN_REBOOT_GUEST_AGENT"]),
    # flags that are not an integer count as 0
    ("Domain", "getXMLDesc", None, ["domain:read"]),
    ("Domain", "getXMLDesc", "1", ["domain:read"]),
    ("Domain", "getXMLDesc", True, ["domain:read"]),
])
def test_required_permissions(class_name: str, method_name: str, flags: object, expected: List[str]) -> None:
    assert _required(class_name, method_name, flags) == sorted(expected)


@pytest.mark.parametrize("condition", ["!VIR_DOMAIN_AFFECT_CONFIG|VIR_DOMAIN_AFFECT_LIVE",
                                       "VIR_DOMAIN_AFFECT_CONFIG", "VIR_DOMAIN_AFFECT_CONFIG|VIR_DOMAIN_AFFECT_LIVE",
                                       "!VIR_DOMAIN_XML_SECURE", "VIR_DOMAIN_AFFECT_CURRENT"])
def test_applies_is_what_gendispatch_computes(condition: str) -> None:
    """Every combination of the low bits, against the generated C evaluated."""
    permission = schemagen.parse_acl(f"domain:save:{condition}", API.constants)
    assert permission.negate == condition.startswith("!")
    for flags in range(16):
        assert permission.applies(flags) == _gendispatch(condition, flags, API.constants), (condition, flags)


def test_every_methods_conditions_match_gendispatch() -> None:
    """Each conditional permission of the schema, for flags 0, each documented flag alone and all of them."""
    checked = 0
    for class_name, method in METHODS:
        flags_arg = next((a for a in method.inputs if a.name == "flags"), None)
        if flags_arg is None:
            continue
        values = [v for _, v in flags_arg.flags]
        samples = {0, *values, *(a | b for a, b in itertools.combinations(values, 2))}
        for permission in method.permissions:
            for flags in samples:
                expected = not permission.condition or _gendispatch(permission.condition, flags, API.constants)
                assert permission.applies(flags) == expected, (class_name, method.name, permission, flags)
                checked += permission.condition != ""
    assert checked > 100


def test_a_permission_without_condition_always_applies() -> None:
    permission = Permission("domain", "read")
    assert str(permission) == permission.annotation == "domain:read"
    assert all(permission.applies(flags) for flags in (0, 1, 0xFFFFFFFF))
    assert SCHEMA.cls("Domain").methods["isActive"].required({}) == (permission,)  # takes no flags


# --- the loader refuses malformed <acl> ------------------------------------------------------------

VALID = """<schema package="p">
  <class name="A">
    <property name="uuid" type="uuid"/>
    <method name="m" libvirt="virDomainDoSomething">
      <acl permission="domain:write"/>
      <acl permission="domain:save" if="!VIR_A|VIR_B" mask="0x3"/>
      <arg name="flags" dir="I" type="uint32" default="0"/>
    </method>
  </class>
</schema>"""


def test_acl_loads_into_permissions() -> None:
    method = load(VALID.encode()).cls("A").methods["m"]
    assert method.permissions == (Permission("domain", "write"),
                                  Permission("domain", "save", "!VIR_A|VIR_B", 3, negate=True))
    assert [p.annotation for p in method.required({"flags": 2})] == ["domain:write"]
    assert [str(p) for p in method.required({"flags": 4})] == ["domain:write", "domain:save"]


def _invalid(old: str, new: str) -> bytes:
    assert VALID.count(old) == 1, old
    return VALID.replace(old, new).encode()


@pytest.mark.parametrize("xml, message", [
    pytest.param(_invalid('permission="domain:write"', ''), "expected object:name", id="no-permission"),
    pytest.param(_invalid('"domain:write"', '"domain"'), "expected object:name", id="no-colon"),
    pytest.param(_invalid('"domain:write"', '"domain:"'), "expected object:name", id="no-name"),
    pytest.param(_invalid('"domain:write"', '"Domain:Write"'), "expected object:name", id="capitals"),
    pytest.param(_invalid('"domain:write"', '"domain:write:VIR_A"'), "expected object:name",
                 id="condition-inside-permission"),
    pytest.param(_invalid('"domain:write"', '"network:write"'), "unknown object 'network'", id="unknown-object"),
    pytest.param(_invalid(' mask="0x3"', ''), "if= and mask= go together", id="if-without-mask"),
    pytest.param(_invalid('<acl permission="domain:write"/>', '<acl permission="domain:write" mask="1"/>'),
                 "if= and mask= go together", id="mask-without-if"),
    pytest.param(_invalid('mask="0x3"', 'mask="three"'), "mask must be an integer", id="mask-not-a-number"),
    pytest.param(_invalid('mask="0x3"', 'mask="-1"'), "mask must not be negative", id="negative-mask"),
    pytest.param(_invalid('if="!VIR_A|VIR_B"', 'if="VIR_A||VIR_B"'), "bad condition", id="empty-flag"),
    pytest.param(_invalid('if="!VIR_A|VIR_B"', 'if="VIR_A|!VIR_B"'), "bad condition", id="inner-negation"),
    pytest.param(_invalid('if="!VIR_A|VIR_B"', 'if=""'), "bad condition", id="empty-condition"),
    pytest.param(_invalid('if="!VIR_A|VIR_B"', 'if="VIR_A&amp;VIR_B"'), "bad condition", id="and"),
    pytest.param(_invalid('<acl permission="domain:write"/>', '<acl permission="domain:write"/>'
                          '<acl permission="domain:write"/>'), "declared twice", id="duplicate"),
    pytest.param(_invalid('<acl permission="domain:write"/>', '<permission name="domain:write"/>'),
                 "unexpected element <permission>", id="unknown-child"),
])
def test_loader_rejects_malformed_acl(xml: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        load(xml)


# --- the generator refuses what would leave a method unprotected ----------------------------------------


def _problems(**changes: Optional[schemagen.PermissionRule]) -> List[str]:
    """The generator's problems with permissions.xml changed: a rule replaced, or removed (None)."""
    rules = dict(RULES)
    for name, rule in changes.items():
        if rule is None:
            del rules[name]
        else:
            rules[name] = rule
    with pytest.raises(GenerateError) as info:
        schemagen.generate(API, rules=rules)
    return info.value.problems


def _rule(function: str, acl: str) -> schemagen.PermissionRule:
    return schemagen.PermissionRule(function, tuple(acl.split(",")), "a test")


def test_a_method_without_permission_is_refused() -> None:
    assert _problems(virDomainGetID=None) == [
        "Domain.getID (virDomainGetID): no permission (libvirt-remote-acl.tsv has no procedure for it); "
        "add it to permissions.xml with a reason"]


def test_libvirts_none_is_not_enough() -> None:
    (problem,) = _problems(virConnectIsSecure=None)
    assert "libvirt checks nothing for REMOTE_PROC_CONNECT_IS_SECURE (@acl: none)" in problem


def test_the_table_decides_where_it_has_a_row() -> None:
    (problem,) = _problems(virDomainGetXMLDesc=_rule("virDomainGetXMLDesc", "domain:read"))
    assert problem.startswith("permissions.xml: virDomainGetXMLDesc has libvirt's own permissions")


def test_a_rule_for_no_exposed_function_is_refused() -> None:
    assert _problems(virDomainOpenGraphics=_rule("virDomainOpenGraphics", "domain:open_graphics")) == [
        "permissions.xml: virDomainOpenGraphics is not an exposed function"]


@pytest.mark.parametrize("acl, message", [
    ("domain:read_secure:VIR_DOMAIN_NO_SUCH_FLAG", "VIR_DOMAIN_NO_SUCH_FLAG is not a constant of libvirt-api.xml"),
    ("domain:write,domain:write::source:VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT", "bad acl"),
    ("network:read", "object 'network' is none of"),
    ("none", "bad acl 'none'"),
    ("domain:write,connect:write", "the permissions name different objects"),
    ("domain:save:VIR_DOMAIN_AFFECT_CONFIG", "every permission has a condition"),
    ("domain:read,domain:read", "domain:read twice"),
])
def test_bad_rules_are_refused(acl: str, message: str) -> None:
    problems = _problems(virDomainGetMessages=_rule("virDomainGetMessages", acl))
    assert any(message in p for p in problems), problems


def test_a_condition_needs_flags() -> None:
    (problem,) = _problems(virDomainGetID=_rule("virDomainGetID", "domain:getattr,domain:read:VIR_DOMAIN_XML_SECURE"))
    assert problem.endswith("a flag condition, but the method takes no flags")
