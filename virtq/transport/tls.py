"""TLS for every AMQP link virtq makes: what files an endpoint presents and trusts.

Mutual TLS is how direct mode authenticates (as libvirtd's TLS transport does): the agent's
listener requires a client certificate signed by its CA, and the certificate's subject CN is the
principal the policy speaks of. Clients verify the agent's (or broker's) certificate against the CA
and the host name in the URL. The PyPI build of proton has no Cyrus SASL, so a proton listener
cannot check passwords; certificates are the one credential both sides can verify here.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from proton import SSLDomain

from virtq.schema.errors import TransportError

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
"""Trusted when a client is given no CA of its own (Debian's bundle)."""


class TlsError(TransportError, ValueError):
    """A TLS configuration that cannot work (missing or unreadable files, amqps without them)."""


@dataclass(frozen=True)
class TlsConfig:
    """Certificate, key and CA files (PEM). A server needs all three; a client needs at least a CA
    (else the system's bundle) and presents ``cert``/``key`` when given."""

    cert: Optional[str] = None
    key: Optional[str] = None
    ca: Optional[str] = None

    def __bool__(self) -> bool:
        return bool(self.cert or self.key or self.ca)

    def check_files(self) -> None:
        """Raise TlsError now, in the caller, rather than on the reactor thread at the first connect."""
        if bool(self.cert) != bool(self.key):
            raise TlsError("a TLS certificate needs its key and a key its certificate (--tls-cert with --tls-key)")
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if path and not os.access(path, os.R_OK):
                raise TlsError(f"TLS {what} file {path} is missing or unreadable")

    def common_name(self) -> Optional[str]:
        """The subject CN of our certificate: who a broker that logs us in by certificate (EXTERNAL)
        takes us for. None when there is no certificate or it cannot be read."""
        if not self.cert:
            return None
        try:  # CPython's own PEM decoder (no third-party X.509 library needed)
            decoded = ssl._ssl._test_decode_cert(self.cert)  # type: ignore[attr-defined]
        except (OSError, ssl.SSLError, AttributeError):
            return None
        for rdn in decoded.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def server_domain(self) -> SSLDomain:
        """A listener's domain: present our certificate, require and verify the peer's against the CA."""
        if not (self.cert and self.key and self.ca):
            raise TlsError("amqps:// needs --tls-cert, --tls-key and --tls-ca (the CA that signs client "
                           "certificates): a TLS listener never falls back to plain AMQP")
        self.check_files()
        domain = SSLDomain(SSLDomain.MODE_SERVER)
        domain.set_credentials(self.cert, self.key, None)
        domain.set_trusted_ca_db(self.ca)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER, self.ca)
        return domain

    def client_domain(self) -> SSLDomain:
        """A client's domain: verify the peer against the CA and the URL's host name; present our
        certificate when we have one."""
        self.check_files()
        ca = self.ca or SYSTEM_CA
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(ca)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, ca)
        if self.cert and self.key:
            domain.set_credentials(self.cert, self.key, None)
        return domain


def is_tls(url: str) -> bool:
    return urlsplit(url).scheme == "amqps"


def check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("amqp", "amqps"):
        raise TlsError(f"{url}: the scheme must be amqp:// or amqps://, not {scheme or 'none'}")


def is_loopback(url: str) -> bool:
    """Whether the URL's host is a loopback address (127.0.0.0/8, ::1, localhost)."""
    host = urlsplit(url if "://" in url else f"amqp://{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
