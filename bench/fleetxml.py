"""Node XML for libvirt's test driver: a host with a given mix of running, paused and shut-off domains.

The generator lives in :mod:`bench.fleetsim.nodexml` (``virtq-fleet`` needs it at run time); this
module re-exports it and is its command line::

    python -m bench.fleetxml --running 30 --paused 5 --shutoff 5 -o /tmp/node.xml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from bench.fleetsim.nodexml import (NAMESPACE, PAUSED, RUNNING, SHUTOFF, STATE_NAMES, DomainSpec, NodeSpec,
                                 fleet_domain_xml, node_uri, node_xml, plan, write_node_xml)

__all__ = ["NAMESPACE", "PAUSED", "RUNNING", "SHUTOFF", "STATE_NAMES", "DomainSpec", "NodeSpec", "fleet_domain_xml",
           "node_uri", "node_xml", "plan", "write_node_xml", "main"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="host0")
    parser.add_argument("--running", type=int, default=30)
    parser.add_argument("--paused", type=int, default=5)
    parser.add_argument("--shutoff", type=int, default=5)
    parser.add_argument("--bare", action="store_true", help="domains without devices (small XML)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = write_node_xml(args.output, args.host, args.running, args.paused, args.shutoff, not args.bare)
    print(f"{args.output}: {len(spec.domains)} domains; open as {node_uri(args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
