"""virtq: libvirt's object model served over AMQP 1.0 in QMFv2's map dialect.

Sub-packages: :mod:`virtq.schema` (the contract agent and console share),
:mod:`virtq.transport` (the seam to AMQP), :mod:`virtq.agent` (the daemon on each
hypervisor, ``virtq[agent]``), :mod:`virtq.console` (the manager-side library; its
``virtq`` command needs ``virtq[cli]``) and :mod:`virtq.testing` (the test kit).
docs/ARCHITECTURE.md draws how they depend on each other.
"""

__version__ = "0.1.0"
"""The release; setup.cfg takes the distribution's version from here (``attr:``), so there is one."""

__all__ = ["__version__", "package_version"]


def package_version() -> str:
    """The installed distribution's version, which ``virtq --version`` and ``virtq-agent --version`` print: in an
    install older than this source it says what pip installed; in a checkout never installed, ``__version__``."""
    import importlib.metadata  # only when asked: every import of virtq would pay for it otherwise

    try:
        return importlib.metadata.version("virtq")
    except importlib.metadata.PackageNotFoundError:
        return __version__
