"""Cardholder verification as the terminal performs it (EMV Book 3 section 10.5).

The rules of the CVM list (which rule applies, what a failure leads to) are
:mod:`sim.emv.cvm`; this module performs the methods it picks:

* plaintext offline PIN: GET DATA 9F17 first (a counter at 0 means 3:20 without
  asking), then PIN prompts and VERIFY until the card says right, or the tries run
  out (63C0, 6983: 3:20);
* online PIN: a PIN prompt, then an ISO 9564 format 0 block under the zone PIN key
  (:func:`sim.core.crypto.encrypt_pin_block`) for DE52, and 3:04;
* signature: done, judged later by the merchant; no CVM: done.

A bypassed PIN sets 3:08 and a failed PIN pad 3:10; both fail the rule. On the
contactless interface a transaction at or under the CVM limit needs no CVM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Mapping

from ...core.crypto import CryptoError, encrypt_pin_block
from .. import cvm as rules
from .. import tlv
from . import commands
from .commands import Response
from .config import TerminalConfig
from .events import NeedPin, PinBypassed, PinPadFailure

__all__ = ["Verification", "get_data_int", "verify_cardholder"]

Exchange = Callable[[bytes, str], Generator[Any, Any, Response]]


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of cardholder verification.

    ``pin_block`` is DE52 for the request when online PIN was the method; it is
    never kept beyond that request. ``performed`` sets the TSI bit.
    """

    results: rules.CvmResults
    tvr_bits: tuple[str, ...] = ()
    signature_required: bool = False
    pin_block: str | None = None
    performed: bool = False

    def __repr__(self) -> str:
        return f"Verification({self.results.hex()}, {self.tvr_bits}, pin_block={'<set>' if self.pin_block else None})"


def get_data_int(tag: str, exchange: Exchange) -> Generator[Any, Any, int | None]:
    """GET DATA for a counter (9F17, 9F36, 9F13); ``None`` when the card does not return it."""
    response = yield from exchange(commands.get_data(tag), f"GET DATA {tag}")
    if not response.ok:
        return None
    try:
        value = tlv.decode_view(response.data).get(tag)
    except tlv.TlvError:
        return None
    return int.from_bytes(value, "big") if isinstance(value, bytes) and value else None


def verify_cardholder(
    *,
    card: Mapping[str, Any],
    aip: bytes,
    interface: str | None,
    amount: int,
    currency: str,
    transaction_type: str,
    pan: str,
    config: TerminalConfig,
    exchange: Exchange,
) -> Generator[Any, Any, Verification]:
    """Walk the card's CVM list, performing each method it picks; returns the :class:`Verification`."""
    if interface == "contactless":
        limit = config.contactless_cvm_limits.get(currency)
        if limit is not None and amount <= limit:
            return Verification(rules.CvmResults(rules.CvmCode.NO_CVM, 0x00, rules.CvmResult.SUCCESSFUL))
    if not aip[0] & 0x10:
        return Verification(rules.CvmResults.not_performed())
    raw = card.get("8E")
    try:
        cvm_list = rules.CvmList.parse(raw) if isinstance(raw, bytes) else None
    except rules.CvmError:
        cvm_list = None
    if cvm_list is None:
        return Verification(rules.CvmResults.not_performed(), ("icc_data_missing",))
    app_currency = card.get("9F42")
    ctx = rules.CvmContext(
        amount=amount,
        currency=currency,
        application_currency=app_currency.hex()[-3:] if isinstance(app_currency, bytes) else None,
        transaction_type=transaction_type,
        unattended=config.unattended,
        supported=rules.capability_codes(config.capabilities),
        pin_pad_working=config.pin_pad,
    )
    bits: list[str] = []
    pin_block: str | None = None
    walk = rules.process(cvm_list, ctx)
    try:
        rule = next(walk)
        while True:
            attempt, more_bits, block = yield from _perform(rule, amount, currency, pan, exchange)
            bits.extend(more_bits)
            pin_block = block or pin_block
            rule = walk.send(attempt)
    except StopIteration as stop:
        decision: rules.CvmDecision = stop.value
    return Verification(
        decision.results,
        tuple(bits) + decision.tvr_bits,
        decision.signature_required,
        pin_block if decision.online_pin else None,
        performed=True,
    )


def _perform(
    rule: rules.CvmRule, amount: int, currency: str, pan: str, exchange: Exchange
) -> Generator[Any, Any, tuple[rules.Attempt, tuple[str, ...], str | None]]:
    method = rule.method
    Attempt = rules.Attempt
    if method in (rules.CvmCode.PLAINTEXT_PIN_ICC, rules.CvmCode.PLAINTEXT_PIN_ICC_AND_SIGNATURE):
        attempt, bits = yield from _offline_pin(amount, currency, exchange)
        return attempt, bits, None
    if method is rules.CvmCode.ENCIPHERED_PIN_ONLINE:
        answer = yield NeedPin("online", amount, currency)
        if isinstance(answer, PinBypassed):
            return Attempt.FAILED, ("pin_not_entered",), None
        if isinstance(answer, PinPadFailure):
            return Attempt.FAILED, ("pin_pad_missing",), None
        try:
            block = encrypt_pin_block(answer.pin, pan)
        except CryptoError:
            return Attempt.FAILED, ("pin_not_entered",), None
        return Attempt.UNKNOWN, ("online_pin_entered",), block
    if method is rules.CvmCode.SIGNATURE:
        return Attempt.UNKNOWN, (), None
    if method is rules.CvmCode.NO_CVM:
        return Attempt.SUCCESSFUL, (), None
    return Attempt.FAILED, (), None  # enciphered offline PIN: offered by no possim terminal


def _offline_pin(amount: int, currency: str, exchange: Exchange) -> Generator[Any, Any, tuple[rules.Attempt, tuple[str, ...]]]:
    Attempt = rules.Attempt
    tries = yield from get_data_int("9F17", exchange)
    if tries == 0:
        return Attempt.FAILED, ("pin_try_limit_exceeded",)
    while True:
        answer = yield NeedPin("offline", amount, currency, tries)
        if isinstance(answer, PinBypassed):
            return Attempt.FAILED, ("pin_not_entered",)
        if isinstance(answer, PinPadFailure):
            return Attempt.FAILED, ("pin_pad_missing",)
        try:
            command = commands.verify_plaintext_pin(answer.pin)
        except ValueError:
            continue  # not 4-12 digits: a PIN pad would not have taken it; ask again
        response = yield from exchange(command, "VERIFY")
        if response.ok:
            return Attempt.SUCCESSFUL, ()
        if response.sw1 == 0x63 and response.sw2 & 0xF0 == 0xC0:
            tries = response.sw2 & 0x0F
            if tries == 0:
                return Attempt.FAILED, ("pin_try_limit_exceeded",)
            continue
        if response.sw in (0x6983, 0x6984):
            return Attempt.FAILED, ("pin_try_limit_exceeded",)
        return Attempt.FAILED, ()
