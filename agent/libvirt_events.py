"""libvirt's events: its event-loop thread, the callbacks a connection registers, and what each event
callback's arguments mean.

libvirt delivers events through an event loop that must be registered before a connection is opened;
:func:`ensure_event_loop` does that, once, when the agent opens its connection (never on import). The
tables say, per libvirt event id, the callback's arguments by name and which of them name the event and
its detail, so every kind this libvirt has turns into a HypervisorEvent with names instead of numbers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import libvirt

from .hypervisor import HypervisorEvent

log = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """Register libvirt's default event loop implementation and run it on a daemon thread (once per
    process, shared by every connection; before any connection that is to deliver events is opened)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # noqa: BLE001 - the loop must survive a failing callback
                    log.exception("libvirt event loop iteration failed")

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _names(prefix: str, names: str) -> Dict[int, str]:
    """{value: lower-case name} for the libvirt enum constants prefix+NAME that this libvirt has."""
    return {getattr(libvirt, prefix + n): n.lower() for n in names.split() if hasattr(libvirt, prefix + n)}


_LIFECYCLE_DETAILS = {
    "DEFINED": "ADDED UPDATED RENAMED FROM_SNAPSHOT",
    "UNDEFINED": "REMOVED RENAMED",
    "STARTED": "BOOTED MIGRATED RESTORED FROM_SNAPSHOT WAKEUP RECREATED",
    "SUSPENDED": "PAUSED MIGRATED IOERROR WATCHDOG RESTORED FROM_SNAPSHOT API_ERROR POSTCOPY POSTCOPY_FAILED",
    "RESUMED": "UNPAUSED MIGRATED FROM_SNAPSHOT POSTCOPY POSTCOPY_FAILED",
    "STOPPED": "SHUTDOWN DESTROYED CRASHED MIGRATED SAVED FAILED FROM_SNAPSHOT",
    "SHUTDOWN": "FINISHED GUEST HOST",
    "PMSUSPENDED": "MEMORY DISK",
    "CRASHED": "PANICKED CRASHLOADED",
}
LIFECYCLE_EVENTS = _names("VIR_DOMAIN_EVENT_", " ".join(_LIFECYCLE_DETAILS))
LIFECYCLE_DETAILS = {getattr(libvirt, "VIR_DOMAIN_EVENT_" + e): _names(f"VIR_DOMAIN_EVENT_{e}_", d)
                     for e, d in _LIFECYCLE_DETAILS.items() if hasattr(libvirt, "VIR_DOMAIN_EVENT_" + e)}
POOL_EVENTS = _names("VIR_STORAGE_POOL_EVENT_", "DEFINED UNDEFINED STARTED STOPPED CREATED DELETED")

EnumNames = Optional[Dict[int, str]]


@dataclass(frozen=True)
class EventKind:
    """How to read one libvirt event callback: its arguments and which of them name event/detail."""

    args: Tuple[str, ...]
    event: Tuple[str, EnumNames] = ("", None)
    detail: Tuple[str, EnumNames] = ("", None)


_WATCHDOG = _names("VIR_DOMAIN_EVENT_WATCHDOG_", "NONE PAUSE RESET POWEROFF SHUTDOWN DEBUG INJECTNMI")
_IO_ERROR = _names("VIR_DOMAIN_EVENT_IO_ERROR_", "NONE PAUSE REPORT")
_JOB_TYPE = _names("VIR_DOMAIN_BLOCK_JOB_TYPE_", "UNKNOWN PULL COPY COMMIT ACTIVE_COMMIT BACKUP")
_JOB_STATUS = _names("VIR_DOMAIN_BLOCK_JOB_", "COMPLETED FAILED CANCELED READY")

