"""A RabbitMQ cluster of private nodes on this one machine."""

from __future__ import annotations

import threading
import time
from typing import List, Optional

from .nodes import RabbitNode
from .programs import HarnessError
from .sessions import RabbitSession, default_session

__all__ = ["RabbitCluster"]


class RabbitCluster:
    """``size`` nodes (2: ``a`` and ``b``) clustered on this machine: the others joined to the first.

    Nodes stop and start individually (``cluster.a.stop()``, ``cluster.a.start()``); a restarted node
    rejoins by itself. RabbitMQ's rule: the node stopped last must start first, or the others wait for
    it (here at most 30 s, then fail).
    """

    def __init__(self, session: Optional[RabbitSession] = None, size: int = 2) -> None:
        if size < 2:
            raise ValueError("a cluster has at least 2 nodes")
        self.session = session or default_session()
        self.nodes = [RabbitNode(self.session) for _ in range(size)]

    @property
    def a(self) -> RabbitNode:
        return self.nodes[0]

    @property
    def b(self) -> RabbitNode:
        return self.nodes[1]

    @property
    def urls(self) -> List[str]:
        return [node.url for node in self.nodes]

    def spawn(self) -> None:
        """Start the nodes' processes side by side (``start`` waits for them and forms the cluster)."""
        for node in self.nodes:
            node.spawn()

    def start(self, timeout: float = 90.0) -> "RabbitCluster":
        """Start the nodes side by side (unless ``spawn`` did), then join each to the first (~3 s each)."""
        try:
            self.spawn()
            for node in self.nodes:
                node.wait_ready(timeout)
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", self.a.name)
                node.ctl("start_app")
            deadline = time.monotonic() + 30
            while set(self.running_nodes()) != {node.name for node in self.nodes}:
                if time.monotonic() > deadline:
                    raise HarnessError(f"cluster did not form: running {self.running_nodes()}")
                time.sleep(0.2)
        except BaseException:
            self.kill()
            raise
        return self

    def running_nodes(self, via: Optional[RabbitNode] = None) -> List[str]:
        """Names of the cluster's running nodes, as a running node (``via``, else the first) sees it."""
        asker = via or next((node for node in self.nodes if node.running), None)
        if asker is None:
            return []
        status = asker.ctl_json("cluster_status")
        running = status.get("running_nodes", []) if isinstance(status, dict) else []
        return sorted(str(name) for name in running)

    def stop(self) -> None:
        """Stop every node (the first last: it can then start first)."""
        for node in reversed(self.nodes):
            node.stop()

    def close(self) -> None:
        """Stop every node at once (quicker than ``stop``; for a cluster whose data are thrown away)."""
        threads = [threading.Thread(target=node.stop) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.kill()  # (whatever a failed stop left)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()
