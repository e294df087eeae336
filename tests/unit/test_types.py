"""Value types (check / parse_text) and Method.bind, which validates call arguments on both sides."""

from __future__ import annotations

from typing import Any, List

import pytest

from virtq.schema import InvalidParameterError, default_schema
from virtq.schema import types as T
from virtq.schema.errors import STATUS_INVALID_PARAMETER
from virtq.schema.model import Method

# --- check: integers --------------------------------------------------------------------------


@pytest.mark.parametrize("type_name, lo, hi", [
    ("uint8", 0, 255),
    ("uint16", 0, 65535),
    ("uint32", 0, 2**32 - 1),
    ("uint64", 0, 2**64 - 1),
    ("int8", -128, 127),
    ("int16", -32768, 32767),
    ("int32", -(2**31), 2**31 - 1),
    ("int64", -(2**63), 2**63 - 1),
    ("absTime", 0, 2**63 - 1),
])
def test_int_ranges_are_inclusive_and_enforced(type_name: str, lo: int, hi: int) -> None:
    T.check(type_name, lo)
    T.check(type_name, hi)
    with pytest.raises(T.TypeCheckError, match="out of range"):
        T.check(type_name, lo - 1)
    with pytest.raises(T.TypeCheckError, match="out of range"):
        T.check(type_name, hi + 1)


def test_uint32_rejects_negative_and_too_large() -> None:
    with pytest.raises(T.TypeCheckError, match=r"-1 is out of range for uint32"):
        T.check("uint32", -1)
    with pytest.raises(T.TypeCheckError, match=r"4294967296 is out of range for uint32"):
        T.check("uint32", 2**32)


@pytest.mark.parametrize("type_name", ["uint8", "uint32", "int32", "int64", "absTime"])
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_int(type_name: str, value: bool) -> None:
    with pytest.raises(T.TypeCheckError, match=f"expected {type_name}, got bool"):
        T.check(type_name, value)


@pytest.mark.parametrize("value", [1.0, "1", None, [1]])
def test_ints_reject_other_types(value: Any) -> None:
    with pytest.raises(T.TypeCheckError, match="expected uint32"):
        T.check("uint32", value)


# --- check: the other types ---------------------------------------------------------------------


