"""``python -m virtq.console.cli``."""

from . import main

main()
