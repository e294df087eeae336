"""The exception tree: the errors that have a natural builtin (connection, timeout, lookup, value, permission …)
are also Python's own, so code that knows only builtins catches them; errors of the transport layer are not
console errors."""

from __future__ import annotations

import pytest

from virtq.console import Console
from virtq.schema import errors
from virtq.testing import RecordingTransport
from virtq.transport import TlsConfig, TlsError

from .fake_agents import domain, follow

HV01 = "libvirt.org:virtq:hv01"
WEB = "11111111-1111-1111-1111-111111111111"


def followed(timeout: float) -> Console:
    """A console (never started) following one agent that answers nothing after its load."""
    console = Console(timeout=timeout)
    follow(console, RecordingTransport(), HV01, [domain(HV01, WEB, "web1")])
    return console


def test_a_call_on_a_closed_console_is_a_connection_error() -> None:
    console = followed(2)
    web1 = console.domains.get(WEB)
    console.close()
    with pytest.raises(ConnectionError) as raised:
        web1.suspend()
    assert isinstance(raised.value, errors.NotConnectedError) and isinstance(raised.value, errors.TransportError)
    assert not isinstance(raised.value, errors.ConsoleError)
    assert str(raised.value) == "console is closed"  # a builtin base does not change the message


def test_a_call_nobody_answers_is_a_timeout_error() -> None:
    console = followed(0.2)
    try:
        with pytest.raises(TimeoutError) as raised:
            console.domains.get(WEB).suspend()
        assert isinstance(raised.value, errors.CallTimeoutError) and isinstance(raised.value, errors.VirtqError)
        assert "no answer within 0.2s" in str(raised.value)
    finally:
        console.close()


def test_a_console_that_reaches_nothing_is_a_connection_error() -> None:
    console = Console(timeout=0.2, transports=[RecordingTransport()])
    with pytest.raises(ConnectionError, match="agent locate"):
        console.start()


def test_transport_errors_are_not_console_errors() -> None:
    with pytest.raises(TlsError) as raised:
        TlsConfig(cert="/nonexistent/cert.pem").check_files()
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, errors.TransportError)
    assert not isinstance(raised.value, errors.ConsoleError)


@pytest.mark.parametrize("error, builtin", [
    (errors.UnknownObjectError("gone"), LookupError),
    (errors.NotImplementedError_("no such driver call"), NotImplementedError),
    (errors.InvalidParameterError("flags: expected uint32"), ValueError),
    (errors.ForbiddenError("no"), PermissionError),
    (errors.remote_error(errors.AccessDeniedError.code, "access denied: ops lacks domain:write"), PermissionError),
    (errors.remote_error(errors.LibvirtTimeoutError.code, "Timed out during operation"), TimeoutError),
    (errors.NotStartedError("console.domains read before console.start()"), RuntimeError),
    (errors.UnknownRefError("web9"), LookupError),
    (errors.AmbiguousRefError("web1"), LookupError),
])
def test_errors_are_also_the_matching_builtins(error: errors.VirtqError, builtin: type) -> None:
    """Each error that has a natural builtin is also one; its code, text and message are unchanged."""
    assert isinstance(error, builtin) and isinstance(error, errors.VirtqError)
    if isinstance(error, errors.RemoteError):
        assert errors.remote_error(error.error_code, error.error_text).__class__ is type(error)
        assert str(error).startswith(f"[{error.error_code:#x}]" if error.error_code >= errors.STATUS_USER
                                     else f"[{error.error_code}]")

