"""Frames queued on a connection, sent in one write: how a pipelining load client writes.

A load client's reader queues the next request of every lane whose answer one
``recv`` brought, then sends them together. On loopback a write costs far more
CPU than building a request, so the write itself is kept lean: one ``send`` on
the non-blocking socket, which takes the whole of a few kilobytes unless the
peer stopped reading; only what it did not take goes through the socket's
``sendall`` (gevent's waits for room without blocking the other greenlets).
gevent's ``sendall`` for every write would cost three more Python calls and a
memoryview each time: about 2 us more a write (4.6 against 2.6 us for 1,340 bytes on
a socket pair).

Examples
--------
>>> import socket
>>> a, b = socket.socketpair()
>>> queued = [b"ab", b"cd"]
>>> send_queued(a, queued)
>>> b.recv(10), queued
(b'abcd', [])
>>> a.close(); b.close()
"""

from __future__ import annotations

from typing import Any

__all__ = ["send_queued"]


def send_queued(sock: Any, outbox: list[bytes]) -> None:
    """Send the frames queued in ``outbox`` in one write and empty it (frames queued
    meanwhile, by a greenlet that ran while the write waited for room, go next).

    ``sock`` is a gevent socket (or a blocking one): ``send`` returns how much the
    kernel took, ``sendall`` sends the rest. An ``OSError`` propagates; the frames of
    the failed write are no longer in ``outbox``.
    """
    while outbox:
        data = b"".join(outbox) if len(outbox) > 1 else outbox[0]
        outbox.clear()
        sent = sock.send(data)
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])
