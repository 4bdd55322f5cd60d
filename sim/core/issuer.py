"""The issuer: decides authorizations, books advices and reversals, answers every message.

Sans-IO, like h11: :meth:`Issuer.handle` takes one ISO 8583 request and the
current time and returns the answer. It never reads a clock, sleeps or touches a
socket, so the DES world (virtual time) and the live host (wall clock) run the
same decisions.

Check order for 0100 / 0200 (the first failing check decides DE39)
---------------------------------------------------------------------
=====  =============================================================  ==========
step   check                                                          DE39
=====  =============================================================  ==========
1      format: catalogue rules, PAN, DE14, DE35, DE49, DE52, DE55     30
       amount is zero                                                 13
2      duplicate: same DE41+DE11+DE7 within the window                the first
       (same key, different content)                                  answer (94)
3      ledger: original already booked (outside the window)           94
       reversed before it arrived                                     05
4      Luhn check digit                                               14
5      BIN served by this issuer                                      15
       no account behind the PAN                                      14
6      card status: lost / stolen / blocked                           41/43/57
7      expiry against ``now``; presented expiry differs               54
8      transaction permitted: processing code, account currency       12
9      online PIN (DE52): wrong / third consecutive wrong             55 / 75
10     ARQC for chip (DE22 05x/07x with DE55)                         05
11     per-transaction amount limit (debits)                          61
12     velocity: approvals per window measured on ``now`` (debits)    65
13     available funds (debits)                                       51
-      approve: DE38 from a counter, tag 91 ARPC for chip             00
=====  =============================================================  ==========

After a verified ARQC the answer carries an ARPC in tag 91 for declines too
(51, 61, 65), so the card can close the transaction with an AAC; before it (or
when it fails) there is none (ONL-06).

Advices (0120/0121/0220/0221) are money already spent: they are booked once,
whatever the card status, limits or funds, and answered 0130/0230 00 -- again for
every repeat. A 0220 naming a held 0100 in DE90 captures it; an 0120 places a
hold; an advice with processing code 20 credits; others debit. An advice of a
declined transaction (DE39 not 00/Y1/Y3) is acknowledged and not booked.

Reversals (0400/0401/0420/0421) undo the DE90 original once per reversal
message, up to DE4 (the amount to reverse, as :func:`sim.iso8583.reversal`
writes it); an unknown original is acknowledged and recorded, not booked, and is
never booked if it turns up later. Refunds are 0200 with processing code 20.

Exactly once: a request seen again with the same DE41+DE11+DE7 within
``duplicate_window`` gets the first answer again, byte for byte (REV-03: the
terminal that missed the answer gets it); the ledger refuses a second booking in
any case. Every call appends a :class:`Decision` (PAN masked) for logs.

Examples
--------
>>> from datetime import datetime
>>> from sim.iso8583 import financial_request
>>> issuer = Issuer.from_card_set(load_cards(), "possim-visa-test")
>>> sale = financial_request(pan="4761739001010010", amount=2500, currency="978", stan=1,
...     transmitted="0315103000", terminal_id="TERM0001", entry_mode="012", expiry="2812")
>>> answer = issuer.handle(sale, datetime(2026, 3, 15, 10, 30))
>>> answer.mti, answer.response_code, answer.auth_code
('0210', '00', '000001')
>>> issuer.available("4761739001010010")
997500
>>> str(issuer.last_decision)
'0200 TERM0001/000001 476173******0010 2500 978 -> 00 approved [approved]'
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Callable, Iterable, NamedTuple

from ..iso8583.catalogue import CHIP_ENTRY_MODES, MESSAGE_TYPES, original_mti
from ..iso8583.codes import ResponseCode, TerminalCode
from ..iso8583.errors import MessageError
from ..iso8583.message import Message, response
from ..iso8583.pretty import mask_pan
from .cards import Card, CardSet, IssuerConfig, load_cards, luhn_valid
from .crypto import TEST_ZPK, ArqcCheck, PinResult, arpc, icc_master_key, verify_arqc, verify_pin_block
from .ledger import Ledger, Outcome, TxnKey, TxnState
from .money import CurrencyError, currency as lookup_currency
from .windows import cap, forget_before, keep_latest

__all__ = [
    "CHECK_ORDER",
    "Check",
    "Decision",
    "Issuer",
    "IssuerError",
    "build_issuers",
    "route",
]

RC = ResponseCode


class IssuerError(ValueError):
    """A message the issuer cannot answer at all (a response MTI, an MTI outside the catalogue)."""


class Check(str, Enum):
    """The step that decided a message (see :data:`CHECK_ORDER`)."""

    FORMAT = "format"
    DUPLICATE = "duplicate"
    LEDGER = "ledger"
    LUHN = "luhn"
    ISSUER = "issuer"
    STATUS = "status"
    EXPIRY = "expiry"
    TRANSACTION = "transaction"
    PIN = "pin"
    CRYPTOGRAM = "cryptogram"
    AMOUNT_LIMIT = "amount limit"
    VELOCITY = "velocity"
    FUNDS = "funds"
    APPROVED = "approved"
    ADVICE = "advice"
    REVERSAL = "reversal"
    NETWORK = "network"


CHECK_ORDER: tuple[Check, ...] = (
    Check.FORMAT, Check.DUPLICATE, Check.LEDGER, Check.LUHN, Check.ISSUER, Check.STATUS, Check.EXPIRY,
    Check.TRANSACTION, Check.PIN, Check.CRYPTOGRAM, Check.AMOUNT_LIMIT, Check.VELOCITY, Check.FUNDS,
)
"""The order 0100/0200 checks run in; the first failing one decides."""

DEBIT_CODES = {"00": "purchase", "01": "cash", "09": "purchase with cashback"}
"""Processing code transaction types (DE3 positions 1-2) that take money from the account."""

CREDIT_CODES = {"20": "refund"}
"""Processing code transaction types that give money back."""

STATUS_CODES = {"lost": RC.LOST_CARD, "stolen": RC.STOLEN_CARD, "blocked": RC.NOT_PERMITTED}
"""Card status on file -> the decline it answers."""

ADVICE_APPROVED = {"00", TerminalCode.Y1.value, TerminalCode.Y3.value}
"""DE39 values in an advice that mean the transaction was approved (and must be booked)."""

_APPROVED = RC.APPROVED.value
"""DE39 of an approval, read once: an enum's ``value`` is two Python calls, and every approval needs it twice."""