def test_sstr_limit_counts_utf8_bytes() -> None:
    T.check("sstr", "")
    T.check("sstr", "x" * T.SSTR_MAX)
    with pytest.raises(T.TypeCheckError):
        T.check("sstr", "x" * (T.SSTR_MAX + 1))
    T.check("sstr", "é" * (T.SSTR_MAX // 2))  # 254 bytes
    with pytest.raises(T.TypeCheckError):
        T.check("sstr", "é" * (T.SSTR_MAX // 2 + 1))  # 128 characters, 256 bytes


def test_lstr_has_no_limit_but_must_be_str() -> None:
    T.check("lstr", "x" * 100_000)
    with pytest.raises(T.TypeCheckError):
        T.check("lstr", b"bytes")


@pytest.mark.parametrize("type_name, good, bad", [
    ("bool", [True, False], [0, 1, "true", None]),
    ("float", [1.5, 0, -3], [True, "1.5", None]),
    ("double", [1e300, 2], [False, "2"]),
    ("map", [{}, {"a": 1}], [[], "{}", None]),
    ("list", [[], [1, 2], (1,)], [{}, "[]", None]),
    ("objId", [{"_object_name": "Domain:x"}, {"_object_name": "", "_agent_name": "a"}],
     [{}, {"_object_name": 1}, "Domain:x", None]),
    ("uuid", ["6695eb01-f6a4-8304-79aa-97f2502e193f"], ["6695eb01", 42, None]),
])
def test_non_int_types(type_name: str, good: List[Any], bad: List[Any]) -> None:
    for value in good:
        T.check(type_name, value)
    for value in bad:
        with pytest.raises(T.TypeCheckError):
            T.check(type_name, value)


def test_unknown_type_is_an_error() -> None:
    with pytest.raises(T.TypeCheckError, match="unknown type"):
        T.check("int128", 1)


def test_type_check_error_is_a_value_error() -> None:
    assert issubclass(T.TypeCheckError, ValueError)


# --- parse_text -------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name, text, value", [
    ("uint8", "255", 255),
    ("uint32", "42", 42),
    ("uint32", "0x10", 16),
    ("int32", "-5", -5),
    ("int64", "-9223372036854775808", -(2**63)),
    ("uint64", "18446744073709551615", 2**64 - 1),
    ("absTime", "1700000000000000000", 1700000000000000000),
    ("bool", "1", True),
    ("bool", "TRUE", True),
    ("bool", "yes", True),
    ("bool", "on", True),
    ("bool", "0", False),
    ("bool", "False", False),
    ("bool", "no", False),
    ("bool", "off", False),
    ("float", "1.5", 1.5),
    ("double", "-2e3", -2000.0),
    ("map", '{"a": [1, 2]}', {"a": [1, 2]}),
    ("list", '[1, "x"]', [1, "x"]),
    ("objId", "Domain:6695eb01", {"_object_name": "Domain:6695eb01"}),
    ("sstr", "hello world", "hello world"),
    ("lstr", "<domain/>", "<domain/>"),
    ("uuid", "6695eb01-f6a4-8304-79aa-97f2502e193f", "6695eb01-f6a4-8304-79aa-97f2502e193f"),
])
def test_parse_text(type_name: str, text: str, value: Any) -> None:
    parsed = T.parse_text(type_name, text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize("type_name, text", [
    ("uint32", "abc"),
    ("uint32", "1.5"),
    ("uint32", ""),
    ("uint32", "-1"),            # parses, out of range
    ("uint32", "4294967296"),
    ("uint8", "256"),
    ("int8", "-129"),
    ("absTime", "-1"),
    ("bool", "maybe"),
    ("bool", ""),
    ("float", "fast"),
    ("double", ""),
    ("map", "{bad json"),
    ("map", "[1, 2]"),           # valid JSON, wrong shape
    ("list", '{"a": 1}'),
    ("list", "nope"),
    ("sstr", "x" * 256),
    ("uuid", "not-a-uuid"),
])
def test_parse_text_rejects_bad_text(type_name: str, text: str) -> None:
    with pytest.raises(T.TypeCheckError):
        T.parse_text(type_name, text)


def test_parse_text_error_names_text_and_type() -> None:
    with pytest.raises(T.TypeCheckError, match=r"'abc' is not a valid uint32"):
        T.parse_text("uint32", "abc")


# --- Method.bind -------------------------------------------------------------------------------------

SCHEMA = default_schema()


def method(class_name: str, name: str) -> Method:
    found = SCHEMA.cls(class_name).method(name)
    assert found is not None
    return found


def test_bind_fills_defaults() -> None:
    assert method("Domain", "getXMLDesc").bind({}) == {"flags": 0}
    assert method("Node", "domainCreateXML").bind({"xmlDesc": "<domain/>"}) == {"xmlDesc": "<domain/>", "flags": 0}


def test_bind_keeps_given_values() -> None:
    assert method("Domain", "getXMLDesc").bind({"flags": 2}) == {"flags": 2}
    assert method("Node", "domainCreateXML").bind({"xmlDesc": "<d/>", "flags": 1}) == {"xmlDesc": "<d/>", "flags": 1}


def test_bind_without_inputs() -> None:
    assert method("Domain", "suspend").bind({}) == {}


def test_bind_does_not_modify_its_argument() -> None:
    given = {"xmlDesc": "<d/>"}
    method("Node", "domainCreateXML").bind(given)
    assert given == {"xmlDesc": "<d/>"}


def _bind_error(m: Method, arguments: Any) -> InvalidParameterError:
    with pytest.raises(InvalidParameterError) as info:
        m.bind(arguments)
    assert info.value.error_code == STATUS_INVALID_PARAMETER == 4
    return info.value


def test_bind_unknown_argument() -> None:
    err = _bind_error(method("Domain", "getXMLDesc"), {"flags": 0, "flag": 1})
    assert "unknown argument" in err.error_text and "flag" in err.error_text
    assert err.error_text.startswith("getXMLDesc:")


def test_bind_refuses_output_arguments_as_inputs() -> None:
    err = _bind_error(method("Domain", "getXMLDesc"), {"xml": "<domain/>"})
    assert "unknown argument" in err.error_text and "xml" in err.error_text


def test_bind_missing_argument() -> None:
    err = _bind_error(method("Node", "domainCreateXML"), {"flags": 0})
    assert "missing argument xmlDesc" in err.error_text


@pytest.mark.parametrize("flags", ["0", -1, 2**32, True, 1.0, None])
def test_bind_wrongly_typed_argument(flags: Any) -> None:
    err = _bind_error(method("Node", "domainCreateXML"), {"xmlDesc": "<d/>", "flags": flags})
    assert "argument flags" in err.error_text
    assert "uint32" in err.error_text


def test_bind_wrongly_typed_required_argument() -> None:
    err = _bind_error(method("Node", "domainDefineXML"), {"xml": 42})
    assert "argument xml" in err.error_text and "lstr" in err.error_text


@pytest.mark.parametrize("arguments", [None, ["flags"], "flags=0"])
def test_bind_needs_a_map(arguments: Any) -> None:
    err = _bind_error(method("Domain", "getXMLDesc"), arguments)
    assert "_arguments must be a map" in err.error_text
