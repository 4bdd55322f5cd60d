"""The issuer ledger: accounts, holds and an append-only list of postings.

Money is booked exactly once per original transaction, whatever the network does:
an advice sent again (0221), a reversal repeated (0401) or a duplicate request
never books a second time. Every original transaction is keyed by what the
terminal put in it: terminal id (DE41), STAN (DE11) and transmission time (DE7);
reversals name their original through DE90 and are keyed on it.

What may happen to an original is written once, as data, in :data:`TRANSITIONS`
(the h11 way): ``(state, event) -> new state``. A pair that is not there is not
booked, and :data:`REFUSALS` says what the caller is told instead.

Memory (a long run, a long-lived host): the postings are a record for readers, not
state; ``keep_postings`` keeps only the latest N of them, and ``on_posting`` hands
every posting to a reader as it is written (the SimPy world streams them to its
history checker). What booking exactly once needs is the state of each original;
:meth:`Ledger.prune` forgets originals with no hold left open whose last posting is
older than a cut-off the caller chooses (see there for how long that must be).

All amounts are ``int`` minor units of the account currency. A balance may go
below zero: offline approvals and stand-in advices are money already spent and
are booked even when the account cannot cover them.

Examples
--------
>>> ledger = Ledger()
>>> _ = ledger.open_account("4761739001010010", "EUR", 10000)
>>> sale = TxnKey("TERM0001", "000001", "0315103000")
>>> ledger.debit(sale, "4761739001010010", 2500).outcome
<Outcome.BOOKED: 'booked'>
>>> ledger.debit(sale, "4761739001010010", 2500).outcome   # the same sale again
<Outcome.DUPLICATE: 'duplicate'>
>>> ledger.reverse(sale, 1000).outcome, ledger.balance("4761739001010010")
(<Outcome.BOOKED: 'booked'>, 8500)
>>> ledger.entries()[0]
Posting(#1 debit TERM0001/000001/0315103000 476173******0010 -2500 EUR)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from collections import deque
from typing import Callable, Iterator, NamedTuple

from ..iso8583.pretty import mask_pan
from .money import Currency, currency as lookup_currency

__all__ = [
    "AccountView",
    "Event",
    "Kind",
    "Ledger",
    "LedgerError",
    "NetEffect",
    "Outcome",
    "Posting",
    "REFUSALS",
    "Result",
    "TRANSITIONS",
    "TxnKey",
    "TxnState",
    "TxnView",
]


class LedgerError(ValueError):
    """A call the ledger cannot honour: unknown account, an amount that is not a non-negative int."""


class TxnKey(NamedTuple):
    """Identity of an original transaction: DE41 terminal id, DE11 STAN, DE7 transmission time.

    A named tuple: hashed and compared in C on every window and ledger lookup (a
    frozen dataclass hashes through a Python ``__hash__``).
    """

    terminal_id: str
    stan: str
    transmitted: str

    def __str__(self) -> str:
        return f"{self.terminal_id}/{self.stan}/{self.transmitted}"


class Kind(str, Enum):
    """What a posting did to an account."""

    DEBIT = "debit"
    """A sale (0200, 0220): balance down."""
    CREDIT = "credit"
    """A refund (processing code 20): balance up."""
    HOLD = "hold"
    """An authorization (0100, 0120): available down, balance unchanged."""
    CAPTURE = "capture"
    """A completion of a hold (0220 naming a 0100 in DE90): hold released, balance down."""
    RELEASE = "release"
    """A reversal of a hold: hold (partly) released."""
    REVERSAL = "reversal"
    """A reversal of a debit, capture or credit: the balance effect (partly) undone."""


class TxnState(str, Enum):
    """Where an original transaction stands on the ledger."""

    ABSENT = "absent"
    HELD = "held"
    DEBITED = "debited"
    CAPTURED = "captured"
    CREDITED = "credited"
    REVERSED_UNSEEN = "reversed before seen"
    """A reversal came for it before (or instead of) the original: it must never be booked."""


class Event(str, Enum):
    """What a caller asks the ledger to do to an original."""

    DEBIT = "debit"
    CREDIT = "credit"
    HOLD = "hold"
    CAPTURE = "capture"
    REVERSE = "reverse"


class Outcome(str, Enum):
    """What the ledger did with a request."""

    BOOKED = "booked"
    DUPLICATE = "duplicate"
    """Already applied (same original, same reversal): acknowledged, nothing booked."""
    UNKNOWN_ORIGINAL = "unknown original"
    """A reversal or capture of a transaction the ledger never booked: recorded, not booked."""
    NOTHING_LEFT = "nothing left to reverse"
    """A new reversal of an original already reversed in full: acknowledged, nothing booked."""
    ALREADY_REVERSED = "already reversed"
    """The original arrives after its reversal: not booked."""


S, E = TxnState, Event

TRANSITIONS: dict[tuple[TxnState, Event], TxnState] = {
    (S.ABSENT, E.DEBIT): S.DEBITED,
    (S.ABSENT, E.CREDIT): S.CREDITED,
    (S.ABSENT, E.HOLD): S.HELD,
    (S.ABSENT, E.REVERSE): S.REVERSED_UNSEEN,  # recorded, not booked
    (S.HELD, E.CAPTURE): S.CAPTURED,
    (S.HELD, E.REVERSE): S.HELD,  # release, in part or in full
    (S.DEBITED, E.REVERSE): S.DEBITED,
    (S.CAPTURED, E.REVERSE): S.CAPTURED,
    (S.CREDITED, E.REVERSE): S.CREDITED,
    (S.REVERSED_UNSEEN, E.REVERSE): S.REVERSED_UNSEEN,  # another reversal of the unseen: recorded
}
"""Every booking the ledger allows: (state of the original, event) -> its next state."""

REFUSALS: dict[tuple[TxnState, Event], Outcome] = {
    (S.ABSENT, E.CAPTURE): Outcome.UNKNOWN_ORIGINAL,
    **{(S.REVERSED_UNSEEN, e): Outcome.ALREADY_REVERSED for e in (E.DEBIT, E.CREDIT, E.HOLD, E.CAPTURE)},
}
"""What a refused pair answers; any pair in neither table is a :attr:`Outcome.DUPLICATE`."""

del S, E


class Posting(NamedTuple):
    """One append-only ledger record, as the history checker reads it.

    ``terminal_id``/``stan``/``transmitted`` name the *original* transaction, so all
    postings of one transaction group together; ``reference`` names the message
    that caused this posting when it is another one (a reversal, a completion).
    ``balance_effect`` and ``hold_effect`` are the signed changes to the account's
    balance and holds (both 0 for a posting recorded but not booked). The PAN is
    masked in ``repr`` and ``str``.

    A named tuple rather than a frozen dataclass: one is written for every booking, and a frozen
    dataclass sets each field through ``object.__setattr__`` (three times the cost).
    """

    seq: int
    kind: Kind
    terminal_id: str
    stan: str
    transmitted: str
    pan: str
    amount: int
    currency: str
    balance_effect: int
    hold_effect: int
    booked: bool = True
    note: str = ""
    reference: TxnKey | None = None
    at: datetime | None = None

    @property
    def key(self) -> TxnKey:
        """The original transaction this posting belongs to."""
        return TxnKey(self.terminal_id, self.stan, self.transmitted)

    @property
    def masked_pan(self) -> str:
        """PAN with only the first 6 and last 4 digits."""
        return mask_pan(self.pan) if self.pan else ""

    def __repr__(self) -> str:
        effect = self.balance_effect if self.kind is not Kind.HOLD and self.kind is not Kind.RELEASE else self.hold_effect
        flag = "" if self.booked else f" not booked: {self.note}"
        return f"Posting(#{self.seq} {self.kind.value} {self.key} {self.masked_pan} {effect:+d} {self.currency}{flag})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class NetEffect:
    """The sum of one original transaction's postings: what it did to the account in the end."""

    key: TxnKey
    pan: str
    currency: str
    state: TxnState
    booked: int
    """Amount of the original booking (debit, credit, hold, or capture once captured)."""
    reversed: int
    """Amount reversed or released so far."""
    balance: int
    """Signed net change to the balance."""
    held: int
    """Hold still outstanding."""

    def __repr__(self) -> str:
        return (
            f"NetEffect({self.key} {mask_pan(self.pan) if self.pan else '-'} {self.state.value} "
            f"balance {self.balance:+d} held {self.held} {self.currency})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class AccountView:
    """A snapshot of an account: balance, holds, available = balance - holds."""

    pan: str
    currency: Currency
    balance: int
    held: int

    @property
    def available(self) -> int:
        """What the cardholder may still spend."""
        return self.balance - self.held

    def __repr__(self) -> str:
        return f"AccountView({mask_pan(self.pan)} balance {self.balance} held {self.held} {self.currency.alpha})"


@dataclass(frozen=True, slots=True)
class TxnView:
    """A snapshot of one original transaction on the ledger (see :meth:`Ledger.transaction`)."""

    key: TxnKey
    state: TxnState
    pan: str = field(repr=False)
    amount: int
    reversed: int


class Result(NamedTuple):
    """What one ledger call did: its outcome, the posting it wrote (if any), the amount booked.

    A named tuple, as :class:`Posting`: one comes back from every booking.
    """

    outcome: Outcome
    posting: Posting | None = None
    amount: int = 0

    @property
    def booked(self) -> bool:
        """True when money moved (a posting with an effect was appended)."""
        return self.outcome is Outcome.BOOKED


@dataclass(slots=True)
class _Account:
    pan: str
    currency: Currency
    balance: int
    holds: dict[TxnKey, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Txn:
    key: TxnKey
    state: TxnState
    pan: str
    currency: str
    amount: int = 0
    reversed: int = 0
    reversals: frozenset[TxnKey] = frozenset()
    """The reversals seen (by their own key). Shared empty until the first: a set per
    original would cost 216 bytes each, for the hour of originals a host keeps."""
    balance: int = 0
    held: int = 0
    last: datetime | None = None
    """When the latest posting for it was written (``None``: never dated, never pruned)."""


def _amount(value: object, what: str = "amount") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LedgerError(f"{what} {value!r} must be a non-negative int of minor units")
    return value


class Ledger:
    """Accounts by PAN, their holds, and the append-only postings.

    Not thread-safe and never does I/O: the issuer calls it from its ``handle``.

    Parameters
    ----------
    keep_postings : int, optional
        Keep only the latest N postings in :meth:`entries` (default: all). Sequence
        numbers go on counting, so a reader can tell how many went before.
    on_posting : callable, optional
        Called with every posting as it is written (a journal, a streaming checker).
    """

    def __init__(self, *, keep_postings: int | None = None,
                 on_posting: Callable[[Posting], None] | None = None) -> None:
        self._accounts: dict[str, _Account] = {}
        self._txns: dict[TxnKey, _Txn] = {}
        self._postings: deque[Posting] = deque(maxlen=keep_postings)
        self._seq = 0
        self.on_posting = on_posting

    # Accounts -------------------------------------------------------------------------------

    def open_account(self, pan: str, currency: str | Currency, balance: int = 0) -> AccountView:
        """Open the account behind ``pan`` with an opening balance; ``LedgerError`` if it exists."""
        if pan in self._accounts:
            raise LedgerError(f"account {mask_pan(pan)} is already open")
        cur = currency if isinstance(currency, Currency) else lookup_currency(currency)
        self._accounts[pan] = _Account(pan, cur, _amount(balance, "opening balance"))
        return self.account(pan)

    def _account(self, pan: str) -> _Account:
        try:
            return self._accounts[pan]
        except KeyError:
            raise LedgerError(f"no account for {mask_pan(pan)}") from None

    def has_account(self, pan: str) -> bool:
        """True when an account is open for ``pan``."""
        return pan in self._accounts

    def account(self, pan: str) -> AccountView:
        """A snapshot of the account for ``pan``."""
        acc = self._account(pan)
        return AccountView(acc.pan, acc.currency, acc.balance, sum(acc.holds.values()))

    def accounts(self) -> tuple[AccountView, ...]:
        """Snapshots of every account."""
        return tuple(self.account(pan) for pan in self._accounts)

    def balance(self, pan: str) -> int:
        """Booked balance (holds not deducted)."""
        return self._account(pan).balance

    def held(self, pan: str) -> int:
        """Sum of outstanding holds."""
        return sum(self._account(pan).holds.values())

    def available(self, pan: str) -> int:
        """Balance minus holds: what an authorization may still take."""
        acc = self._account(pan)
        return acc.balance - sum(acc.holds.values())

    # Transactions -----------------------------------------------------------------------------

    def state(self, key: TxnKey) -> TxnState:
        """Where the original ``key`` stands (``ABSENT`` when never seen)."""
        txn = self._txns.get(key)
        return txn.state if txn is not None else TxnState.ABSENT

    def transaction(self, key: TxnKey) -> TxnView | None:
        """A snapshot of the original ``key``, or ``None`` when never seen."""
        txn = self._txns.get(key)
        if txn is None:
            return None
        return TxnView(txn.key, txn.state, txn.pan, txn.amount, txn.reversed)

    def debit(self, key: TxnKey, pan: str, amount: int, *, at: datetime | None = None) -> Result:
        """Book a sale once: balance down by ``amount``."""
        return self._book(Event.DEBIT, key, pan, amount, at)

    def credit(self, key: TxnKey, pan: str, amount: int, *, at: datetime | None = None) -> Result:
        """Book a refund once: balance up by ``amount``."""
        return self._book(Event.CREDIT, key, pan, amount, at)

    def hold(self, key: TxnKey, pan: str, amount: int, *, at: datetime | None = None) -> Result:
        """Place an authorization hold once: available down by ``amount``."""
        return self._book(Event.HOLD, key, pan, amount, at)

    def capture(
        self, original: TxnKey, amount: int, *, by: TxnKey | None = None, at: datetime | None = None
    ) -> Result:
        """Complete the hold ``original`` once: release what is left of it, debit ``amount``.

        ``amount`` may differ from the hold (a tip, a smaller final amount). A
        second capture of the same original is a duplicate.
        """
        value = _amount(amount)
        txn = self._txns.get(original)
        refused = self._refused(txn, Event.CAPTURE)
        if refused is not None:
            return Result(refused)
        assert txn is not None
        acc = self._account(txn.pan)
        released = acc.holds.pop(original, 0)
        acc.balance -= value
        txn.state = TRANSITIONS[(txn.state, Event.CAPTURE)]
        txn.amount, txn.reversed, txn.held = value, 0, 0
        txn.balance -= value
        posting = self._post(Kind.CAPTURE, original, txn.pan, value, txn.currency, -value, -released, by, at)
        return Result(Outcome.BOOKED, posting, value)

    def reverse(
        self,
        original: TxnKey,
        amount: int | None = None,
        *,
        by: TxnKey | None = None,
        pan: str | None = None,
        currency: str | None = None,
        at: datetime | None = None,
    ) -> Result:
        """Reverse (part of) ``original`` once per reversal message.

        Parameters
        ----------
        amount : int, optional
            How much to reverse; default all that is left. Capped at what is left,
            so reversals of one original never undo more than it booked.
        by : TxnKey, optional
            The reversal's own key (its DE41/DE11/DE7). A reversal repeated
            (0401, 0421) carries the same key and books nothing more. Default:
            ``original`` (one reversal per original).
        pan, currency : str, optional
            For the record of a reversal whose original is unknown.

        Returns
        -------
        Result
            ``BOOKED`` (balance credited back, hold released, or refund taken
            back), ``DUPLICATE``, ``NOTHING_LEFT``, or ``UNKNOWN_ORIGINAL`` (the
            reversal is recorded with no effect, and the original is marked so it
            is never booked if it arrives later).
        """
        wanted = None if amount is None else _amount(amount)
        ref = by or original
        txn = self._txns.get(original)
        state = txn.state if txn is not None else TxnState.ABSENT
        if txn is not None and ref in txn.reversals:
            return Result(Outcome.DUPLICATE)
        refused = self._refused(txn, Event.REVERSE)
        if refused is not None:
            return Result(refused)
        if txn is None or state is TxnState.REVERSED_UNSEEN:
            if txn is None:
                txn = _Txn(original, TxnState.REVERSED_UNSEEN, pan or "", currency or "")
                self._txns[original] = txn
            txn.reversals |= {ref}
            posting = self._post(
                Kind.REVERSAL, original, txn.pan, wanted or 0, txn.currency, 0, 0, ref, at,
                booked=False, note="original unknown",
            )
            return Result(Outcome.UNKNOWN_ORIGINAL, posting)
        left = txn.amount - txn.reversed
        value = left if wanted is None else min(wanted, left)
        txn.reversals |= {ref}
        if value <= 0:
            return Result(Outcome.NOTHING_LEFT)
        acc = self._account(txn.pan)
        txn.reversed += value
        if txn.state is TxnState.HELD:
            acc.holds[original] -= value
            if acc.holds[original] == 0:
                del acc.holds[original]
            txn.held -= value
            posting = self._post(Kind.RELEASE, original, txn.pan, value, txn.currency, 0, -value, ref, at)
        else:
            sign = -1 if txn.state is TxnState.CREDITED else 1
            acc.balance += sign * value
            txn.balance += sign * value
            posting = self._post(Kind.REVERSAL, original, txn.pan, value, txn.currency, sign * value, 0, ref, at)
        return Result(Outcome.BOOKED, posting, value)

    # Records ----------------------------------------------------------------------------------

    def entries(self) -> tuple[Posting, ...]:
        """Every posting in order, immutable: the record a history checker replays."""
        return tuple(self._postings)

    def __iter__(self) -> Iterator[Posting]:
        return iter(tuple(self._postings))

    def __len__(self) -> int:
        return len(self._postings)

    @property
    def originals(self) -> int:
        """Original transactions whose state the ledger holds (what :meth:`prune` shrinks)."""
        return len(self._txns)

    def prune(self, before: datetime) -> int:
        """Forget originals whose last posting is before ``before`` and that hold nothing open.

        Their money stays in the account balances; what goes is the memory that the
        original was booked, reversed or captured. A message naming a forgotten original
        is treated as new: a repeated advice would be booked again, a reversal would find
        no original. So ``before`` must be earlier than the first posting of anything a
        later message may still name: the caller's retention window (``retain_s`` of the
        host config: at least the longest a terminal may take to repeat or reverse, i.e.
        its store-and-forward horizon), or, in the SimPy world, the oldest transaction
        still owed anywhere. An open hold (an authorization awaiting its completion or
        reversal) is never forgotten, however old. Returns how many were forgotten.

        >>> ledger = Ledger()
        >>> _ = ledger.open_account("4761739001010010", "EUR", 10000)
        >>> _ = ledger.debit(TxnKey("T1", "000001", "1122103000"), "4761739001010010", 100,
        ...                  at=datetime(2026, 11, 22, 10, 30))
        >>> ledger.prune(datetime(2026, 11, 22, 10, 0)), ledger.prune(datetime(2026, 11, 22, 11, 0))
        (0, 1)
        >>> ledger.originals, ledger.balance("4761739001010010")
        (0, 9900)
        """
        gone = [key for key, txn in self._txns.items()
                if txn.last is not None and txn.last < before and not txn.held]
        for key in gone:
            del self._txns[key]
        return len(gone)

    def net_effect(self, key: TxnKey) -> NetEffect | None:
        """What the original ``key`` did to its account in the end, or ``None`` when never seen."""
        txn = self._txns.get(key)
        if txn is None:
            return None
        return NetEffect(txn.key, txn.pan, txn.currency, txn.state, txn.amount, txn.reversed, txn.balance, txn.held)

    def net_effects(self) -> tuple[NetEffect, ...]:
        """:meth:`net_effect` of every original the ledger has seen, in first-seen order."""
        return tuple(self.net_effect(key) for key in self._txns)  # type: ignore[misc]

    # Internals --------------------------------------------------------------------------------

    def _refused(self, txn: _Txn | None, event: Event) -> Outcome | None:
        state = txn.state if txn is not None else TxnState.ABSENT
        if (state, event) in TRANSITIONS:
            return None
        return REFUSALS.get((state, event), Outcome.DUPLICATE)

    def _book(self, event: Event, key: TxnKey, pan: str, amount: int, at: datetime | None) -> Result:
        value = _amount(amount)
        acc = self._account(pan)
        txn = self._txns.get(key)
        refused = self._refused(txn, event)
        if refused is not None:
            return Result(refused)
        txn = _Txn(key, TRANSITIONS[(TxnState.ABSENT, event)], pan, acc.currency.alpha, value)
        self._txns[key] = txn
        if event is Event.HOLD:
            acc.holds[key] = value
            txn.held = value
            posting = self._post(Kind.HOLD, key, pan, value, txn.currency, 0, value, None, at)
        elif event is Event.DEBIT:
            acc.balance -= value
            txn.balance = -value
            posting = self._post(Kind.DEBIT, key, pan, value, txn.currency, -value, 0, None, at)
        else:
            acc.balance += value
            txn.balance = value
            posting = self._post(Kind.CREDIT, key, pan, value, txn.currency, value, 0, None, at)
        return Result(Outcome.BOOKED, posting, value)

    def _post(
        self,
        kind: Kind,
        key: TxnKey,
        pan: str,
        amount: int,
        currency: str,
        balance_effect: int,
        hold_effect: int,
        reference: TxnKey | None,
        at: datetime | None,
        *,
        booked: bool = True,
        note: str = "",
    ) -> Posting:
        self._seq += 1
        posting = Posting(
            seq=self._seq,
            kind=kind,
            terminal_id=key.terminal_id,
            stan=key.stan,
            transmitted=key.transmitted,
            pan=pan,
            amount=amount,
            currency=currency,
            balance_effect=balance_effect,
            hold_effect=hold_effect,
            booked=booked,
            note=note,
            reference=reference if reference != key else None,
            at=at,
        )
        self._postings.append(posting)
        txn = self._txns.get(key)
        if txn is not None and at is not None:
            txn.last = at
        if self.on_posting is not None:
            self.on_posting(posting)
        return posting