_FAMILY = {
    "0100": "request", "0200": "request",
    "0120": "advice", "0121": "advice", "0220": "advice", "0221": "advice",
    "0400": "reversal", "0401": "reversal", "0420": "reversal", "0421": "reversal",
    "0800": "network",
}
"""MTI -> how the issuer treats it; other requests in the catalogue are answered 12."""


class Decision(NamedTuple):
    """Why one message got its answer: a record for logs, reports and the history checker.

    Holds the PAN masked, never a PIN block or track data.

    A named tuple rather than a frozen dataclass: one is built for every message, and a frozen
    dataclass sets each field through ``object.__setattr__`` (three times the cost).
    """

    at: datetime
    mti: str
    code: str
    check: Check
    reason: str
    terminal_id: str = ""
    stan: str = ""
    transmitted: str = ""
    pan: str = ""
    amount: int | None = None
    currency: str | None = None
    auth_code: str | None = None
    cryptogram: ArqcCheck | None = None
    pin: PinResult | None = None
    ledger: Outcome | None = None
    duplicate: bool = False

    @property
    def approved(self) -> bool:
        """True when the answer was 00."""
        return self.code == RC.APPROVED.value

    def __str__(self) -> str:
        parts = [self.mti, f"{self.terminal_id}/{self.stan}", self.pan or "-"]
        if self.amount is not None:
            parts.append(f"{self.amount} {self.currency or '---'}")
        parts.append(f"-> {self.code} {self.reason} [{self.check.value}]")
        if self.cryptogram is not None and not self.cryptogram.ok:
            parts.append(f"cryptogram failure: {self.cryptogram}")
        if self.ledger is not None and self.ledger is not Outcome.BOOKED:
            parts.append(f"ledger: {self.ledger.value}")
        return " ".join(parts)


@dataclass(slots=True)
class _CardState:
    """What the issuer remembers per card between messages."""

    pin_failures: int = 0
    approvals: deque[datetime] = field(default_factory=deque)


