"""A small HTTP server for one metrics endpoint: GET or HEAD /metrics, gzipped when the request accepts it,
404 for any other path. The body comes from a function called per request, on the request's thread."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional, Tuple, Type
from urllib.parse import urlsplit

__all__ = ["MetricsServer", "accepts_gzip"]

log = logging.getLogger(__name__)

PATH = "/metrics"

BodyParts = Callable[[bool], List[bytes]]
"""The body's parts, gzipped or not."""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header value takes gzip (``gzip``, ``gzip;q=0.5``; not ``gzip;q=0``)."""
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() == "gzip":
            quality = parameters.strip().lower()
            return not (quality.startswith("q=") and quality[2:].strip().rstrip("0.") == "")
    return False


def _handler(body: BodyParts, content_type: str) -> Type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            if urlsplit(self.path).path != PATH:
                self.send_error(404, f"only {PATH} is served here")
                return
            gzipped = accepts_gzip(self.headers.get("Accept-Encoding", ""))
            try:
                parts = body(gzipped)
            except Exception:
                log.exception("a scrape failed")
                self.send_error(500, "the scrape failed (see the exporter's log)")
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(sum(map(len, parts))))
            self.end_headers()
            if send_body:
                for part in parts:
                    self.wfile.write(part)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)  # not on stderr: a command's stderr is its own

    return Handler


class MetricsServer:
    """Serves ``body`` at ``http://HOST:PORT/metrics`` on threads of its own (one per request)."""

    def __init__(self, host: str, port: int, body: BodyParts, content_type: str) -> None:
        self._listen = (host, port)
        self._handler = _handler(body, content_type)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> Tuple[str, int]:
        """Listen (the first address ``getaddrinfo`` gives, IPv6 or IPv4) and serve; OSError when the address
        cannot be had."""
        host, port = self._listen
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self._server = server_class((host, port), self._handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="virtq-metrics", daemon=True)
        self._thread.start()
        return self.address

    @property
    def address(self) -> Tuple[str, int]:
        if self._server is None:
            return self._listen
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
