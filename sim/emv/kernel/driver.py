"""A small in-process driver: a transaction, a card object and a host callable, looped to the end.

For tests, demos and the BDD steps: everything happens in one thread, immediately.
The DES, live and PC/SC drivers have their own loops over the same events.

The card is anything with the :class:`~sim.emv.card.VirtualCard` methods
(``power_on``, ``execute``, ``swipe``, ``remove``); a :class:`~sim.emv.errors.CardError`
it raises becomes the answer. The host is a callable ``Message -> Message`` that may
raise :class:`HostUnreachable` or :class:`HostTimeout`, or an object with
``handle(message, now)`` (:class:`~sim.core.host.Host`, :class:`~sim.core.issuer.Issuer`),
called with the transaction's time.

Examples
--------
See ``tests/test_kernel_scenarios.py``: ``run_transaction(txn, VirtualCard.from_label("healthy"), Host())``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from ...iso8583.message import Message
from ..errors import CardError
from .events import (
    Cancelled,
    Done,
    Event,
    HostTimeout,
    HostUnreachable,
    ManualEntry,
    NeedApdu,
    NeedCard,
    NeedManualEntry,
    NeedOnline,
    NeedPin,
    NeedSelection,
    PinBypassed,
    PinEntered,
    PinPadFailure,
    PowerOn,
    Presented,
    ReadStripe,
    ScanQr,
)
from .result import TransactionResult
from .transaction import Transaction

__all__ = ["PIN_BYPASS", "PIN_PAD_FAILURE", "run_transaction"]

PIN_BYPASS = "bypass"
"""Put in ``pins`` to have the cardholder skip PIN entry."""
PIN_PAD_FAILURE = "pinpad-failure"
"""Put in ``pins`` to have the PIN pad fail."""


def _host_call(host: Any, when: Any) -> Callable[[Message], Message]:
    if hasattr(host, "handle"):
        return lambda message: host.handle(message, when)
    return host


def run_transaction(
    txn: Transaction,
    card: Any,
    host: Any,
    *,
    present: Sequence[str] = (),
    pins: Iterable[str | None] = (),
    choose: int = 0,
    keyed: tuple[str, str] | None = None,
    qr: str | None = None,
    hook: Callable[[Event, Any], None] | None = None,
    trace: list | None = None,
) -> TransactionResult:
    """Run ``txn`` to :class:`Done` and return its result.

    Parameters
    ----------
    card : VirtualCard-like or None
        The card; ``None`` when only manual entry is used.
    host : callable or object with ``handle``
        The host (see the module docstring).
    present : sequence of str
        Interfaces the card is presented on, in order, one per card prompt
        (``("magstripe", "contact")``: swiped first, then inserted). When the list
        runs out, the first interface the terminal asks for is used.
    pins : iterable of str or None
        PINs typed at successive prompts; ``None`` or :data:`PIN_BYPASS` skips,
        :data:`PIN_PAD_FAILURE` fails the pad. When exhausted, the card's own PIN
        (``card.card.pin``) is typed.
    choose : int
        Index chosen when the cardholder is asked to pick an application.
    keyed : (pan, expiry), optional
        What is keyed on manual entry (default: the card's PAN and expiry).
    qr : str, optional
        The QR code text scanned for a QR wallet payment (default: the card's
        ``qr_code()``, the wallet holding that card).
    hook : callable, optional
        Called as ``hook(event, card)`` before each event is acted on: tests pull the
        card out (``card.remove()``) or break things at a chosen moment.
    trace : list, optional
        Every (event, answer) pair is appended to it.
    """
    call = _host_call(host, txn.when)
    presentations = list(present)
    typed = iter(pins)
    event = txn.next_event()
    while not isinstance(event, Done):
        if hook is not None:
            hook(event, card)
        answer = _answer(event, card, call, presentations, typed, choose, keyed, qr)
        if trace is not None:
            trace.append((event, answer))
        event = txn.send(answer)
    if trace is not None:
        trace.append((event, None))
    return event.result


def _answer(
    event: Event,
    card: Any,
    call: Callable[[Message], Message],
    presentations: list[str],
    typed: Any,
    choose: int,
    keyed: tuple[str, str] | None,
    qr: str | None = None,
) -> object:
    if isinstance(event, NeedApdu):  # most events of a chip transaction: asked first
        try:
            return card.execute(event.apdu)
        except CardError as exc:
            return exc
    if isinstance(event, NeedCard):
        if card is None and "manual" not in event.accept:
            return Cancelled("no card")
        interface = presentations.pop(0) if presentations else event.accept[0]
        return Presented(interface)  # type: ignore[arg-type]
    if isinstance(event, PowerOn):
        try:
            return card.power_on()
        except CardError as exc:
            return exc
    if isinstance(event, ReadStripe):
        try:
            return card.swipe()
        except CardError as exc:
            return exc
    if isinstance(event, ScanQr):
        if qr is not None:
            return qr
        shown = getattr(card, "qr_code", None)
        return shown() if shown is not None else Cancelled("no QR code shown")
    if isinstance(event, NeedManualEntry):
        if keyed is not None:
            return ManualEntry(*keyed)
        model = getattr(card, "card", None)
        if model is None:
            return Cancelled("nothing to key")
        return ManualEntry(model.pan, model.expiry)
    if isinstance(event, NeedSelection):
        return choose
    if isinstance(event, NeedPin):
        pin = next(typed, _DEFAULT)
        if pin is _DEFAULT:
            model = getattr(card, "card", None)
            pin = getattr(model, "pin", None)
        if pin is None or pin == PIN_BYPASS:
            return PinBypassed()
        if pin == PIN_PAD_FAILURE:
            return PinPadFailure()
        return PinEntered(pin)
    if isinstance(event, NeedOnline):
        try:
            return call(event.request)
        except (HostUnreachable, HostTimeout) as exc:
            return exc
    raise TypeError(f"unknown event {event!r}")  # pragma: no cover


_DEFAULT = object()
