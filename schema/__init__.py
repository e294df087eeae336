"""The contract agent and console share: the object model, its loader, value types, the wire codec, errors.

Public names are re-exported here; the modules behind them are implementation.
"""

from .errors import (AccessDeniedError, AgentError, AmbiguousRefError, CallTimeoutError, ConsoleError,
                     InvalidParameterError, LibvirtError, LibvirtTimeoutError, NotConnectedError, ObjectBusyError,
                     ProtocolError, RemoteError, TransportError, UnknownMethodError, UnknownObjectError, UnknownRefError,
                     VirtqError)
from .loader import SchemaError, default_schema, load
from .model import (Argument, ClassSchema, EventSchema, Method, Permission, Property, Schema, SchemaId,
                    Statistic)

__all__ = [
    "AccessDeniedError", "AgentError", "AmbiguousRefError", "Argument", "CallTimeoutError", "ClassSchema",
    "ConsoleError", "LibvirtTimeoutError", "ObjectBusyError",
    "EventSchema", "InvalidParameterError", "LibvirtError", "Method", "NotConnectedError", "Permission",
    "ProtocolError", "Property", "RemoteError", "Schema", "SchemaError", "SchemaId", "Statistic",
    "TransportError", "UnknownMethodError", "UnknownObjectError", "UnknownRefError", "VirtqError", "default_schema",
    "load",
]
