"""The card side of vsmartcard's Virtual PCD reader: put a card into a real PC/SC stack.

pcscd loads vsmartcard's ``libifdvpcd`` driver, which listens on TCP port 35963
(``0x8C7B``) and treats whoever connects as the card in its reader. The wire is
small:

* every message, either way, is a 2-byte big-endian length followed by that many
  bytes (the length excludes itself);
* pcscd sends one-byte *control* messages: ``00`` power off, ``01`` power on,
  ``02`` reset, ``04`` "send me the ATR"; only ``04`` is answered (with the ATR);
* anything longer is a C-APDU, answered with one R-APDU (data + SW1 SW2).

The driver gives the card few ways to fail, so each card failure maps onto one:

* an empty answer leaves ``SCardTransmit`` waiting, so the bridge never sends one: a
  card that cannot answer a C-APDU (bug, no status word) gets ``6F00`` sent for it;
* a closed socket is how a card leaves the reader: a removed card closes it;
* a chip that gives no ATR (mute, unusable) stays in the reader with an ATR no reader
  accepts (:data:`MUTE_ATR`): ``SCardConnect`` fails as it does for a dead chip;
* a chip that goes mute in the middle of a command resets the connection (TCP RST):
  vpcd's transmit fails, ``SCardTransmit`` reports the failure, and the card is
  inserted again at once (it never left the reader).

pcscd asks for the ATR every few hundred milliseconds to see whether the card is
still there; the bridge answers those from the ATR of the last power-on rather than
powering the card again, which would reset it in the middle of a transaction.

The protocol core (:class:`FrameDecoder`, :class:`VpcdBridge`) does no I/O;
:func:`serve_card` is the thin blocking-socket driver around it.

Examples
--------
>>> encode_frame(b"\\x04")
b'\\x00\\x01\\x04'
>>> FrameDecoder().feed(b"\\x00\\x01\\x04\\x00")
[b'\\x04']
>>> class Card:
...     def power_on(self): return bytes.fromhex("3B0211")
...     def execute(self, apdu): return bytes.fromhex("9000")
>>> bridge = VpcdBridge(Card())
>>> bridge.receive_data(encode_frame(bytes([CTRL_ON])) + encode_frame(bytes([CTRL_ATR]))).data.hex()
'00033b0211'
>>> bridge.receive_data(encode_frame(bytes.fromhex("00A4040000"))).data.hex()
'00029000'
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Sequence

from ..emv.errors import CardError, CardMuteError, CardRemovedError

__all__ = [
    "CTRL_ATR",
    "CTRL_OFF",
    "CTRL_ON",
    "CTRL_RESET",
    "CardLike",
    "CloseReason",
    "FrameDecoder",
    "MAX_ATR_LENGTH",
    "MAX_PAYLOAD",
    "MUTE_ATR",
    "NO_PRECISE_DIAGNOSIS",
    "Output",
    "VPCD_HOST",
    "VPCD_PORT",
    "VpcdBridge",
    "VpcdConnectionError",
    "encode_frame",
    "main",
    "serve_card",
]

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 0x8C7B
"""35963: the port Debian's ``/etc/reader.conf.d/vpcd`` gives the first Virtual PCD reader."""

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

MAX_PAYLOAD = 0xFFFF
"""Largest message a 2-byte length can carry."""

MAX_ATR_LENGTH = 33
"""ISO 7816-3 caps an ATR at 33 bytes; pcscd's buffer is that size and refuses a longer one."""

MUTE_ATR = b"\x00"
"""What a chip without an ATR shows the reader: TS ``00`` is no convention, so pcscd
keeps the card present but refuses to connect to it (protocol mismatch)."""

NO_PRECISE_DIAGNOSIS = bytes.fromhex("6F00")
"""What the bridge answers when the card cannot: ISO 7816-4 "no precise diagnosis"."""

CloseReason = Literal["removed", "mute", "stopped"]
"""Why the bridge closed: the card left, the chip gave no answer, or the driver was told to stop."""


