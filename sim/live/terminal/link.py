"""The terminal's connection to its host: one ISO 8583 client, reopened with backoff.

A real terminal keeps one connection to its acquirer, notices when it is gone and
dials again, without hammering a host that is down: after a failed connect it waits
(``backoff``, doubling up to ``backoff_max``) before the next attempt, and a request
made meanwhile fails at once with :class:`~sim.emv.kernel.HostUnreachable` (nothing
was sent), so the kernel decides offline without waiting for a connect timeout.

Answers are paired with requests by :class:`sim.live.client.Client` (MTI class + DE41
+ DE11). An answer arriving after its request timed out is counted and dropped: by
then the terminal has reversed the request, and a late 0210 must change nothing
(REV-02). :attr:`HostLink.late` says how many were dropped.

On a dialect that MACs (SEC-01) the client signs every request with the link's
``mac_key`` and treats an answer whose MAC does not verify as no answer
(:class:`sim.live.client.MacFailure`, a ``HostTimeout``: the reversal is owed);
:attr:`HostLink.bad_mac` counts them. The key defaults to the TEST ONLY key the host
gives every terminal unless configured otherwise.
"""

from __future__ import annotations

import asyncio
import time

from ...emv.kernel import HostTimeout, HostUnreachable
from ...iso8583.dialect import DEFAULT, Dialect
from ...iso8583.framing import Framing
from ...iso8583.mac import TEST_MAC_KEY
from ...iso8583.message import Message
from ..client import Client, ClientError, NotConnected

__all__ = ["HostLink"]


class HostLink:
    """Requests to one host over a connection opened on demand and reopened with backoff.

    Parameters
    ----------
    host, port : str, int
        The host's address.
    response_timeout, connect_timeout : float
        Seconds (from the hardware profile unless overridden).
    backoff, backoff_max : float
        First and largest pause between connection attempts after a failure.
    mac_key : bytes or None
        The terminal's MAC key (16 bytes) on a dialect that MACs; ``None``: no MACs.
    """

    def __init__(self, host: str, port: int, *, dialect: Dialect = DEFAULT, framing: Framing | None = None,
                 response_timeout: float = 30.0, connect_timeout: float = 10.0, backoff: float = 0.2,
                 backoff_max: float = 5.0, mac_key: bytes | None = TEST_MAC_KEY) -> None:
        self.host, self.port = host, port
        self.mac_key = mac_key
        self.dialect, self.framing = dialect, framing or Framing()
        self.response_timeout, self.connect_timeout = response_timeout, connect_timeout
        self.backoff_first, self.backoff_max = backoff, backoff_max
        self._backoff = backoff
        self._retry_at = 0.0
        self._client: Client | None = None
        self._connecting = asyncio.Lock()
        self.connects = 0
        self._late_closed = 0
        self._bad_mac_closed = 0
        self.last_error: str | None = None
        self.last_answer_at: float | None = None

    @property
    def up(self) -> bool:
        """A connection is open now."""
        return self._client is not None and not self._client.closed

    @property
    def late(self) -> int:
        """Answers dropped because their request had timed out (REV-02)."""
        return self._late_closed + (self._client.late if self._client is not None else 0)

    @property
    def bad_mac(self) -> int:
        """Answers whose MAC did not verify, each treated as no answer."""
        return self._bad_mac_closed + (self._client.bad_mac if self._client is not None else 0)

    async def _connection(self) -> Client:
        if self.up:
            assert self._client is not None
            return self._client
        async with self._connecting:
            if self.up:
                assert self._client is not None
                return self._client
            if self._client is not None:
                self._late_closed += self._client.late
                self._bad_mac_closed += self._client.bad_mac
                self._client = None
            if time.monotonic() < self._retry_at:
                raise HostUnreachable(f"host {self.host}:{self.port} down ({self.last_error}); next try in "
                                      f"{self._retry_at - time.monotonic():.1f} s")
            try:
                self._client = await Client.connect(self.host, self.port, dialect=self.dialect, framing=self.framing,
                                                    timeout=self.response_timeout, connect_timeout=self.connect_timeout,
                                                    mac_key=self.mac_key)
            except NotConnected as exc:
                self.last_error = str(exc)
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self.backoff_max)
                raise HostUnreachable(str(exc)) from None
            self._backoff = self.backoff_first
            self.connects += 1
            return self._client

    async def connect(self) -> None:
        """Open the connection now if it is not open (:class:`HostUnreachable` if it cannot be)."""
        await self._connection()

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """Send ``message`` and return the host's answer.

        Raises :class:`HostUnreachable` when nothing was sent, :class:`HostTimeout` when
        it was sent and no answer came (in time, or before the connection closed).
        """
        client = await self._connection()
        try:
            answer = await client.request(message, timeout=self.response_timeout if timeout is None else timeout)
        except HostTimeout as exc:
            # The connection stays open after a plain timeout, so a late answer arrives and is
            # dropped by the client (REV-02); the keep-alive echo finds a host gone silent.
            self.last_error = str(exc)
            raise
        except HostUnreachable as exc:
            self.last_error = str(exc)
            raise
        except ClientError as exc:  # a key already in flight: a driver bug, said plainly
            raise HostUnreachable(f"not sent: {exc}") from None
        self.last_answer_at = time.monotonic()
        return answer

    def ready_now(self) -> bool:
        """True when a request now would try the wire (connected, or the backoff pause is over)."""
        return self.up or time.monotonic() >= self._retry_at

    async def drop(self) -> None:
        """Close the connection (the next request dials again)."""
        client, self._client = self._client, None
        if client is not None:
            self._late_closed += client.late
            self._bad_mac_closed += client.bad_mac
            await client.close()

    async def close(self) -> None:
        """Close for good (shutdown)."""
        await self.drop()
