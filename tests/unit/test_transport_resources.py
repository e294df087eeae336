"""What each transport costs: proton's Container makes two OpenSSL contexts up front (~1.6 MB per
Container, one Container per transport); virtq makes them only when used. And a listener queues
1024 pending connections, not proton's 10."""

from __future__ import annotations

import shutil
import socket
import subprocess

import proton._reactor as proton_reactor
import pytest
from proton import SSLDomain

from virtq.testing import free_port
from virtq.transport import DirectListener
from virtq.transport._direct import LISTEN_BACKLOG
from virtq.transport._reactor import ReactorHandler, ReactorThread, _LazySSLConfig


def test_containers_make_ssl_contexts_only_when_used() -> None:
    reactor = ReactorThread(ReactorHandler(), "test-ssl")
    ssl = reactor.container.ssl
    assert isinstance(ssl, _LazySSLConfig)
    assert ssl._client is None and ssl._server is None
    assert isinstance(ssl.client, SSLDomain) and isinstance(ssl.server, SSLDomain)  # amqps:// still works
    assert ssl.client is ssl.client
    in_proton: object = proton_reactor.SSLConfig
    assert in_proton is not _LazySSLConfig  # proton itself is left as it was


def test_listener_backlog_is_raised() -> None:
    port = free_port()
    listener = DirectListener(f"amqp://127.0.0.1:{port}")
    listener.start(lambda wire: None)
    try:
        assert listener.acceptor is not None
        sock = listener.acceptor._selectable._delegate
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        if shutil.which("ss") is None:
            pytest.skip("ss (iproute2) shows a listening socket's backlog; it is not installed")
        shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
        assert shown.stdout.split()[2] == str(LISTEN_BACKLOG)  # State Recv-Q Send-Q: Send-Q is the backlog
    finally:
        listener.stop()
