"""Relaying bytes, unread, between the kernel's agent and a judge elsewhere (a Dask worker and the instructor's
judge service), and the TLS the two ends speak."""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable

HELLO_MAX = 4096  # the one line a worker sends before the relayed traffic (token, run, cell, timeout)
PLAIN = (str, int, float, bool, type(None))  # the only values a worker's task may return


def relay(
    a: socket.socket, b: socket.socket, stop: Callable[[], bool] = lambda: False, counts: dict[str, int] | None = None
) -> None:
    """Copy bytes both ways until either side closes (or `stop()`); never parses them."""
    peer = {a: b, b: a}
    while not stop():
        ready: list[socket.socket] = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            ready, _, _ = select.select([a, b], [], [], 0.2)
        for s in ready:
            try:
                data = s.recv(1 << 16)
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            try:
                peer[s].sendall(data)
            except (OSError, ssl.SSLError):
                return
            if counts is not None:
                counts["chunks"] = counts.get("chunks", 0) + 1
                counts["bytes"] = counts.get("bytes", 0) + len(data)


def client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """TLS to the judge service with the worker's Dask certificates (the cluster's CA; as Dask, no host name
    check: any holder of a certificate from that CA is the peer)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
