"""One card-present transaction as a sans-IO state machine (h11 style).

:class:`Transaction` holds the whole EMV flow and none of the I/O. The driver pulls
an event with :meth:`Transaction.next_event`, acts on it (sends an APDU to the card,
asks for a PIN, talks to the host) and pushes the answer with
:meth:`Transaction.send`, which returns the next event, until :class:`Done`:

>>> from datetime import datetime
>>> from sim.emv.kernel import NeedCard, Presented, PowerOn, TerminalConfig, Transaction
>>> txn = Transaction(TerminalConfig(), amount=2500, currency="EUR", when=datetime(2026, 3, 15, 10, 30),
...                   unpredictable_number=bytes.fromhex("1A2B3C4D"), stan=1)
>>> txn.next_event()
NeedCard(accept=('contact', 'contactless', 'magstripe'), prompt='insert, tap or swipe card')
>>> txn.send(Presented("contact"))
PowerOn(interface='contact')

Flow (EMV 4.4 Book 1 section 12, Book 3 sections 10.1-10.11)
--------------------------------------------------------------
1. Card entry: contact, contactless (at most the contactless limit, FB-07), stripe
   (a chip card's stripe sends the cardholder back to the chip, FB-03), keyed. A chip
   that does not answer, answers a bad ATR or shares no application falls back to
   the stripe (DE22 80x, FB-01); an unreadable stripe to keyed entry (79x) when the
   profile allows it, else a decline (FB-02).
2. Application selection: PSE (PPSE contactless) directory, else the terminal's AID
   list with partial selection; blocked applications (6283) skipped; priority order
   and cardholder confirmation.
3. GET PROCESSING OPTIONS with the PDOL data; 6985 drops the application.
4. READ RECORD per AFL; malformed or duplicate data or a missing 5A/5F24/8C/8D
   terminates (FB-05).
5. Offline data authentication (DDA, else SDA) per AIP and 9F33 (1:80, 1:40, 1:08, 1:20).
6. Processing restrictions (2:80, 2:40, 2:20, 2:10).
7. Cardholder verification over the CVM list (3:80, 3:40, 3:20, 3:10, 3:08, 3:04).
8. Terminal risk management: exception file (1:10), floor limit with the same-PAN
   log (4:80), random selection (4:10), velocity by GET DATA 9F36/9F13 (4:40, 4:20, 2:08).
9. Terminal action analysis and the first GENERATE AC: TC (Y1), AAC (Z1) or ARQC.
10. Online: 0200 (or 0100) with DE55; the host's DE39 becomes 8A; tag 91 goes to
    EXTERNAL AUTHENTICATE or into CDOL2; issuer scripts 71/72 run; the second
    GENERATE AC asks for TC on approval, AAC otherwise. Host unreachable: TAC/IAC
    default decides Y3 or Z3; a timeout also owes a reversal.
11. Money owed afterwards goes in ``pending``: a 0220 advice for an offline approval,
    a 0400 reversal when the host approved but the card refused (ONL-07), the card
    left the reader (FB-04) or the host never answered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Generator

from ...core.crypto import CryptoError, encrypt_pin_block
from ...core.money import Currency, CurrencyError, currency as lookup_currency
from ...iso8583.errors import MessageError
from ...iso8583.message import MAX_AMOUNT, Message
from ...iso8583.pretty import mask_pan
from .. import cvm as cvm_rules
from .. import dol
from ..apdu import INS_GET_DATA, INS_SELECT, RECURRING_INS, ApduError, build as build_apdu, parse as parse_apdu
from ..errors import CardError, CardRemovedError
from ..qr import QrError, parse_wallet_qr
from ..tvr import Tsi, Tvr
from . import action, authentication, commands, entry, restrictions, risk, verification
from .commands import CryptogramType, GenerateAcAnswer, Response, parse_generate_ac
from .config import Application, TerminalConfig, pan_digest
from .events import (
    Cancelled,
    Done,
    Event,
    HostTimeout,
    HostUnreachable,
    Interface,
    KernelUsageError,
    NeedApdu,
    NeedCard,
    NeedManualEntry,
    NeedOnline,
    NeedPin,
    NeedSelection,
    PinEntered,
    PowerOn,
    ReadStripe,
    ScanQr,
    check_answer,
)
from .issuer_auth import cvr_says_issuer_authentication_failed
from .messages import (
    ADVICE_TAGS,
    CardFields,
    build_advice,
    build_completion,
    build_request,
    build_reversal,
    icc_data,
    next_stan,
)
from .records import AflEntry, CardDataError, merge_record, missing_mandatory, parse_gpo_response
from .result import Outcome, TransactionResult
from .selection import Candidate, CardBlocked, SelectionError, build_candidates, order_candidates, parse_fci

__all__ = ["KernelUsageError", "PAYMENT_METHODS", "Transaction", "TRANSACTION_TYPES"]

TRANSACTION_TYPES = {"00": "purchase", "01": "cash", "09": "purchase with cashback", "20": "refund"}
"""Transaction types (9C) the kernel accepts."""

PAYMENT_METHODS = {"card": "a card: chip, contactless, stripe or keyed", "qr": "a QR wallet (consumer-presented QR code)"}
"""How the cardholder pays, as the merchant chose at the till. A QR wallet payment is online only (OFF-09)."""

MAX_CARD_PROMPTS = 6
"""How many times the terminal asks for a card before giving up."""

_RANK = {CryptogramType.AAC: 0, CryptogramType.ARQC: 1, CryptogramType.TC: 2}
"""A card may answer a lower cryptogram than asked (TC > ARQC > AAC), never a higher one."""


class _Terminate(Exception):
    """End the transaction without a decision."""


class _Declined(Exception):
    """End the transaction with a decline that needs no card (stripe unreadable, over a limit)."""


class _ChipFailure(Exception):
    """The chip could not be used before an application was selected: technical fallback."""


class _CardGone(Exception):
    """The card left the reader or went mute mid-transaction."""

    def __init__(self, reason: str, *, removed: bool) -> None:
        super().__init__(reason)
        self.removed = removed


def _bcd(number: int | str, size: int) -> bytes:
    return bytes.fromhex(str(number).zfill(2 * size))


@dataclass
class _Online:
    """What the online step learned."""

    request: Message | None = None
    response: Message | None = None
    approved: bool = False
    timed_out: bool = False


class Transaction:
    """One transaction (see the module docstring for the flow and :mod:`.events` for the protocol).

    Parameters
    ----------
    config : TerminalConfig
        The terminal (from a hardware profile).
    amount : int
        Amount authorised, minor units of ``currency`` (never a float).
    currency : str or Currency
        ISO 4217 alpha or numeric code.
    when : datetime
        Transaction date and time (9A, 9F21, DE7, DE12/13): the caller's clock, virtual or real.
    unpredictable_number : bytes
        9F37, 4 bytes, from the driver's RNG.
    stan : int
        DE11 of the first message; later messages take the following numbers.
    transaction_type : str
        9C: ``00`` purchase, ``01`` cash, ``09`` cashback, ``20`` refund (refunds always go online).
    amount_other : int
        9F03 (cashback amount), minor units.
    rng : random.Random, optional
        Source of the random selection draw (1..99); default seeded from the unpredictable number.
    force_online : bool
        Merchant forced the transaction online (4:08).
    payment_method : str
        ``"card"`` (default) or ``"qr"``: the cardholder's wallet shows a QR code the
        terminal scans (:class:`~.events.ScanQr`); only the host can approve it.
    """

    def __init__(
        self,
        config: TerminalConfig,
        *,
        amount: int,
        currency: str | Currency,
        when: datetime,
        unpredictable_number: bytes,
        stan: int,
        transaction_type: str = "00",
        amount_other: int = 0,
        rng: random.Random | None = None,
        force_online: bool = False,
        payment_method: str = "card",
    ) -> None:
        for name, value in (("amount", amount), ("amount_other", amount_other)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_AMOUNT:
                raise ValueError(f"{name} is {value!r}; it must be an int of minor units 0..{MAX_AMOUNT}")
        try:
            self.currency = currency if isinstance(currency, Currency) else lookup_currency(currency)
        except CurrencyError as exc:
            raise ValueError(str(exc)) from None
        if transaction_type not in TRANSACTION_TYPES:
            raise ValueError(f"transaction type {transaction_type!r}; allowed: {', '.join(TRANSACTION_TYPES)}")
        if payment_method not in PAYMENT_METHODS:
            raise ValueError(f"payment method {payment_method!r}; allowed: {', '.join(PAYMENT_METHODS)}")
        if len(unpredictable_number) != 4:
            raise ValueError("the unpredictable number (9F37) is 4 bytes")
        if not isinstance(stan, int) or not 1 <= stan <= 999_999:
            raise ValueError(f"STAN {stan!r} must be an int 1..999999")
        self.config = config
        self.amount = amount
        self.amount_other = amount_other
        self.when = when
        self.unpredictable_number = bytes(unpredictable_number)
        self.transaction_type = transaction_type
        self.force_online = force_online
        self.payment_method = payment_method
        self.rng = rng if rng is not None else random.Random(int.from_bytes(self.unpredictable_number, "big"))
        self._fixed_values = self._values_fixed_for_the_transaction()
        self.tvr = Tvr()
        self.tsi = Tsi()
        self.stage = "start"
        self._next_stan = stan
        self._stans: list[int] = []
        self._messages: list[str] = []
        self._pending: list[Message] = []
        self._card: dict[str, Any] = {}
        self._interface: Interface | None = None
        self._entry_mode = ""
        self._chip_failed = False
        self._app: Application | None = None
        self._label = ""
        self._pan = ""
        self._digested: tuple[str | None, str] = (None, "")
        self._cvm_results: cvm_rules.CvmResults | None = None
        self._signature = False
        self._pin_block: str | None = None
        self._cryptogram: CryptogramType | None = None
        self._arc: str | None = None
        self._host_rc: str | None = None
        self._auth_code: str | None = None
        self._issuer_auth: str | None = None
        self._online = False
        self._oda_records: list[tuple[int, bytes]] = []
        self._event: Event | None = None
        self._result: TransactionResult | None = None
        self._gen = self._run()

    # Public protocol ---------------------------------------------------------------------------

    def next_event(self) -> Event:
        """The event the driver must act on now (the first one on the first call)."""
        if self._event is None:
            self._event = next(self._gen)
        return self._event

    def send(self, answer: object) -> Event:
        """Answer the current event; returns the next one.

        Raises
        ------
        KernelUsageError
            No event is waiting, the transaction is done, or ``answer`` is not one
            the current event accepts (see :mod:`sim.emv.kernel.events`).
        """
        event = self._event
        if event is None:
            raise KernelUsageError("call next_event() first: no event is waiting for an answer")
        if isinstance(event, Done):
            raise KernelUsageError("the transaction is done; nothing more to answer")
        check_answer(event, answer)
        self._event = self._gen.send(answer)
        return self._event

    @property
    def done(self) -> bool:
        """True once :class:`Done` has been returned."""
        return self._result is not None

    @property
    def result(self) -> TransactionResult | None:
        """The result, once done."""
        return self._result

    # Values -----------------------------------------------------------------------------------

    @property
    def _numeric_currency(self) -> str:
        return self.currency.numeric

    def _values_fixed_for_the_transaction(self) -> dict[str, bytes]:
        """The terminal data objects that cannot change once the transaction exists, encoded once.

        Every DOL, DE55 and advice reads them; only TVR, TSI, CVM results, the
        application's version and the entry mode move while the transaction runs.
        """
        config = self.config
        stamp = self.when.strftime("%y%m%d%H%M%S")
        return {
            "9F02": _bcd(self.amount, 6),
            "9F03": _bcd(self.amount_other, 6),
            "9F1A": _bcd(config.country, 2),
            "5F2A": _bcd(self._numeric_currency, 2),
            "5F36": _bcd(self.currency.exponent, 1),
            "9A": bytes.fromhex(stamp[:6]),
            "9F21": bytes.fromhex(stamp[6:]),
            "9C": _bcd(self.transaction_type, 1),
            "9F37": self.unpredictable_number,
            "9F35": _bcd(config.terminal_type, 1),
            "9F33": config.capabilities,
            "9F40": config.additional_capabilities,
            "9F1C": config.terminal_id.encode("ascii")[:8].ljust(8),
            "9F16": config.merchant_id.encode("ascii")[:15].ljust(15),
        }

    def _terminal_values(self) -> dict[str, bytes]:
        """Terminal data objects for DOLs and DE55, as of now (TVR, TSI, CVM results change)."""
        values = dict(self._fixed_values)
        values["95"] = bytes(self.tvr)
        values["9B"] = bytes(self.tsi)
        if self._cvm_results is not None:
            values["9F34"] = self._cvm_results.encode()
        if self._app is not None:
            values["9F09"] = self._app.version
        if self._interface in ("contact", "contactless"):
            values["9F39"] = b"\x05" if self._interface == "contact" else b"\x07"
        return values

    def _log_key(self) -> str:
        """The PAN's digest for the same-PAN log, worked out once per PAN read."""
        if self._digested[0] != self._pan:
            self._digested = (self._pan, pan_digest(self._pan))
        return self._digested[1]

    def _take_stan(self) -> int:
        stan = self._next_stan
        self._stans.append(stan)
        self._next_stan = next_stan(stan)
        return stan

    # The flow ---------------------------------------------------------------------------------

    def _run(self) -> Generator[Event, Any, None]:
        try:
            if self.payment_method == "qr":
                outcome, reason, arc = yield from self._qr_payment()
            else:
                outcome, reason, arc = yield from self._entry()
        except _Terminate as stop:
            outcome, reason, arc = Outcome.TERMINATED, str(stop), None
        except _Declined as stop:
            outcome, reason, arc = Outcome.DECLINED, str(stop), None
        self._pin_block = None  # SEC-03: nothing of the PIN outlives the transaction
        self._result = self._make_result(outcome, reason, arc)
        self.stage = "done"
        yield Done(self._result)

    def _entry(self) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        """Card entry with its fallbacks; returns (outcome, reason, arc)."""
        readers = self.config.readers
        contactless_ok = self._contactless_allowed()
        accept = [i for i in ("contact", "contactless", "magstripe") if i in readers]
        if not contactless_ok and "contactless" in accept:
            accept.remove("contactless")
        if not accept:
            if "contactless" in readers:
                raise _Declined("amount over the contactless limit and no other interface fitted")
            if self.config.manual_entry:
                accept = ["manual"]
            else:
                raise _Terminate("no card reader fitted")
        prompt = _prompt(accept)
        for _ in range(MAX_CARD_PROMPTS):
            self.stage = "card entry"
            answer = yield NeedCard(tuple(accept), prompt)  # type: ignore[arg-type]
            if isinstance(answer, Cancelled):
                raise _Terminate(f"no card: {answer.reason}")
            interface = answer.interface
            if interface not in accept:
                if interface == "contactless" and "contactless" in readers and not contactless_ok:
                    accept = [i for i in ("contact", "magstripe") if i in readers]
                    if not accept:
                        raise _Declined("amount over the contactless limit and no other interface fitted")
                    prompt = "amount over the contactless limit: insert card"
                else:
                    prompt = f"{interface} not accepted now: " + _prompt(accept)
                continue
            self._interface = interface
            if interface in ("contact", "contactless"):
                try:
                    return (yield from self._chip(interface))
                except _ChipFailure as failure:
                    self._chip_failed = True
                    self._reset_chip_state()
                    fallback = [i for i in ("magstripe",) if i in readers] or (["manual"] if self.config.manual_entry else [])
                    if interface == "contactless" and "contact" in readers:
                        fallback = ["contact"] + fallback
                        self._chip_failed = False
                    if not fallback:
                        raise _Declined(f"chip read failed ({failure}) and no fallback is possible") from None
                    accept, prompt = fallback, f"chip read failed ({failure}): " + _prompt(fallback)
                    continue
            if interface == "magstripe":
                track_text = yield ReadStripe()
                if isinstance(track_text, CardError):
                    if self.config.manual_entry:
                        accept, prompt = ["manual"], "stripe unreadable: key card number"
                        continue
                    raise _Declined("magnetic stripe unreadable and manual entry not allowed")
                try:
                    track = entry.parse_track2(track_text)
                except entry.TrackError as exc:
                    if self.config.manual_entry:
                        accept, prompt = ["manual"], f"stripe unreadable ({exc}): key card number"
                        continue
                    raise _Declined(f"magnetic stripe unreadable ({exc}) and manual entry not allowed") from None
                if track.chip_card and not self._chip_failed and "contact" in readers:
                    accept, prompt = ["contact"], "chip card: insert the chip"
                    continue
                return (yield from self._no_chip_online(
                    CardFields(track.pan, track.expiry, None, track.raw), "magstripe", track.pin_required))
            if interface == "manual":
                keyed = yield NeedManualEntry()
                if isinstance(keyed, Cancelled):
                    raise _Terminate(f"manual entry cancelled: {keyed.reason}")
                if not (keyed.pan.isdigit() and 12 <= len(keyed.pan) <= 19 and len(keyed.expiry) == 4
                        and keyed.expiry.isdigit()):
                    accept, prompt = ["manual"], "card number or expiry not valid: key again"
                    continue
                return (yield from self._no_chip_online(CardFields(keyed.pan, keyed.expiry), "manual", False))
        raise _Terminate("no usable card presented")

    def _qr_payment(self) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        """A QR wallet payment (OFF-09): scan the code, send its card data online; no offline decision exists."""
        if "qr" not in self.config.readers:
            raise _Declined("QR wallet payments need a QR code scanner and this terminal has none")
        if not self.config.online_capable:
            raise _Declined("QR wallet payments are online only and this terminal cannot go online")
        self.stage = "QR code scan"
        last = "nothing scanned"
        for _ in range(MAX_CARD_PROMPTS):
            text = yield ScanQr()
            if isinstance(text, Cancelled):
                raise _Terminate(f"no QR code: {text.reason}")
            try:
                payment = parse_wallet_qr(text)
            except QrError as exc:
                last = str(exc)
                continue
            self._label = payment.label
            if payment.aid:
                self._card["84"] = bytes.fromhex(payment.aid)
            return (yield from self._no_chip_online(
                CardFields(payment.pan, payment.expiry, payment.psn), "qr", False))
        raise _Terminate(f"no usable QR code scanned ({last})")

    def _contactless_allowed(self) -> bool:
        limit = self.config.contactless_transaction_limits.get(self._numeric_currency)
        return limit is None or self.amount <= limit

    def _reset_chip_state(self) -> None:
        """Forget what a failed chip attempt read (the fallback read starts clean)."""
        self._card.clear()
        self._oda_records.clear()
        self._app = None
        self._label = ""
        self.tvr = Tvr()
        self.tsi = Tsi()

    # Card I/O ---------------------------------------------------------------------------------

    def _apdu(self, apdu: bytes, purpose: str) -> Generator[Event, Any, Response]:
        """Exchange one command, following T=0 procedure bytes (61xx GET RESPONSE, 6Cxx resend)."""
        # A recurring command (no transaction data, no PIN) is asked for with the same event
        # object each time; an answer that carries no cardholder data gives the same Response
        # object for the same bytes (both frozen).
        recurring = len(apdu) >= 4 and apdu[1] in RECURRING_INS
        answer = yield _recurring_need_apdu(bytes(apdu), purpose) if recurring else NeedApdu(apdu, purpose)
        response = _rapdu(answer, remember=recurring and apdu[1] in _ANSWERS_WITHOUT_CARDHOLDER_DATA)
        if response.sw >> 8 not in (0x61, 0x6C):
            return response  # the whole answer at once, as a card answers a command with Le = 00
        data = b""
        for _ in range(16):
            if response.sw1 == 0x61:
                data += response.data
                answer = yield NeedApdu(commands.get_response(response.sw2), f"GET RESPONSE ({purpose})")
                response = _rapdu(answer)
            elif response.sw1 == 0x6C:
                try:
                    cmd = parse_apdu(apdu)
                    apdu = build_apdu(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, response.sw2 or 256)
                except ApduError:
                    break
                answer = yield NeedApdu(apdu, purpose)
                response = _rapdu(answer)
            else:
                break
        return Response(data + response.data, response.sw)

    # Chip -------------------------------------------------------------------------------------

    def _chip(self, interface: Interface) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        self.stage = "power on"
        atr = yield PowerOn(interface)
        if isinstance(atr, CardError):
            raise _ChipFailure("card removed" if isinstance(atr, CardRemovedError) else "chip mute")
        if not atr or atr[0] not in (0x3B, 0x3F):
            raise _ChipFailure("bad ATR")
        try:
            aip, afl = yield from self._select_and_initiate(interface)
        except _CardGone as gone:
            if gone.removed:
                raise _Terminate("card removed during application selection") from None
            raise _ChipFailure(str(gone)) from None
        self._entry_mode = entry.entry_mode(interface, pin_digit=self.config.pin_capability_digit)
        online = _Online()
        try:
            return (yield from self._after_selection(aip, afl, online))
        except _CardGone as gone:
            return self._card_gone(gone, online)
        except _Terminate as stop:
            if online.approved and online.request is not None:
                self._owe_reversal(online.request, online.response)
            raise stop

    def _card_gone(self, gone: _CardGone, online: _Online) -> tuple[Outcome, str, str | None]:
        """FB-04: the card left (or went mute) mid-transaction; a host approval is reversed."""
        reason = f"{gone} during {self.stage}"
        if online.approved and online.request is not None:
            self._owe_reversal(online.request, online.response)
            reason += "; the host approval is reversed"
        elif online.timed_out:
            reason += "; the unanswered request is reversed"
        return Outcome.TERMINATED, reason, self._arc

    # Application selection --------------------------------------------------------------------

    def _select_and_initiate(
        self, interface: Interface
    ) -> Generator[Event, Any, tuple[bytes, tuple[AflEntry, ...]]]:
        candidates = yield from self._candidates(interface)
        if not candidates:
            raise _ChipFailure("no common application")
        while True:
            ordered = order_candidates(candidates, self.config)
            if not ordered:
                raise _Terminate("no application can be selected (confirmation needed and not possible)")
            chosen = yield from self._choose(ordered)
            self.stage = "final selection"
            response = yield from self._apdu(commands.select(chosen.aid), "SELECT application")
            fci = None
            if response.ok:
                try:
                    fci = parse_fci(response.data)
                except SelectionError:
                    fci = None
            if fci is None or not (fci.df_name == chosen.aid or chosen.app.matches(fci.df_name)):
                candidates = [c for c in candidates if c is not chosen]
                if not candidates:
                    raise _Terminate(f"application {chosen.aid.hex().upper()} could not be selected ({response.sw_hex})")
                continue
            self._app = chosen.app
            self._label = fci.label or chosen.display
            self._card.update({"84": fci.df_name})
            if fci.pdol is not None:
                self._card["9F38"] = fci.pdol
            self.stage = "initiate application processing"
            try:
                pdol = dol.parse_dol(fci.pdol) if fci.pdol else ()
            except dol.DolError as exc:
                raise _Terminate(f"card error: PDOL malformed ({exc})") from None
            pdol_data = dol.build_dol_data(pdol, self._terminal_values())
            response = yield from self._apdu(commands.get_processing_options(pdol_data), "GET PROCESSING OPTIONS")
            if response.sw == 0x6985:
                candidates = [c for c in candidates if c is not chosen]
                if not candidates:
                    raise _Terminate("no application accepted the transaction (GPO 6985)")
                self._card.clear()
                continue
            if not response.ok:
                raise _Terminate(f"card error: GET PROCESSING OPTIONS answered {response.sw_hex}")
            try:
                aip, afl, extra = parse_gpo_response(response.data)
            except CardDataError as exc:
                raise _Terminate(f"card error: {exc}") from None
            self._card.update(extra)
            self._card["82"] = aip
            return aip, afl

    def _candidates(self, interface: Interface) -> Generator[Event, Any, list[Candidate]]:
        self.stage = "application selection"
        try:
            return (yield from build_candidates(interface, self.config, self._apdu))
        except CardBlocked as blocked:
            raise _Terminate(str(blocked)) from None

    def _choose(self, ordered: list[Candidate]) -> Generator[Event, Any, Candidate]:
        if len(ordered) == 1 and not ordered[0].confirmation_required:
            return ordered[0]
        if not self.config.cardholder_confirmation:
            return ordered[0]
        self.stage = "cardholder selection"
        answer = yield NeedSelection(tuple(c.display for c in ordered), confirm=len(ordered) == 1)
        if isinstance(answer, Cancelled) or not 0 <= answer < len(ordered):
            raise _Terminate("cardholder did not select an application")
        return ordered[answer]

    # After selection --------------------------------------------------------------------------

    def _after_selection(
        self, aip: bytes, afl: tuple[AflEntry, ...], online: _Online
    ) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        yield from self._read_records(afl)
        yield from self._offline_data_authentication(aip)
        self.stage = "processing restrictions"
        self.tvr.set(*restrictions.check(
            self._card,
            terminal_version=self._app.version if self._app else None,
            country=self.config.country,
            transaction_type=self.transaction_type,
            terminal_type=self.config.terminal_type,
            today=self.when.date(),
        ))
        yield from self._cardholder_verification(aip)
        yield from self._terminal_risk_management(aip)
        return (yield from self._decide(online))

    def _read_records(self, afl: tuple[AflEntry, ...]) -> Generator[Event, Any, None]:
        self.stage = "read application data"
        for item in afl:
            for record in item.records():
                response = yield from self._apdu(commands.read_record(item.sfi, record), "READ RECORD")
                if not response.ok:
                    raise _Terminate(f"card error: READ RECORD SFI {item.sfi} record {record} answered {response.sw_hex}")
                try:
                    merge_record(self._card, item.sfi, record, response.data)
                except CardDataError as exc:
                    raise _Terminate(f"card error: {exc}") from None
                if item.signed(record):
                    self._oda_records.append((item.sfi, response.data))
        missing = missing_mandatory(self._card)
        if missing:
            raise _Terminate(f"card error: mandatory data missing ({', '.join(missing)})")
        pan = self._card["5A"].hex().upper().rstrip("F")
        if not (pan.isdigit() and 12 <= len(pan) <= 19):
            raise _Terminate("card error: the PAN (5A) is not 12 to 19 digits")
        self._pan = pan

    # Offline data authentication ----------------------------------------------------------------

    def _offline_data_authentication(self, aip: bytes) -> Generator[Event, Any, None]:
        self.stage = "offline data authentication"
        outcome = yield from authentication.authenticate(
            card=self._card, aip=aip, pan=self._pan, today=self.when.date(), config=self.config,
            signed_records=self._oda_records, terminal_values=self._terminal_values(), exchange=self._apdu,
        )
        self.tvr.set(*outcome.tvr_bits)
        self._card.update(outcome.card_data)
        if outcome.performed:
            self.tsi.set("offline_data_authentication_performed")

    # Cardholder verification ------------------------------------------------------------------

    def _cardholder_verification(self, aip: bytes) -> Generator[Event, Any, None]:
        self.stage = "cardholder verification"
        outcome = yield from verification.verify_cardholder(
            card=self._card, aip=aip, interface=self._interface, amount=self.amount,
            currency=self._numeric_currency, transaction_type=self.transaction_type, pan=self._pan,
            config=self.config, exchange=self._apdu,
        )
        self.tvr.set(*outcome.tvr_bits)
        self._cvm_results = outcome.results
        self._signature = outcome.signature_required
        self._pin_block = outcome.pin_block
        if outcome.performed:
            self.tsi.set("cardholder_verification_performed")

    # Terminal risk management -----------------------------------------------------------------

    def _terminal_risk_management(self, aip: bytes) -> Generator[Event, Any, None]:
        self.stage = "terminal risk management"
        psn = self._card.get("5F34")
        if self.config.exception_file.contains(self._pan, psn.hex() if isinstance(psn, bytes) else None):
            self.tvr.set("card_on_exception_file")
        if self.force_online:
            self.tvr.set("merchant_forced_online")
        if not aip[0] & 0x08:
            return
        currency = self._numeric_currency
        floor = self.config.floor_limit(currency, self._interface or "contact")
        logged = self.config.pan_log.latest_digest(self._log_key(), currency)
        if risk.floor_limit_exceeded(self.amount, logged, floor):
            self.tvr.set("transaction_exceeds_floor_limit")
        params = self.config.random_selection
        if params.enabled and self.config.online_capable and self.amount < floor:
            draw = self.rng.randint(1, 99)
            if risk.random_selected(amount=self.amount, floor_limit=floor, threshold=params.threshold(currency),
                                    target=params.target_percent, max_target=params.max_target_percent, draw=draw):
                self.tvr.set("random_selection")
        lcol, ucol = self._card.get("9F14"), self._card.get("9F23")
        if isinstance(lcol, bytes) and isinstance(ucol, bytes) and lcol and ucol:
            atc = yield from verification.get_data_int("9F36", self._apdu)
            last_online = yield from verification.get_data_int("9F13", self._apdu)
            self.tvr.set(*risk.velocity(atc=atc, last_online_atc=last_online, lcol=lcol[0], ucol=ucol[0]))
        self.tsi.set("terminal_risk_management_performed")

    # Action analysis, cryptograms, online -------------------------------------------------------

    def _codes(self) -> action.ActionCodes:
        return action.ActionCodes.of(self._card, *self.config.action_codes(self._app))

    def _decide(self, online: _Online) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        self.stage = "terminal action analysis"
        codes = self._codes()
        decision = action.decide(
            self.tvr, codes, online_capable=self.config.online_capable, offline_allowed=self.config.offline_capable,
            force_online=self.transaction_type == "20",
        )
        self.stage = "first GENERATE AC"
        values = self._terminal_values()
        sent1, first = yield from self._generate_ac(decision.cryptogram, "8C", values)
        self.tsi.set("card_risk_management_performed")
        kind = first.type
        why = decision.reason + (f" ({', '.join(decision.matched)})" if decision.matched else "")
        if kind is CryptogramType.TC:
            self._arc = "Y1"
            self._owe_advice("Y1", {**values, **sent1, **first.objects})
            return Outcome.APPROVED, f"offline approved: {why}", "Y1"
        if kind is CryptogramType.AAC:
            self._arc = "Z1"
            card_said = "" if decision.cryptogram is CryptogramType.AAC else "; the card declined"
            return Outcome.DECLINED, f"offline declined: {why}{card_said}", "Z1"
        return (yield from self._go_online(online, codes, {**values, **sent1, **first.objects}))

    def _generate_ac(
        self, kind: CryptogramType, dol_tag: str, values: dict[str, bytes]
    ) -> Generator[Event, Any, tuple[dict[str, bytes], GenerateAcAnswer]]:
        try:
            cdol = dol.parse_dol(self._card[dol_tag])
        except dol.DolError as exc:
            raise _Terminate(f"card error: {'CDOL1' if dol_tag == '8C' else 'CDOL2'} malformed ({exc})") from None
        data, sent = dol.build_dol_values(cdol, values)
        response = yield from self._apdu(commands.generate_ac(kind, data), f"GENERATE AC ({kind.name})")
        if not response.ok:
            raise _Terminate(f"card error: GENERATE AC answered {response.sw_hex}")
        parsed = parse_generate_ac(response.data)
        if parsed is None:
            raise _Terminate("card error: GENERATE AC answer malformed")
        if _RANK[parsed.type] > _RANK[kind]:
            raise _Terminate(f"card error: asked for {kind.name}, the card gave {parsed.type.name}")
        self._cryptogram = parsed.type
        return sent, parsed

    def _request_card_fields(self) -> CardFields:
        expiry = self._card["5F24"].hex()[:4]
        psn = self._card.get("5F34")
        track = self._card.get("57")
        return CardFields(
            self._pan, expiry, psn.hex()[-2:] if isinstance(psn, bytes) and psn else None,
            entry.track2_from_tag57(track) if isinstance(track, bytes) and track else None,
        )

    def _mti(self) -> str:
        return "0100" if self.config.message_mode == "dual" else "0200"

    def _go_online(
        self, online: _Online, codes: action.ActionCodes, values: dict[str, bytes]
    ) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        self.stage = "online processing"
        card_fields = self._request_card_fields()
        icc = icc_data({**self._card, **values})
        answer: object = HostUnreachable
        if self.config.online_capable:
            request = build_request(
                self._mti(), card_fields, amount=self.amount, currency=self._numeric_currency,
                stan=self._take_stan(), when=self.when, terminal_id=self.config.terminal_id,
                merchant_id=self.config.merchant_id, entry_mode=self._entry_mode,
                processing_code=self.transaction_type + "0000", icc=icc, pin_block=self._pin_block,
            )
            online.request = request
            answer = yield NeedOnline(request)
            self._pin_block = None  # never kept after the authorization that used it
            if not _is_unreachable(answer):
                self._messages.append(request.mti)
        second_values = self._terminal_values()
        if isinstance(answer, Message):
            return (yield from self._host_answered(online, answer, second_values))
        online.timed_out = _is_timeout(answer)
        if online.timed_out and online.request is not None:
            self._owe_reversal(online.request, None, reason="68")
        decision = action.unable_online(self.tvr, codes, offline_allowed=self.config.offline_capable)
        arc = "Y3" if decision.cryptogram is CryptogramType.TC else "Z3"
        second_values = {**second_values, "8A": arc.encode("ascii")}
        self.stage = "second GENERATE AC"
        sent2, second = yield from self._generate_ac(decision.cryptogram, "8D", second_values)
        why = decision.reason + (f" ({', '.join(decision.matched)})" if decision.matched else "")
        lost = "host timed out" if online.timed_out else "host unreachable"
        if second.type is CryptogramType.TC:
            self._arc = "Y3"
            self._owe_advice("Y3", {**values, **sent2, **second.objects})
            return Outcome.APPROVED, f"{lost}; offline approved: {why}", "Y3"
        self._arc = "Z3"
        extra = "" if decision.cryptogram is CryptogramType.AAC else "; the card declined"
        return Outcome.DECLINED, f"{lost}; offline declined: {why}{extra}", "Z3"

    def _host_answered(
        self, online: _Online, response: Message, values: dict[str, bytes]
    ) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        self._online = True
        online.response = response
        code = response.response_code or ""
        self._host_rc = code
        self._auth_code = response.auth_code
        self._arc = code
        online.approved = code == "00"
        try:
            issuer_data = response.icc
        except MessageError:
            issuer_data = {}
        arpc = issuer_data.get("91") if isinstance(issuer_data.get("91"), bytes) else None
        aip = self._card["82"]
        second_values = {**values, "8A": code.encode("ascii")[:2].ljust(2)}
        if arpc is not None:
            self.tsi.set("issuer_authentication_performed")
            if aip[0] & 0x04:
                self.stage = "issuer authentication"
                result = yield from self._apdu(commands.external_authenticate(arpc), "EXTERNAL AUTHENTICATE")
                if result.ok:
                    self._issuer_auth = "passed"
                else:
                    self._issuer_auth = "failed"
                    self.tvr.set("issuer_authentication_failed")
            else:
                second_values["91"] = arpc
        yield from self._scripts(issuer_data.get("71"), final=False)
        second_values.update({"95": bytes(self.tvr), "9B": bytes(self.tsi)})
        wanted = CryptogramType.TC if online.approved else CryptogramType.AAC
        self.stage = "second GENERATE AC"
        sent2, second = yield from self._generate_ac(wanted, "8D", second_values)
        if arpc is not None and not aip[0] & 0x04:
            iad = second.objects.get("9F10")
            failed = cvr_says_issuer_authentication_failed(iad) if isinstance(iad, bytes) else None
            if failed:
                self._issuer_auth = "failed"
                self.tvr.set("issuer_authentication_failed")
            elif failed is False or second.type is CryptogramType.TC:
                self._issuer_auth = "passed"
        yield from self._scripts(issuer_data.get("72"), final=True)
        if second.type is CryptogramType.TC:
            if not online.approved:  # pragma: no cover - the card never gives more than asked (checked above)
                raise _Terminate("card error: TC after a host decline")
            if self.config.message_mode == "dual" and online.request is not None:
                final_icc = icc_data({**self._card, **values, **sent2, **second.objects}, ADVICE_TAGS)
                self._pending.append(build_completion(
                    online.request, response, self._request_card_fields(), stan=self._take_stan(), when=self.when,
                    icc=final_icc))
            return Outcome.APPROVED, f"host approved ({code})", code
        if online.approved:
            self._owe_reversal(online.request, response)  # type: ignore[arg-type]
            why = "issuer authentication failed" if self._issuer_auth == "failed" else "the card declined"
            return Outcome.DECLINED, f"host approved ({code}) but {why}; the approval is reversed", code
        return Outcome.DECLINED, f"host declined ({code})", code

    def _scripts(self, scripts: Any, *, final: bool) -> Generator[Event, Any, None]:
        """Issuer script processing (Book 3 10.10): commands ``86`` of templates 71 (before) / 72 (after)."""
        if not isinstance(scripts, dict):
            return
        self.tsi.set("script_processing_performed")
        self.stage = "issuer script processing"
        for tag, value in scripts.items():
            if tag != "86" or not isinstance(value, bytes):
                continue
            response = yield from self._apdu(value, "issuer script command")
            if response.sw1 not in (0x90, 0x62, 0x63):
                self.tvr.set("script_failed_after_final_gen_ac" if final else "script_failed_before_final_gen_ac")
                return

    # No-chip online (stripe, keyed) -------------------------------------------------------------

    def _no_chip_online(
        self, card: CardFields, interface: Interface, pin_required: bool
    ) -> Generator[Event, Any, tuple[Outcome, str, str | None]]:
        self._interface = interface
        self._pan = card.pan
        self._entry_mode = entry.entry_mode(interface, pin_digit=self.config.pin_capability_digit,
                                            chip_failed=self._chip_failed)
        if not self.config.online_capable:
            raise _Declined(f"{interface} transactions need the host and this terminal cannot go online")
        no_offline = ("QR wallet payments are online only" if interface == "qr"
                      else "no offline approval without a chip")
        pin_block = None
        online_pin = self.config.pin_pad and self.config.capabilities[1] & 0x40
        if pin_required and online_pin:
            self.stage = "cardholder verification"
            answer = yield NeedPin("online", self.amount, self._numeric_currency)
            if isinstance(answer, PinEntered):
                try:
                    pin_block = encrypt_pin_block(answer.pin, card.pan)
                except CryptoError:
                    pin_block = None
        self.stage = "online processing"
        request = build_request(
            self._mti(), card, amount=self.amount, currency=self._numeric_currency, stan=self._take_stan(),
            when=self.when, terminal_id=self.config.terminal_id, merchant_id=self.config.merchant_id,
            entry_mode=self._entry_mode, processing_code=self.transaction_type + "0000", pin_block=pin_block,
        )
        answer = yield NeedOnline(request)
        if isinstance(answer, Message):
            self._messages.append(request.mti)
            self._online = True
            code = answer.response_code or ""
            self._host_rc, self._auth_code = code, answer.auth_code
            if code == "00":
                if self.config.message_mode == "dual":
                    self._pending.append(build_completion(
                        request, answer, CardFields(card.pan, card.expiry), stan=self._take_stan(), when=self.when))
                return Outcome.APPROVED, f"host approved ({code})", code
            return Outcome.DECLINED, f"host declined ({code})", code
        if _is_timeout(answer):
            self._messages.append(request.mti)
            self._owe_reversal(request, None, reason="68")
            return Outcome.DECLINED, f"host timed out; {no_offline}; request reversed", None
        return Outcome.DECLINED, f"host unreachable; {no_offline}", None

    # Money owed -------------------------------------------------------------------------------

    def _owe_advice(self, code: str, values: dict[str, bytes]) -> None:
        """An offline approval (Y1/Y3) is owed to the host as a 0220 advice."""
        final = {**values, "95": bytes(self.tvr), "9B": bytes(self.tsi), "8A": code.encode("ascii")}
        self._pending.append(build_advice(
            self._request_card_fields(), response_code=code, amount=self.amount, currency=self._numeric_currency,
            stan=self._take_stan(), when=self.when, terminal_id=self.config.terminal_id,
            merchant_id=self.config.merchant_id, entry_mode=self._entry_mode,
            processing_code=self.transaction_type + "0000", icc=icc_data({**self._card, **final}, ADVICE_TAGS),
        ))

    def _owe_reversal(self, request: Message, response: Message | None, *, reason: str | None = None) -> None:
        if any(m.mti == "0400" for m in self._pending):
            return
        auth = response.auth_code if response is not None else None
        self._pending.append(build_reversal(request, stan=self._take_stan(), when=self.when, reason=reason,
                                            auth_code=auth))

    # Result -----------------------------------------------------------------------------------

    def _make_result(self, outcome: Outcome, reason: str, arc: str | None) -> TransactionResult:
        label = self._cvm_results.label if self._cvm_results is not None else ""
        aid = self._card.get("84")
        return TransactionResult(
            outcome=outcome,
            reason=reason,
            arc=arc,
            tvr=self.tvr.hex(),
            tsi=self.tsi.hex(),
            tvr_bits=tuple(self.tvr.names()),
            cvm=self._cvm_results.hex() if self._cvm_results is not None else "",
            cvm_label=label,
            entry_mode=self._entry_mode,
            cryptogram=self._cryptogram.name if self._cryptogram is not None else None,
            amount_minor=self.amount,
            currency=self._numeric_currency,
            messages=tuple(self._messages),
            pending=tuple(self._pending),
            interface=self._interface,
            aid=aid.hex().upper() if isinstance(aid, bytes) else "",
            application_label=self._label,
            masked_pan=mask_pan(self._pan) if self._pan else "",
            online=self._online,
            host_response_code=self._host_rc,
            auth_code=self._auth_code,
            issuer_authentication=self._issuer_auth,
            signature_required=self._signature and outcome is Outcome.APPROVED,
            stans=tuple(self._stans),
            log_key=self._log_key() if self._pan else "",
            receipt=self.config.receipt,
        )