class _Seen(NamedTuple):
    """A request answered recently: when, a digest of its content, the answer given."""

    at: datetime
    digest: int
    answer: Message


class _Stop(Exception):
    """A check failed: carries the answer's code and the decision's reason."""

    def __init__(
        self, check: Check, code: str, reason: str, *, arpc: bytes | None = None, pin: PinResult | None = None
    ) -> None:
        super().__init__(reason)
        self.check, self.code, self.reason, self.arpc, self.pin = check, code, reason, arpc, pin


class Issuer:
    """One issuer: its accounts (from the card set), its rules, its ledger.

    Parameters
    ----------
    config : IssuerConfig
        BIN range, currency and TEST ONLY issuer master key.
    cards : iterable of Card
        The cards it holds accounts for (each opened with its card-set balance).
    duplicate_window : timedelta
        How long an answer is kept to be given again to a duplicate request.
    pin_try_limit : int
        Consecutive wrong online PINs that block the PIN (the last one answers 75).
    zpk : bytes
        Zone PIN key DE52 is encrypted under (default the TEST ONLY key).
    ledger : Ledger, optional
        A ledger to book into (default a new one); accounts are opened in it.
    on_decision : callable, optional
        Called with every :class:`Decision` (a log sink).
    keep_decisions : int, optional
        Keep only the last N decisions in :attr:`decisions` (default: all).
    keep_postings : int, optional
        Keep only the last N postings of a ledger built here (default: all).
    keep_answers : int, optional
        Remember at most the last N answers for duplicates (default: every one of the
        duplicate window). At thousands of requests a second a 15-minute window holds
        millions; past the cap the oldest go first, and a repeat of one of them is
        answered 94 by the ledger's duplicate check (its original is booked), never
        booked twice.
    retain : timedelta, optional
        How long :meth:`prune` keeps a booked original after its last posting (default:
        forever). It must exceed the longest a terminal may take to repeat an advice or
        send a reversal (its store-and-forward horizon): a message about an original
        forgotten sooner is taken as new (see :meth:`Ledger.prune`).
    """

    def __init__(
        self,
        config: IssuerConfig,
        cards: Iterable[Card] = (),
        *,
        duplicate_window: timedelta = timedelta(minutes=15),
        pin_try_limit: int = 3,
        zpk: bytes = TEST_ZPK,
        ledger: Ledger | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        keep_decisions: int | None = None,
        keep_postings: int | None = None,
        keep_answers: int | None = None,
        retain: timedelta | None = None,
    ) -> None:
        if pin_try_limit < 1:
            raise ValueError(f"pin_try_limit is {pin_try_limit}; it must be at least 1")
        self.keep_answers = cap("keep_answers", keep_answers)
        self.config = config
        self.duplicate_window = duplicate_window
        self.pin_try_limit = pin_try_limit
        self.ledger = ledger if ledger is not None else Ledger(keep_postings=keep_postings)
        self.retain = retain
        self._zpk = zpk
        self._on_decision = on_decision
        self._decisions: deque[Decision] = deque(maxlen=keep_decisions)
        self._cards: dict[str, Card] = {}
        self._state: dict[str, _CardState] = {}
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()
        self._aliases: dict[TxnKey, TxnKey] = {}
        self._auth_counter = 0
        for card in cards:
            if card.issuer != config.id or not config.owns(card.pan):
                raise ValueError(f"card {card.label!r} ({card.masked_pan}) does not belong to issuer {config.id!r}")
            self._cards[card.pan] = card
            self._state[card.pan] = _CardState()
            self.ledger.open_account(card.pan, card.currency_info, card.balance)

    @classmethod
    def from_card_set(cls, card_set: CardSet, issuer_id: str, **options: object) -> "Issuer":
        """The issuer ``issuer_id`` of ``card_set`` with accounts for all its cards."""
        return cls(card_set.issuer(issuer_id), card_set.cards_of(issuer_id), **options)  # type: ignore[arg-type]

    # Queries --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The issuer id (``possim-visa-test``): how the acquirer names and routes to it."""
        return self.config.id

    def owns(self, pan: str) -> bool:
        """True when ``pan`` is in this issuer's BIN range."""
        return self.config.owns(pan)

    def bin_match(self, pan: str) -> int:
        """Length of the longest BIN prefix of this issuer that ``pan`` starts with (0: none).

        Lets the acquirer prefer the most specific range when it routes.
        """
        return max((len(prefix) for prefix in self.config.bins if pan.startswith(prefix)), default=0)

    def card(self, pan: str) -> Card | None:
        """The card on file for ``pan``, or ``None``."""
        return self._cards.get(pan)

    @property
    def cards(self) -> tuple[Card, ...]:
        """Every card this issuer holds an account for."""
        return tuple(self._cards.values())

    def balance(self, pan: str) -> int:
        """Booked balance of the account behind ``pan`` (minor units)."""
        return self.ledger.balance(pan)

    def held(self, pan: str) -> int:
        """Outstanding authorization holds on ``pan``."""
        return self.ledger.held(pan)

    def available(self, pan: str) -> int:
        """Balance minus holds: what an authorization may still take."""
        return self.ledger.available(pan)

    def pin_failures(self, pan: str) -> int:
        """Consecutive wrong online PINs on the card (0 after a right one)."""
        return self._state[pan].pin_failures

    def reset_pin_tries(self, pan: str) -> None:
        """Unblock the online PIN, as a call to the issuer's help desk would."""
        self._state[pan].pin_failures = 0

    def prune(self, now: datetime, *, before: datetime | None = None) -> int:
        """Forget what only a window needs, older than ``before`` (default ``now - retain``).

        Kept for how long, and why:

        * remembered answers to duplicates: ``duplicate_window`` (pruned on every message);
        * approvals counted for velocity: the card's velocity window (here, and on its next check);
        * booked originals in the ledger, and completions' links to the authorizations they
          captured: until ``before`` (:meth:`Ledger.prune`), never while a hold is open.

        Nothing is pruned without ``before`` or ``retain``. Returns the originals forgotten.
        """
        self._forget(now)
        for pan, state in self._state.items():
            approvals = state.approvals
            if approvals:
                window = timedelta(seconds=self._cards[pan].velocity_window_seconds)
                while approvals and now - approvals[0] >= window:
                    approvals.popleft()
        if before is None:
            if self.retain is None:
                return 0
            before = now - self.retain
        gone = self.ledger.prune(before)
        if gone:
            state = self.ledger.state
            self._aliases = {k: v for k, v in self._aliases.items() if state(v) is not TxnState.ABSENT}
        return gone

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """Decision records, oldest first."""
        return tuple(self._decisions)

    @property
    def last_decision(self) -> Decision | None:
        """The most recent decision record."""
        return self._decisions[-1] if self._decisions else None

    # The one entry point ----------------------------------------------------------------------

    def handle(self, msg: Message, now: datetime) -> Message:
        """Answer one message at time ``now``.

        Parameters
        ----------
        msg : Message
            A request, advice, reversal or network message.
        now : datetime
            The caller's clock (virtual or wall), used for expiry, velocity and the
            duplicate window. Pass all-naive or all-aware datetimes, never a mix.

        Returns
        -------
        Message
            The response (0110, 0130, 0210, 0230, 0410, 0430, 0810, ...).

        Raises
        ------
        IssuerError
            ``msg`` is not a request the catalogue knows (a response, an unknown MTI).
        """
        mti = msg.fields.get("t", "")
        mtype = MESSAGE_TYPES.get(mti)
        if mtype is None or not mtype.is_request:
            raise IssuerError(f"MTI {mti!r} is not a request an issuer answers")
        self._forget(now)
        family = _FAMILY.get(mti)
        if family is None:
            return self._finish(msg, now, RC.INVALID_TRANSACTION.value, Check.TRANSACTION, f"{mtype.name} is not an issuer message")
        if family == "network":
            return self._finish(msg, now, RC.APPROVED.value, Check.NETWORK, "network management")
        try:
            problem = _format_problem(msg, family)
        except (MessageError, ValueError, KeyError) as exc:  # defensive: nothing escapes on bad input
            problem = (RC.FORMAT_ERROR.value, f"format error: {exc}")
        if problem is not None:
            return self._finish(msg, now, problem[0], Check.FORMAT, problem[1])
        replay = self._replay(msg, now)
        if replay is not None:
            return replay
        if family == "request":
            answer = self._request(msg, now)
        elif family == "advice":
            answer = self._advice(msg, now)
        else:
            answer = self._reversal(msg, now)
        self._seen[_seen_key(msg)] = _Seen(now, _digest(msg), answer)
        keep_latest(self._seen, self.keep_answers)
        return answer

    # Families -----------------------------------------------------------------------------------

    def _request(self, msg: Message, now: datetime) -> Message:
        key = _key(msg)
        pan = msg.pan or ""
        is_credit = (msg.processing_code or "")[:2] in CREDIT_CODES
        verified: ArqcCheck | None = None
        pin: PinResult | None = None
        try:
            state = self.ledger.state(key)
            if state is TxnState.REVERSED_UNSEEN:
                raise _Stop(Check.LEDGER, RC.DO_NOT_HONOUR.value, "reversed before it arrived")
            if state is not TxnState.ABSENT:
                raise _Stop(Check.LEDGER, RC.DUPLICATE_TRANSMISSION.value, "original already booked")
            card = self._card_checks(pan, msg, now)
            self._transaction_checks(card, msg, allow_credit=msg.mti == "0200")
            if "52" in msg.fields:
                pin = self._pin_check(card, msg.fields["52"])
            if _chip(msg):
                verified = verify_arqc(self.config, card, msg.icc, amount=msg.amount)
                if not verified.ok:
                    raise _Stop(Check.CRYPTOGRAM, RC.DO_NOT_HONOUR.value, "cryptogram failure")
            amount = msg.amount or 0
            if not is_credit:
                self._spending_checks(card, amount, now, lambda code: self._arpc(card, msg, verified, code))
            result = (
                self.ledger.credit(key, pan, amount, at=now) if is_credit
                else self.ledger.hold(key, pan, amount, at=now) if msg.mti == "0100"
                else self.ledger.debit(key, pan, amount, at=now)
            )
            if not result.booked:  # pragma: no cover - the ledger check above already refused these
                raise _Stop(Check.LEDGER, RC.DUPLICATE_TRANSMISSION.value, result.outcome.value)
            if not is_credit:
                self._state[pan].approvals.append(now)
            self._auth_counter += 1
            auth_code = f"{self._auth_counter:06d}"
            icc = {"91": self._arpc(card, msg, verified, _APPROVED)} if verified is not None else None
            return self._finish(
                msg, now, _APPROVED, Check.APPROVED, "approved", auth_code=auth_code, icc=icc,
                cryptogram=verified, pin=pin, ledger=result.outcome,
            )
        except _Stop as stop:
            icc = {"91": stop.arpc} if stop.arpc is not None else None
            return self._finish(
                msg, now, stop.code, stop.check, stop.reason, icc=icc, cryptogram=verified, pin=stop.pin or pin
            )

    def _advice(self, msg: Message, now: datetime) -> Message:
        key = _key(msg)
        pan = msg.pan or ""
        code = msg.response_code or ""
        try:
            card = self._known_card(pan)
            self._transaction_checks(card, msg, allow_credit=True)
        except _Stop as stop:
            return self._finish(msg, now, stop.code, stop.check, f"advice not booked: {stop.reason}")
        if code not in ADVICE_APPROVED:
            return self._finish(msg, now, RC.APPROVED.value, Check.ADVICE, f"advice of a declined transaction ({code}), not booked")
        amount = msg.amount or 0
        original = msg.original
        if original is not None:
            target = TxnKey(key.terminal_id, original.stan, original.transmitted)
            state = self.ledger.state(target)
            if state is TxnState.HELD:
                result = self.ledger.capture(target, amount, by=key, at=now)
                self._aliases[key] = target
                return self._finish(msg, now, RC.APPROVED.value, Check.ADVICE, "completion captured", ledger=result.outcome)
            if state is not TxnState.ABSENT:
                return self._finish(
                    msg, now, RC.APPROVED.value, Check.ADVICE, f"original {state.value}, not booked again",
                    ledger=Outcome.DUPLICATE if state is not TxnState.REVERSED_UNSEEN else Outcome.ALREADY_REVERSED,
                )
        if (msg.processing_code or "")[:2] in CREDIT_CODES:
            result = self.ledger.credit(key, pan, amount, at=now)
        elif original_mti(msg.mti) == "0120":
            result = self.ledger.hold(key, pan, amount, at=now)
        else:
            result = self.ledger.debit(key, pan, amount, at=now)
        reason = "advice booked" if result.booked else f"advice acknowledged, not booked: {result.outcome.value}"
        return self._finish(msg, now, RC.APPROVED.value, Check.ADVICE, reason, ledger=result.outcome)

    def _reversal(self, msg: Message, now: datetime) -> Message:
        original = msg.original
        assert original is not None  # the format check requires DE90
        target = TxnKey(msg.terminal_id or "", original.stan, original.transmitted)
        target = self._aliases.get(target, target)
        known = self.ledger.transaction(target)
        pan = msg.pan
        if known is not None and known.pan and pan and pan != known.pan:
            return self._finish(msg, now, RC.INVALID_TRANSACTION.value, Check.REVERSAL, "reversal PAN differs from the original's")
        alpha = _alpha(msg.currency)
        result = self.ledger.reverse(
            target, msg.amount, by=_key(msg), pan=pan or (known.pan if known else None), currency=alpha, at=now
        )
        reason = {
            Outcome.BOOKED: "reversed",
            Outcome.UNKNOWN_ORIGINAL: "original unknown: recorded, not booked",
        }.get(result.outcome, f"acknowledged, not booked: {result.outcome.value}")
        return self._finish(msg, now, RC.APPROVED.value, Check.REVERSAL, reason, ledger=result.outcome)

    # Checks -------------------------------------------------------------------------------------

    def _known_card(self, pan: str) -> Card:
        if not luhn_valid(pan):
            raise _Stop(Check.LUHN, RC.INVALID_CARD_NUMBER.value, "PAN fails the Luhn check")
        if not self.config.owns(pan):
            raise _Stop(Check.ISSUER, RC.NO_SUCH_ISSUER.value, "BIN not served by this issuer")
        card = self._cards.get(pan)
        if card is None:
            raise _Stop(Check.ISSUER, RC.INVALID_CARD_NUMBER.value, "no account for this PAN")
        return card

    def _card_checks(self, pan: str, msg: Message, now: datetime) -> Card:
        card = self._known_card(pan)
        if card.status in STATUS_CODES:
            raise _Stop(Check.STATUS, STATUS_CODES[card.status].value, f"card {card.status}")
        if card.expired(now):
            raise _Stop(Check.EXPIRY, RC.EXPIRED_CARD.value, f"card expired {card.expiry[2:]}/{card.expiry[:2]}")
        presented = _presented_expiry(msg)
        if presented is not None and presented != card.expiry:
            raise _Stop(Check.EXPIRY, RC.EXPIRED_CARD.value, "presented expiry date differs from the card's")
        return card

    def _transaction_checks(self, card: Card, msg: Message, *, allow_credit: bool) -> None:
        kind = (msg.processing_code or "")[:2]
        if kind not in DEBIT_CODES and not (allow_credit and kind in CREDIT_CODES):
            raise _Stop(Check.TRANSACTION, RC.INVALID_TRANSACTION.value, f"processing code {kind} not supported here")
        if msg.currency != card.currency_info.numeric:
            raise _Stop(
                Check.TRANSACTION, RC.INVALID_TRANSACTION.value,
                f"currency {msg.currency} is not the account currency {card.currency_info.numeric} (no conversion)",
            )

    def _pin_check(self, card: Card, pin_block: str) -> PinResult:
        state = self._state[card.pan]
        if state.pin_failures >= self.pin_try_limit:
            raise _Stop(Check.PIN, RC.PIN_TRIES_EXCEEDED.value, "online PIN blocked")
        result = verify_pin_block(pin_block, card.pan, card.pin, self._zpk)
        if result is PinResult.CORRECT:
            state.pin_failures = 0
            return result
        state.pin_failures += 1
        if state.pin_failures >= self.pin_try_limit:
            raise _Stop(Check.PIN, RC.PIN_TRIES_EXCEEDED.value, f"PIN {result.value}: tries exhausted", pin=result)
        raise _Stop(
            Check.PIN, RC.INCORRECT_PIN.value, f"PIN {result.value} ({state.pin_failures} of {self.pin_try_limit})",
            pin=result,
        )

    def _spending_checks(
        self, card: Card, amount: int, now: datetime, arpc_for: Callable[[str], bytes | None]
    ) -> None:
        def stop(check: Check, code: RC, reason: str) -> _Stop:
            return _Stop(check, code.value, reason, arpc=arpc_for(code.value))

        if amount > card.amount_limit:
            raise stop(Check.AMOUNT_LIMIT, RC.EXCEEDS_AMOUNT_LIMIT, f"amount over the limit {card.amount_limit}")
        approvals = self._state[card.pan].approvals
        window = timedelta(seconds=card.velocity_window_seconds)
        while approvals and now - approvals[0] >= window:
            approvals.popleft()
        if len(approvals) >= card.velocity_count:
            raise stop(Check.VELOCITY, RC.EXCEEDS_FREQUENCY_LIMIT, f"{card.velocity_count} approvals in {window}")
        if amount > self.ledger.available(card.pan):
            raise stop(Check.FUNDS, RC.INSUFFICIENT_FUNDS, "insufficient funds")

    # ARPC ---------------------------------------------------------------------------------------

    def _arpc(self, card: Card, msg: Message, verified: ArqcCheck | None, code: str) -> bytes | None:
        """Tag 91 (ARPC for ``code``) when the ARQC verified, else ``None``: no ARPC for an unverified card."""
        if verified is None or not verified.ok:
            return None
        return arpc(icc_master_key(self.config, card), msg.icc["9F26"], code)

    # Answers and records ----------------------------------------------------------------------

    def _replay(self, msg: Message, now: datetime) -> Message | None:
        seen = self._seen.get(_seen_key(msg))
        if seen is None:
            return None
        if seen.digest != _digest(msg):
            return self._finish(
                msg, now, RC.DUPLICATE_TRANSMISSION.value, Check.DUPLICATE,
                "same DE41+DE11+DE7 as an earlier message with other content", duplicate=True,
            )
        code = seen.answer.response_code or ""
        self._record(msg, now, code, Check.DUPLICATE, "duplicate: first answer repeated", duplicate=True,
                     auth_code=seen.answer.auth_code)
        return Message(dict(seen.answer.fields))  # a copy: the remembered answer stays as first given

    def _forget(self, now: datetime) -> None:
        """Drop remembered answers older than the duplicate window (oldest first)."""
        forget_before(self._seen, now - self.duplicate_window, lambda seen: seen.at)

    def _finish(
        self,
        msg: Message,
        now: datetime,
        code: str,
        check: Check,
        reason: str,
        *,
        auth_code: str | None = None,
        icc: dict[str, bytes] | None = None,
        **record: object,
    ) -> Message:
        answer = _answer(msg, code, now, auth_code=auth_code, icc=icc)
        self._record(msg, now, code, check, reason, auth_code=auth_code, **record)
        return answer

    def _record(self, msg: Message, now: datetime, code: str, check: Check, reason: str, **extra: object) -> None:
        try:
            pan = msg.pan or ""
        except (ValueError, KeyError, IndexError):
            pan = ""
        try:
            amount = msg.amount
        except (ValueError, KeyError, IndexError):
            amount = None
        decision = Decision(
            at=now,
            mti=msg.fields.get("t", ""),
            code=code,
            check=check,
            reason=reason,
            terminal_id=msg.fields.get("41", ""),
            stan=msg.fields.get("11", ""),
            transmitted=msg.fields.get("7", ""),
            pan=mask_pan(pan) if pan else "",
            amount=amount,
            currency=msg.fields.get("49"),
            **extra,  # type: ignore[arg-type]
        )
        self._decisions.append(decision)
        if self._on_decision is not None:
            self._on_decision(decision)


