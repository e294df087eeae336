"""The generator's one error: it refuses incomplete inputs rather than drop anything silently."""

from __future__ import annotations

from typing import Sequence


class GenerateError(Exception):
    """The inputs do not describe every in-scope function; the message lists each problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)
