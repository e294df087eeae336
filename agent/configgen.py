"""Configuration generations: an opaque number per object that changes whenever its XML may have.

Consoles cache an object's XML per generation and fetch it again only when the number
changes, so no one polls XML (seed 003's hash-gated fetch, with the agent owning the
generation). The agent never reads XML for this: events and method calls tell it when
configuration may have changed.

Generations come from one counter per agent, so a value is never reused — not by a
re-defined object with the same uuid, not after a restart. With a state directory the
counter and every live object's generation are persisted (stable across restarts);
without one the counter starts from the clock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Dict, Optional

log = logging.getLogger(__name__)

READER_PREFIXES = ("get", "list", "lookup", "has", "is", "num", "ref", "current")
CHILD_NOUNS = ("snapshot", "checkpoint")
"""A domain's methods about its snapshots and checkpoints read like the others without the noun: snapshotLookupByName
is a lookup, snapshotCurrent reads the current one, snapshotCreateXML creates."""
READER_SUFFIXES = ("Stats", "Info", "XMLDesc")
RUN_STATE_ONLY = frozenset({"suspend", "resume"})

CONFIG_EVENTS = {
    "domainLifecycle": {"defined", "undefined", "started", "stopped"},
    "domainDeviceAdded": None, "domainDeviceRemoved": None, "domainDeviceRemovalFailed": None,
    "domainTunable": None, "domainMetadataChange": None, "domainDiskChange": None,
    "domainTrayChange": None, "domainBlockJob": {"completed"}, "domainBlockJob2": {"completed"},
    "domainMemoryDeviceSizeChange": None,
    "poolLifecycle": None, "poolRefresh": None,
}
"""Events after which the object's XML may differ: None for any event of that kind, else the names of its
event or detail that do (a lifecycle event's ``defined``; a block job's status, its detail: ``completed``)."""


def method_changes_config(method_name: str) -> bool:
    """Whether a successful call of this method may have changed its object's XML.

    Readers (get*/list*/lookup*/is*/…*Stats/*Info) and pure run-state changes (suspend,
    resume) do not; everything else may. Erring towards a change only costs a re-fetch.
    """
    if method_name in RUN_STATE_ONLY:
        return False
    for noun in CHILD_NOUNS:
        if method_name.startswith(noun) and method_name[len(noun):][:1].isupper():
            method_name = method_name[len(noun)].lower() + method_name[len(noun) + 1:]
    for prefix in READER_PREFIXES:
        if method_name.startswith(prefix) and (len(method_name) == len(prefix) or method_name[len(prefix)].isupper()):
            return False
    return not method_name.endswith(READER_SUFFIXES)


def event_changes_config(name: str, event: str, detail: str = "") -> bool:
    if name not in CONFIG_EVENTS:
        return False
    events = CONFIG_EVENTS[name]
    return events is None or event in events or detail in events


class ConfigGenerations:
    """Thread-safe map object name -> generation, persisted under the agent's state directory.

    Reading is pure. The registry assigns, bumps and forgets generations as objects come, change and go,
    and calls :meth:`save` before it hands out the records that carry them: a generation a console may
    have seen is on disk first, so a restarted agent never gives the same value to another configuration.
    """

    FILE = "config-generations.json"

    def __init__(self, state_dir: Optional[Path]) -> None:
        self._path = None if state_dir is None else state_dir / self.FILE
        self._lock = threading.Lock()
        self._gens: Dict[str, int] = {}
        self._next = time.time_ns()
        self._unsaved = False
        if self._path is not None:
            try:
                data = json.loads(self._path.read_text())
                self._gens = {str(k): int(v) for k, v in data["objects"].items()}
                self._next = int(data["next"])
            except FileNotFoundError:
                self._next = 1
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("%s is unreadable (%s): starting new generations", self._path, exc)
                self._next = time.time_ns()

    def get(self, name: str) -> int:
        """The object's generation; 0 (never a generation) for an object that has none (gone already)."""
        with self._lock:
            return self._gens.get(name, 0)

    def assign(self, name: str) -> int:
        """The generation of an object new to the registry: the one it had before a restart, else a new one."""
        with self._lock:
            gen = self._gens.get(name)
            if gen is None:
                gen = self._gens[name] = self._take()
            return gen

    def bump(self, name: str) -> int:
        with self._lock:
            gen = self._gens[name] = self._take()
            return gen

    def forget(self, name: str) -> None:
        with self._lock:
            if self._gens.pop(name, None) is not None:
                self._unsaved = True

    def _take(self) -> int:
        value, self._next = self._next, self._next + 1
        self._unsaved = True
        return value

    def save(self) -> None:
        """Write the counter and every generation to the state directory, if they changed since last time."""
        with self._lock:
            if self._path is None or not self._unsaved:
                return
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"next": self._next, "objects": self._gens}))
            os.replace(tmp, self._path)
            self._unsaved = False
