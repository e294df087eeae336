"""The connections a console follows agents on, opened from its URLs.

Direct mode: one connection per URL, each to one agent's listener. Through a broker: one connection,
the URLs being its failover list. Transports made elsewhere (tests, tools) are added as they are.
Each is named by its URL with credentials removed. Direct URLs can be added and removed at run time
(``Console.add_urls``/``remove_urls``) and those nothing answered on are retried (``virtq.console._redial``).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from virtq.transport import Connection, TlsConfig, Transport, direct_connection, profile
from virtq.transport.urls import redact

__all__ = ["open_connections", "open_direct"]


def open_direct(url: str, tls: TlsConfig) -> Tuple[str, Transport]:
    """(name, transport) of one direct connection, not started yet."""
    return redact(url), direct_connection(url, tls=tls)


def open_connections(urls: Sequence[str], addressing: str, tls: TlsConfig,
                     transports: Sequence[Transport] = ()) -> List[Tuple[str, Transport]]:
    """(name, transport) of each connection, not started yet."""
    if addressing == "direct":
        opened: List[Tuple[str, Transport]] = [open_direct(u, tls) for u in urls]
    elif urls:
        opened = [(" ".join(redact(u) for u in urls), Connection(urls, profile(addressing), role="console", tls=tls))]
    else:
        opened = []
    return opened + [(f"transport-{i}", t) for i, t in enumerate(transports, 1)]