# Helpers ----------------------------------------------------------------------------------------


def _key(msg: Message) -> TxnKey:
    return TxnKey(msg.fields.get("41", ""), msg.fields.get("11", ""), msg.fields.get("7", ""))


def _seen_key(msg: Message) -> tuple[str, str, str, str]:
    return (original_mti(msg.mti), msg.fields.get("41", ""), msg.fields.get("11", ""), msg.fields.get("7", ""))


def _digest(msg: Message) -> int:
    """What makes a repeat the same message: type, amount, currency, PAN (hashed, not kept).

    Python's keyed string hash (see :func:`sim.core.acquirer._content`): the window of
    answers lives in one process.
    """
    fields = msg.fields
    return hash((original_mti(fields["t"]), fields.get("3", ""), fields.get("4", ""), fields.get("49", ""),
                 msg.pan or "", fields.get("90", "")))


def _chip(msg: Message) -> bool:
    return (msg.entry_mode or "")[:2] in CHIP_ENTRY_MODES and "55" in msg.fields


def _alpha(numeric: str | None) -> str | None:
    try:
        return lookup_currency(numeric).alpha if numeric else None
    except CurrencyError:
        return None


def _presented_expiry(msg: Message) -> str | None:
    """YYMM the terminal read: DE14, else the four digits after the track 2 separator."""
    if "14" in msg.fields:
        return msg.fields["14"]
    track = msg.fields.get("35")
    if track:
        for sep in ("D", "=", "d"):
            if sep in track:
                return track.split(sep, 1)[1][:4]
    return None


