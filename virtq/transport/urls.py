"""AMQP URLs with credentials: adding them from options or the environment, hiding them in logs.

The user information is everything between ``scheme://`` and the *last* ``@`` of the URL, split at its
first ``:``. A generic URL parser splits at the first ``/``, ``?`` or ``#`` instead, so a password
holding one of them came out cut in two: half of it then showed in proton's log, the agent's banner
and the CLI's errors. Percent-encoded user information (``%2F``) is decoded.
"""

from __future__ import annotations

from typing import Optional, Tuple
from urllib.parse import quote, unquote


def _parts(url: str) -> Tuple[str, Optional[str], str]:
    """(``scheme://``, the raw user information or None, the rest: host, port, path …)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    head = f"{scheme}://" if sep else ""
    if "@" not in rest:
        return head, None, rest
    userinfo, host = rest.rsplit("@", 1)
    return head, userinfo, host


def host_port(url: str) -> str:
    """``host:port`` of an AMQP URL, without scheme or user information."""
    return _parts(url)[2]


def with_credentials(url: str, user: Optional[str], password: Optional[str]) -> str:
    """Put user/password into the URL unless it already carries a user."""
    head, userinfo, host = _parts(url)
    if userinfo or not (user or password):
        return url
    auth = quote(user or "", safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"{head}{auth}@{host}"


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages."""
    head, userinfo, host = _parts(url)
    if userinfo is None or ":" not in userinfo:
        return url
    return f"{head}{userinfo.partition(':')[0]}:***@{host}"


def split_credentials(url: str) -> Tuple[str, Optional[str], Optional[str]]:
    """(the URL without user and password, user, password), both unquoted; None where absent.

    Connections are given the credentials apart from the URL: proton logs the URL it connects to."""
    head, userinfo, host = _parts(url)
    if userinfo is None:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    return f"{head}{host}", unquote(user) if user else None, unquote(password) if colon else None
