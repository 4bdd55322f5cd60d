"""An asyncio ISO 8583 client: one connection, several requests in flight, answers matched by key.

Real terminals and switches pipeline: a second request goes out before the first is
answered, and answers come back in any order. The client therefore pairs each answer
with its request by the jPOS QMUX key -- MTI class + DE41 + DE11
(:func:`sim.iso8583.catalogue.match_key`) -- not by order. Framing and dialect come
from the wire layer, so the client speaks whatever the host is configured for.

Each request has its own timeout. What the caller learns on failure says whether the
request left (the kernel's own exceptions, so a terminal can pass them on as they are):

* :class:`RequestTimeout` (a :class:`~sim.emv.kernel.HostTimeout`): sent, no answer in
  time -- the outcome is unknown and a reversal may be owed;
* :class:`ConnectionLost` (also a ``HostTimeout``): sent, then the connection closed
  before the answer -- unknown as well;
* :class:`NotConnected` (a :class:`~sim.emv.kernel.HostUnreachable`): never sent.

An answer that comes after its request timed out, or matches nothing in flight, is
counted (:attr:`Client.late`, :attr:`Client.unmatched`) and dropped. An answer that
does not decode is counted in :attr:`Client.undecodable` and dropped (its request
then times out: nothing in it can be trusted).

On a dialect that MACs (SEC-01, e.g. ``iso8583-1987-ascii-mac``) the client signs
every request with its ``mac_key`` just before encoding it (any MAC the caller put
there is replaced; a repeat is signed afresh), and checks the MAC of every answer over
the bytes received. An answer whose MAC does not verify (missing, malformed or wrong)
is counted in :attr:`Client.bad_mac` and treated as no answer to its request: the
request fails at once with :class:`MacFailure`, a :class:`RequestTimeout` -- the
outcome is unknown, a reversal may be owed -- and a genuine answer coming later is
counted as late. ``mac_key`` defaults to the TEST ONLY key of :mod:`sim.iso8583.mac`,
the one the host gives every terminal unless configured otherwise; ``mac_key=None``
sends requests as they are and accepts answers unchecked (tests of a host's MAC check).

Public API (stable)
-------------------
``await Client.connect(host, port, *, dialect=DEFAULT, framing=Framing(), tpdu=None,
timeout=10.0, connect_timeout=5.0, mac_key=TEST_MAC_KEY) -> Client``
``await client.request(msg: Message, *, timeout=None) -> Message``
    Send one request, wait for its answer (a :class:`Message`, not validated against
    the catalogue so that a QA suite sees exactly what the host sent).
``await client.request_fields(fields: dict, *, timeout=None) -> dict``
    The same on plain field dicts (the fast path used by ``possim bench host``).
``await client.send_raw(data: bytes)``
    Put bytes on the wire as they are (tests of bad input).
``await client.close()``; ``client.closed``; ``client.in_flight``; counters ``sent``,
    ``answered``, ``late``, ``unmatched``, ``undecodable``, ``bad_mac``; ``async with`` closes.
Exceptions: ``ClientError`` (base), ``RequestTimeout``, ``MacFailure``, ``ConnectionLost``,
    ``NotConnected``, ``KeyInFlight`` (a second request with a key already waiting).

Examples
--------
>>> import asyncio
>>> from sim.iso8583.message import network_request
>>> async def demo():
...     server = await echo_server()            # answers every frame with itself
...     port = server.sockets[0].getsockname()[1]
...     async with await Client.connect("127.0.0.1", port) as client:
...         echo = network_request("301", stan=7, transmitted="1122103000", terminal_id="TERM0001")
...         answer = await client.request(echo)
...     server.close()
...     return answer.stan
>>> asyncio.run(demo())
'000007'
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Mapping

import iso8583

from ..emv.kernel.events import HostTimeout, HostUnreachable
from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.framing import Framing, FramingError
from ..iso8583.mac import TEST_MAC_KEY, MacResult, compute_mac, verify
from ..iso8583.message import Message

Key = tuple[str, str, str]


class ClientError(Exception):
    """Base of the client's errors."""


class RequestTimeout(ClientError, HostTimeout):
    """Sent, but no answer within the timeout (outcome unknown)."""


class MacFailure(RequestTimeout):
    """Sent, but the answer's MAC did not verify: treated as no answer (outcome unknown)."""


class ConnectionLost(ClientError, HostTimeout):
    """Sent, but the connection closed before the answer (outcome unknown)."""


class NotConnected(ClientError, HostUnreachable):
    """Not sent: the connection is closed or could not be opened."""


class KeyInFlight(ClientError, ValueError):
    """A request with the same MTI class + DE41 + DE11 is already waiting for its answer."""


def _key(fields: Mapping[str, Any]) -> Key:
    return (fields.get("t", "")[:2], fields.get("41", ""), fields.get("11", ""))


class _Protocol(asyncio.Protocol):
    def __init__(self, client: "Client") -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client._data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(exc)

    def pause_writing(self) -> None:
        self.client._writable.clear()

    def resume_writing(self) -> None:
        self.client._writable.set()