def _format_problem(msg: Message, family: str) -> tuple[str, str] | None:
    """Step 1: the first content rule ``msg`` breaks, as (DE39, reason), or ``None``."""
    fields = msg.fields
    try:
        msg.checked()
    except MessageError as exc:
        return RC.FORMAT_ERROR.value, str(exc)
    pan = msg.pan
    if family != "reversal" or pan is not None:
        if pan is None or not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
            return RC.FORMAT_ERROR.value, "PAN must be 12 to 19 digits"
    if len(fields.get("3", "")) != 6:
        return RC.FORMAT_ERROR.value, "DE3 must be 6 digits"
    expiry = fields.get("14")
    if expiry is not None and not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
        return RC.FORMAT_ERROR.value, "DE14 must be YYMM"
    track = fields.get("35")
    if track is not None:
        presented = _presented_expiry(msg)
        if presented is None or len(presented) != 4 or not presented.isdigit():
            return RC.FORMAT_ERROR.value, "DE35 must be PAN, separator, YYMM, service code"
    if _alpha(fields.get("49")) is None:
        return RC.FORMAT_ERROR.value, "DE49 is not an ISO 4217 numeric currency code"
    pin_block = fields.get("52")
    if pin_block is not None and not (len(pin_block) == 16 and all(c in "0123456789ABCDEFabcdef" for c in pin_block)):
        return RC.FORMAT_ERROR.value, "DE52 must be 16 hex characters"
    if "55" in fields:
        msg.icc  # raises MessageError when DE55 is not BER-TLV
    if family == "reversal":
        msg.original  # raises MessageError when DE90 is malformed
    elif (msg.amount or 0) == 0:
        return RC.INVALID_AMOUNT.value, "amount is zero"
    return None


