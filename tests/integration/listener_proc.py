"""A DirectListener in a process of its own, for tests that flood it or measure its memory.

``python -m tests.integration.listener_proc '<limits as JSON>'`` prints ``ready <port>``, then answers
commands on stdin, one JSON line each: ``stats`` (connections held, refused, expired, reactor alive, RSS),
``quit``. Each message with a reply-to is answered: subject ``bulk`` with ``n`` replies of ``size`` bytes
(properties), anything else with one small echo.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Dict

from virtq.schema.codec import WireMessage
from virtq.testing import free_port
from virtq.transport import DirectListener, Limits


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    limits = Limits(**json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))
    port = free_port()
    listener = DirectListener(f"amqp://127.0.0.1:{port}", limits=limits)
    received = [0]

    def deliver(wire: WireMessage) -> None:
        received[0] += 1
        if not wire.reply_to:
            return
        if wire.subject == "bulk":
            n, size = int(wire.properties.get("n", 1)), int(wire.properties.get("size", 1))
            for _ in range(n):
                listener.send(WireMessage(address=wire.reply_to, properties={}, body=b"x" * size,
                                          correlation_id=wire.correlation_id))
            return
        listener.send(WireMessage(address=wire.reply_to, properties={"echo": True}, body=wire.body,
                                  correlation_id=wire.correlation_id))

    listener.start(deliver)
    print(f"ready {port}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "stats":
            acceptor: Any = listener.acceptor
            stats: Dict[str, Any] = {"held": acceptor.held, "refused": acceptor.refused, "expired": acceptor.expired,
                                     "alive": listener.alive, "rss_kib": rss_kib(), "received": received[0],
                                     "refused_links": listener._handler.refused_links}
            print(json.dumps(stats), flush=True)
    listener.stop()


if __name__ == "__main__":
    main()
