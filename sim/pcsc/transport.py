"""A card in a PC/SC reader, with the same shape as the in-process virtual card.

:class:`PcscTransport` has ``power_on() -> ATR`` and ``execute(C-APDU) -> R-APDU``
and raises the same :mod:`sim.emv.errors` exceptions as
:class:`sim.emv.card.VirtualCard`, so the kernel's driver answers ``PowerOn`` and
``NeedApdu`` events from a reader exactly as from the in-process card. The reader may
be vsmartcard's Virtual PCD (the virtual card behind pcscd, see :mod:`sim.pcsc.vpcd`)
or a physical reader holding a physical test card (``--reader NAME``).

By default R-APDUs come back raw: the kernel itself handles ``61xx`` (GET RESPONSE)
and ``6Cxx`` (resend with Le), as EMV Book 1 has the terminal do under T=0. Callers
that want the whole answer in one go pass ``follow_t0=True`` (see :func:`follow_t0`).

PC/SC failures become:

* :class:`~sim.emv.errors.CardRemovedError`: no card in the reader, card removed or
  reset by someone else;
* :class:`~sim.emv.errors.CardMuteError`: the card is there but does not answer
  (unresponsive, unsupported ATR, a transmit that came back with nothing);
* :class:`ReaderNotFoundError` / :class:`PcscError`: no such reader, pcscd not running;
  the message names the reader and lists the readers available.

pyscard is imported on first use, so importing this module needs no PC/SC library.

Examples
--------
>>> choose_reader(["Virtual PCD 00 00", "Virtual PCD 00 01"], None)
'Virtual PCD 00 00'
>>> choose_reader(["ACS ACR39U ICC Reader 00 00", "Virtual PCD 00 00"], "ACR39U")
'ACS ACR39U ICC Reader 00 00'
>>> answers = {"80A8000002830000": bytes.fromhex("6114"), "00C0000014": bytes(20) + b"\\x90\\x00"}
>>> len(follow_t0(lambda apdu: answers[apdu.hex().upper()], bytes.fromhex("80A8000002830000")))
22
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from types import ModuleType
from typing import Any, Callable, Sequence, TextIO

from ..emv.apdu import ApduError, build, parse
from ..emv.errors import CardError, CardMuteError, CardNotPoweredError, CardRemovedError

__all__ = [
    "PcscError",
    "PcscTransport",
    "ReaderNotFoundError",
    "VIRTUAL_READER_HINTS",
    "choose_reader",
    "follow_t0",
    "list_readers",
    "main",
]

VIRTUAL_READER_HINTS = ("Virtual PCD", "vpcd")
"""Substrings that mark vsmartcard's reader; chosen first when no reader is named."""

T0_LIMIT = 32
"""Most 61xx/6Cxx rounds :func:`follow_t0` follows: 32 x 256 bytes is far above any EMV answer."""


class PcscError(RuntimeError):
    """The PC/SC stack itself failed: pcscd not running, a reader gone, an unexpected code."""


class ReaderNotFoundError(PcscError):
    """No reader matches the name asked for (or no reader at all)."""


# -- pure helpers ---------------------------------------------------------------------------


