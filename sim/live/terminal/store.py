"""The live terminal's durable state: attempts, what is owed to the host, STANs, batches (SQLite).

An approved offline transaction, a pending reversal and a pending advice are money,
so they live here before the merchant is told anything, and leave only when the
host has acknowledged them. SQLite in WAL mode with ``synchronous=FULL``: a
committed row survives ``kill -9`` and a power cut. Every change that must be all
or nothing (an outcome, its advice or reversal, its place in the batch) is one
SQLite transaction.

Tables
------
``counters``
    ``stan`` (the next DE11) and ``batch`` (the open batch number).
``attempts``
    One row per transaction the terminal started, its key (DE41 + DE11 + DE7 of the
    request or advice that carries it), masked PAN, amount, currency, direction,
    state (``invoked``, ``approved-online``, ``approved-offline``, ``declined``,
    ``unknown``, ``terminated``), amount reversed, the batch it counts in.
``inflight``
    The *in-flight marker*: written (with the reversal it would need) before an
    online request leaves, deleted in the same transaction that records the outcome.
    A marker found at start means the process died with a request out: its reversal
    becomes owed (REV-01 across restarts) and the attempt is ``unknown``.
``rejected``
    Advices and reversals the host answered with a refusal (not ``00``/``94``, not a
    "try later" code): they leave the queue, which would otherwise be blocked behind
    them for good, but are kept here for a person to look at -- never silently dropped.
``history``
    What the terminal saw, as the history checker (:mod:`sim.core.history`) reads it:
    ``invoked`` when a request leaves, its outcome, ``reversed`` when a reversal is
    owed, keyed like the host books them. Written in the same transactions as the rest.
``owed``
    Advices (0220, repeated as 0221) and reversals (0400, repeated as 0401), oldest
    first. ``sends`` counts how often one was handed to the wire; it is committed
    *before* the bytes leave, so after a crash the next send is a repeat.
``uploads``
    The batch upload after a 0510 95 (SET-01): one 0320 per transaction of the batch and
    currency, planned once (its STAN and DE7 fixed), ``sends`` committed before it leaves
    (so a resend is a 0321), ``done`` set when the host answered 0330 00. A settle that is
    cut -- link lost, ``kill -9`` -- resumes with what is not done, and sends nothing twice
    that the host acknowledged; the host takes each transaction once by its original key anyway.
``settled``
    Attempts of the open batch whose currency the host has already settled (0510 00) while
    another currency of the batch has not: left out of later totals and uploads, so a
    settle that is repeated sends the host only what it has not settled yet.

What is stored holds no track data and no PIN block (SEC-03): the kernel's advices
and reversals carry neither, and the online request itself is never stored, only
the reversal that would undo it. PANs are kept only inside those messages (the host
needs them) and masked everywhere else.

Examples
--------
>>> store = TerminalStore(":memory:")
>>> store.take_stans(3), store.take_stans(1)
(1, 4)
>>> store.owed()
[]
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from ...iso8583.dialect import DEFAULT
from ...iso8583.message import Message, repeat
from ...iso8583.pretty import mask_pan
from .outcome import Event, event_of

__all__ = ["Attempt", "Owed", "StoreError", "TerminalStore", "Totals", "Upload"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL, stan TEXT NOT NULL, transmitted TEXT,
    kind TEXT NOT NULL, masked_pan TEXT NOT NULL DEFAULT '',
    amount INTEGER NOT NULL, currency TEXT NOT NULL,
    state TEXT NOT NULL, reversed INTEGER NOT NULL DEFAULT 0,
    batch INTEGER, arc TEXT, reason TEXT NOT NULL DEFAULT '',
    carrier BLOB, started TEXT NOT NULL, finished TEXT
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, attempt INTEGER, type TEXT NOT NULL,
    terminal_id TEXT NOT NULL, stan TEXT NOT NULL, transmitted TEXT, masked_pan TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inflight (attempt INTEGER PRIMARY KEY, reversal BLOB NOT NULL, armed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt INTEGER, kind TEXT NOT NULL, message BLOB NOT NULL,
    sends INTEGER NOT NULL DEFAULT 0, last_error TEXT, queued TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY, attempt INTEGER, kind TEXT NOT NULL, message BLOB NOT NULL, answer_mti TEXT,
    code TEXT, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (number INTEGER PRIMARY KEY, closed TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settled (attempt INTEGER PRIMARY KEY, batch INTEGER NOT NULL, currency TEXT NOT NULL,
                                    at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch INTEGER NOT NULL, currency TEXT NOT NULL, attempt INTEGER NOT NULL,
    message BLOB NOT NULL, sends INTEGER NOT NULL DEFAULT 0, code TEXT, done TEXT,
    UNIQUE (batch, attempt)
);
"""

