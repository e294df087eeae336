"""Prometheus' text exposition format 0.0.4, written straight from columns of values.

prometheus_client makes an object per sample and formats each one on its own: 15 s of CPU for the 2,000,000
series of 400,000 domains. Here a family's lines are made by C-level passes over its columns (``map``,
``str.join``), with no object per sample, and a row's label set is formatted once for all its families.
"""

from __future__ import annotations

import operator
import threading
import zlib
from itertools import compress, repeat
from typing import Any, List, Optional, Sequence, Union

__all__ = ["CONTENT_TYPE", "Body", "escape", "escape_all", "family", "label_sets"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Number = Union[int, float]

_NUMBERS = frozenset((int, float))
_NUMBERS_OR_NONE = frozenset((int, float, type(None)))
_INTEGERS_OR_NONE = frozenset((int, type(None)))
_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}.get
"""Python's names of the float values that are no numbers, to the format's."""
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def escape(value: str) -> str:
    """A label value as the format writes it: backslash, double quote and newline escaped."""
    return value.translate(_ESCAPES)


def escape_all(values: List[str]) -> List[str]:
    """``escape`` over many values, in one pass over them all when none needs it (the usual case)."""
    joined = "".join(values)
    if "\\" in joined or '"' in joined or "\n" in joined:
        return [value.translate(_ESCAPES) for value in values]
    return values


def label_sets(names: Sequence[str], *columns: Sequence[str]) -> List[str]:
    """Each row's label set as it stands between a metric name and its value, ``{a="x",b="y"} ``, from a
    column of escaped values per label name."""
    template = "{{" + ",".join(f'{name}="{{}}"' for name in names) + "}} "
    return list(map(template.format, *columns))


def _number(value: Any) -> bool:
    """Whether a value can be a sample (a pushed value is the agent's own: what is no number is left out)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def family(name: str, documentation: str, kind: str, heads: Sequence[str], values: Sequence[Any],
           scale: Number = 1, rows: Optional[Sequence[bool]] = None) -> str:
    """One metric family: its HELP and TYPE lines, then ``name``, ``heads[i]`` (a ``label_sets`` item, or
    " " for none) and ``values[i] * scale`` per row whose value is a number (bool, None and the rest have no
    line) and, when ``rows`` is given, whose flag in it is set."""
    kinds = set(map(type, values))
    keep: Optional[List[bool]] = None
    if not kinds <= _NUMBERS:
        if kinds <= _NUMBERS_OR_NONE:
            keep = list(map(_NUMBERS.__contains__, map(type, values)))
        else:
            keep = list(map(_number, values))
    if rows is not None:
        keep = list(rows) if keep is None else list(map(operator.and_, keep, rows))
    if keep is not None:
        heads, values = list(compress(heads, keep)), list(compress(values, keep))
    if scale != 1 or not kinds <= _NUMBERS_OR_NONE:
        values = list(map(operator.mul, values, repeat(scale)))  # int and float subclasses become plain ones
    texts = list(map(str, values))
    if isinstance(scale, float) or not kinds <= _INTEGERS_OR_NONE:
        texts = list(map(_SPECIAL, texts, texts))
    help_text = documentation.replace("\\", "\\\\").replace("\n", "\\n")
    header = f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
    if not texts:
        return header
    return "".join((header, name, ("\n" + name).join(map(operator.add, heads, texts)), "\n"))


class Body:
    """An exposition made of a large head that scrapes share (rendered again only when it changes) and a
    small tail made per scrape. Gzipped, it is one gzip member whose head is compressed once: the
    compressor's state after the head is kept, and a copy of it compresses each tail."""

    def __init__(self, head: List[bytes], level: int) -> None:
        self.head = head
        self._level = level
        self._lock = threading.Lock()
        self._gzipped_head: List[bytes] = []
        self._after_head: Optional[Any] = None  # zlib's compressor, fed the head (zlib has no public type)

    def parts(self, tail: bytes, gzipped: bool) -> List[bytes]:
        """The body's bytes, in parts to write one after the other."""
        if not gzipped:
            return [*self.head, tail]
        with self._lock:
            if self._after_head is None:
                compressor = zlib.compressobj(self._level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
                self._gzipped_head = [compressor.compress(part) for part in self.head]
                self._gzipped_head.append(compressor.flush(zlib.Z_SYNC_FLUSH))
                self._after_head = compressor
            compressor = self._after_head.copy()
        return [*self._gzipped_head, compressor.compress(tail) + compressor.flush()]
