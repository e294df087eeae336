"""A test CA and certificates, made with the openssl recipe docs/SECURITY.md gives operators.

tests/integration/test_security_doc.py runs the document's own commands; this module makes the many
certificates the other tests need (valid, from another CA, expired, for another host name).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

from virtq.transport import TlsConfig

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"


def commands(ca: str, name: str, cn: str, days: int = 825, extfile: str = "san.ext") -> List[List[str]]:
    """openssl commands that make a key and a certificate for ``cn`` signed by the CA ``ca``."""
    return [
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", f"/CN={cn}"],
        ["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-extfile", extfile],
    ]


def ca_command(ca: str, cn: str) -> List[str]:
    return ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out",
            f"{ca}.crt", "-subj", f"/CN={cn}", "-days", "3650"]


class Pki:
    """Certificate authorities and certificates in one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "san.ext").write_text(SAN + "\n")
        self._made: Dict[str, Tuple[str, str]] = {}

    def _run(self, argv: List[str]) -> None:
        subprocess.run(argv, cwd=self.dir, check=True, capture_output=True, timeout=60)

    def ca(self, ca: str = "ca", cn: str = "virtq test CA") -> str:
        """The CA's certificate file (made once)."""
        path = self.dir / f"{ca}.crt"
        if not path.exists():
            self._run(ca_command(ca, cn))
        return str(path)

    def issue(self, name: str, cn: str = "", ca: str = "ca", days: int = 825, san: str = SAN) -> Tuple[str, str]:
        """(certificate, key) for ``cn`` (default: ``name``) signed by ``ca``; ``days=-1`` is expired;
        ``san``: the subjectAltName extension line (the host names a client checks)."""
        if name not in self._made:
            self.ca(ca)
            extfile = "san.ext"
            if san != SAN:
                extfile = f"{name}.ext"
                (self.dir / extfile).write_text(san + "\n")
            for argv in commands(ca, name, cn or name, days, extfile):
                self._run(argv)
            self._made[name] = (str(self.dir / f"{name}.crt"), str(self.dir / f"{name}.key"))
        return self._made[name]

    def tls(self, name: str, cn: str = "", ca: str = "ca", days: int = 825, trust: str = "ca") -> TlsConfig:
        """A TlsConfig presenting ``name``'s certificate and trusting the CA ``trust``."""
        cert, key = self.issue(name, cn, ca, days)
        return TlsConfig(cert, key, self.ca(trust))
