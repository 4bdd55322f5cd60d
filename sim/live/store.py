"""The host's state directory: an event-sourced replay log in SQLite, and replay at start.

Why event sourcing
------------------
The host core is deterministic: the same requests at the same ``now`` give the same
answers and the same ledger. So the driver does not persist the ledger; it persists
what went *into* the core, in order, and rebuilds the ledger at start by running it
all again through a fresh core. Nothing in the core needs to know about storage.

What is stored
--------------
One row per event the core saw, in the order it saw them (``seq``):

* ``message``: the request bytes (redacted by :mod:`.redact`: no track 2 or track 1,
  no PIN block, only the PIN check's outcome), the dialect's name, the ``now`` passed
  to the core, the core's answer bytes, and ``marks`` (JSON): what replay needs in
  place of what was not kept -- the track 2 marker (separator, service code) and, on a
  dialect that MACs, the core's verdict on the request's MAC;
* ``issuer``: an issuer taken down or brought back through the admin endpoint, with
  its ``now`` (it moves stand-in advices, so it is state too).

Requests answered by the driver alone (an undecodable frame answered 30, a rules
overlay answer with ``core = false``) never reached the core and are not stored.

Durability
----------
SQLite in WAL mode with ``synchronous=FULL``: a committed row survives a crash or a
power cut. The server commits a request's row *before* it writes the answer
(group commit: all requests processed in one event-loop turn share one commit, done
in a writer thread), so every answer a terminal ever received is backed by a
committed row. A request processed but not committed when the process died was
never answered, and the terminal treats it as unknown -- which the rebuilt ledger
agrees with, as it never saw it either.

Replay and verification
-----------------------
At start every row is replayed through a fresh :class:`~sim.core.host.Host` with its
recorded ``now``; each replayed answer must equal the stored one byte for byte (on a
dialect that MACs: field for field, the MAC aside). A stored request no longer
matches the MAC it was received with (redaction changed its bytes), so replay skips
the MAC check of a request whose MAC the core found valid at receipt (the core then
signs nothing: hence the MAC aside), keeping the MAC as received, as the core's
duplicate check remembered it; a request refused for its MAC goes through the check
again with a MAC that fails it the same way (:func:`.redact.restore_request`), so it
is refused 63 again. Rows written before the live host checked MACs have no verdict
and replay unchecked, as they were answered. A
difference (a divergence) means the core, its configuration or the card set changed
since the rows were written: the start fails naming the first rows that differ,
unless told to carry on (``on_divergence="warn"``). The identity of the core's
inputs (host configuration, card set) is kept in the ``meta`` table and checked
before replaying, for a clearer error in the common case.

Replay costs what the requests cost live (about a millisecond each with ARQC
checks): a state directory of a million requests takes minutes to open.

Security
--------
The state directory holds **test card numbers (PANs) in clear** in
``host.sqlite3`` -- the core needs them to find the accounts (and expiry dates and
service codes, not as a track). It holds no track 2, no track 1, no PIN block. It is created mode 0700 and a
``README.txt`` in it says so. Only test cards belong in possim.

One host at a time: a lock file (``flock``) refuses a second process on the same
directory.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..core.cards import CardSet
from ..core.host import Host
from ..iso8583.dialect import Dialect
from ..iso8583.pretty import summary
from .exchange import core_answer, decode_frame
from .redact import restore_request

SCHEMA_VERSION = "1"
DB_NAME = "host.sqlite3"
LOCK_NAME = "host.lock"
README_NAME = "README.txt"
README_TEXT = """\
possim host state directory.