def choose_reader(readers: Sequence[str], wanted: str | None) -> str:
    """Pick the reader to use from the names pcscd reports.

    ``wanted`` matches exactly, else as a case-insensitive substring if only one reader
    has it (reader names end in slot numbers users do not type). With no name, the first
    Virtual PCD reader, else the only reader.

    Raises
    ------
    ReaderNotFoundError
        Nothing (or more than one reader) matches; the message lists the readers.
    """
    available = ", ".join(repr(r) for r in readers) or "none"
    if wanted is None:
        virtual = [r for r in readers if any(h.lower() in r.lower() for h in VIRTUAL_READER_HINTS)]
        if virtual:
            return virtual[0]
        if len(readers) == 1:
            return readers[0]
        raise ReaderNotFoundError(
            f"no Virtual PCD reader and no reader named; readers available: {available}"
            + ("" if readers else " (is pcscd running, with vsmartcard-vpcd or a reader plugged in?)")
        )
    if wanted in readers:
        return wanted
    matches = [r for r in readers if wanted.lower() in r.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ReaderNotFoundError(f"reader name {wanted!r} is ambiguous; readers available: {available}")
    raise ReaderNotFoundError(f"no reader named {wanted!r}; readers available: {available}")


def follow_t0(send: Callable[[bytes], bytes], apdu: bytes, limit: int = T0_LIMIT) -> bytes:
    """Send ``apdu`` and follow T=0 procedure bytes to the complete R-APDU.

    ``61xx``: more data waits, fetched with GET RESPONSE (``00 C0 00 00 xx``) and
    appended. ``6Cxx``: wrong Le, the command is sent again with ``Le = xx``.

    Raises
    ------
    PcscError
        The card kept answering 61xx/6Cxx ``limit`` times.
    """
    data = b""
    command = bytes(apdu)
    rapdu = send(command)
    for _ in range(limit):
        if len(rapdu) < 2:
            return data + rapdu
        sw1, sw2 = rapdu[-2], rapdu[-1]
        if sw1 == 0x61:
            data += rapdu[:-2]
            rapdu = send(build(0x00, 0xC0, 0x00, 0x00, le=sw2 or 256))
        elif sw1 == 0x6C:
            try:
                cmd = parse(command)
            except ApduError:
                return data + rapdu
            command = build(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, le=sw2 or 256)
            rapdu = send(command)
        else:
            return data + rapdu
    raise PcscError(f"card answered 61xx/6Cxx {limit} times in a row to {bytes(apdu)[:4].hex().upper()}...")


# -- pyscard ----------------------------------------------------------------------------------


def _scard() -> ModuleType:
    """pyscard's low-level module (imported late: it loads libpcsclite)."""
    try:
        from smartcard import scard
    except ImportError as exc:  # pragma: no cover - pyscard is a dependency
        raise PcscError(f"pyscard is not usable ({exc}); install pyscard and libpcsclite") from exc
    return scard


def _code(hresult: int) -> int:
    """PC/SC return codes as unsigned 32-bit numbers (pyscard gives either sign)."""
    return hresult & 0xFFFFFFFF


def _message(scard: ModuleType, hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).strip()} (0x{_code(hresult):08X})"


def _codes(scard: ModuleType, *names: str) -> set[int]:
    return {_code(getattr(scard, name)) for name in names if hasattr(scard, name)}


def list_readers() -> list[str]:
    """The readers pcscd knows about now (empty when there are none).

    Raises
    ------
    PcscError
        pcscd is not running or not reachable.
    """
    scard = _scard()
    context = _establish(scard)
    try:
        return _readers(scard, context)
    finally:
        scard.SCardReleaseContext(context)


def _establish(scard: ModuleType) -> Any:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscError(f"cannot reach pcscd: {_message(scard, hresult)}; is pcscd running?")
    return context


def _readers(scard: ModuleType, context: Any) -> list[str]:
    hresult, readers = scard.SCardListReaders(context, [])
    if _code(hresult) in _codes(scard, "SCARD_E_NO_READERS_AVAILABLE"):
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscError(f"cannot list readers: {_message(scard, hresult)}")
    return list(readers)


