"""A small blocking ECR client: what a cash register (or a test, or ``possim ecr``) uses.

>>> EcrClient  # doctest: +ELLIPSIS
<class '...EcrClient'>

Usage::

    with EcrClient(port) as ecr:
        answer = ecr.call({"cmd": "sale", "card": "healthy", "amount": "12.34"})
"""

from __future__ import annotations

import json
import socket
from typing import Any

__all__ = ["EcrClient", "EcrError"]


class EcrError(OSError):
    """The terminal could not be reached, or closed the connection before answering."""


class EcrClient:
    """One connection to a live terminal's ECR port (JSON lines, one answer per request)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        self.address = (host, port)
        self.timeout = timeout
        try:
            self._sock = socket.create_connection(self.address, timeout=timeout)
        except OSError as exc:
            raise EcrError(f"cannot connect to the terminal's ECR port {host}:{port}: {exc.strerror or exc}") from None
        self._file = self._sock.makefile("rb")

    def call(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one request, return its answer (a dict with ``ok``)."""
        return self.call_raw(json.dumps(request).encode() + b"\n", timeout)

    def call_raw(self, line: bytes, timeout: float | None = None) -> dict[str, Any]:
        """Send raw bytes (tests of bad input) and return the next answer line."""
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            self._sock.sendall(line)
            answer = self._file.readline()
        except OSError as exc:
            raise EcrError(f"ECR {self.address[0]}:{self.address[1]}: {exc}") from None
        if not answer:
            raise EcrError(f"ECR {self.address[0]}:{self.address[1]} closed the connection before answering")
        return json.loads(answer)

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._sock.close()

    def __enter__(self) -> "EcrClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