def _answer(msg: Message, code: str, now: datetime, *, auth_code: str | None, icc: dict[str, bytes] | None) -> Message:
    """``response(msg, code)``, or a minimal answer when ``msg`` is too broken to echo."""
    try:
        return response(msg, code, auth_code=auth_code, icc=icc)
    except MessageError:
        src = msg.fields
        fields = {"t": MESSAGE_TYPES[src["t"]].response or "", "39": code}
        when = src.get("7", "")
        fields["7"] = when if len(when) == 10 and when.isdigit() else now.strftime("%m%d%H%M%S")
        stan = src.get("11", "")
        fields["11"] = stan if len(stan) == 6 and stan.isdigit() else "000000"
        fields["41"] = src.get("41", "")
        if "70" in src:
            fields["70"] = src["70"]
        return Message(fields)


# Several issuers --------------------------------------------------------------------------------


def build_issuers(card_set: CardSet | None = None, **options: object) -> dict[str, Issuer]:
    """One :class:`Issuer` per issuer of ``card_set`` (default: the packaged set), by id."""
    cards = card_set if card_set is not None else load_cards()
    return {config.id: Issuer.from_card_set(cards, config.id, **options) for config in cards.issuers}


def route(issuers: Iterable[Issuer], pan: str) -> Issuer | None:
    """The issuer whose BIN range holds ``pan`` (``None``: the scheme answers 15)."""
    return next((issuer for issuer in issuers if issuer.owns(pan)), None)
