"""Statistics as columns: per class, one list per statistic with a slot (row) per object, written a batch at a time.

A console follows hundreds of thousands of objects whose agents push a sample every interval. Writing a
batch into lists by slot costs a few C-level passes per column (``map`` over the slots), where a frozen
snapshot per object cost a Python call chain per record; snapshots are made from a slot only when someone
reads the object (console/repository.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, cast

__all__ = ["ABSENT", "SampleApplied", "StatColumns"]

ABSENT: Any = object()
"""A slot's value of a statistic never sampled (None is a value: on the wire it says "unchanged")."""


def _scatter(target: List[Any], slots: Iterable[int], values: Iterable[Any]) -> None:
    """``target[slot] = value`` for each pair, in C (a deque of no length drains the map)."""
    deque(map(target.__setitem__, slots, values), maxlen=0)


@dataclass(frozen=True)
class SampleApplied:
    """What applying one batch did: the rows applied (their keys and columns, the batch's own when every row
    was) and their slots, the batch indices of objects not known, and — when asked to ``watch`` one column —
    its values and the sample times from before, one per applied row."""

    keys: Tuple[str, ...]
    columns: Mapping[str, Sequence[Any]]
    slots: Sequence[int]
    unknown: Sequence[int] = ()
    watch: Optional[str] = None
    before: Optional[List[Any]] = None
    before_ts: Optional[List[int]] = None

    def moved(self) -> Dict[int, Tuple[Any, int]]:
        """Rows whose watched statistic changed: index -> (its value before, the sample time before)."""
        if self.watch is None or self.before is None or self.before_ts is None:
            return {}
        return {i: (old, ts) for i, (old, new, ts) in enumerate(zip(self.before, self.columns[self.watch],
                                                                    self.before_ts)) if new is not None and new != old}


class StatColumns:
    """The statistics of one class's objects. Slots are allocated and freed by the repository, which
    guards every call with its lock."""

    def __init__(self) -> None:
        self.columns: Dict[str, List[Any]] = {}
        self.stats_ts: List[int] = []
        """Per slot: the agent's time of the sample held (ns; 0 until a sample was applied)."""
        self.sampled: List[float] = []
        """Per slot: when a sample was last applied, by the console's monotonic clock (-inf: never)."""
        self._free: List[int] = []

    def allocate(self) -> int:
        if self._free:
            return self._free.pop()
        self.stats_ts.append(0)
        self.sampled.append(float("-inf"))
        for column in self.columns.values():
            column.append(ABSENT)
        return len(self.stats_ts) - 1

    def release(self, slot: int) -> None:
        for column in self.columns.values():
            column[slot] = ABSENT
        self.stats_ts[slot] = 0
        self.sampled[slot] = float("-inf")
        self._free.append(slot)

    def _column(self, name: str) -> List[Any]:
        column = self.columns.get(name)
        if column is None:
            column = self.columns[name] = [ABSENT] * len(self.stats_ts)
        return column

    def row(self, slot: int) -> Dict[str, Any]:
        """Every statistic held of one object."""
        return {name: column[slot] for name, column in self.columns.items() if column[slot] is not ABSENT}

    def replace(self, slot: int, stats: Mapping[str, Any], stats_ts: int) -> None:
        """Hold exactly these statistics for one object (a record's snapshot brings all of them)."""
        for name in stats:
            self._column(name)
        for name, column in self.columns.items():
            column[slot] = stats.get(name, ABSENT)
        self.stats_ts[slot] = stats_ts

    def apply(self, slots: Sequence[Optional[int]], keys: Tuple[str, ...], columns: Mapping[str, Sequence[Any]],
              sample_ts: int, now: float, watch: Optional[str] = None) -> SampleApplied:
        """Write one batch (``slots``: one per key, None for an object not known). A row whose object holds a
        newer sample loses; the others are written column by column, skipping None ("unchanged").

        Checked for the whole batch first (every object known, none holding a newer sample: the batch is
        applied as it came, sharing its keys and columns); row by row only when that check fails."""
        stats_ts = self.stats_ts
        known = cast(List[int], slots)  # unless the check below finds a None
        unknown: List[int] = []
        if None in slots or (known and max(map(stats_ts.__getitem__, known)) > sample_ts):
            rows: List[int] = []
            known = []
            for index, slot in enumerate(slots):
                if slot is None:
                    unknown.append(index)
                elif not (stats_ts[slot] and stats_ts[slot] > sample_ts):
                    rows.append(index)
                    known.append(slot)
            keys = tuple(keys[i] for i in rows)
            columns = {name: [column[i] for i in rows] for name, column in columns.items()}
        before: Optional[List[Any]] = None
        before_ts: Optional[List[int]] = None
        watch = watch if watch in columns else None
        if watch is not None:
            before = [None if v is ABSENT else v for v in map(self._column(watch).__getitem__, known)]
            before_ts = list(map(stats_ts.__getitem__, known))
        for name, values in columns.items():
            column = self._column(name)
            if None not in values:
                _scatter(column, known, values)
                continue
            for slot, value in zip(known, values):
                if value is not None:
                    column[slot] = value
        _scatter(stats_ts, known, repeat(sample_ts))
        _scatter(self.sampled, known, repeat(now))
        return SampleApplied(keys, columns, known, unknown, watch, before, before_ts)
