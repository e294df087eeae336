"""Agent and broker host names resolved before connecting, so that a name DNS does not know is reported as
such (not as a connection that never answered)."""

from __future__ import annotations

import socket
from typing import Dict, List, Sequence, Tuple

from virtq.transport.urls import host_port, redact


def _host(url: str) -> Tuple[str, str]:
    host, _, port = host_port(url).rpartition(":")
    if not host:  # no port given
        host, port = port, "5672"
    return host.strip("[]"), port


def unresolved(urls: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """(the URLs whose host resolves, {redacted URL: why} for the others)."""
    good: List[str] = []
    bad: Dict[str, str] = {}
    for url in urls:
        host, port = _host(url)
        try:
            socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            bad[redact(url)] = f"cannot resolve host {host!r} of {redact(url)}: {exc.strerror} (DNS)"
            continue
        except (UnicodeError, ValueError):
            pass  # let the transport report what is wrong with it
        good.append(url)
    return good, bad


SCHEMES = ("amqp", "amqps")


def bad_scheme(url: str) -> str:
    """Why a URL's scheme is not accepted ('' when it is)."""
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() in SCHEMES:
        return ""
    return (f"{redact(url)}: the scheme must be amqp:// or amqps://, not {scheme + '://' if sep else 'none'}")
