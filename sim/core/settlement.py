"""Host-side batches, end-of-day reconciliation (0500/0510), batch upload and the settlement report.

The acquirer tells :class:`Settlement` about every transaction it answered; settlement
keeps, per terminal and currency, the approved debits and credits the host believes the
terminal holds. At the end of the day the terminal sends its own totals in a 0500 (one
per currency) and the host compares (SET-01): 0510 ``00`` when they agree, ``95`` when
they do not, after which the terminal uploads its transactions and the host adds whatever
it is missing, each transaction once.

Batch upload comes two ways, through one path (:meth:`Settlement.add_upload`, one
transaction at a time):

* over the wire, the common POS host convention: one 0320 per transaction of the batch
  (the original's data, DE39 its decision, DE90 naming the original MTI, STAN and DE7),
  each answered 0330 ``00``; then a 0500 with DE3 ``960000`` ("settlement after upload";
  the first 0500 carries ``920000`` or no DE3), answered ``00`` when the totals now match,
  which settles the batches as ``uploaded``, and ``95`` again otherwise;
* in process, :meth:`Settlement.upload` takes the original messages at once and closes
  the terminal's unsettled batches as ``uploaded`` whatever the totals.

An uploaded transaction is keyed by its *original* terminal id + STAN + DE7 (from DE90
for a 0320), so one the host already counted -- or an upload repeated after a lost
0330 or a terminal restart -- is never added twice; a declined one is not counted.

Rules, each chosen so a transaction is counted once and only once:

* An entry is keyed by terminal id + STAN + DE7 (the duplicate key of REV-03). A second
  record with the same key (a 0221 repeat, a duplicate 0200) changes nothing.
* The business day of an entry is the day of its *receipt* at the host, moved to the next
  day after the cut-off. A batch belongs to one business day: the first entry received
  after the cut-off closes the open batch (state ``cut-off``) and opens the next one, so an
  offline approval forwarded after the cut-off lands in the next batch, once (SET-02).
* A 0500 compares the terminal's totals with every batch of that terminal and currency not
  yet settled (``open`` and ``cut-off``), so a terminal that settles after the cut-off still
  matches; on a match they all become ``reconciled``.
* A reversal nets out its original (by DE90) while the original's batch is unsettled: the
  terminal removes reversed transactions from its totals, so the host does too. Once the
  batch is settled, the reversal becomes an opposite entry (kind flipped) in the current
  batch. The amount reversed is the reversal's DE4, capped at what is left of the original.
* A completion (an 0220 whose DE90 names an approved 0100 already counted) captures that
  authorization: the entry takes the completion's amount and is not counted a second time.
  The terminal counts a dual-message sale once, at the amount it captured; so does the host.
* Processing codes 20, 21, 22 and 28 (refund, deposit, credit adjustment, payment) are
  credits; every other approved transaction is a debit.
* Only masked PANs are kept: settlement needs no card data.

Memory: entries are state only while something may still name them (a repeat, a
reversal, a completion, an upload). :meth:`Settlement.prune` folds older ones into
their batch's totals and forgets them, so batch totals, 0500 answers and the daily
report stay exact while memory stays flat: settled batches after ``retain_s`` (config;
default: keep all), unsettled ones only when the driver says nothing can name them
(see there).

Examples
--------
>>> from datetime import datetime
>>> from sim.iso8583.message import financial_request, reconciliation_request
>>> s = Settlement({"cutoff": "22:00"})
>>> sale = financial_request(pan="4761739001010010", amount=1250, currency="978", stan=1,
...     transmitted="1122103000", terminal_id="TERM0001", entry_mode="051", icc={"9F26": bytes(8)})
>>> s.record(sale, "00", datetime(2026, 11, 22, 10, 30)).pan
'476173******0010'
>>> s.totals("TERM0001", "978")
Totals(credits_count=0, credits_amount=0, debits_count=1, debits_amount=1250)
>>> eod = reconciliation_request(terminal_id="TERM0001", stan=2, transmitted="1122180000",
...     currency="978", credits_count=0, credits_amount=0, debits_count=1, debits_amount=1250)
>>> s.reconcile(eod, datetime(2026, 11, 22, 18, 0)).response_code
'00'
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, Iterable, Mapping, NamedTuple

from ..iso8583.catalogue import validate
from ..iso8583.errors import MessageError
from ..iso8583.message import Message, response, uploaded_transaction
from ..iso8583.pretty import mask_pan
from .money import CurrencyError, currency, format_amount
from .windows import forget_before

TxnKey = tuple[str, str, str]
"""Terminal id, STAN, DE7: the key that makes one transaction one transaction."""

CREDIT_PROCESSING_CODES = frozenset({"20", "21", "22", "28"})
"""DE3 transaction types (first two digits) that credit the cardholder."""

APPROVED_CODES = frozenset({"00", "Y1", "Y3"})
"""DE39 values that mean approved: online (00), offline (Y1), unable to go online (Y3)."""

TRANSACTION_MTIS = frozenset({"0100", "0200", "0120", "0220"})
"""Original MTIs that carry a transaction settlement can count."""

SETTLE_AFTER_UPLOAD = "96"
"""DE3 transaction type of a 0500 sent after a batch upload (``960000``); ``92`` (or no DE3) before."""

CSV_COLUMNS = (
    "business_day", "terminal_id", "currency", "currency_numeric",
    "debits_count", "debits_minor", "debits", "credits_count", "credits_minor", "credits",
    "net_minor", "net",
)
"""Columns of the daily settlement report (``*_minor`` integers, the rest exact decimals)."""

_DEFAULTS: dict[str, Any] = {"cutoff": "00:00", "capture_authorizations": True, "retain_s": None}


class BatchState(str, Enum):
    """Where a batch is in its life: open, closed by the cut-off, settled with the terminal."""

    OPEN = "open"
    CUT_OFF = "cut-off"
    RECONCILED = "reconciled"
    UPLOADED = "uploaded"

    @property
    def settled(self) -> bool:
        """True once the terminal and the host have closed the batch together."""
        return self in (BatchState.RECONCILED, BatchState.UPLOADED)


class Entry(NamedTuple):
    """One approved transaction as the host counts it in a batch.

    ``pan`` is masked on the way in: reports and reconciliation never need the full PAN.
    ``reversed_amount`` grows when reversals net it out; :attr:`effective` is what counts.

    A named tuple rather than a frozen dataclass: one is counted for every approval, and a frozen
    dataclass sets each field through ``object.__setattr__`` (three times the cost).
    """

    terminal_id: str
    stan: str
    transmitted: str
    pan: str
    kind: str
    amount: int
    currency: str
    source: str
    received: datetime
    business_day: date
    batch: int
    reversed_amount: int = 0

    @property
    def key(self) -> TxnKey:
        """Terminal id, STAN, DE7."""
        return (self.terminal_id, self.stan, self.transmitted)

    @property
    def effective(self) -> int:
        """Amount still standing after reversals, in minor units."""
        return self.amount - self.reversed_amount


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts and amounts (minor units) of credits and debits: what a 0500 carries for one currency."""

    credits_count: int = 0
    credits_amount: int = 0
    debits_count: int = 0
    debits_amount: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(self.credits_count + other.credits_count, self.credits_amount + other.credits_amount,
                      self.debits_count + other.debits_count, self.debits_amount + other.debits_amount)

    def add(self, entry: Entry) -> "Totals":
        """These totals with ``entry`` counted (entries reversed to nothing do not count)."""
        value = entry.effective
        if value <= 0:
            return self
        if entry.kind == "credit":
            return replace(self, credits_count=self.credits_count + 1, credits_amount=self.credits_amount + value)
        return replace(self, debits_count=self.debits_count + 1, debits_amount=self.debits_amount + value)

    @property
    def net(self) -> int:
        """Debits minus credits: what the merchant is owed."""
        return self.debits_amount - self.credits_amount

    @classmethod
    def from_message(cls, msg: Message) -> "Totals":
        """Read DE74 (credits count), DE86 (credits amount), DE76 (debits count), DE88 (debits amount)."""
        values = {}
        names = (("74", "credits_count"), ("86", "credits_amount"), ("76", "debits_count"), ("88", "debits_amount"))
        for key, name in names:
            raw = msg.get(key)
            if raw is None or not raw.isdigit():
                raise MessageError(f"{msg.mti}: DE{key} ({name}) is {raw!r}; allowed: digits", field=key)
            values[name] = int(raw)
        return cls(**values)

    def fields(self) -> dict[str, str]:
        """These totals as 0500/0510 fields (n10 counts, n16 amounts)."""
        return {
            "74": f"{self.credits_count:010d}",
            "76": f"{self.debits_count:010d}",
            "86": f"{self.credits_amount:016d}",
            "88": f"{self.debits_amount:016d}",
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The outcome of one 0500: both sides' totals and the batches it settled (none on mismatch)."""

    terminal_id: str
    currency: str
    at: datetime
    terminal: Totals
    host: Totals
    matched: bool
    batches: tuple[int, ...]
    after_upload: bool = False


@dataclass(frozen=True, slots=True)
class Uploaded:
    """What one uploaded transaction did: ``added`` (the host was missing it), ``known`` or ``skipped``
    (declined, or not counted by this host); ``transaction`` is it in its original form."""

    outcome: str
    transaction: Message
    entry: Entry | None = None


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What a batch upload changed: entries the host was missing, how many it knew, batches closed."""

    terminal_id: str
    added: tuple[Entry, ...]
    known: int
    skipped: int
    closed: tuple[tuple[str, int], ...]
    totals: tuple[tuple[str, Totals], ...]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row of the daily report: a terminal's totals in one currency for one business day."""

    business_day: date
    terminal_id: str
    currency: str
    totals: Totals

    def as_csv(self) -> list[str]:
        """The row's cells in :data:`CSV_COLUMNS` order; decimals formatted with the ISO 4217 exponent."""
        try:
            cur = currency(self.currency)
            alpha, numeric = cur.alpha, cur.numeric

            def dec(minor: int) -> str:
                return format_amount(minor, cur).rsplit(" ", 1)[0]

        except CurrencyError:
            alpha, numeric = "", self.currency

            def dec(minor: int) -> str:
                return ""

        t = self.totals
        return [
            self.business_day.isoformat(), self.terminal_id, alpha, numeric,
            str(t.debits_count), str(t.debits_amount), dec(t.debits_amount),
            str(t.credits_count), str(t.credits_amount), dec(t.credits_amount),
            str(t.net), dec(t.net),
        ]


class _Batch:
    """A terminal's batch in one currency (mutable, internal)."""

    __slots__ = ("terminal_id", "currency", "number", "business_day", "state", "keys", "folded")

    def __init__(self, terminal_id: str, cur: str, number: int, business_day: date) -> None:
        self.terminal_id = terminal_id
        self.currency = cur
        self.number = number
        self.business_day = business_day
        self.state = BatchState.OPEN
        self.keys: list[TxnKey] = []
        self.folded = Totals()
        """What entries already pruned (:meth:`Settlement.prune`) counted."""


@dataclass(frozen=True, slots=True)
class BatchView:
    """A read-only picture of a batch for reports and tests."""

    terminal_id: str
    currency: str
    number: int
    business_day: date
    state: BatchState
    totals: Totals
    entries: tuple[Entry, ...]


def _parse_cutoff(value: Any) -> timedelta:
    text = str(value)
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"settlement config 'cutoff' is {value!r}; allowed: a time of day 'HH:MM' (e.g. '22:00')")
    return timedelta(hours=int(hours), minutes=int(minutes))


