"""A small local admin endpoint: JSON lines over TCP on 127.0.0.1.

Each request is one JSON object on one line, with a ``"cmd"`` key; each answer is
one JSON object on one line, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
The host and the proxy each register their own commands; ``help`` lists them.
JSON lines need no HTTP stack and are easy by hand::

    $ printf '{"cmd": "rules"}\\n' | nc 127.0.0.1 9584

The endpoint binds loopback only: it changes what a test host does, and has no
authentication.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, Awaitable, Callable, Mapping

Handler = Callable[[dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]
MAX_LINE = 1 << 20


class AdminError(ValueError):
    """A command was refused; the message goes back to the caller as ``error``."""


class AdminServer:
    """JSON-lines command server.

    Parameters
    ----------
    commands : mapping
        Command name to handler; a handler takes the request dict and returns (or
        awaits) the answer dict, or raises :class:`AdminError` / ``ValueError``.
    """

    def __init__(self, commands: Mapping[str, Handler]) -> None:
        self.commands = dict(commands)
        self.commands.setdefault("help", lambda _req: {"commands": sorted(self.commands)})
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        return int(self._server.sockets[0].getsockname()[1])

    async def dispatch(self, request: Any) -> dict[str, Any]:
        """Run one command; never raises."""
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is a JSON object with a "cmd" string'}
        handler = self.commands.get(request["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown cmd {request['cmd']!r}; allowed: {', '.join(sorted(self.commands))}"}
        try:
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
        except (AdminError, ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **(result or {})}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "line too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    answer: dict[str, Any] = {"ok": False, "error": f"not JSON: {exc}"}
                else:
                    answer = await self.dispatch(request)
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def close(self) -> None:
        """Stop listening and drop admin connections."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            await self._server.wait_closed()
            self._server = None


async def admin_call(port: int, request: Mapping[str, Any], *, host: str = "127.0.0.1", timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to an admin endpoint and return its answer."""

    async def call() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
        try:
            writer.write(json.dumps(dict(request)).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise ConnectionError(f"admin endpoint 127.0.0.1:{port} closed without answering")
        return dict(json.loads(line))

    return await asyncio.wait_for(call(), timeout)


def admin_call_sync(port: int, request: Mapping[str, Any], *, host: str = "127.0.0.1", timeout: float = 5.0) -> dict[str, Any]:
    """:func:`admin_call` for callers without an event loop (the CLI, tests)."""
    import socket

    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(json.dumps(dict(request)).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise ConnectionError(f"admin endpoint {host}:{port} closed without answering")
    return dict(json.loads(buf))
