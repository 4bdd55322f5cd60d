"""``possim proxy``: a Toxiproxy-style chaos TCP proxy between terminals and a host.

Each accepted connection (a *link*) gets its own connection upstream; bytes flow
through two pumps, ``upstream`` (client to server) and ``downstream`` (server to
client). A pump reads chunks as they come, stamps their arrival, and a writer applies
the toxics in force (:mod:`.toxics`) before passing them on, so latency is counted
from arrival (chunks pipelined behind one another are not delayed twice) and order
is always kept. The proxy knows nothing of ISO 8583: it breaks the wire, not the
messages, as a bad 3G link does.

Toxics change at runtime through the admin endpoint (:mod:`.admin`) -- ``toxics``,
``add_toxic``, ``update_toxic``, ``remove_toxic``, ``reset``, ``down``, ``up``,
``upstream``, ``status`` -- and apply at once to open links as well as new ones.
Whether a toxic with ``toxicity`` < 1 applies to a link is drawn once per link and
toxic from ``seed`` and the link's number, so a seeded run repeats itself.

``down`` closes the listening socket and resets every link (terminals see connection
refused, as with a cable pulled at the switch); ``up`` listens again on the same port.
``upstream`` points new links at another address (a host restarted on a new port).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

from .admin import AdminError, AdminServer
from .toxics import Toxic, ToxicError, check_names, parse_toxic, updated


@dataclass
class ProxySettings:
    """What ``possim proxy`` can be told (plain data)."""

    upstream: tuple[str, int]
    bind: str = "127.0.0.1"
    port: int = 8483
    admin_port: int | None = None
    toxics: tuple[Toxic, ...] = ()
    seed: int = 0
    connect_timeout: float = 5.0


class _Closed(Exception):
    """The link must end (limit reached, timeout toxic fired)."""


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Abort with a TCP RST (SO_LINGER 0), as a peer that crashed would."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Link:
    """One proxied connection and the per-link state of its toxics."""

    def __init__(self, proxy: "ChaosProxy", number: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.number = number
        self.rng = random.Random(f"{proxy.settings.seed}:{number}")
        self.client_r, self.client_w = client_r, client_w
        self.server_r: asyncio.StreamReader | None = None
        self.server_w: asyncio.StreamWriter | None = None
        self.chosen: dict[str, bool] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.passed = {"upstream": 0, "downstream": 0}
        self.next_free = {"upstream": 0.0, "downstream": 0.0}
        self.closed = False

    def applies(self, toxic: Toxic) -> bool:
        if toxic.name not in self.chosen:
            self.chosen[toxic.name] = toxic.toxicity >= 1 or self.rng.random() < toxic.toxicity
        return self.chosen[toxic.name]

    def sync(self, toxics: tuple[Toxic, ...]) -> None:
        """Start the timers of new timeout / reset_peer toxics; cancel those of removed ones."""
        names = {t.name for t in toxics}
        for name in list(self.timers):
            if name not in names:
                self.timers.pop(name).cancel()
        for toxic in toxics:
            if toxic.type not in ("timeout", "reset_peer") or toxic.name in self.timers or not self.applies(toxic):
                continue
            delay = toxic.attributes["timeout_ms"] / 1000
            if toxic.type == "reset_peer":
                self.timers[toxic.name] = self.proxy.loop.call_later(delay, self.reset, f"toxic {toxic.name}")
            elif delay > 0:
                self.timers[toxic.name] = self.proxy.loop.call_later(delay, self.close, f"toxic {toxic.name}")

    def close(self, why: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        for handle in self.timers.values():
            handle.cancel()
        for writer in (self.client_w, self.server_w):
            if writer is not None:
                writer.close()

    def reset(self, why: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.counters["resets"] += 1
        for handle in self.timers.values():
            handle.cancel()
        _reset(self.client_w)
        _reset(self.server_w)

    async def run(self) -> None:
        proxy = self.proxy
        host, port = proxy.upstream
        try:
            self.server_r, self.server_w = await asyncio.wait_for(
                asyncio.open_connection(host, port), proxy.settings.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            proxy.counters["upstream_failures"] += 1
            self.close("upstream unreachable")
            return
        for writer in (self.client_w, self.server_w):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sync(proxy.toxics)
        if self.closed:
            return
        await asyncio.gather(
            self._pump(self.client_r, self.server_w, "upstream"),
            self._pump(self.server_r, self.client_w, "downstream"),
            return_exceptions=True,
        )
        self.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, stream: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(64)

        async def read() -> None:
            try:
                while not self.closed:
                    data = await src.read(65536)
                    if not data:
                        break
                    await queue.put((time.monotonic(), data))
            except (ConnectionError, OSError):
                pass
            finally:
                await queue.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await queue.get()
                if item is None or self.closed:
                    break
                await self._deliver(item[0], item[1], dst, stream)
            if not self.closed and dst.can_write_eof():
                try:
                    dst.write_eof()  # half-close passes through
                except OSError:
                    pass
        except _Closed as exc:
            self.close(str(exc))
        except (ConnectionError, OSError):
            self.close("peer gone")
        finally:
            reader.cancel()

    async def _deliver(self, arrived: float, data: bytes, dst: asyncio.StreamWriter, stream: str) -> None:
        pieces = [data]
        gap = 0.0
        close_after = False
        for toxic in self.proxy.toxics:
            if toxic.stream != stream or not self.applies(toxic):
                continue
            a = toxic.attributes
            if toxic.type == "timeout":
                return  # swallowed; the link's timer closes it (never, for a blackhole)
            if toxic.type == "reset_peer":
                if a["timeout_ms"] == 0:
                    self.reset(f"toxic {toxic.name}")
                    raise _Closed(f"toxic {toxic.name}")
            elif toxic.type == "latency":
                jitter = a["jitter_ms"]
                delay = (a["latency_ms"] + (self.rng.uniform(-jitter, jitter) if jitter else 0)) / 1000
                wait = arrived + max(0.0, delay) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif toxic.type == "bandwidth":
                size = sum(len(p) for p in pieces)
                now = time.monotonic()
                self.next_free[stream] = max(now, self.next_free[stream]) + size / (a["rate_kbps"] * 1024)
                await asyncio.sleep(self.next_free[stream] - now)
            elif toxic.type == "limit_data":
                allowed = a["bytes"] - self.passed[stream]
                joined = b"".join(pieces)
                if len(joined) >= allowed:
                    pieces, close_after = [joined[: max(0, allowed)]], True
            elif toxic.type == "slicer":
                pieces = self._slices(b"".join(pieces), a["average_size"], a["size_variation"])
                gap = a["delay_us"] / 1_000_000
        if self.closed:
            raise _Closed("closed")
        for i, piece in enumerate(pieces):
            if not piece:
                continue
            if i and gap:
                await asyncio.sleep(gap)
            dst.write(piece)
            self.passed[stream] += len(piece)
            self.proxy.counters[f"bytes_{stream}"] += len(piece)
            await dst.drain()
        if close_after:
            raise _Closed("limit_data reached")

    def _slices(self, data: bytes, average: int, variation: int) -> list[bytes]:
        out, pos = [], 0
        while pos < len(data):
            size = max(1, average + (self.rng.randint(-variation, variation) if variation else 0))
            out.append(data[pos : pos + size])
            pos += size
        return out


class ChaosProxy:
    """The proxy; build, :meth:`start`, :meth:`run_until_stopped`. See the module notes."""

    def __init__(self, settings: ProxySettings) -> None:
        check_names(settings.toxics, "toxics")
        self.settings = settings
        self.toxics: tuple[Toxic, ...] = settings.toxics
        self.upstream = settings.upstream
        self.links: set[_Link] = set()
        self.enabled = True
        self.port = 0
        self.admin_port = 0
        self._server: asyncio.AbstractServer | None = None
        self._admin: AdminServer | None = None
        self._stop = asyncio.Event()
        self._count = 0
        self.counters = {"links": 0, "resets": 0, "upstream_failures": 0, "bytes_upstream": 0, "bytes_downstream": 0}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    async def start(self) -> None:
        """Listen on the proxy and admin ports."""
        self.loop = asyncio.get_running_loop()
        await self._listen(self.settings.port)
        s = self.settings
        admin_port = s.admin_port if s.admin_port is not None else (0 if s.port == 0 else s.port + 1)
        self._admin = AdminServer(self._commands())
        self.admin_port = await self._admin.start("127.0.0.1", admin_port)

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, self.settings.bind, port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            _reset(writer)
            return
        self._count += 1
        self.counters["links"] += 1
        link = _Link(self, self._count, reader, writer)
        self.links.add(link)
        try:
            await link.run()
        finally:
            self.links.discard(link)

    def _changed(self) -> None:
        for link in list(self.links):
            link.sync(self.toxics)

    async def set_enabled(self, up: bool) -> None:
        """``down``: stop listening and reset every link; ``up``: listen again on the same port."""
        if up == self.enabled:
            return
        self.enabled = up
        if not up:
            if self._server is not None:
                self._server.close()
                self._server = None
            for link in list(self.links):
                link.reset("proxy down")
        else:
            await self._listen(self.port)

    def request_stop(self) -> None:
        """Ask :meth:`run_until_stopped` to return."""
        self._stop.set()

    async def run_until_stopped(self) -> None:
        """Serve until stopped, then close every link and the admin endpoint."""
        await self._stop.wait()
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.close("proxy stopping")
        if self._admin is not None:
            await self._admin.close()

    def _commands(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        def listing(_req: dict[str, Any] | None = None) -> dict[str, Any]:
            return {"toxics": [t.to_dict() for t in self.toxics], "enabled": self.enabled,
                    "upstream": f"{self.upstream[0]}:{self.upstream[1]}"}

        def add(req: dict[str, Any]) -> dict[str, Any]:
            toxic = parse_toxic(req.get("toxic", {k: v for k, v in req.items() if k != "cmd"}), "admin", len(self.toxics) + 1)
            if any(t.name == toxic.name for t in self.toxics):
                raise AdminError(f"a toxic named {toxic.name!r} exists; update_toxic or remove_toxic it, or pick another name")
            self.toxics = self.toxics + (toxic,)
            self._changed()
            return {"toxic": toxic.to_dict()}

        def find(name: Any) -> Toxic:
            for toxic in self.toxics:
                if toxic.name == name:
                    return toxic
            raise AdminError(f"no toxic named {name!r}; toxics: {', '.join(t.name for t in self.toxics) or 'none'}")

        def update(req: dict[str, Any]) -> dict[str, Any]:
            old = find(req.get("name"))
            new = updated(old, {k: v for k, v in req.items() if k not in ("cmd", "name")})
            self.toxics = tuple(new if t is old else t for t in self.toxics)
            for link in self.links:
                handle = link.timers.pop(old.name, None)
                if handle is not None:
                    handle.cancel()  # the timer starts again with the new attributes
            self._changed()
            return {"toxic": new.to_dict()}

        def remove(req: dict[str, Any]) -> dict[str, Any]:
            old = find(req.get("name"))
            self.toxics = tuple(t for t in self.toxics if t is not old)
            self._changed()
            return listing()

        def reset(_req: dict[str, Any]) -> dict[str, Any]:
            self.toxics = ()
            self._changed()
            return listing()

        async def down(_req: dict[str, Any]) -> dict[str, Any]:
            await self.set_enabled(False)
            return listing()

        async def up(_req: dict[str, Any]) -> dict[str, Any]:
            await self.set_enabled(True)
            return listing()

        def upstream(req: dict[str, Any]) -> dict[str, Any]:
            self.upstream = parse_address(str(req.get("address", "")), "address")
            return listing()

        def status(_req: dict[str, Any]) -> dict[str, Any]:
            return {**listing(), "port": self.port, "links_open": len(self.links), **self.counters}

        return {"toxics": listing, "add_toxic": add, "update_toxic": update, "remove_toxic": remove, "reset": reset,
                "down": down, "up": up, "upstream": upstream, "status": status}


def parse_address(text: str, what: str = "--upstream") -> tuple[str, int]:
    """``HOST:PORT`` to a pair; ``ValueError`` naming ``what`` otherwise.

    >>> parse_address("127.0.0.1:8583")
    ('127.0.0.1', 8583)
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} is {text!r}; allowed: HOST:PORT with a port 1..65535")
    return host, int(port)


async def serve(settings: ProxySettings, *, ready: Callable[[ChaosProxy], None] | None = None) -> ChaosProxy:
    """Listen, call ``ready``, serve until SIGTERM/SIGINT, close."""
    import signal

    proxy = ChaosProxy(settings)
    await proxy.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, proxy.request_stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    if ready is not None:
        ready(proxy)
    await proxy.run_until_stopped()
    return proxy


__all__ = ["ChaosProxy", "ProxySettings", "ToxicError", "parse_address", "serve"]
