"""What the kernel asks of its driver, and the answers the driver gives back.

The kernel never touches a reader, a PIN pad or a network. It stops at each point
where the outside world must act and hands the driver an *event*; the driver acts
and sends back an *answer* with :meth:`~sim.emv.kernel.transaction.Transaction.send`:

=========================  ==============================================================
event                      answer
=========================  ==============================================================
:class:`NeedCard`          :class:`Presented` (the interface the card came in on) or
                           :class:`Cancelled`
:class:`PowerOn`           the ATR (``bytes``), or a :class:`~sim.emv.errors.CardError`
                           (mute chip, card pulled out)
:class:`NeedApdu`          the R-APDU (data + SW1 SW2, ``bytes``), or a ``CardError``
                           (``CardRemovedError``, ``CardMuteError``)
:class:`ReadStripe`        track 2 (``str``, PAN ``D``/``=`` YYMM service code ...), or
                           a ``CardError`` (``MagstripeError``: unreadable)
:class:`NeedManualEntry`   :class:`ManualEntry` (PAN and YYMM keyed), or :class:`Cancelled`
:class:`ScanQr`            the QR code text the scanner read (``str``) or :class:`Cancelled`
:class:`NeedSelection`     the index of the application chosen (``int``) or :class:`Cancelled`
:class:`NeedPin`           :class:`PinEntered`, :class:`PinBypassed` or :class:`PinPadFailure`
:class:`NeedOnline`        the host's response :class:`~sim.iso8583.message.Message`, or
                           :class:`HostUnreachable` (nothing sent) / :class:`HostTimeout`
                           (sent, no answer): an instance or the class
:class:`Done`              nothing: the transaction is over
=========================  ==============================================================

Every event and answer is a frozen dataclass, so a driver can log, compare and
replay them. Events that carry card data never show it in their ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ...iso8583.message import Message
from ..errors import CardError

if TYPE_CHECKING:  # pragma: no cover
    from .result import TransactionResult

__all__ = [
    "Cancelled",
    "Done",
    "Event",
    "HostTimeout",
    "HostUnreachable",
    "KernelUsageError",
    "ANSWERS",
    "check_answer",
    "INTERFACES",
    "Interface",
    "ManualEntry",
    "NeedApdu",
    "NeedCard",
    "NeedManualEntry",
    "NeedOnline",
    "NeedPin",
    "NeedSelection",
    "PinBypassed",
    "PinEntered",
    "PinPadFailure",
    "PowerOn",
    "Presented",
    "ReadStripe",
    "ScanQr",
]

Interface = Literal["contact", "contactless", "magstripe", "manual", "qr"]
"""How a card reaches the terminal (``qr``: a wallet's consumer-presented QR code, asked by :class:`ScanQr`)."""

INTERFACES: tuple[str, ...] = ("contact", "contactless", "magstripe", "manual")


# Events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedCard:
    """Ask for a card on one of ``accept`` interfaces; ``prompt`` is what the display shows."""

    accept: tuple[Interface, ...]
    prompt: str


@dataclass(frozen=True, slots=True)
class PowerOn:
    """Power the chip on ``interface`` (contact or contactless) and return its ATR."""

    interface: Interface


@dataclass(frozen=True, slots=True)
class NeedApdu:
    """Send ``apdu`` to the card and return the R-APDU; ``purpose`` names the step for logs."""

    apdu: bytes
    purpose: str = ""

    @property
    def ins(self) -> int:
        """The instruction byte (``0xAE`` GENERATE AC, ``0xA4`` SELECT, ...)."""
        return self.apdu[1]

    def __repr__(self) -> str:
        # VERIFY carries a plaintext PIN block: never shown.
        shown = self.apdu[:5].hex().upper() + "..." if self.apdu[1] == 0x20 else self.apdu.hex().upper()
        return f"NeedApdu({shown}, {self.purpose!r})"


@dataclass(frozen=True, slots=True)
class ReadStripe:
    """Read the magnetic stripe just swiped; return track 2."""


@dataclass(frozen=True, slots=True)
class ScanQr:
    """Scan the QR code the cardholder's wallet shows (a QR wallet payment, OFF-09); return its text."""

    prompt: str = "scan the wallet's QR code"


@dataclass(frozen=True, slots=True)
class NeedManualEntry:
    """Key the card number and expiry date (YYMM)."""

    prompt: str = "key card number and expiry"


@dataclass(frozen=True, slots=True)
class NeedSelection:
    """The cardholder picks (or, with one option, confirms) an application."""

    options: tuple[str, ...]
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class NeedPin:
    """Ask the cardholder for a PIN.

    ``kind`` is ``"offline"`` (the card checks it: VERIFY) or ``"online"`` (the issuer
    does: an ISO 9564 format 0 PIN block in DE52). ``tries_left`` is the card's PIN
    try counter when known (offline PIN only). ``amount`` and ``currency`` are shown
    on the PIN pad.
    """

    kind: Literal["offline", "online"]
    amount: int
    currency: str
    tries_left: int | None = None


@dataclass(frozen=True, slots=True)
class NeedOnline:
    """Send ``request`` to the host and return its response (or say it could not be had)."""

    request: Message

    def __repr__(self) -> str:
        return f"NeedOnline({self.request!r})"


@dataclass(frozen=True, slots=True)
class Done:
    """The transaction is over; ``result`` says how."""

    result: "TransactionResult"


Event = (
    NeedCard | PowerOn | NeedApdu | ReadStripe | ScanQr | NeedManualEntry | NeedSelection | NeedPin | NeedOnline | Done
)
"""Anything :meth:`Transaction.next_event` returns."""


# Answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presented:
    """A card came in on ``interface`` (inserted, tapped, swiped, or about to be keyed)."""

    interface: Interface


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The cardholder or the merchant cancelled (or no card came in time)."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class ManualEntry:
    """A keyed card number and expiry date (YYMM). The ``repr`` masks the PAN."""

    pan: str
    expiry: str = field(repr=False)

    def __repr__(self) -> str:
        from ...iso8583.pretty import mask_pan

        return f"ManualEntry({mask_pan(self.pan)})"


@dataclass(frozen=True, slots=True)
class PinEntered:
    """The PIN the cardholder typed. Never shown in a ``repr``; never kept after use."""

    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PinBypassed:
    """The cardholder (or merchant) chose not to enter a PIN (TVR 3:08)."""


@dataclass(frozen=True, slots=True)
class PinPadFailure:
    """The PIN pad is missing or broken (TVR 3:10)."""


class HostUnreachable(Exception):
    """No connection to the host: the request was never delivered (no reversal owed)."""


class HostTimeout(Exception):
    """The request went out but no answer came in time: a reversal of it is owed (REV-01)."""


class KernelUsageError(RuntimeError):
    """The driver broke the protocol: an answer of the wrong type, or a send after :class:`Done`."""


ANSWERS: dict[type, tuple[type, ...]] = {
    # event -> the answer types it takes (the module table, as data)
    NeedCard: (Presented, Cancelled),
    PowerOn: (bytes, bytearray, CardError),
    NeedApdu: (bytes, bytearray, CardError),
    ReadStripe: (str, CardError),
    ScanQr: (str, Cancelled),
    NeedManualEntry: (ManualEntry, Cancelled),
    NeedSelection: (int, Cancelled),
    NeedPin: (PinEntered, PinBypassed, PinPadFailure),
    NeedOnline: (Message, HostUnreachable, HostTimeout),
}


def check_answer(event: Event, answer: object) -> None:
    """Refuse an answer the event does not take (:class:`KernelUsageError`): a driver bug, said early."""
    allowed = ANSWERS[type(event)]
    kind = type(answer)
    if kind in allowed and kind is not Presented:
        return  # the usual answer, of exactly a listed type (bytes to NeedApdu): nothing more to check
    if isinstance(event, NeedOnline) and answer in (HostUnreachable, HostTimeout):
        return
    if isinstance(answer, bool) or not isinstance(answer, allowed):
        names = ", ".join(t.__name__ for t in allowed)
        raise KernelUsageError(f"{type(event).__name__} takes {names}; got {type(answer).__name__}")
    if isinstance(answer, Presented) and answer.interface not in INTERFACES:
        raise KernelUsageError(f"unknown interface {answer.interface!r}; allowed: {', '.join(INTERFACES)}")
