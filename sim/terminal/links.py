"""Host links for a terminal driver: in-process, unreachable, or ISO 8583 over TCP.

Each link is a callable ``Message -> Message`` as the kernel driver expects; it
raises the kernel's :class:`HostUnreachable` (never delivered: nothing owed) or
:class:`HostTimeout` (sent, no answer: a reversal is owed). The TCP link is a thin
blocking client around the wire layer: frame, send, read until the answer whose
match key (MTI class + DE41 + DE11) is the request's.

On a dialect that MACs (SEC-01) the TCP link signs each request with its MAC key
(default: the TEST ONLY key the host gives every terminal unless configured) and
checks the answer's MAC over the bytes received. An answer whose MAC does not verify
is counted in :attr:`TcpLink.bad_mac` and treated as no answer: the link closes and
raises :class:`HostTimeout` (the request left, its outcome is unknown, a reversal is
owed).
"""

from __future__ import annotations

import socket
import time
from datetime import datetime
from typing import Callable

from ..core.host import Host
from ..emv.kernel import HostTimeout, HostUnreachable
from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.errors import WireError
from ..iso8583.framing import Framing
from ..iso8583.mac import TEST_MAC_KEY, MacResult, sign, verify
from ..iso8583.message import Message, parse

Link = Callable[[Message], Message]


def in_process(host: Host, clock: Callable[[], datetime]) -> Link:
    """The host core in this process, answering at ``clock()``."""
    return lambda msg: host.handle(msg, clock())


def unreachable(_: Message) -> Message:
    """A host that cannot be reached (link down before anything was sent)."""
    raise HostUnreachable("host is down")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); ValueError naming the value and the form expected."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"host address {text!r}; expected HOST:PORT, e.g. 127.0.0.1:8583")
    return host, int(port)


class TcpLink:
    """ISO 8583 over one TCP connection (opened on first use, reopened after a failure).

    ``mac_key`` (16 bytes) signs requests and checks answers on a dialect that MACs;
    ``None`` sends requests as they are and checks nothing.
    """

    def __init__(
        self, address: str, *, framing: Framing = Framing(), dialect: Dialect = DEFAULT, timeout_s: float = 30.0,
        mac_key: bytes | None = TEST_MAC_KEY,
    ) -> None:
        self.host, self.port = parse_address(address)
        self.framing, self.dialect, self.timeout_s = framing, dialect, timeout_s
        self.mac_key = mac_key if dialect.mac_field is not None else None
        self.bad_mac = 0
        self._sock: socket.socket | None = None
        self._decoder = framing.decoder()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            except OSError as exc:
                raise HostUnreachable(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
            self._decoder = self.framing.decoder()
        return self._sock

    def close(self) -> None:
        """Close the connection (the next request reconnects)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __call__(self, msg: Message) -> Message:
        sock = self._connect()
        key = msg.match_key
        if self.mac_key is not None:
            msg = sign(msg, self.dialect, self.mac_key)
        try:
            sock.sendall(self.framing.frame(msg.encode(self.dialect)))
        except OSError as exc:
            self.close()
            raise HostUnreachable(f"connection to {self.host}:{self.port} lost before sending: {exc}") from None
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise HostTimeout(f"no answer from {self.host}:{self.port} within {self.timeout_s:g} s")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.close()
                raise HostTimeout(f"connection to {self.host}:{self.port} lost awaiting the answer: {exc}") from None
            if not chunk:
                self.close()
                raise HostTimeout(f"{self.host}:{self.port} closed the connection before answering")
            try:
                frames = self._decoder.feed(chunk)
            except WireError as exc:
                self.close()
                raise HostTimeout(f"unreadable answer from {self.host}:{self.port}: {exc}") from None
            for frame in frames:
                try:
                    answer = parse(frame.payload, self.dialect)
                except WireError:
                    continue
                if answer.match_key == key:
                    if self.mac_key is not None:
                        check = verify(answer, self.dialect, self.mac_key, raw=frame.payload)
                        if check is not MacResult.VALID:
                            self.bad_mac += 1
                            self.close()
                            raise HostTimeout(f"answer from {self.host}:{self.port}: {check.value} "
                                              f"(DE{self.dialect.mac_field}); treated as no answer")
                    return answer
