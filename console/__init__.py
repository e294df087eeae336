"""The virtq console: a Python library for managers.

``Console(urls)`` discovers agents, keeps repositories of their nodes, domains, pools
and volumes, and calls methods on them::

    from virtq.console import Console
    with Console("amqp://127.0.0.1:5672") as console:
        for dom in console.domains:
            print(dom.name, dom.getInfo()["state"])
"""

from virtq.schema.codec import ObjectId
from virtq.schema.enums import DomainState, PoolState, VolumeType
from virtq.schema.errors import (AgentError, AmbiguousRefError, CallTimeoutError, ConsoleError,
                                 InvalidParameterError, LibvirtError, NotConnectedError, NotStartedError, RemoteError,
                                 StreamAbortedError, StreamChecksumError, TransportError, UnknownMethodError,
                                 UnknownObjectError, UnknownRefError, VirtqError)

from ._agents import LOST_AFTER
from ._console import Console
from ._jobs import Job
from ._migration import (MigrationAbortedError, MigrationError, MigrationFailedError, MigrationJob,
                         MigrationRefusedError)
from .health import AgentHealth
from .limits import Limits
from .objects import RemoteObject, describe
from ._streams import ConsoleStream
from .repository import AgentRepository, AgentView, Repository

__all__ = [
    "AgentError", "AgentHealth", "AgentRepository", "AgentView", "AmbiguousRefError", "CallTimeoutError", "Console",
    "ConsoleError", "ConsoleStream", "describe", "DomainState", "InvalidParameterError", "Job", "LibvirtError", "Limits", "LOST_AFTER",
    "MigrationAbortedError", "MigrationError", "MigrationFailedError", "MigrationJob", "MigrationRefusedError",
    "NotConnectedError", "NotStartedError", "ObjectId", "PoolState", "RemoteError", "RemoteObject", "Repository",
    "StreamAbortedError", "StreamChecksumError", "TransportError", "UnknownMethodError", "UnknownObjectError", "UnknownRefError", "VirtqError", "VolumeType",
]
