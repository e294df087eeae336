"""Definitions of small objects for libvirt's test driver (``test:///default`` or a ``test://`` file):
what a test defines to watch it appear, change and go.

The test driver runs no guest: a domain defined from this XML starts, pauses and stops at once.
"""

from __future__ import annotations

import os
from typing import Union
from xml.sax.saxutils import escape

__all__ = ["domain_xml", "pool_xml"]


def domain_xml(name: str, uuid: str = "", memory_kib: int = 65536, vcpus: int = 1, devices: str = "") -> str:
    """A test-driver domain; libvirt picks a UUID when ``uuid`` is empty. ``devices`` is inserted as the
    ``<devices>`` element's content (e.g. a disk, to watch device events)."""
    parts = [f"<domain type='test'><name>{escape(name)}</name>"]
    if uuid:
        parts.append(f"<uuid>{escape(uuid)}</uuid>")
    parts.append(f"<memory unit='KiB'>{memory_kib}</memory><vcpu>{vcpus}</vcpu><os><type>hvm</type></os>")
    if devices:
        parts.append(f"<devices>{devices}</devices>")
    parts.append("</domain>")
    return "".join(parts)


def pool_xml(name: str, path: Union[str, "os.PathLike[str]"], uuid: str = "") -> str:
    """A directory storage pool at ``path`` (the test driver keeps it in memory; nothing is created)."""
    uuid_element = f"<uuid>{escape(uuid)}</uuid>" if uuid else ""
    return (f"<pool type='dir'><name>{escape(name)}</name>{uuid_element}"
            f"<target><path>{escape(os.fspath(path))}</path></target></pool>")
