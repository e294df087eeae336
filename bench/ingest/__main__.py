"""``python -m bench.ingest``: the ingest benchmark (see the package's docstring)."""

from .cli import main

if __name__ == "__main__":  # not when a spawned child re-imports the parent's main module
    raise SystemExit(main())