# Helpers ----------------------------------------------------------------------------------------


def _prompt(accept: list[str]) -> str:
    verbs = {"contact": "insert", "contactless": "tap", "magstripe": "swipe", "manual": "key"}
    words = [verbs[i] for i in accept]
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"{text} card" if accept != ["manual"] else "key card number"


_ANSWERS_WITHOUT_CARDHOLDER_DATA = frozenset({INS_SELECT, INS_GET_DATA})
"""Commands whose answers (FCIs, counters) never hold cardholder data, so a cache may keep them.
READ RECORD answers hold the PAN and track 2 equivalent data (SEC-03: not kept after authorization)."""


@lru_cache(maxsize=1024)
def _recurring_need_apdu(apdu: bytes, purpose: str) -> NeedApdu:
    return NeedApdu(apdu, purpose)


@lru_cache(maxsize=1024)
def _remembered_split(rapdu: bytes) -> Response:
    return commands.split(rapdu)


def _rapdu(answer: object, *, remember: bool = False) -> Response:
    if isinstance(answer, CardError):
        raise _CardGone("card removed" if isinstance(answer, CardRemovedError) else "card mute",
                        removed=isinstance(answer, CardRemovedError))
    try:
        if remember and type(answer) is bytes:
            return _remembered_split(answer)
        return commands.split(answer)  # type: ignore[arg-type]
    except ValueError:
        raise _CardGone("card answered garbage", removed=False) from None


def _is_unreachable(answer: object) -> bool:
    return answer is HostUnreachable or isinstance(answer, HostUnreachable)


def _is_timeout(answer: object) -> bool:
    return answer is HostTimeout or isinstance(answer, HostTimeout)
