"""One exception tree for agent, console and CLI.

::

    VirtqError
    ├── RemoteError                 an agent answered with ``_exception`` (error_code, error_text)
    │   ├── UnknownObjectError      1  no such object on that agent                      (LookupError)
    │   ├── UnknownMethodError      2  the class declares no such method
    │   ├── NotImplementedError_    3  declared, but this agent/hypervisor cannot do it  (NotImplementedError)
    │   ├── InvalidParameterError   4  missing, unknown or wrongly typed argument        (ValueError)
    │   │                              (also raised locally)
    │   ├── ForbiddenError          6                                                    (PermissionError)
    │   ├── AgentError              7  the agent failed or the request was malformed
    │   ├── ObjectBusyError         8  the object's libvirt calls are stuck: this one was not started
    │   ├── StreamAbortedError      9  a stream was cancelled by its peer or aborted (stalled, out of order)
    │   ├── StreamChecksumError    10  a stream's bytes do not match the sha256 its sender gave
    │   └── LibvirtError            0x10000 + libvirt's error number, libvirt's message
    │       ├── AccessDeniedError   0x10058 (VIR_ERR_ACCESS_DENIED, 88): the policy      (PermissionError)
    │       │                       does not grant it
    │       └── LibvirtTimeoutError 0x10044 (VIR_ERR_OPERATION_TIMEOUT, 68): libvirt     (TimeoutError)
    │                               did not answer in time
    ├── ProtocolError               a message that does not decode (raised by the codec)
    ├── TransportError              the messaging layer failed (virtq.transport raises it)
    │   ├── NotConnectedError       no connection to the agent (now)                     (ConnectionError)
    │   └── TlsError                TLS that cannot work (virtq.transport.tls)           (ValueError)
    └── ConsoleError                raised by the console on its own side
        ├── CallTimeoutError        no answer within the call's timeout                  (TimeoutError)
        ├── NotStartedError         the console is used before start()                   (RuntimeError)
        ├── UnknownRefError         a reference matches no object                        (LookupError)
        └── AmbiguousRefError       a reference matches several objects                  (LookupError)

In parentheses: the builtin exception each also is, so code that knows only builtins catches it.

Remote errors travel as data and are rebuilt here from an allow-list of codes
(:func:`remote_error`); nothing on the wire chooses a Python class by name.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "STATUS_BUSY", "STATUS_EXCEPTION", "STATUS_FEATURE_NOT_IMPLEMENTED", "STATUS_FORBIDDEN", "STATUS_INVALID_PARAMETER",
    "STATUS_NOT_IMPLEMENTED", "STATUS_STREAM_ABORTED", "STATUS_STREAM_CHECKSUM", "STATUS_UNKNOWN_METHOD",
    "STATUS_UNKNOWN_OBJECT", "STATUS_USER",
    "VIR_ERR_ACCESS_DENIED", "VIR_ERR_OPERATION_TIMEOUT",
    "AccessDeniedError", "AgentError", "AmbiguousRefError", "CallTimeoutError", "ConsoleError", "ForbiddenError",
    "InlineCallError", "InvalidParameterError", "LibvirtError", "LibvirtTimeoutError", "NotConnectedError",
    "NotImplementedError_", "NotStartedError",
    "ObjectBusyError", "ProtocolError", "RemoteError", "StreamAbortedError", "StreamChecksumError", "TransportError", "UnknownMethodError", "UnknownObjectError", "UnknownRefError",
    "VirtqError", "remote_error",
]

# QMF's status codes (qpid's ManagementAgent / libqmf), as libvirt-qmf used them.
STATUS_UNKNOWN_OBJECT = 1
STATUS_UNKNOWN_METHOD = 2
STATUS_NOT_IMPLEMENTED = 3
STATUS_INVALID_PARAMETER = 4
STATUS_FEATURE_NOT_IMPLEMENTED = 5
STATUS_FORBIDDEN = 6
STATUS_EXCEPTION = 7
STATUS_BUSY = 8
"""virtq's extension: the target object has libvirt calls stuck; the call was refused, not queued."""
STATUS_STREAM_ABORTED = 9
"""virtq's extension: a stream ended before its end (cancelled, stalled, a chunk out of order or over its window)."""
STATUS_STREAM_CHECKSUM = 10
"""virtq's extension: the bytes a stream carried do not match the sha256 its sender sent at the end."""
STATUS_USER = 0x10000
"""libvirt errors are reported as STATUS_USER + virErrorNumber."""
VIR_ERR_OPERATION_TIMEOUT = 68
"""libvirt's "Timed out during operation" (what QEMU's driver says of a domain whose job lock is held)."""
VIR_ERR_ACCESS_DENIED = 88
"""libvirt's own code for a refused permission (virerror.h; 55 is VIR_ERR_OPERATION_INVALID, "domain is not
running", which a denial must never be mistaken for); the agent's policy refuses with it too."""


class VirtqError(Exception):
    """Base of every error virtq raises on purpose."""


