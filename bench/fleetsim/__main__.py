"""``python -m bench.fleetsim``: virtq-fleet, run from a checkout (it is not installed with virtq)."""

from .cli import main

if __name__ == "__main__":  # not when a spawned child re-imports the parent's main module
    raise SystemExit(main())
