"""Private RabbitMQ nodes on loopback, and clusters of them on this one machine: a broker for tests of
code that goes through one (``Console(url, addressing="rabbitmq")``), started and thrown away by the
test. Needs rabbitmq-server (with its AMQP 1.0 plugin) and epmd installed; ``Unavailable`` says what
is missing.

``RabbitNode(session)`` is one node in a directory of its own (:mod:`.nodes`); ``RabbitCluster(session)``
joins nodes into one cluster. The nodes of one process share a ``RabbitSession``: a private HOME
holding the Erlang cookie (the nodes and rabbitmqctl authenticate with it; root's and the system
service's cookies are never read or written) and a private epmd on a free port (``ERL_EPMD_PORT`` in
every node's and rabbitmqctl's environment), stopped by ``close()``; the system's epmd on port 4369,
and any RabbitMQ running there, are left alone. Every process a session starts carries
``VIRTQ_RABBIT_SESSION=<pid>:<session id>`` in its environment: ``close()`` SIGKILLs whatever of its
own is still left, and a new session SIGKILLs what sessions of processes that are gone left
(``reap_orphans``). To reach a node by hand, run ``/usr/lib/rabbitmq/bin/rabbitmqctl`` in its
environment (``node.env``), or call ``node.ctl(...)``; ``/usr/sbin/rabbitmqctl`` switches to the
rabbitmq user and its cookie, and cannot reach these nodes.
"""

from .cluster import RabbitCluster
from .nodes import GEN_EXPIRE_POLICY, RabbitNode
from .programs import HarnessError, Unavailable
from .sessions import RabbitSession, default_session, reap_orphans, session_processes

__all__ = ["GEN_EXPIRE_POLICY", "HarnessError", "RabbitCluster", "RabbitNode", "RabbitSession", "Unavailable",
           "default_session", "reap_orphans", "session_processes"]