class Client:
    """One ISO 8583 connection; build it with :meth:`connect`. See the module notes."""

    def __init__(self, dialect: Dialect, framing: Framing, tpdu: bytes | None, timeout: float,
                 mac_key: bytes | None = TEST_MAC_KEY) -> None:
        self.dialect = dialect
        self.mac_key = mac_key if dialect.mac_field is not None else None
        """The key requests are signed and answers checked with (``None``: no MACs handled)."""
        self.framing = framing
        self.tpdu = tpdu if tpdu is not None or not framing.tpdu else bytes.fromhex("6000010000")
        self.timeout = timeout
        self._decoder = framing.decoder()
        self._pending: dict[Key, asyncio.Future[dict[str, Any]]] = {}
        self._expired: OrderedDict[Key, None] = OrderedDict()
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed_reason: str | None = None
        self.sent = self.answered = self.late = self.unmatched = self.undecodable = self.bad_mac = 0
        self.peer = ""

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        dialect: Dialect = DEFAULT,
        framing: Framing | None = None,
        tpdu: bytes | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        mac_key: bytes | None = TEST_MAC_KEY,
    ) -> "Client":
        """Open a connection; :class:`NotConnected` when it cannot be opened in ``connect_timeout`` s.

        ``mac_key`` (16 bytes) signs requests and checks answers on a dialect that MACs.
        """
        client = cls(dialect, framing or Framing(), tpdu, timeout, mac_key)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(client), host, port), connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise NotConnected(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
        client._transport = transport  # type: ignore[assignment]
        client.peer = f"{host}:{port}"
        return client

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by either side)."""
        return self._transport is None or self._closed_reason is not None

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered or timed out."""
        return len(self._pending)

    # incoming ---------------------------------------------------------------------------

    def _data(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FramingError as exc:
            self._fail(f"bad framing from {self.peer}: {exc}")
            return
        spec = self.dialect.spec
        for frame in frames:
            try:
                fields, _ = iso8583.decode(frame.payload, spec)
            except Exception:  # noqa: BLE001 - any garbage the host sends is counted, not raised
                self.undecodable += 1
                continue
            key = _key(fields)
            if self.mac_key is not None:
                check = verify(Message(fields), self.dialect, self.mac_key, raw=frame.payload)
                if check is not MacResult.VALID:
                    self.bad_mac += 1
                    fut = self._pending.get(key)
                    if fut is not None and not fut.done():
                        self._expire(key, fut, fields.get("t"), 0.0, MacFailure(
                            f"answer {fields.get('t')} key {key} from {self.peer}: {check.value} "
                            f"(DE{self.dialect.mac_field}); treated as no answer"))
                    continue
            fut = self._pending.pop(key, None)
            if fut is None or fut.done():
                if key in self._expired:
                    del self._expired[key]
                    self.late += 1
                else:
                    self.unmatched += 1
            else:
                self.answered += 1
                fut.set_result(fields)

    def _lost(self, exc: Exception | None) -> None:
        self._closed_reason = self._closed_reason or f"connection to {self.peer} closed" + (f": {exc}" if exc else "")
        self._writable.set()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(self._closed_reason + " before the answer"))

    def _fail(self, reason: str) -> None:
        self._closed_reason = reason
        if self._transport is not None:
            self._transport.abort()

    # outgoing ---------------------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` unchanged (no framing); :class:`NotConnected` if closed."""
        if self.closed:
            raise NotConnected(self._closed_reason or "not connected")
        assert self._transport is not None
        self._transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()

    async def request_fields(self, fields: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send a request given as a field dict and return the answer's field dict."""
        if self.closed:
            raise NotConnected(self._closed_reason or "not connected")
        key = _key(fields)
        if key in self._pending:
            raise KeyInFlight(f"a request with key {key} is already in flight on {self.peer}")
        if self.mac_key is not None:
            fields = {**fields, self.dialect.mac_field: compute_mac(fields, self.dialect, self.mac_key)}
        raw = self.dialect.encode(fields)
        frame = self.framing.frame(raw, self.tpdu if self.framing.tpdu else None)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        assert self._transport is not None
        self._transport.write(frame)
        self.sent += 1
        if not self._writable.is_set():
            await self._writable.wait()
        limit = self.timeout if timeout is None else timeout
        if not limit:
            return await fut
        handle = asyncio.get_running_loop().call_later(limit, self._expire, key, fut, fields.get("t"), limit)
        try:
            return await fut
        finally:
            handle.cancel()
            if fut.cancelled() and self._pending.get(key) is fut:
                del self._pending[key]

    def _expire(self, key: Key, fut: asyncio.Future[dict[str, Any]], mti: Any, limit: float,
                error: RequestTimeout | None = None) -> None:
        if fut.done():
            return
        if self._pending.get(key) is fut:
            del self._pending[key]
        self._expired[key] = None
        if len(self._expired) > 4096:
            self._expired.popitem(last=False)
        fut.set_exception(error or RequestTimeout(f"no answer from {self.peer} within {limit:g} s to {mti} key {key}"))

    async def request(self, msg: Message, *, timeout: float | None = None) -> Message:
        """Send ``msg`` and return its answer (see the module notes for the errors)."""
        return Message(await self.request_fields(dict(msg.fields), timeout=timeout))

    async def close(self) -> None:
        """Close the connection; requests still waiting fail with :class:`ConnectionLost`."""
        if self._transport is not None and self._closed_reason is None:
            self._closed_reason = f"connection to {self.peer} closed by the client"
            self._transport.close()
            await asyncio.sleep(0)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Echo(asyncio.Protocol):
    """Answers every frame with itself (the bare baseline of ``possim bench host``)."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.decoder = framing.decoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            frames = self.decoder.feed(data)
        except FramingError:
            self.transport.abort()
            return
        if frames:
            frame = self.framing.frame
            self.transport.write(b"".join(frame(f.payload, f.tpdu) for f in frames))


async def echo_server(host: str = "127.0.0.1", port: int = 0, framing: Framing | None = None) -> asyncio.AbstractServer:
    """A bare asyncio server echoing framed messages (for tests and as the bench baseline)."""
    framing = framing or Framing()
    return await asyncio.get_running_loop().create_server(lambda: _Echo(framing), host, port)