APPROVED = ("approved-online", "approved-offline")
STATES = ("invoked", "approved-online", "approved-offline", "declined", "unknown", "terminated")
MAX_STAN = 999_999


class StoreError(RuntimeError):
    """The state directory cannot be used (not a possim terminal store, unwritable)."""


@dataclass(frozen=True, slots=True)
class Owed:
    """One message owed to the host, as stored."""

    id: int
    attempt: int | None
    kind: str  # "advice" or "reversal"
    message: Message  # the first form (0220 / 0400)
    sends: int

    @property
    def wire_form(self) -> Message:
        """What to send now: the first form, or its repeat (0221 / 0401) once it has been sent."""
        return repeat(self.message) if self.sends else self.message


@dataclass(frozen=True, slots=True)
class Upload:
    """One 0320 of a batch upload, as stored."""

    id: int
    attempt: int
    message: Message  # the 0320
    sends: int
    code: str | None
    done: bool

    @property
    def wire_form(self) -> Message:
        """The 0320, or its repeat (0321) once it has been sent."""
        return repeat(self.message) if self.sends else self.message


@dataclass(frozen=True, slots=True)
class Attempt:
    """One transaction as the terminal recorded it (what the history checker reads)."""

    id: int
    terminal_id: str
    stan: str
    transmitted: str | None
    kind: str
    masked_pan: str
    amount: int
    currency: str
    state: str
    reversed: int
    batch: int | None
    arc: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Totals:
    """One currency's counts and amounts in the open batch (what a 0500 carries)."""

    currency: str
    credits_count: int = 0
    credits_amount: int = 0
    debits_count: int = 0
    debits_amount: int = 0


def _now() -> str:
    return datetime.now().isoformat(timespec="microseconds")


