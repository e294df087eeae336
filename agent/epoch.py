"""The agent's epoch: which start of the agent a message or an object reference comes from.

Heartbeats and object ids carry it; a console tells a restarted agent by a new epoch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional


def load_epoch(state_dir: Optional[Path]) -> int:
    """The agent's epoch: persisted and incremented per start when a state directory is given."""
    if state_dir is None:
        return int(time.time())
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "epoch"
    try:
        epoch = int(path.read_text().strip()) + 1
    except (FileNotFoundError, ValueError):
        epoch = 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{epoch}\n")
    os.replace(tmp, path)
    return epoch
