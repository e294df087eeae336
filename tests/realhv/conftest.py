"""Fixtures of the real-hypervisor tier: a real libvirtd with the QEMU driver, and tiny guests.

In CI (``CI=true``) the tier must run: any set-up problem fails it. Elsewhere it is skipped,
with the reason, when the packages are missing (``bash scripts/install-libvirtd.sh``, which
``make test`` runs, installs them) or when it is not root and no libvirtd is running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from virtq.agent import Agent
from virtq.agent.policy import Policy
from virtq.console import Console
from virtq.schema import default_schema

from ..conftest import AgentFactory
from ..pki import Pki
from .harness import (BOOT_LINE, GUEST_PREFIX, HarnessError, LibvirtDaemons, Unavailable, destroy_guests,
                      guest_name, guest_xml, write_disk)

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def libvirt_daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibvirtDaemons]:
    """The running libvirtd with the QEMU driver (``.uri``, ``.reused``), for the whole session."""
    daemons = LibvirtDaemons(tmp_path_factory.mktemp("libvirtd"))
    problem: Optional[HarnessError] = None
    try:
        daemons.start()
    except HarnessError as exc:
        problem = exc
    if isinstance(problem, Unavailable) and not IN_CI:
        pytest.skip(f"real libvirtd unavailable: {problem}")
    if problem is not None:
        pytest.fail(f"real libvirtd {'unavailable in CI' if isinstance(problem, Unavailable) else 'failed'}: "
                    f"{problem}", pytrace=False)
    try:
        yield daemons
    finally:
        daemons.stop()


@pytest.fixture(scope="session")
def real_libvirt(libvirt_daemons: LibvirtDaemons) -> str:
    """The URI (qemu:///system) of a running libvirtd with the QEMU driver, for the whole session."""
    return libvirt_daemons.uri


ADMIN_POLICY = "[principal admin]\nroles = admin\n"
"""On a real hypervisor nothing but reading is allowed without a policy: the tier's consoles are an
administrator's, authenticated by a client certificate on loopback as a local admin's would be."""


@pytest.fixture
def admin_agent(start_agent: AgentFactory, real_libvirt: str, pki: Pki) -> Callable[..., Agent]:
    """Start an agent on the real libvirtd that grants the ``admin`` certificate everything."""
    def start(**kwargs: object) -> Agent:
        return start_agent(real_libvirt, tls=pki.tls("agent", cn="hv"),
                           policy=Policy.parse(ADMIN_POLICY, default_schema()), **kwargs)
    return start


@pytest.fixture
def admin_console(connect: Callable[..., Console], pki: Pki) -> Callable[..., Console]:
    """Open a console on an agent as the ``admin`` certificate."""
    def open_console(agent: Agent, **kwargs: object) -> Console:
        tls = pki.tls("admin")
        return connect(agent, tls_cert=tls.cert, tls_key=tls.key, tls_ca=tls.ca, **kwargs)
    return open_console


@dataclass(frozen=True)
class TinyGuest:
    """A guest that prints BOOT_LINE on its serial port and halts: define it with ``xml``."""

    name: str
    xml: str
    disk: Path
    serial: Path

    def serial_text(self) -> str:
        try:
            return self.serial.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def booted(self) -> bool:
        return BOOT_LINE in self.serial_text()


@pytest.fixture
def tiny_guest(real_libvirt: str) -> Iterator[Callable[[], TinyGuest]]:
    """Make tiny guests (not defined yet); each is destroyed and undefined after the test, even on failure.

    Their files live in a world-traversable directory (pytest's tmp_path is root-only), so a reused
    libvirtd whose qemu.conf runs QEMU as another user (libvirt chowns the files) can open them too.
    """
    made: List[str] = []
    files = Path(tempfile.mkdtemp(prefix=GUEST_PREFIX))
    files.chmod(0o755)

    def make() -> TinyGuest:
        name = guest_name(uuid.uuid4().hex[:8])
        folder = files / name
        folder.mkdir(mode=0o755)
        disk = write_disk(folder / "disk.img")
        serial = folder / "serial.log"
        made.append(name)
        return TinyGuest(name, guest_xml(name, disk, serial), disk, serial)

    try:
        yield make
    finally:
        try:
            if made:
                destroy_guests(real_libvirt, names=made)
        finally:
            shutil.rmtree(files, ignore_errors=True)