class PcscTransport:
    """A card in a PC/SC reader, driven like :class:`sim.emv.card.VirtualCard`.

    Parameters
    ----------
    reader : str, optional
        Reader name (exact, or a unique substring). ``None``: the first Virtual PCD
        reader, else the only reader. Resolved at :meth:`power_on`, so the reader may
        appear after the transport is made.
    follow_t0 : bool
        Fetch ``61xx`` data and resend on ``6Cxx`` inside :meth:`execute`. Off by
        default: the kernel handles T=0 procedure bytes itself.
    removal_grace : float
        Seconds to wait, after a transmit failed, for pcscd to notice whether the card
        left (removed) or stayed (mute). vpcd is polled about every 0.4 s.
    """

    def __init__(self, reader: str | None = None, *, follow_t0: bool = False, removal_grace: float = 1.0) -> None:
        self.wanted = reader
        self.follow_t0 = follow_t0
        self.removal_grace = removal_grace
        self.reader: str | None = None
        self._scard = _scard()
        self._context: Any = None
        self._card: Any = None
        self._protocol: int = 0
        self._atr: bytes | None = None

    # -- context management ------------------------------------------------------------------

    def __enter__(self) -> "PcscTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the card as it is, let go of the reader and of pcscd."""
        scard = self._scard
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            self._card = None
        if self._context is not None:
            scard.SCardReleaseContext(self._context)
            self._context = None

    def readers(self) -> list[str]:
        """The readers pcscd reports now."""
        return _readers(self._scard, self._ensure_context())

    # -- the card interface ---------------------------------------------------------------

    def power_on(self) -> bytes:
        """Connect to the card (first time) or reset it (later); return its ATR.

        Raises
        ------
        CardRemovedError
            No card in the reader.
        CardMuteError
            A card is there but gives no usable ATR.
        ReaderNotFoundError, PcscError
            No such reader; pcscd unreachable.
        """
        scard = self._scard
        if self._card is not None:
            hresult, protocol = scard.SCardReconnect(
                self._card, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
                scard.SCARD_RESET_CARD,
            )
            if hresult == scard.SCARD_S_SUCCESS:
                self._protocol = protocol
                return self._read_atr()
            # The card was swapped or pulled since the last session: start afresh.
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            self._card = None
        reader = self._resolve_reader()
        hresult, card, protocol = scard.SCardConnect(
            self._ensure_context(), reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._card_error(hresult, "connecting to the card")
        self._card, self._protocol = card, protocol
        return self._read_atr()

    def atr(self) -> bytes:
        """The ATR of the last :meth:`power_on`.

        Raises
        ------
        CardNotPoweredError
            No successful :meth:`power_on` yet (or the card left since).
        """
        if self._atr is None:
            raise CardNotPoweredError(f"no card connected in reader {self._reader_label()}: call power_on() first")
        return self._atr

    def execute(self, apdu: bytes) -> bytes:
        """Send one C-APDU; return the R-APDU (data + SW1 SW2), never empty.

        Raises
        ------
        CardRemovedError
            The card left the reader.
        CardMuteError
            The card stayed but did not answer.
        CardNotPoweredError
            No successful :meth:`power_on` yet (as with the in-process card).
        PcscError
            pcscd failed.
        """
        if self.follow_t0:
            return follow_t0(self._transmit, apdu)
        return self._transmit(apdu)

    transmit = execute
    """Alias: the name PC/SC and pyscard use."""

    # -- presence ------------------------------------------------------------------------------

    def card_present(self) -> bool:
        """Whether the reader reports a card now."""
        return bool(self._state(0) & self._scard.SCARD_STATE_PRESENT)

    def wait_for_card(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a card in the reader; True when one is there."""
        return self._wait(timeout, want_present=True)

    def wait_for_removal(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the reader to be empty; True when it is."""
        return self._wait(timeout, want_present=False)

    # -- internals ---------------------------------------------------------------------------

    def _ensure_context(self) -> Any:
        if self._context is None:
            self._context = _establish(self._scard)
        return self._context

    def _resolve_reader(self) -> str:
        if self.reader is None:
            self.reader = choose_reader(self.readers(), self.wanted)
        return self.reader

    def _reader_label(self) -> str:
        return repr(self.reader or self.wanted or "(first Virtual PCD)")

    def _read_atr(self) -> bytes:
        scard = self._scard
        hresult, _name, _state, _protocol, atr = scard.SCardStatus(self._card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._card_error(hresult, "reading the ATR")
        self._atr = bytes(atr)
        if not self._atr:
            raise CardMuteError(f"card in reader {self._reader_label()} gave no ATR")
        return self._atr

    def _transmit(self, apdu: bytes) -> bytes:
        scard = self._scard
        if self._card is None:
            raise CardNotPoweredError(f"no card connected in reader {self._reader_label()}: call power_on() first")
        pci = scard.SCARD_PCI_T1 if self._protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
        hresult, response = scard.SCardTransmit(self._card, pci, list(bytes(apdu)))
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._card_error(hresult, f"sending {bytes(apdu)[:4].hex().upper()}")
        rapdu = bytes(response)
        if len(rapdu) < 2:
            raise self._gone_or_mute(f"the card answered {bytes(apdu)[:4].hex().upper()} with no status word")
        return rapdu

    def _card_error(self, hresult: int, doing: str) -> Exception:
        """Translate a PC/SC code into what the kernel understands."""
        scard = self._scard
        code = _code(hresult)
        where = f"reader {self._reader_label()}"
        text = f"{doing} in {where}: {_message(scard, hresult)}"
        if code in _codes(scard, "SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_RESET_CARD"):
            return CardRemovedError(text)
        if code in _codes(scard, "SCARD_W_UNRESPONSIVE_CARD", "SCARD_W_UNPOWERED_CARD", "SCARD_W_UNSUPPORTED_CARD",
                          "SCARD_E_PROTO_MISMATCH", "SCARD_E_CARD_UNSUPPORTED"):
            return CardMuteError(text)
        if code in _codes(scard, "SCARD_E_NOT_TRANSACTED", "SCARD_F_COMM_ERROR", "SCARD_E_TIMEOUT"):
            return self._gone_or_mute(text)
        if code in _codes(scard, "SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED"):
            return PcscError(f"{text}; is pcscd running?")
        if code in _codes(scard, "SCARD_E_UNKNOWN_READER", "SCARD_E_READER_UNAVAILABLE"):
            try:
                available = ", ".join(repr(r) for r in self.readers()) or "none"
            except PcscError:
                available = "unknown"
            return ReaderNotFoundError(f"{text}; readers available: {available}")
        return PcscError(text)

    def _gone_or_mute(self, text: str) -> CardError:
        """A transmit failed: removed if the reader empties within the grace time, else mute."""
        try:
            gone = self.wait_for_removal(self.removal_grace)
        except PcscError:
            gone = False
        if gone:
            self._forget_card()
            return CardRemovedError(f"{text}; the card left the reader")
        return CardMuteError(f"{text}; the card is in the reader but did not answer")

    def _forget_card(self) -> None:
        if self._card is not None:
            self._scard.SCardDisconnect(self._card, self._scard.SCARD_LEAVE_CARD)
            self._card = None
        self._atr = None

    def _state(self, timeout_ms: int, current: int | None = None) -> int:
        scard = self._scard
        reader = self._resolve_reader()
        state = scard.SCARD_STATE_UNAWARE if current is None else current
        hresult, states = scard.SCardGetStatusChange(self._ensure_context(), timeout_ms, [(reader, state)])
        if _code(hresult) in _codes(scard, "SCARD_E_TIMEOUT"):
            return current if current is not None else 0
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._card_error(hresult, "reading the reader state")
        return int(states[0][1])

    def _wait(self, timeout: float, want_present: bool) -> bool:
        scard = self._scard
        deadline = time.monotonic() + max(0.0, timeout)
        state = self._state(0)
        while True:
            present = bool(state & scard.SCARD_STATE_PRESENT) and not state & scard.SCARD_STATE_EMPTY
            if present == want_present:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            state = self._state(max(1, int(left * 1000)), state & ~scard.SCARD_STATE_CHANGED)


# -- command line -----------------------------------------------------------------------------


def _session(transport: PcscTransport, lines: TextIO, out: TextIO, max_lines: int = 10_000) -> int:
    """Answer one command per input line with one JSON line (see :func:`main`)."""

    def reply(**fields: object) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    for count, line in enumerate(lines):
        if count >= max_lines:
            break
        verb, _, arg = line.strip().partition(" ")
        try:
            if verb == "quit":
                reply(ok=True)
                break
            if verb == "readers":
                reply(ok=True, readers=transport.readers())
            elif verb == "wait-card":
                reply(ok=True, present=transport.wait_for_card(float(arg or 5)))
            elif verb == "wait-removal":
                reply(ok=True, removed=transport.wait_for_removal(float(arg or 5)))
            elif verb == "power-on":
                atr = transport.power_on()
                reply(ok=True, atr=atr.hex().upper(), reader=transport.reader)
            elif verb == "transmit":
                reply(ok=True, rapdu=transport.execute(bytes.fromhex(arg)).hex().upper())
            elif verb:
                reply(ok=False, error="UsageError", message=f"unknown command {verb!r}")
        except (CardError, PcscError, ValueError) as exc:
            reply(ok=False, error=type(exc).__name__, message=str(exc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.pcsc.transport``: talk to a card through PC/SC.

    ``readers`` prints the reader names as JSON. ``send HEX...`` powers the card on and
    sends each C-APDU, printing the ATR and R-APDUs as JSON. ``session`` reads commands
    from stdin, one per line (``readers``, ``wait-card S``, ``wait-removal S``,
    ``power-on``, ``transmit HEX``, ``quit``), and answers each with one JSON line:
    what a test or a script drives a reader with, from inside pcscd's namespace.
    """
    parser = argparse.ArgumentParser(prog="python -m sim.pcsc.transport", description=main.__doc__)
    parser.add_argument("--reader", default=None, help="reader name or unique part of it (default: Virtual PCD)")
    parser.add_argument("--follow-t0", action="store_true", help="fetch 61xx data and resend on 6Cxx")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("readers")
    send = sub.add_parser("send")
    send.add_argument("apdus", nargs="+", help="C-APDUs in hex")
    send.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a card first")
    sub.add_parser("session")
    args = parser.parse_args(argv)

    try:
        if args.command == "readers":
            print(json.dumps(list_readers()))
            return 0
        with PcscTransport(args.reader, follow_t0=args.follow_t0) as transport:
            if args.command == "session":
                return _session(transport, sys.stdin, sys.stdout)
            transport.wait_for_card(args.wait)
            atr = transport.power_on()
            rapdus = [transport.execute(bytes.fromhex(h)).hex().upper() for h in args.apdus]
            print(json.dumps({"reader": transport.reader, "atr": atr.hex().upper(), "rapdus": rapdus}))
            return 0
    except (CardError, PcscError, ValueError) as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return 1


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main())