class VpcdConnectionError(ConnectionError):
    """No Virtual PCD reader to connect to (pcscd not running, vpcd not loaded, wrong port)."""


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its 2-byte big-endian length.

    Raises
    ------
    ValueError
        An empty payload (vpcd reads it as "no answer" and the reader hangs or drops
        the card) or one longer than 65535 bytes (the length would not fit).
    """
    if not payload:
        raise ValueError("vpcd frames are never empty: an empty answer stalls SCardTransmit")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a vpcd frame carries at most {MAX_PAYLOAD} bytes, got {len(payload)}")
    return len(payload).to_bytes(2, "big") + bytes(payload)


class FrameDecoder:
    """Reassemble length-prefixed messages from TCP chunks of any size.

    TCP may split a frame anywhere, or deliver several in one read; the decoder keeps
    the incomplete tail until the rest arrives. A zero-length frame decodes as ``b""``
    (vpcd never sends one; the bridge ignores it).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message now complete, in order."""
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                break
            messages.append(bytes(self._buffer[2 : 2 + length]))
            del self._buffer[: 2 + length]
        return messages

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buffer)


class CardLike(Protocol):
    """What the bridge needs of a card: the shape of :class:`sim.emv.card.VirtualCard`.

    ``power_on`` returns the ATR (a cold or warm reset, the card's state machine back
    to its start); ``execute`` answers one C-APDU. Either may raise
    :class:`~sim.emv.errors.CardRemovedError` or :class:`~sim.emv.errors.CardMuteError`.
    """

    def power_on(self) -> bytes: ...  # pragma: no cover - protocol

    def execute(self, apdu: bytes) -> bytes: ...  # pragma: no cover - protocol


@dataclass(frozen=True, slots=True)
class Output:
    """What the driver must do after feeding the bridge.

    Attributes
    ----------
    data : bytes
        Bytes to send to vpcd, already framed (empty: send nothing).
    close : bool
        Close the connection after sending ``data``: to vpcd, the card has left.
    reason : CloseReason or None
        Why the connection closes, when it does.
    delay : float
        Seconds to wait before sending ``data``: a slow card (a ``delay`` fault) is slow
        through the reader too.
    abort : bool
        With ``close``: reset the connection (TCP RST) instead of closing it, so vpcd's
        pending transmit fails, and connect again at once: the card is still there.
    """

    data: bytes = b""
    close: bool = False
    reason: CloseReason | None = None
    delay: float = 0.0
    abort: bool = False


class VpcdBridge:
    """The vpcd protocol as a state machine over one connection (one card insertion).

    Feed it what vpcd sent (:meth:`receive_data`, any chunking); it calls the card and
    returns the bytes to send back. It never raises on input and never produces an
    empty answer. After it closes, it answers nothing more: a new connection (a new
    insertion) needs a new bridge.

    Parameters
    ----------
    card : CardLike
        The card in the reader.
    """

    def __init__(self, card: CardLike) -> None:
        self.card = card
        self.powered = False
        self.mute = False
        self.atr: bytes | None = None
        self.close_reason: CloseReason | None = None
        self._decoder = FrameDecoder()

    @property
    def closed(self) -> bool:
        """True once the card has left this connection (removed, mute or stopped)."""
        return self.close_reason is not None

    def receive_data(self, data: bytes) -> Output:
        """Handle bytes received from vpcd; return everything to send in reply."""
        if self.closed:
            return Output(close=True, reason=self.close_reason)
        replies = bytearray()
        delay = 0.0
        for message in self._decoder.feed(data):
            out = self.handle(message)
            replies += out.data
            delay += out.delay
            if out.close:
                return Output(bytes(replies), True, out.reason, delay, out.abort)
        return Output(bytes(replies), delay=delay)

    def handle(self, message: bytes) -> Output:
        """Handle one complete message (without its length header)."""
        if self.closed:
            return Output(close=True, reason=self.close_reason)
        if not message:
            log.debug("ignoring an empty vpcd message")
            return Output()
        if len(message) == 1:
            return self._control(message[0])
        return self._apdu(message)

    def remove(self) -> Output:
        """The card leaves the reader (or the driver stops): close the connection."""
        return self._close("stopped")

    # -- internals ---------------------------------------------------------------------

    def _close(self, reason: CloseReason, abort: bool = False) -> Output:
        """Close once; a later close keeps the first reason (the card left only once)."""
        if self.close_reason is None:
            self.close_reason = reason
        self.powered = False
        return Output(close=True, reason=self.close_reason, abort=abort)

    def _control(self, code: int) -> Output:
        if code == CTRL_OFF:
            self.powered = False
            return Output()
        if code in (CTRL_ON, CTRL_RESET):
            return self._power_on()
        if code == CTRL_ATR:
            if self.atr is None:
                out = self._power_on()
                if out.close:
                    return out
            assert self.atr is not None
            return Output(encode_frame(self.atr), delay=self._card_delay())
        log.debug("ignoring unknown vpcd control byte %02X", code)
        return Output()

    def _power_on(self) -> Output:
        try:
            atr = bytes(self.card.power_on())
        except CardRemovedError:
            return self._close("removed")
        except CardMuteError:
            return self._go_mute()
        except Exception:  # a card that cannot produce an ATR is, to the reader, mute
            log.exception("card failed at power-on; showing it as a mute chip")
            return self._go_mute()
        if not 1 <= len(atr) <= MAX_ATR_LENGTH:
            log.error("card gave a %d-byte ATR; a reader accepts 1 to %d bytes", len(atr), MAX_ATR_LENGTH)
            return self._go_mute()
        self.atr = atr
        self.powered = True
        self.mute = False
        return Output(delay=self._card_delay())

    def _go_mute(self) -> Output:
        """No ATR: the card stays in the reader, unpowered, showing :data:`MUTE_ATR`."""
        self.atr = MUTE_ATR
        self.powered = False
        self.mute = True
        return Output()

    def _apdu(self, apdu: bytes) -> Output:
        if not self.powered:
            log.warning("C-APDU for an unpowered card; answering 6F00")
            return Output(encode_frame(NO_PRECISE_DIAGNOSIS))
        try:
            rapdu = bytes(self.card.execute(apdu))
        except CardRemovedError:
            return self._close("removed")
        except CardMuteError:
            return self._close("mute", abort=True)
        except CardError as exc:
            log.warning("card error %s; answering 6F00", type(exc).__name__)
            return Output(encode_frame(NO_PRECISE_DIAGNOSIS))
        except Exception:
            log.exception("card failed on a C-APDU; answering 6F00")
            return Output(encode_frame(NO_PRECISE_DIAGNOSIS))
        if not 2 <= len(rapdu) <= MAX_PAYLOAD:
            log.error("card gave a %d-byte R-APDU (no status word); answering 6F00", len(rapdu))
            return Output(encode_frame(NO_PRECISE_DIAGNOSIS))
        return Output(encode_frame(rapdu), delay=self._card_delay())

    def _card_delay(self) -> float:
        """The delay the card asked for on its last answer (``last_delay_ms``), in seconds."""
        value = getattr(self.card, "last_delay_ms", 0)
        try:
            return max(0.0, float(value) / 1000.0)
        except (TypeError, ValueError):
            return 0.0


# -- blocking-socket driver ---------------------------------------------------------------


def serve_card(
    card: CardLike,
    host: str = VPCD_HOST,
    port: int = VPCD_PORT,
    stop_event: threading.Event | None = None,
    *,
    connect_attempts: int = 50,
    retry_delay: float = 0.1,
    max_reconnects: int = 20,
    reinsert_after: float | None = None,
    poll_interval: float = 0.1,
    max_seconds: float | None = None,
    on_connect: Callable[[], None] | None = None,
) -> CloseReason:
    """Insert ``card`` into the Virtual PCD reader at ``host:port`` and serve it.

    Each TCP connection is one insertion with its own :class:`VpcdBridge`. When vpcd
    drops the connection (pcscd restarted) the card is inserted again, a bounded number
    of times. When the card is removed the connection closes, so vpcd sees the card
    go; the function returns then, unless ``reinsert_after`` asks for the card to come
    back. A chip that goes mute mid-command resets the connection and is inserted again
    at once (it never left the reader). Setting ``stop_event`` takes the card out and
    returns.

    Parameters
    ----------
    card : CardLike
        The card to put in the reader.
    host, port : str, int
        Where vpcd listens (inside pcscd's network namespace).
    stop_event : threading.Event, optional
        Set it to take the card out and return.
    connect_attempts : int
        Consecutive failed connects tolerated (pcscd may still be starting).
    retry_delay : float
        Seconds between connect attempts.
    max_reconnects : int
        Insertions after the first (vpcd dropping the connection, or reinsertions).
    reinsert_after : float, optional
        After the card was removed, wait this long and insert it again (a cardholder
        trying again); ``None`` returns instead.
    poll_interval : float
        Socket timeout: how quickly ``stop_event`` and ``max_seconds`` are noticed.
    max_seconds : float, optional
        Take the card out after this long (returns ``"stopped"``).
    on_connect : callable, optional
        Called after each successful connect (the card is in the reader).

    Returns
    -------
    CloseReason
        ``"removed"`` (the card said so) or ``"stopped"``.

    Raises
    ------
    VpcdConnectionError
        Nothing listens at ``host:port`` after ``connect_attempts`` tries, or the card
        went in more than ``max_reconnects + 1`` times.
    """
    stop = stop_event or threading.Event()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def expired() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    insertions = 0
    failures = 0
    while not expired():
        try:
            sock = socket.create_connection((host, port), timeout=max(poll_interval, 1.0))
        except OSError as exc:
            failures += 1
            if failures >= connect_attempts:
                raise VpcdConnectionError(
                    f"no Virtual PCD reader at {host}:{port} after {failures} attempts ({exc}); "
                    "is pcscd running with vsmartcard-vpcd in this network namespace?"
                ) from exc
            stop.wait(retry_delay)
            continue
        failures = 0
        insertions += 1
        if on_connect is not None:
            on_connect()
        with sock:
            reason = _serve_connection(sock, VpcdBridge(card), stop, poll_interval, deadline)
        if reason == "stopped" or (reason == "removed" and reinsert_after is None):
            return reason
        if insertions > max_reconnects:
            raise VpcdConnectionError(
                f"the card went into the reader at {host}:{port} {insertions} times; giving up"
            )
        if reason is None:
            log.info("vpcd closed the connection; inserting the card again")
        elif reason == "mute":
            log.info("chip went mute; connection reset, the card stays in the reader")
        else:
            log.info("card left the reader (%s); inserting it again in %.1f s", reason, reinsert_after)
            stop.wait(reinsert_after or 0.0)
    return "stopped"


def _serve_connection(
    sock: socket.socket,
    bridge: VpcdBridge,
    stop: threading.Event,
    poll_interval: float,
    deadline: float | None,
) -> CloseReason | None:
    """Serve one connection; ``None`` when vpcd closed it, else why the card left."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(poll_interval)
    while True:
        if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            _shutdown(sock)
            return bridge.remove().reason
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError as exc:
            log.info("vpcd connection failed: %s", exc)
            return None
        if not data:
            return None
        out = bridge.receive_data(data)
        if out.delay > 0:
            wait = out.delay if deadline is None else min(out.delay, max(0.0, deadline - time.monotonic()))
            if stop.wait(wait):
                _shutdown(sock)
                return bridge.remove().reason
        try:
            if out.data:
                sock.sendall(out.data)
        except OSError as exc:
            log.info("vpcd connection failed while answering: %s", exc)
            return None
        if out.close:
            if out.abort:
                _reset(sock)
            else:
                _shutdown(sock)
            return out.reason


def _shutdown(sock: socket.socket) -> None:
    """Close both directions now, so vpcd's next read sees the card gone."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Make the coming close send a TCP RST: vpcd's read fails instead of reading "removed"."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


# -- command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.pcsc.vpcd --card healthy``: serve a virtual card until stopped.

    Prints one JSON line per event on stdout (``serving``, ``inserted``, ``closed``) so
    a supervising process can wait for the card to be in the reader. SIGTERM or SIGINT
    takes the card out (vpcd sees a removal) and exits 0.
    """
    parser = argparse.ArgumentParser(prog="python -m sim.pcsc.vpcd", description=main.__doc__)
    parser.add_argument("--card", default="healthy", help="virtual card label (sim.emv.card.VirtualCard.from_label)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='extra card fault as JSON, e.g. \'{"target": "GENERATE AC", "effect": "remove"}\' (repeatable)',
    )
    parser.add_argument("--host", default=VPCD_HOST)
    parser.add_argument("--port", type=int, default=VPCD_PORT)
    parser.add_argument("--connect-attempts", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="take the card out after this long")
    parser.add_argument(
        "--reinsert-after", type=float, default=None, help="insert the card again this long after it was removed"
    )
    args = parser.parse_args(argv)

    from ..emv.card import VirtualCard  # the card is only needed when serving one

    try:
        faults = [json.loads(text) for text in args.fault]
        card = VirtualCard.from_label(args.card, faults=faults)
    except (ValueError, KeyError) as exc:
        parser.error(f"cannot make card {args.card!r}: {exc}")
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def emit(event: str, **fields: object) -> None:
        print(json.dumps({"event": event, **fields}), flush=True)

    emit("serving", card=args.card, host=args.host, port=args.port)
    try:
        reason = serve_card(
            card,
            args.host,
            args.port,
            stop,
            connect_attempts=args.connect_attempts,
            max_seconds=args.max_seconds,
            reinsert_after=args.reinsert_after,
            on_connect=lambda: emit("inserted"),
        )
    except VpcdConnectionError as exc:
        emit("error", message=str(exc))
        return 2
    emit("closed", reason=reason)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main())
