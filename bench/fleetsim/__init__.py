"""virtq-fleet: a simulated fleet of real agents on libvirt's test driver, followed by a measuring push
console and a poll baseline (``python -m bench.fleetsim --help``; see docs/BENCHMARKS.md). A benchmark
tool: it runs from a checkout and is not installed with virtq.

- :mod:`.nodexml` generates a host's node file (running, paused and shut-off domains);
- :mod:`.worker` runs a slice of the agents in one process and drives churn on their hosts;
- :mod:`.consoles` holds the measuring consoles (push and poll), each in a process of its own;
- :mod:`.run` starts and measures it all; :mod:`.cli` is the command line.
"""

from .run import DIRECT_LIMIT, Fleet, FleetOptions, FleetResult

__all__ = ["DIRECT_LIMIT", "Fleet", "FleetOptions", "FleetResult"]
