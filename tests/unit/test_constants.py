"""libvirt's constants by name without libvirt: schema/constants.json, generated from libvirt-api.xml."""

from __future__ import annotations

import json

import libvirt
import pytest

from tools.schemagen import load_api
from tools.schemagen.constants import render_constants
from virtq.schema.constants import (CONSTANTS_JSON, ConstantError, constants, enum_names, enum_value_name,
                                    parse_flags)


def test_the_committed_file_is_what_the_generator_writes() -> None:
    api = load_api()
    text = render_constants(api)
    assert text == render_constants(api)  # deterministic
    assert CONSTANTS_JSON.read_text(encoding="utf-8") == text
    assert json.loads(text)["api_version"] == api.version


@pytest.mark.parametrize("name", ["VIR_DOMAIN_XML_SECURE", "VIR_DOMAIN_XML_INACTIVE", "VIR_DOMAIN_RUNNING",
                                  "VIR_CONNECT_LIST_DOMAINS_INACTIVE", "VIR_STORAGE_POOL_RUNNING",
                                  "VIR_DOMAIN_SAVE_IMAGE_XML_SECURE"])  # the last an alias
def test_values_match_the_binding(name: str) -> None:
    assert constants()[name] == getattr(libvirt, name)


def test_flags_by_name_number_or_both() -> None:
    assert parse_flags("VIR_DOMAIN_XML_INACTIVE|VIR_DOMAIN_XML_SECURE") == (
        libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    assert parse_flags("vir_domain_xml_secure | 0x4") == libvirt.VIR_DOMAIN_XML_SECURE | 4
    assert parse_flags("0") == 0


def test_an_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ConstantError, match="did you mean VIR_DOMAIN_XML_SECURE"):
        parse_flags("VIR_DOMAIN_XML_SECUR")
    with pytest.raises(ConstantError, match=r"'nonsense' is no libvirt constant$"):
        parse_flags("nonsense")


def test_enums_by_type() -> None:
    assert enum_names("virDomainState")[:2] == ("VIR_DOMAIN_NOSTATE", "VIR_DOMAIN_RUNNING")
    assert enum_value_name("virStoragePoolState", libvirt.VIR_STORAGE_POOL_RUNNING) == "VIR_STORAGE_POOL_RUNNING"
    assert enum_value_name("virNoSuchEnum", 1) is None and enum_names("virNoSuchEnum") == ()
