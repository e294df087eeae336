"""The fetcher: an object's XML, asked of its agent only when its configuration generation changed.

Agents push ``configGen`` with every record; the XML itself is fetched on demand (getXMLDesc) and
cached per object and flags until the generation moves.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Mapping, Tuple

from .objects import RemoteObject

__all__ = ["XmlFetcher"]

Call = Callable[[RemoteObject, str, Mapping[str, Any]], Any]


class XmlFetcher:
    def __init__(self, call: Call) -> None:
        self._call = call
        self._cache: Dict[Tuple[str, str], Tuple[Any, str]] = {}  # (agent, object) -> ((gen, flags), xml)
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times the console asked an agent for XML (the cache misses)."""

    def xml(self, current: RemoteObject, flags: int = 0) -> str:
        """The XML of ``current`` (the repository's latest snapshot of the object)."""
        generation = current.values.get("configGen")
        key = (current.agent, current.object_id.object_name)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == (generation, flags) and generation is not None:
            return cached[1]
        text = str(self._call(current, "getXMLDesc", {"flags": flags} if flags else {}))
        with self._lock:
            self.fetches += 1
            self._cache[key] = ((generation, flags), text)
        return text
