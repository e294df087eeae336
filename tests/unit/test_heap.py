"""glibc's heap kept for bulk messages (virtq/transport/_heap.py): measured by the page faults a stream-like
pattern of allocations costs, in a fresh interpreter each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict

from virtq.transport._heap import OPERATOR_TUNABLES, _apply

PATTERN = """
import json, resource, sys
from virtq.transport._heap import keep_bulk_buffers
kept = keep_bulk_buffers()
def window():  # eight 1 MiB chunks held, then all let go: a stream's window
    return [bytearray(1024 * 1024) for _ in range(8)]
window()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    window()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults_per_mib": faults / 160}))
"""


def run(**environ: str) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", PATTERN], env={**env, **environ}, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    result: Dict[str, Any] = json.loads(out)
    return result


def test_freed_chunks_stay_in_the_heap() -> None:
    tuned = run()
    assert tuned["kept"] is True
    assert tuned["faults_per_mib"] < 8  # 256 pages per MiB when each window is faulted in anew


def test_glibc_alone_gives_the_pages_back() -> None:
    """The baseline the tuning is for: glibc's own thresholds fault every window's pages in again."""
    untouched = run(MALLOC_TOP_PAD_="131072")  # an operator's tunable: virtq leaves the heap alone
    assert untouched["kept"] is False
    assert untouched["faults_per_mib"] > 100


def test_each_of_an_operators_tunables_leaves_the_heap_alone() -> None:
    for name in OPERATOR_TUNABLES:
        assert _apply({name: "1"}) is False