host.sqlite3 is the host's replay log: every request the host core answered, in
order, with the time it was given and the answer it gave. The host rebuilds its
ledger from it at start. It holds TEST CARD NUMBERS (PANs) IN CLEAR, because the
core needs them to find the accounts; it holds no track 2, no track 1 and no PIN
blocks (only whether each PIN was right). Use test cards only.
Delete the directory to start from the card set's opening balances.
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    dialect TEXT,
    request BLOB,
    pin TEXT,
    answer BLOB,
    detail TEXT,
    marks TEXT
);
"""


_ROWS_PER_INSERT = 100
"""Rows per ``INSERT`` of :meth:`StateStore.append` (900 parameters, under SQLite's oldest limit of 999)."""


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_sql(rows: int) -> str:
    """``INSERT INTO events ... VALUES (...), (...)`` for ``rows`` rows."""
    return ("INSERT INTO events (seq, kind, at, dialect, request, pin, answer, detail, marks) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows))


class StateError(RuntimeError):
    """The state directory cannot be used: locked, another host's, unreadable, or replay diverged."""


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the replay log.

    Attributes
    ----------
    seq : int
        Position in the order the core saw events (from 1).
    kind : str
        ``"message"`` or ``"issuer"``.
    at : datetime
        The ``now`` the core was given.
    dialect : str or None
        The dialect's name (messages).
    request, answer : bytes or None
        The redacted request and the core's answer (messages).
    pin : str or None
        The PIN check outcome standing in for DE52.
    detail : str or None
        Issuer events: JSON ``{"issuer": id, "up": bool}``; messages: the fault text when
        the core raised.
    marks : str or None
        Messages: JSON of :attr:`.redact.Redacted.marks` (``None``: nothing to restore;
        rows written before marks existed have none and replay as they were answered).
    """

    seq: int
    kind: str
    at: datetime
    dialect: str | None = None
    request: bytes | None = None
    pin: str | None = None
    answer: bytes | None = None
    detail: str | None = None
    marks: str | None = None


def identity(host_config: Mapping[str, Any], cards: CardSet) -> dict[str, str]:
    """What the replay depends on besides the rows: host configuration and card set (hashed)."""
    card_text = json.dumps(cards.model_dump(mode="json", exclude={"source"}), sort_keys=True)
    return {
        "schema": SCHEMA_VERSION,
        "host_config": json.dumps(dict(host_config), sort_keys=True, default=str),
        "cards_sha256": hashlib.sha256(card_text.encode()).hexdigest(),
    }


class StateStore:
    """The replay log of one state directory; see the module notes.

    Open with :meth:`open`. Writes (:meth:`append`) may come from one writer thread;
    reads (:meth:`events`) happen before serving starts.
    """

    def __init__(self, directory: Path, db: sqlite3.Connection, lock_fd: int) -> None:
        self.directory = directory
        self._db = db
        self._lock_fd = lock_fd
        row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        self.last_seq: int = int(row[0])

    @classmethod
    def open(cls, directory: str | Path, ident: Mapping[str, str]) -> "StateStore":
        """Open (or create) the state directory, lock it and check it belongs to this host setup.

        Raises
        ------
        StateError
            Locked by another process, not writable, or written by a host with another
            configuration or card set (the message says which and what to do).
        """
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            readme = path / README_NAME
            if not readme.exists():
                readme.write_text(README_TEXT, encoding="utf-8")
            lock_fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{path}: cannot use as a state directory: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise StateError(f"{path}: another host process holds this state directory") from None
        try:
            db_path = path / DB_NAME
            fresh = not db_path.exists()
            db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
            if fresh:
                os.chmod(db_path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
            if "marks" not in columns:  # a log written before marks existed: its rows replay as they are
                db.execute("ALTER TABLE events ADD COLUMN marks TEXT")
            stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise StateError(f"{path / DB_NAME}: not a usable replay log: {exc}") from None
        if not stored:
            with db:
                db.execute("BEGIN")
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(ident.items()))
        else:
            for key, value in ident.items():
                if stored.get(key) != value:
                    db.close()
                    os.close(lock_fd)
                    what = {"schema": "replay log format", "host_config": "host configuration",
                            "cards_sha256": "card set"}.get(key, key)
                    raise StateError(
                        f"{path}: this state was written with another {what} "
                        f"(stored {stored.get(key)!r}, now {value!r}); start with the same one, "
                        "or use a fresh --state directory"
                    )
        return cls(path, db, lock_fd)

    def append(self, events: Iterable[Event]) -> None:
        """Commit ``events`` in one transaction (durable when this returns).

        Rows go in as multi-row ``INSERT``s of up to :data:`_ROWS_PER_INSERT` rows. Each
        SQLite call lets go of the interpreter lock and must take it back, and a writer
        thread taking it back from a busy event loop waits up to the interpreter's switch
        interval (5 ms) each time: one statement per hundred rows instead of one per row
        keeps a commit from waiting a switch interval per row.
        """
        values: list[Any] = []
        for e in events:
            values += (e.seq, e.kind, e.at.isoformat(), e.dialect, e.request, e.pin, e.answer, e.detail, e.marks)
        db = self._db
        db.execute("BEGIN")
        try:
            step = _ROWS_PER_INSERT * 9
            for start in range(0, len(values), step):
                chunk = values[start:start + step]
                db.execute(_insert_sql(len(chunk) // 9), chunk)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def events(self) -> Iterator[Event]:
        """Every stored event, in ``seq`` order."""
        cursor = self._db.execute(
            "SELECT seq, kind, at, dialect, request, pin, answer, detail, marks FROM events ORDER BY seq"
        )
        for seq, kind, at, dialect, request, pin, answer, detail, marks in cursor:
            yield Event(seq, kind, datetime.fromisoformat(at), dialect, request, pin, answer, detail, marks)

    def count(self) -> int:
        """Number of stored events."""
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        """Close the database and release the directory lock."""
        try:
            self._db.close()
        finally:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass


@dataclass(frozen=True)
class Divergence:
    """A replayed answer that differs from the stored one (summaries mask PANs)."""

    seq: int
    stored: str
    replayed: str


@dataclass(frozen=True)
class ReplayReport:
    """What replay did: events replayed, messages among them, and any divergences."""

    events: int
    messages: int
    divergences: tuple[Divergence, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every replayed answer equals the stored one."""
        return not self.divergences


def _same_but_mac(replayed: bytes, stored: bytes, dialect: Dialect) -> bool:
    """On a dialect that MACs: the two answers hold the same fields, the MAC (and so the bitmap) aside."""
    if dialect.mac_field is None:
        return False
    a, b = decode_frame(replayed, dialect).fields, decode_frame(stored, dialect).fields
    if a is None or b is None:
        return False
    skip = (dialect.mac_field, "p", "1")
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def replay(
    events: Iterable[Event],
    host: Host,
    dialects: Mapping[str, Dialect],
    *,
    on_event: Callable[[Event], None] | None = None,
) -> ReplayReport:
    """Run stored events through ``host`` in order, comparing every answer with the stored one.

    Parameters
    ----------
    events : iterable of Event
        From :meth:`StateStore.events`.
    host : Host
        A fresh host built with the configuration and card set the events were recorded with.
    dialects : mapping
        Dialects by name; every stored dialect name must be there.
    on_event : callable, optional
        Called after each event (progress reporting).

    Raises
    ------
    StateError
        An event names an unknown dialect or issuer, or its request no longer decodes.
    """
    count = messages = 0
    divergences: list[Divergence] = []
    for event in events:
        count += 1
        if event.kind == "issuer":
            detail = json.loads(event.detail or "{}")
            issuer = detail.get("issuer")
            if issuer not in host.issuers:
                raise StateError(f"replay: event {event.seq} names issuer {issuer!r}, unknown to this card set")
            host.set_issuer_available(issuer, bool(detail.get("up")), event.at)
        elif event.kind == "message":
            messages += 1
            dialect = dialects.get(event.dialect or "")
            if dialect is None:
                raise StateError(
                    f"replay: event {event.seq} was decoded with dialect {event.dialect!r}; "
                    f"start the host with that --dialect (known here: {', '.join(dialects)})"
                )
            decoded = decode_frame(event.request or b"", dialect)
            if decoded.fields is None:
                raise StateError(f"replay: event {event.seq}: stored request no longer decodes: {decoded.error}")
            marks = json.loads(event.marks) if event.marks else {}
            fields = restore_request(decoded.fields, event.pin, host.cards, marks, dialect, host.mac_keys)
            # the check runs again only to refuse again what it refused: a valid MAC no longer
            # matches the redacted request, and rows without a verdict were never checked
            checked = marks.get("mac") not in (None, "valid")
            answer = core_answer(host, fields, event.at, dialect, check_mac=checked)
            if answer.raw != event.answer and not _same_but_mac(answer.raw, event.answer or b"", dialect):
                stored = decode_frame(event.answer or b"", dialect)
                divergences.append(Divergence(event.seq, summary(stored.partial), summary(answer.fields)))
        else:
            raise StateError(f"replay: event {event.seq} has kind {event.kind!r}; known: message, issuer")
        if on_event is not None:
            on_event(event)
    return ReplayReport(count, messages, tuple(divergences))