def _key(msg: Message) -> TxnKey:
    return (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")


class Settlement:
    """Batches per terminal and currency, reconciliation, upload and the daily report.

    Parameters
    ----------
    config : mapping, optional
        ``cutoff`` (``"HH:MM"``, default ``"00:00"``): receipts at or after it belong to the
        next business day. ``capture_authorizations`` (default ``True``): an approved 0100/0120
        counts in the batch like a 0200/0220 (terminal capture); set ``False`` for hosts that
        capture dual-message transactions only from their completion advices. ``retain_s``
        (default ``None``: keep all): how long :meth:`prune` keeps the entries of a settled
        batch after the last of them was received.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        cfg = dict(_DEFAULTS)
        for name, value in (config or {}).items():
            if name not in _DEFAULTS:
                raise ValueError(f"settlement config has unknown key {name!r}; known: {', '.join(_DEFAULTS)}")
            cfg[name] = value
        self._cutoff = _parse_cutoff(cfg["cutoff"])
        self._capture_auth = bool(cfg["capture_authorizations"])
        retain = cfg["retain_s"]
        if retain is not None and (isinstance(retain, bool) or not isinstance(retain, (int, float)) or retain < 0):
            raise ValueError(f"settlement config 'retain_s' is {retain!r}; allowed: seconds >= 0, or None to keep all")
        self.retain = None if retain is None else timedelta(seconds=retain)
        self._entries: dict[TxnKey, Entry] = {}
        self._batches: dict[tuple[str, str], list[_Batch]] = {}
        self._reversals: OrderedDict[TxnKey, datetime] = OrderedDict()
        """Reversal key -> when it was applied (oldest first)."""
        self._folded_days: dict[tuple[date, str, str], Totals] = {}
        """Report totals of pruned entries by business day, terminal and currency."""
        self._authorizations: set[TxnKey] = set()
        self._completions: dict[TxnKey, TxnKey] = {}
        """Completion key -> the authorization key its entry is kept under."""
        self._answered: OrderedDict[TxnKey, tuple[datetime, dict[str, str], Message]] = OrderedDict()
        """0500 key -> (received, its fields, its 0510), for the terminal that sends the same 0500 again."""
        self.reconciliations: list[Reconciliation] = []
        """Every 0500 outcome, in arrival order."""

    # Time -------------------------------------------------------------------------------

    def business_day(self, now: datetime) -> date:
        """The business day a receipt at ``now`` belongs to (the next day from the cut-off on)."""
        if not self._cutoff:
            return now.date()
        return (now - self._cutoff).date() + timedelta(days=1)

    def _cut(self, terminal_id: str, cur: str, now: datetime) -> list[_Batch]:
        """Close the open batch when ``now`` is past its business day; return the batch list."""
        batches = self._batches.setdefault((terminal_id, cur), [])
        if batches and batches[-1].state is BatchState.OPEN and batches[-1].business_day < self.business_day(now):
            batches[-1].state = BatchState.CUT_OFF
        return batches

    def _open(self, terminal_id: str, cur: str, now: datetime) -> _Batch:
        batches = self._cut(terminal_id, cur, now)
        if batches and batches[-1].state is BatchState.OPEN:
            return batches[-1]
        batch = _Batch(terminal_id, cur, len(batches) + 1, self.business_day(now))
        batches.append(batch)
        return batch

    # Recording ----------------------------------------------------------------------------

    def record(self, request: Message, code: str | None, now: datetime, *, source: str = "online") -> Entry | None:
        """Count an answered transaction in its terminal's open batch; ``None`` if it does not count.

        It does not count when ``code`` is not an approval, when the key is already counted
        (repeats, duplicates) or when it is an authorization and authorizations are not captured.

        Raises
        ------
        MessageError
            ``request`` is not a transaction (0100/0200/0120/0220 or a repeat) or lacks DE4/DE49.
        """
        if code not in APPROVED_CODES:
            return None
        mti = request.original_mti
        if mti not in TRANSACTION_MTIS:
            counted = ", ".join(sorted(TRANSACTION_MTIS))
            raise MessageError(f"settlement counts transactions ({counted}); got MTI {request.mti}", field="t")
        if mti in ("0100", "0120") and not self._capture_auth:
            return None
        key = _key(request)
        if key in self._entries or key in self._completions:
            return None
        amount, cur = request.amount, request.currency
        if amount is None or cur is None:
            raise MessageError(f"{request.mti}: settlement needs DE4 and DE49", field="4" if amount is None else "49")
        if mti == "0220":
            captured = self._complete(key, request, amount)
            if captured is not None:
                return captured
        batch = self._open(key[0], cur, now)
        kind = "credit" if (request.processing_code or "00")[:2] in CREDIT_PROCESSING_CODES else "debit"
        entry = Entry(
            terminal_id=key[0], stan=key[1], transmitted=key[2], pan=mask_pan(request.pan or ""),
            kind=kind, amount=amount, currency=cur, source=source, received=now,
            business_day=batch.business_day, batch=batch.number,
        )
        self._entries[key] = entry
        batch.keys.append(key)
        if mti in ("0100", "0120"):
            self._authorizations.add(key)
        return entry

    def _complete(self, key: TxnKey, completion: Message, amount: int) -> Entry | None:
        """Capture the counted authorization ``completion``'s DE90 names; ``None`` if it names none."""
        original = completion.original
        if original is None:
            return None
        auth_key = (key[0], original.stan, original.transmitted)
        if auth_key not in self._authorizations:
            return None
        self._authorizations.discard(auth_key)
        self._completions[key] = auth_key
        authorized = self._entries[auth_key]
        if self._batch(authorized).state.settled:
            return None  # settled at the authorized amount with the terminal already
        captured = authorized._replace(amount=amount, source="completion")
        self._entries[auth_key] = captured
        return captured

    def reverse(self, reversal: Message, now: datetime) -> Entry | None:
        """Apply an acknowledged reversal (0400/0420 or a repeat) to its original, once.

        Returns the changed original (netted in its unsettled batch), the opposite entry
        added to the current batch (original already settled), or ``None`` when there is
        nothing to reverse (original unknown or declined, already reversed, repeat).
        """
        if reversal.original_mti not in ("0400", "0420"):
            raise MessageError(f"settlement reverses with 0400/0420; got MTI {reversal.mti}", field="t")
        rkey = _key(reversal)
        if rkey in self._reversals:
            return None
        original = reversal.original
        if original is None:
            raise MessageError(f"{reversal.mti}: DE90 (original data) is missing", field="90")
        self._reversals[rkey] = now
        okey = (rkey[0], original.stan, original.transmitted)
        entry = self._entries.get(self._completions.get(okey, okey))
        if entry is None or entry.effective <= 0:
            return None
        amount = min(reversal.amount if reversal.amount else entry.effective, entry.effective)
        batch = self._batch(entry)
        if not batch.state.settled:
            updated = entry._replace(reversed_amount=entry.reversed_amount + amount)
            self._entries[entry.key] = updated
            return updated
        current = self._open(entry.terminal_id, entry.currency, now)
        contra = Entry(
            terminal_id=rkey[0], stan=rkey[1], transmitted=rkey[2], pan=entry.pan,
            kind="debit" if entry.kind == "credit" else "credit", amount=amount, currency=entry.currency,
            source="reversal", received=now, business_day=current.business_day, batch=current.number,
        )
        self._entries[rkey] = contra
        current.keys.append(rkey)
        return contra

    def _batch(self, entry: Entry) -> _Batch:
        return self._batches[(entry.terminal_id, entry.currency)][entry.batch - 1]

    # Views --------------------------------------------------------------------------------

    def entries(self, terminal_id: str | None = None) -> list[Entry]:
        """Every entry (reversed ones included), in receipt order."""
        return [e for e in self._entries.values() if terminal_id is None or e.terminal_id == terminal_id]

    def batches(self, terminal_id: str, cur: str) -> list[BatchView]:
        """A terminal's batches in one currency, oldest first."""
        return [self._view(b) for b in self._batches.get((terminal_id, cur), [])]

    def _view(self, batch: _Batch) -> BatchView:
        entries = tuple(self._entries[k] for k in batch.keys)
        totals = batch.folded
        for entry in entries:
            totals = totals.add(entry)
        return BatchView(batch.terminal_id, batch.currency, batch.number, batch.business_day, batch.state, totals, entries)

    def totals(self, terminal_id: str, cur: str) -> Totals:
        """What the host expects the terminal's next 0500 to carry: all unsettled batches summed."""
        totals = Totals()
        for batch in self._batches.get((terminal_id, cur), []):
            if not batch.state.settled:
                totals = totals + batch.folded
                for key in batch.keys:
                    totals = totals.add(self._entries[key])
        return totals

    # Reconciliation -----------------------------------------------------------------------

    def reconcile(self, request: Message, now: datetime) -> Message:
        """Answer a 0500: ``00`` and the batches settled when totals agree, ``95`` otherwise.

        A 0500 with DE3 ``96xxxx`` (settlement after upload) settles them as ``uploaded``,
        any other as ``reconciled``.

        The 0510 carries the host's totals (DE74/76/86/88) either way, so a terminal or a
        tester can see what differs. The same 0500 again (same DE41, DE11, DE7 and content: the
        terminal never heard the answer and sends it once more) gets the first answer again; judging
        it afresh would compare the terminal's totals with a batch already settled by it.

        Raises
        ------
        MessageError
            The 0500 breaks the catalogue (the acquirer turns this into a 0510 with 30).
        """
        validate(request.fields)
        if request.original_mti != "0500":
            raise MessageError(f"reconciliation needs a 0500; got MTI {request.mti}", field="t")
        key = _key(request)
        first = self._answered.get(key)
        if first is not None and first[1] == request.fields:
            return first[2]
        terminal = Totals.from_message(request)
        terminal_id, cur = request.terminal_id or "", request.fields["50"]
        after_upload = (request.processing_code or "")[:2] == SETTLE_AFTER_UPLOAD
        self._cut(terminal_id, cur, now)
        host = self.totals(terminal_id, cur)
        matched = terminal == host
        closed: tuple[int, ...] = ()
        if matched:
            unsettled = [b for b in self._batches.get((terminal_id, cur), []) if not b.state.settled]
            for batch in unsettled:
                batch.state = BatchState.UPLOADED if after_upload else BatchState.RECONCILED
            closed = tuple(b.number for b in unsettled)
        self.reconciliations.append(Reconciliation(terminal_id, cur, now, terminal, host, matched, closed, after_upload))
        answer = response(request, "00" if matched else "95", extra=host.fields())
        self._answered[key] = (now, dict(request.fields), answer)
        return answer

    def add_upload(
        self, msg: Message, now: datetime, *, terminal_id: str | None = None, currency: str | None = None
    ) -> Uploaded:
        """Take one uploaded transaction: add it when the host does not know its original key.

        ``msg`` is a 0320/0321 (the original's key from DE90) or the original message itself
        (0100/0200/0120/0220 or a repeat, keyed by its own DE11/DE7). DE39 is the original
        decision (absent: approved); declined ones are not counted. Adding it is idempotent:
        the same transaction uploaded again, or one the host already counted, is ``known``.

        Raises
        ------
        MessageError
            A message breaks the catalogue, names no countable original, belongs to another
            terminal (DE41, with ``terminal_id``) or currency (DE49, with ``currency``).
        """
        validate(msg.fields)
        txn = uploaded_transaction(msg) if msg.original_mti == "0320" else msg
        if txn.original_mti not in TRANSACTION_MTIS:
            counted = ", ".join(sorted(TRANSACTION_MTIS))
            field = "90" if txn is not msg else "t"
            raise MessageError(f"{msg.mti}: uploaded transaction is a {txn.mti}; allowed: {counted}", field=field)
        if terminal_id is not None and txn.terminal_id != terminal_id:
            raise MessageError(f"upload for terminal {terminal_id!r} carries DE41 {txn.terminal_id!r}", field="41")
        if currency is not None and txn.currency != currency:
            raise MessageError(f"upload for currency {currency!r} carries DE49 {txn.currency!r}", field="49")
        code = txn.response_code or "00"
        if code not in APPROVED_CODES:
            return Uploaded("skipped", txn)
        key = _key(txn)
        if key in self._entries or key in self._completions:
            return Uploaded("known", txn)
        entry = self.record(txn, code, now, source="upload")
        return Uploaded("skipped", txn) if entry is None else Uploaded("added", txn, entry)

    def close_uploaded(
        self, terminal_id: str, now: datetime, *, currency: str | None = None
    ) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, Totals], ...]]:
        """Settle every unsettled batch of a terminal (in ``currency`` only, when given) as ``uploaded``.

        Returns the batches closed (currency, number) and the totals they held per currency.
        """
        closed: list[tuple[str, int]] = []
        totals: list[tuple[str, Totals]] = []
        for (tid, cur), batches in sorted(self._batches.items()):
            if tid != terminal_id or (currency is not None and cur != currency):
                continue
            self._cut(tid, cur, now)
            unsettled = [b for b in batches if not b.state.settled]
            if unsettled:
                totals.append((cur, self.totals(tid, cur)))
            for batch in unsettled:
                batch.state = BatchState.UPLOADED
                closed.append((cur, batch.number))
        return tuple(closed), tuple(totals)

    def upload(
        self, terminal_id: str, messages: Iterable[Message], now: datetime, *, currency: str | None = None
    ) -> UploadResult:
        """Accept a terminal's whole batch upload at once after a 95 and close its unsettled batches.

        Each message goes through :meth:`add_upload` (so 0320s and original messages are
        both taken); then every unsettled batch of the terminal (in ``currency`` only, when
        given) becomes ``uploaded``, whatever the totals.

        Raises
        ------
        MessageError
            As :meth:`add_upload`; messages before the bad one stay added.
        """
        added: list[Entry] = []
        known = skipped = 0
        for msg in messages:
            done = self.add_upload(msg, now, terminal_id=terminal_id, currency=currency)
            if done.entry is not None:
                added.append(done.entry)
            elif done.outcome == "known":
                known += 1
            else:
                skipped += 1
        closed, totals = self.close_uploaded(terminal_id, now, currency=currency)
        return UploadResult(terminal_id, tuple(added), known, skipped, closed, totals)

    # Memory -------------------------------------------------------------------------------

    def prune(self, now: datetime, *, before: datetime | None = None, unsettled: bool = False) -> int:
        """Fold entries received before ``before`` (default ``now - retain_s``) into their batch totals.

        What is kept, for how long, and why:

        * entries of a batch not yet settled: until the batch settles, since a repeat must
          not count twice, a reversal nets its original, a completion captures its
          authorization and an upload must find what is already counted; with
          ``unsettled=True`` they are folded too: only for a driver that knows nothing
          received before ``before`` can still be named by any later message, uploads
          included (the SimPy world, whose terminals upload only what they still owe and
          which passes the time of the oldest transaction owed anywhere);
        * entries of a settled batch: until ``before``; after it, a reversal of one
          finds nothing to net (the issuer's ledger still books it);
        * applied reversal keys and 0500 answers: until ``before`` (a repeated reversal is
          ignored, a repeated 0500 answered as the first, until then).

        Totals, 0500 answers and :meth:`report_rows` stay exact; :meth:`batches` lists only
        the entries still held. Nothing is pruned without ``before`` or ``retain_s``.
        Returns the entries forgotten.

        >>> from sim.iso8583.message import financial_request
        >>> s = Settlement()
        >>> sale = financial_request(pan="4761739001010010", amount=1250, currency="978", stan=1,
        ...     transmitted="1122103000", terminal_id="TERM0001", entry_mode="051", icc={"9F26": bytes(8)})
        >>> _ = s.record(sale, "00", datetime(2026, 11, 22, 10, 30))
        >>> s.prune(datetime(2026, 11, 22, 12, 0), before=datetime(2026, 11, 22, 11, 0), unsettled=True)
        1
        >>> len(s.entries()), s.totals("TERM0001", "978").debits_amount
        (0, 1250)
        """
        if before is None:
            if self.retain is None:
                return 0
            before = now - self.retain
        gone = 0
        for batches in self._batches.values():
            for batch in batches:
                if not batch.keys or not (unsettled or batch.state.settled):
                    continue
                kept: list[TxnKey] = []
                for key in batch.keys:
                    entry = self._entries[key]
                    if entry.received >= before or (key in self._authorizations and not batch.state.settled):
                        kept.append(key)  # recent, or an authorization its completion may still capture
                        continue
                    del self._entries[key]
                    self._authorizations.discard(key)
                    batch.folded = batch.folded.add(entry)
                    day = (entry.business_day, entry.terminal_id, entry.currency)
                    self._folded_days[day] = self._folded_days.get(day, Totals()).add(entry)
                    gone += 1
                batch.keys = kept
        if gone:
            self._completions = {k: v for k, v in self._completions.items() if v in self._entries}
        forget_before(self._reversals, before, lambda at: at)
        forget_before(self._answered, before, lambda answered: answered[0])
        return gone

    # Report -------------------------------------------------------------------------------

    def report_rows(self, day: date) -> list[ReportRow]:
        """One row per terminal and currency with entries in business day ``day``, sorted."""
        sums: dict[tuple[str, str], Totals] = {}
        for (when, tid, cur), folded in self._folded_days.items():
            if when == day:
                sums[(tid, cur)] = sums.get((tid, cur), Totals()) + folded
        for entry in self._entries.values():
            if entry.business_day == day:
                group = (entry.terminal_id, entry.currency)
                sums[group] = sums.get(group, Totals()).add(entry)
        return [ReportRow(day, tid, cur, totals) for (tid, cur), totals in sorted(sums.items())]

    def report_csv(self, day: date) -> str:
        """The daily settlement report as CSV text (header + :meth:`report_rows`); no PANs in it."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.report_rows(day):
            writer.writerow(row.as_csv())
        return out.getvalue()