class RemoteError(VirtqError):
    """An ``_exception`` answer: the agent's ``error_code`` and ``error_text``."""

    code: int = STATUS_EXCEPTION

    def __init__(self, error_text: str, error_code: Optional[int] = None) -> None:
        self.error_code = self.code if error_code is None else error_code
        self.error_text = error_text
        super().__init__(f"[{self.error_code:#x}] {error_text}" if self.error_code >= STATUS_USER
                         else f"[{self.error_code}] {error_text}")


class UnknownObjectError(RemoteError, LookupError):
    """No such object on that agent (or an object of another agent)."""

    code = STATUS_UNKNOWN_OBJECT


class UnknownMethodError(RemoteError):
    code = STATUS_UNKNOWN_METHOD


class NotImplementedError_(RemoteError, NotImplementedError):
    """Declared by the schema, but this agent's libvirt cannot do it (the trailing underscore keeps
    Python's own NotImplementedError usable beside it; it is also one)."""

    code = STATUS_NOT_IMPLEMENTED


class InvalidParameterError(RemoteError, ValueError):
    """A missing, unknown or wrongly typed argument, or a request too large; the console raises it too,
    before sending, for arguments the schema says are wrong."""

    code = STATUS_INVALID_PARAMETER


class ForbiddenError(RemoteError, PermissionError):
    code = STATUS_FORBIDDEN


class AgentError(RemoteError):
    """The agent failed (a bug, or libvirt answered other than the schema says) or refused a malformed
    request."""

    code = STATUS_EXCEPTION


class ObjectBusyError(RemoteError):
    """The object's libvirt calls are stuck (a hung QEMU monitor, dead storage): the agent refused this
    one at once instead of queueing it behind them; the text names the oldest stuck call and its age."""

    code = STATUS_BUSY


class StreamAbortedError(RemoteError):
    """A stream ended before its end: cancelled by the other side, aborted by the agent because its peer made
    no progress for the stream's idle timeout, or a chunk came out of order or beyond the credit granted."""

    code = STATUS_STREAM_ABORTED


class StreamChecksumError(RemoteError):
    """The bytes a stream carried do not match the sha256 (or the count) its sender gave at the end."""

    code = STATUS_STREAM_CHECKSUM


class LibvirtError(RemoteError):
    """A libvirt error: ``error_code`` = 0x10000 + virErrorNumber."""

    code = STATUS_USER

    @property
    def libvirt_code(self) -> int:
        return self.error_code - STATUS_USER

    @classmethod
    def from_libvirt(cls, libvirt_code: int, message: str) -> "LibvirtError":
        return cls(message, STATUS_USER + libvirt_code)


class AccessDeniedError(LibvirtError, PermissionError):
    """The agent's policy (or libvirt's) does not grant the caller this permission or object."""

    code = STATUS_USER + VIR_ERR_ACCESS_DENIED

    @classmethod
    def denied(cls, text: str) -> "AccessDeniedError":
        return cls(f"access denied: {text}")


class LibvirtTimeoutError(LibvirtError, TimeoutError):
    """libvirt did not answer within the agent's call timeout; the call may still complete later."""

    code = STATUS_USER + VIR_ERR_OPERATION_TIMEOUT


class ProtocolError(VirtqError):
    """A message that is not a well-formed virtq/QMF message."""


class ConsoleError(VirtqError):
    """Errors the console raises on its own side, without an agent's answer."""


class TransportError(VirtqError):
    """The messaging layer failed (no connection, cannot listen, TLS that cannot work). Transports raise it
    and the console passes it on; it is not a ConsoleError, which is the console's own judgement."""


class NotConnectedError(TransportError, ConnectionError):
    """No connection to the agent (now); also a builtin ConnectionError, for code that knows only those."""


class CallTimeoutError(ConsoleError, TimeoutError):
    """No answer within the call's timeout; also a builtin TimeoutError."""


class NotStartedError(ConsoleError, RuntimeError):
    """The console was used before ``start()`` (or its ``with`` block): it would have looked empty."""


class InlineCallError(ConsoleError, RuntimeError):
    """A console call from an inline subscriber's callback: it runs on the thread that would have to deliver
    the answer, so the call is refused at once instead of waiting out its timeout."""


class UnknownRefError(ConsoleError, LookupError):
    pass


class AmbiguousRefError(ConsoleError, LookupError):
    pass


_BY_CODE: Dict[int, Type[RemoteError]] = {
    cls.code: cls
    for cls in (UnknownObjectError, UnknownMethodError, NotImplementedError_,
                InvalidParameterError, ForbiddenError, AgentError, ObjectBusyError, StreamAbortedError,
                StreamChecksumError)
}


def remote_error(error_code: int, error_text: str) -> RemoteError:
    """Rebuild the typed error for an ``_exception`` received from an agent."""
    if error_code in (AccessDeniedError.code, LibvirtTimeoutError.code):
        return (AccessDeniedError if error_code == AccessDeniedError.code else LibvirtTimeoutError)(
            error_text, error_code)
    if error_code >= STATUS_USER:
        return LibvirtError(error_text, error_code)
    return _BY_CODE.get(error_code, RemoteError)(error_text, error_code)
