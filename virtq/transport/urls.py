"""AMQP URLs with credentials: adding them from options or the environment, hiding them in logs."""

from __future__ import annotations

from typing import Optional, Tuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def with_credentials(url: str, user: Optional[str], password: Optional[str]) -> str:
    """Put user/password into the URL unless it already carries a user."""
    parts = urlsplit(url)
    if parts.username or not (user or password):
        return url
    auth = quote(user or "", safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit((parts.scheme, f"{auth}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, parts.fragment))


def split_credentials(url: str) -> Tuple[str, Optional[str], Optional[str]]:
    """(the URL without user and password, user, password), both unquoted; None where absent.

    Connections are given the credentials apart from the URL: proton logs the URL it connects to."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, unquote(user) if user else None, unquote(password) if colon else None