class TerminalStore:
    """The SQLite store of one terminal (one state directory).

    Parameters
    ----------
    path : str or Path
        The database file (``STATE_DIR/terminal.sqlite``), or ``":memory:"`` for doctests.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"terminal store {self.path}: {exc}") from None
        if self.path != ":memory:" and mode.lower() != "wal":
            raise StoreError(f"terminal store {self.path}: journal mode is {mode!r}, WAL is required")

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        self._db.close()

    # Transactions ---------------------------------------------------------------------------

    def _tx(self) -> "_Tx":
        return _Tx(self._db)

    def _counter(self, name: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return default if row is None else int(row[0])

    def _set(self, name: str, value: int) -> None:
        self._db.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))

    # STANs and batches -----------------------------------------------------------------------

    def take_stans(self, count: int) -> int:
        """Reserve ``count`` consecutive STANs (wrapping past 999999 to 1); returns the first.

        Reserved numbers are committed at once, so a restart never reuses one.
        """
        with self._tx():
            first = self._counter("stan", 1)
            nxt = (first - 1 + count) % MAX_STAN + 1
            self._set("stan", nxt)
        return first

    @property
    def next_stan(self) -> int:
        """The STAN the next reservation starts with."""
        return self._counter("stan", 1)

    @property
    def batch(self) -> int:
        """The open batch's number (1 for a new terminal)."""
        return self._counter("batch", 1)

    # Attempts --------------------------------------------------------------------------------

    def begin(self, *, terminal_id: str, stan: int, transmitted: str, kind: str, amount: int, currency: str,
              masked_pan: str = "") -> int:
        """Record that a transaction starts (``invoked``); returns its attempt id."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO attempts(terminal_id, stan, transmitted, kind, masked_pan, amount, currency, state, started)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'invoked', ?)",
                (terminal_id, f"{stan:06d}", transmitted, kind, masked_pan, amount, currency, _now()),
            )
        return int(cur.lastrowid)

    def arm(self, attempt: int, request: Message, reversal: Message) -> None:
        """Write the in-flight marker before ``request`` leaves: ``reversal`` becomes owed if the process
        dies before :meth:`finish`. The request itself is not stored (it may hold track and PIN data)."""
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO inflight(attempt, reversal, armed) VALUES (?, ?, ?)",
                             (attempt, reversal.encode(), _now()))
            self._event(attempt, event_of("invoked", request))

    def _event(self, attempt: int | None, row: Event) -> None:
        self._db.execute("INSERT INTO history(attempt, type, terminal_id, stan, transmitted, masked_pan, amount, "
                         "currency, kind, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (attempt, *row, _now()))

    def disarm(self, attempt: int) -> None:
        """Drop the marker of a request that provably never left (the connection was not there),
        and its ``invoked`` row: the host cannot have seen it."""
        with self._tx():
            self._db.execute("DELETE FROM inflight WHERE attempt = ?", (attempt,))
            self._db.execute("DELETE FROM history WHERE attempt = ? AND type = 'invoked'", (attempt,))

    def finish(self, attempt: int, *, state: str, key: Message | None, arc: str | None, reason: str,
               owed: Iterable[Message] = (), masked_pan: str | None = None, amount: int | None = None,
               carrier: Message | None = None, events: Iterable[Event] = ()) -> None:
        """Record an outcome, its owed messages and its batch entry, and drop the marker: all at once.

        ``key`` is the message that carries the transaction to the host (the request,
        or the advice of an offline approval): the attempt is re-keyed to its DE11/DE7.
        Reversals among ``owed`` that point (DE90) at the key count as reversed.
        ``carrier`` (no track or PIN data) is kept for a later void.
        """
        if state not in STATES:
            raise ValueError(f"attempt state {state!r}; allowed: {', '.join(STATES)}")
        owed = list(owed)
        reversed_amount = 0
        if key is not None:
            for m in owed:
                original = m.original if m.original_mti in ("0400", "0420") else None
                if original is not None and (original.stan, original.transmitted) == (key.stan, key.transmitted):
                    reversed_amount += m.amount or 0
        with self._tx():
            row = self._db.execute("SELECT amount FROM attempts WHERE id = ?", (attempt,)).fetchone()
            if row is None:
                raise KeyError(f"no attempt {attempt}")
            sets = {"state": state, "arc": arc, "reason": reason, "finished": _now(), "reversed": reversed_amount,
                    "batch": self.batch if state in APPROVED else None,
                    "carrier": carrier.encode() if carrier is not None else None}
            if key is not None:
                sets.update(stan=key.stan, transmitted=key.transmitted)
            if masked_pan is not None:
                sets["masked_pan"] = masked_pan
            if amount is not None:
                sets["amount"] = amount
            assignments = ", ".join(f"{name} = ?" for name in sets)
            self._db.execute(f"UPDATE attempts SET {assignments} WHERE id = ?", (*sets.values(), attempt))
            self._db.execute("DELETE FROM inflight WHERE attempt = ?", (attempt,))
            for message in owed:
                self._queue(attempt, message)
            for row in events:
                self._event(attempt, row)

    def carrier(self, attempt: int) -> Message | None:
        """The message that carried an approved attempt (redacted request or advice), for a void."""
        row = self._db.execute("SELECT carrier FROM attempts WHERE id = ?", (attempt,)).fetchone()
        return _load(bytes(row[0])) if row and row[0] is not None else None

    def void(self, attempt: int, reversal: Message) -> None:
        """Reverse an approved attempt of the open batch: the reversal owed, the attempt marked, at once."""
        original = reversal.original
        with self._tx():
            self._db.execute("UPDATE attempts SET reversed = amount WHERE id = ?", (attempt,))
            self._queue(attempt, reversal)
            row = event_of("reversed", reversal)
            self._event(attempt, (row[0], row[1], original.stan if original else row[2],
                                  original.transmitted if original else row[3], *row[4:]))

    def _queue(self, attempt: int | None, message: Message) -> None:
        mti = message.original_mti
        kind = "reversal" if mti in ("0400", "0420") else "advice"
        self._db.execute("INSERT INTO owed(attempt, kind, message, queued) VALUES (?, ?, ?, ?)",
                         (attempt, kind, message.encode(), _now()))

    def recover(self, attempt: int | None = None, why: str = "power lost") -> list[int]:
        """After a restart: turn every in-flight marker into an owed reversal; close torn attempts.

        Returns the attempt ids whose request may have reached the host (now reversed).
        Attempts still ``invoked`` without a marker never sent anything: ``terminated``.
        With ``attempt``, only that one (a transaction that failed in this process).
        """
        only, args = ("WHERE attempt = ?", (attempt,)) if attempt is not None else ("", ())
        with self._tx():
            rows = self._db.execute(f"SELECT attempt, reversal FROM inflight {only} ORDER BY attempt", args).fetchall()
            for number, raw in rows:
                reversal = _load(bytes(raw))
                original = reversal.original
                self._db.execute(
                    "UPDATE attempts SET state = 'unknown', reversed = amount, stan = ?, transmitted = ?, "
                    "reason = ?, finished = ? WHERE id = ?",
                    (original.stan if original else None, original.transmitted if original else None,
                     f"{why} with the request out; reversed", _now(), number),
                )
                self._queue(number, reversal)
                if original is not None:
                    row = event_of("reversed", reversal)
                    self._event(number, ("unknown", row[1], original.stan, original.transmitted, *row[4:]))
                    self._event(number, (row[0], row[1], original.stan, original.transmitted, *row[4:]))
            self._db.execute(f"DELETE FROM inflight {only}", args)
            self._db.execute("UPDATE attempts SET state = 'terminated', reason = ?, finished = ? WHERE state = 'invoked'"
                             + (" AND id = ?" if attempt is not None else ""),
                             (f"{why} before a decision", _now(), *args))
        return [int(r[0]) for r in rows]

    def attempts(self) -> list[Attempt]:
        """Every attempt, oldest first."""
        rows = self._db.execute(
            "SELECT id, terminal_id, stan, transmitted, kind, masked_pan, amount, currency, state, reversed, batch, arc,"
            " reason FROM attempts ORDER BY id").fetchall()
        return [Attempt(*row) for row in rows]

    def attempt_by_stan(self, stan: str) -> Attempt | None:
        """The latest attempt keyed by DE11 ``stan``."""
        for a in reversed(self.attempts()):
            if a.stan == stan.zfill(6):
                return a
        return None

    def history(self) -> list[Event]:
        """Every history row, in the order written."""
        return [tuple(r) for r in self._db.execute(  # type: ignore[misc]
            "SELECT type, terminal_id, stan, transmitted, masked_pan, amount, currency, kind FROM history ORDER BY id")]

    def inflight(self) -> list[int]:
        """Attempts with a request out (marker written, outcome not yet recorded)."""
        return [int(r[0]) for r in self._db.execute("SELECT attempt FROM inflight ORDER BY attempt")]

    # The owed queue ---------------------------------------------------------------------------

    def owed(self) -> list[Owed]:
        """Everything owed to the host, oldest first."""
        rows = self._db.execute("SELECT id, attempt, kind, message, sends FROM owed ORDER BY id").fetchall()
        return [Owed(int(i), a, k, _load(bytes(m)), int(s)) for i, a, k, m, s in rows]

    def owed_count(self) -> int:
        """How many messages are owed."""
        return int(self._db.execute("SELECT COUNT(*) FROM owed").fetchone()[0])

    def sending(self, owed_id: int) -> None:
        """Count a send *before* it happens: from now on this message goes as a repeat."""
        with self._tx():
            self._db.execute("UPDATE owed SET sends = sends + 1 WHERE id = ?", (owed_id,))

    def failed(self, owed_id: int, error: str) -> None:
        """Note why the last send was not acknowledged (for ``status``)."""
        with self._tx():
            self._db.execute("UPDATE owed SET last_error = ? WHERE id = ?", (error[:200], owed_id))

    def acknowledged(self, owed_id: int) -> None:
        """The host acknowledged it: it leaves the store."""
        with self._tx():
            self._db.execute("DELETE FROM owed WHERE id = ?", (owed_id,))

    def rejected(self, owed_id: int, answer_mti: str, code: str | None) -> None:
        """The host refused it for good: out of the queue, into ``rejected`` (kept), at once."""
        with self._tx():
            self._db.execute("INSERT INTO rejected(attempt, kind, message, answer_mti, code, at) "
                             "SELECT attempt, kind, message, ?, ?, ? FROM owed WHERE id = ?",
                             (answer_mti, code, _now(), owed_id))
            self._db.execute("DELETE FROM owed WHERE id = ?", (owed_id,))

    # Settlement -------------------------------------------------------------------------------

    def totals(self) -> list[Totals]:
        """The open batch per currency: approved attempts not reversed in full (what the host counts too)."""
        rows = self._db.execute(
            "SELECT currency, kind, COUNT(*), SUM(amount - reversed) FROM attempts "
            "WHERE batch = ? AND state IN ('approved-online', 'approved-offline') AND reversed < amount "
            "AND id NOT IN (SELECT attempt FROM settled) "
            "GROUP BY currency, kind ORDER BY currency", (self.batch,)).fetchall()
        out: dict[str, dict[str, int]] = {}
        for cur, kind, count, amount in rows:
            t = out.setdefault(cur, {})
            t[f"{kind}s_count"], t[f"{kind}s_amount"] = int(count), int(amount)
        return [Totals(cur, **values) for cur, values in out.items()]

    def batch_attempts(self) -> list[Attempt]:
        """Approved attempts of the open batch not settled yet (for a batch upload)."""
        settled = self._settled()
        return [a for a in self.attempts() if a.batch == self.batch and a.state in APPROVED and a.id not in settled]

    def _settled(self) -> set[int]:
        return {int(r[0]) for r in self._db.execute("SELECT attempt FROM settled")}

    def is_settled(self, attempt: int) -> bool:
        """True when the host has settled ``attempt`` (its batch closed, or its currency settled)."""
        row = self._db.execute("SELECT batch FROM attempts WHERE id = ?", (attempt,)).fetchone()
        return row is not None and (row[0] != self.batch or attempt in self._settled())

    def settle_currency(self, currency: str) -> None:
        """The host settled ``currency`` of the open batch (0510 00): its attempts so far leave the totals."""
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO settled(attempt, batch, currency, at) SELECT id, batch, currency, ? FROM attempts "
                "WHERE batch = ? AND currency = ? AND state IN ('approved-online', 'approved-offline')",
                (_now(), self.batch, currency))

    def close_batch(self, detail: str) -> int:
        """Close the open batch (after 0510 00 or an upload); returns the new batch's number."""
        with self._tx():
            number = self.batch
            self._db.execute("INSERT INTO batches(number, closed, detail) VALUES (?, ?, ?)", (number, _now(), detail))
            self._set("batch", number + 1)
        return number + 1

    def planned_uploads(self, batch: int) -> set[int]:
        """Attempts of ``batch`` that already have a 0320 planned."""
        return {int(r[0]) for r in self._db.execute("SELECT attempt FROM uploads WHERE batch = ?", (batch,))}

    def plan_upload(self, batch: int, currency: str, items: Iterable[tuple[int, Message]]) -> None:
        """Store the 0320s of a batch upload (attempt id, message), once per attempt, all at once."""
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO uploads(batch, currency, attempt, message) VALUES (?, ?, ?, ?)",
                [(batch, currency, attempt, message.encode()) for attempt, message in items])

    def uploads(self, batch: int, currency: str) -> list[Upload]:
        """The planned 0320s of ``batch`` in ``currency``, in planning order."""
        rows = self._db.execute("SELECT id, attempt, message, sends, code, done FROM uploads "
                                "WHERE batch = ? AND currency = ? ORDER BY id", (batch, currency)).fetchall()
        return [Upload(int(i), int(a), _load(bytes(m)), int(s), c, d is not None) for i, a, m, s, c, d in rows]

    def upload_sending(self, upload_id: int) -> None:
        """Count a 0320's send *before* it happens: from now on it goes as a 0321."""
        with self._tx():
            self._db.execute("UPDATE uploads SET sends = sends + 1 WHERE id = ?", (upload_id,))

    def upload_answered(self, upload_id: int, code: str | None, *, taken: bool) -> None:
        """Record the host's answer to a 0320; ``taken`` (0330 00) makes it done for good."""
        with self._tx():
            self._db.execute("UPDATE uploads SET code = ?, done = CASE WHEN ? THEN ? ELSE done END WHERE id = ?",
                             (code, taken, _now(), upload_id))

    def summary(self) -> dict[str, object]:
        """Counts for ``status``: owed advices and reversals, attempts by state, batch, next STAN."""
        owed = dict(self._db.execute("SELECT kind, COUNT(*) FROM owed GROUP BY kind").fetchall())
        states = dict(self._db.execute("SELECT state, COUNT(*) FROM attempts GROUP BY state").fetchall())
        error = self._db.execute("SELECT last_error FROM owed WHERE last_error IS NOT NULL ORDER BY id LIMIT 1").fetchone()
        rejected = self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
        uploading = self._db.execute("SELECT COUNT(*) FROM uploads WHERE batch = ? AND done IS NULL",
                                     (self.batch,)).fetchone()[0]
        return {
            "rejected_by_host": int(rejected),
            "owed_advices": int(owed.get("advice", 0)),
            "owed_reversals": int(owed.get("reversal", 0)),
            "owed_last_error": error[0] if error else None,
            "upload_pending": int(uploading),
            "attempts": {k: int(v) for k, v in states.items()},
            "batch": self.batch,
            "next_stan": self.next_stan,
        }


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _load(raw: bytes) -> Message:
    """A stored message back, without re-validating it: what was stored is kept, whatever the catalogue says now."""
    return Message(DEFAULT.decode(raw))


def masked(pan: str | None) -> str:
    """First 6 / last 4 (``""`` for no PAN)."""
    return mask_pan(pan) if pan else ""