DOMAIN_EVENT_KINDS: Dict[str, EventKind] = {
    "LIFECYCLE": EventKind(("event", "detail")),  # names resolved per event, see describe
    "REBOOT": EventKind(()),
    "RTC_CHANGE": EventKind(("utcoffset",)),
    "WATCHDOG": EventKind(("action",), detail=("action", _WATCHDOG)),
    "IO_ERROR": EventKind(("srcPath", "devAlias", "action"), detail=("action", _IO_ERROR)),
    "GRAPHICS": EventKind(("phase", "local", "remote", "authScheme", "subject"),
                      event=("phase", _names("VIR_DOMAIN_EVENT_GRAPHICS_", "CONNECT INITIALIZE DISCONNECT"))),
    "IO_ERROR_REASON": EventKind(("srcPath", "devAlias", "action", "reason"), detail=("action", _IO_ERROR)),
    "CONTROL_ERROR": EventKind(()),
    "BLOCK_JOB": EventKind(("disk", "type", "status"), event=("type", _JOB_TYPE), detail=("status", _JOB_STATUS)),
    "DISK_CHANGE": EventKind(("oldSrcPath", "newSrcPath", "devAlias", "reason"),
                         detail=("reason", _names("VIR_DOMAIN_EVENT_DISK_",
                                                  "CHANGE_MISSING_ON_START DROP_MISSING_ON_START"))),
    "TRAY_CHANGE": EventKind(("devAlias", "reason"),
                         detail=("reason", _names("VIR_DOMAIN_EVENT_TRAY_CHANGE_", "OPEN CLOSE"))),
    "PMWAKEUP": EventKind(("reason",)),
    "PMSUSPEND": EventKind(("reason",)),
    "BALLOON_CHANGE": EventKind(("actual",)),
    "PMSUSPEND_DISK": EventKind(("reason",)),
    "DEVICE_REMOVED": EventKind(("devAlias",)),
    "BLOCK_JOB_2": EventKind(("disk", "type", "status"), event=("type", _JOB_TYPE), detail=("status", _JOB_STATUS)),
    "TUNABLE": EventKind(("params",)),
    "AGENT_LIFECYCLE": EventKind(
        ("state", "reason"),
        event=("state", _names("VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_", "CONNECTED DISCONNECTED")),
        detail=("reason", _names("VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_",
                                 "UNKNOWN DOMAIN_STARTED CHANNEL"))),
    "DEVICE_ADDED": EventKind(("devAlias",)),
    "MIGRATION_ITERATION": EventKind(("iteration",)),
    "JOB_COMPLETED": EventKind(("params",)),
    "DEVICE_REMOVAL_FAILED": EventKind(("devAlias",)),
    "METADATA_CHANGE": EventKind(("type", "nsuri"),
                             detail=("type", _names("VIR_DOMAIN_METADATA_", "DESCRIPTION TITLE ELEMENT"))),
    "BLOCK_THRESHOLD": EventKind(("dev", "path", "threshold", "excess")),
    "MEMORY_FAILURE": EventKind(
        ("recipient", "action", "flags"),
        event=("recipient", _names("VIR_DOMAIN_EVENT_MEMORY_FAILURE_RECIPIENT_", "HYPERVISOR GUEST")),
        detail=("action", _names("VIR_DOMAIN_EVENT_MEMORY_FAILURE_ACTION_", "IGNORE INJECT FATAL RESET"))),
    "MEMORY_DEVICE_SIZE_CHANGE": EventKind(("alias", "size")),
}
POOL_EVENT_KINDS: Dict[str, EventKind] = {
    "LIFECYCLE": EventKind(("event", "detail"), event=("event", POOL_EVENTS)),
    "REFRESH": EventKind(()),
}


def event_name(prefix: str, kind: str) -> str:
    """DEVICE_ADDED -> domainDeviceAdded: the schema's event name for a libvirt event id."""
    return prefix + "".join(part.capitalize() for part in kind.split("_"))


def _wire_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _wire_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def describe(class_name: str, key: str, prefix: str, kind: str, spec: EventKind,
             args: Sequence[Any]) -> HypervisorEvent:
    """One event callback's arguments as a HypervisorEvent (on libvirt's event-loop thread)."""
    data = {name: _wire_safe(value) for name, value in zip(spec.args, args)}
    event = detail = ""
    if prefix == "domain" and kind == "LIFECYCLE":
        code, sub = data.pop("event"), data.pop("detail")
        event = LIFECYCLE_EVENTS.get(code, str(code))
        detail = LIFECYCLE_DETAILS.get(code, {}).get(sub, str(sub))
    else:
        for slot, (arg, names) in (("event", spec.event), ("detail", spec.detail)):
            if arg and names is not None:
                value = data.get(arg)
                text = names.get(value, str(value)) if isinstance(value, int) else str(value)
                if slot == "event":
                    event = text
                else:
                    detail = text
        if prefix == "pool" and kind == "LIFECYCLE":
            data.pop("event", None), data.pop("detail", None)
    return HypervisorEvent(class_name, key, event_name(prefix, kind), event, detail, data)


Deliver = Callable[[HypervisorEvent], None]


def register_callbacks(conn: Any, uri: str, deliver: Deliver) -> List[Tuple[str, int]]:
    """Register a callback on ``conn`` for every domain and pool event kind this libvirt has, each calling
    ``deliver`` (on libvirt's event-loop thread); returns what deregister_callbacks takes."""
    callbacks: List[Tuple[str, int]] = []
    for prefix, kinds, register, id_prefix in (
            ("domain", DOMAIN_EVENT_KINDS, conn.domainEventRegisterAny, "VIR_DOMAIN_EVENT_ID_"),
            ("pool", POOL_EVENT_KINDS, conn.storagePoolEventRegisterAny, "VIR_STORAGE_POOL_EVENT_ID_")):
        for kind, spec in kinds.items():
            event_id = getattr(libvirt, id_prefix + kind, None)
            if event_id is None:
                continue
            try:
                handle = register(None, event_id, event_callback(prefix, kind, spec, deliver), None)
            except libvirt.libvirtError as exc:
                log.debug("%s cannot deliver %s events: %s", uri, kind, exc)
                continue
            callbacks.append((prefix, handle))
    return callbacks


def event_callback(prefix: str, kind: str, spec: EventKind, deliver: Deliver) -> Callable[..., None]:
    """The function libvirt calls for one event kind (``domain``/``pool``, ``LIFECYCLE`` …): it describes the
    event and hands it to ``deliver``. Tests call it to deliver events the test driver cannot produce."""
    class_name = "Domain" if prefix == "domain" else "Pool"

    def callback(conn: Any, obj: Any, *rest: Any) -> None:  # (…, opaque) last
        try:
            event = describe(class_name, obj.UUIDString(), prefix, kind, spec, rest[:-1])
        except Exception:  # noqa: BLE001 - never raise into libvirt's loop
            log.exception("reading a %s %s event", prefix, kind)
            return
        deliver(event)

    return callback


def deregister_callbacks(conn: Any, callbacks: Sequence[Tuple[str, int]]) -> None:
    for prefix, handle in callbacks:
        try:
            if prefix == "domain":
                conn.domainEventDeregisterAny(handle)
            else:
                conn.storagePoolEventDeregisterAny(handle)
        except libvirt.libvirtError:
            pass
