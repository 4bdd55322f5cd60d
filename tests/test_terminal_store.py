"""The live terminal's SQLite store: nothing owed is lost or duplicated, whatever the order of adds, acks and crashes.

A hypothesis state machine drives a real store file with random sequences of offline
approvals (advice owed), online requests armed and finished or cut by a crash,
voids, sends, acknowledgements, torn transactions (a write begun and never
committed) and reopenings, against a plain model of what must be there.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from sim.emv.kernel.messages import build_reversal
from sim.iso8583.message import advice, transaction_request
from sim.live.terminal.outcome import redacted
from sim.live.terminal.store import TerminalStore

PAN = "4761739001010010"
WHEN = datetime(2026, 11, 30, 10, 0, 0)


def _sale(stan: int, amount: int):
    return transaction_request("0200", pan=PAN, amount=amount, currency="978", stan=stan, transmitted=WHEN,
                               terminal_id="TERM0001", entry_mode="051", expiry="2812",
                               track2=f"{PAN}D28122011234567899", icc={"9F26": bytes(8), "57": bytes(8)},
                               pin_block="0123456789ABCDEF")


def _advice(stan: int, amount: int):
    return advice(response_code="Y1", pan=PAN, amount=amount, currency="978", stan=stan, transmitted=WHEN,
                  terminal_id="TERM0001", entry_mode="051", icc={"9F26": bytes(8)})


def test_store_files_are_wal_and_full_sync(tmp_path: Path) -> None:
    store = TerminalStore(tmp_path / "t.sqlite")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_stans_wrap_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    store = TerminalStore(path)
    store._db.execute("INSERT INTO counters(name, value) VALUES ('stan', 999998)")
    assert store.take_stans(3) == 999998
    store.close()
    again = TerminalStore(path)
    assert again.take_stans(1) == 2  # 999998, 999999, 1 were taken
    again.close()


def test_nothing_of_track_or_pin_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    store = TerminalStore(path)
    sale = _sale(1, 500)
    attempt = store.begin(terminal_id="TERM0001", stan=1, transmitted="1130100000", kind="debit", amount=500,
                          currency="978")
    store.arm(attempt, sale, build_reversal(sale, stan=8, when=WHEN, reason="68"))
    store.finish(attempt, state="approved-online", key=sale, arc="00", reason="ok", carrier=redacted(sale))
    store.close()
    raw = path.read_bytes() + (tmp_path / "t.sqlite-wal").read_bytes() if (tmp_path / "t.sqlite-wal").exists() else path.read_bytes()
    assert b"D28122011234567899" not in raw and b"0123456789ABCDEF" not in raw
    assert "57" not in TerminalStore(path).carrier(attempt).icc


def test_not_a_store_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all, just bytes" * 100)
    with pytest.raises(Exception, match="bad.sqlite"):
        TerminalStore(bad)


class StoreMachine(RuleBasedStateMachine):
    """Random add / send / ack / crash / reopen sequences against a model."""

    attempts = Bundle("attempts")

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="possim-store-"))
        self.path = self.dir / "terminal.sqlite"
        self.store = TerminalStore(self.path)
        self.owed: list[tuple[str, str]] = []  # (kind, stan) in queue order: the model
        self.sends: dict[tuple[str, str], int] = {}
        self.armed: dict[int, str] = {}  # attempt -> stan of the reversal it would owe
        self.stan = 1
        self.used_stans: set[int] = set()
        self.approved: set[str] = set()

    def _stans(self, n: int) -> int:
        first = self.store.take_stans(n)
        for s in range(first, first + n):
            assert s not in self.used_stans, "a STAN was handed out twice"
            self.used_stans.add(s)
        return first

    @rule(amount=st.integers(1, 10_000))
    def offline_approval(self, amount: int) -> None:
        stan = self._stans(8)
        attempt = self.store.begin(terminal_id="TERM0001", stan=stan, transmitted="1130100000", kind="debit",
                                   amount=amount, currency="978")
        msg = _advice(stan, amount)
        self.store.finish(attempt, state="approved-offline", key=msg, arc="Y1", reason="offline", owed=[msg], carrier=msg)
        self.owed.append(("advice", msg.stan))
        self.approved.add(msg.stan)

    @rule(target=attempts, amount=st.integers(1, 10_000))
    def online_request_leaves(self, amount: int) -> int:
        stan = self._stans(8)
        attempt = self.store.begin(terminal_id="TERM0001", stan=stan, transmitted="1130100000", kind="debit",
                                   amount=amount, currency="978")
        sale = _sale(stan, amount)
        self.store.arm(attempt, sale, build_reversal(sale, stan=stan + 7, when=WHEN, reason="68"))
        self.armed[attempt] = f"{stan + 7:06d}"
        return attempt

    @rule(attempt=attempts, approved=st.booleans())
    def online_answer(self, attempt: int, approved: bool) -> None:
        if attempt not in self.armed:
            return
        a = next(x for x in self.store.attempts() if x.id == attempt)
        sale = _sale(int(a.stan), a.amount)
        self.store.finish(attempt, state="approved-online" if approved else "declined", key=sale, arc="00",
                          reason="host", carrier=redacted(sale) if approved else None)
        del self.armed[attempt]
        if approved:
            self.approved.add(sale.stan)

    @precondition(lambda self: bool(self.owed))
    @rule()
    def send_head(self) -> None:
        head = self.store.owed()[0]
        key = (head.kind, head.message.stan)
        first = self.sends.get(key, 0) == 0
        assert (head.wire_form.mti == head.message.mti) == first  # 0220/0400 first, then 0221/0401
        self.store.sending(head.id)
        self.sends[key] = self.sends.get(key, 0) + 1

    @precondition(lambda self: bool(self.owed))
    @rule()
    def resend_is_a_repeat(self) -> None:
        head = self.store.owed()[0]
        if head.sends:
            assert head.wire_form.mti in ("0221", "0401")

    @precondition(lambda self: bool(self.owed))
    @rule()
    def ack_head(self) -> None:
        head = self.store.owed()[0]
        self.store.acknowledged(head.id)
        self.owed.pop(0)

    @rule()
    def torn_write(self) -> None:
        """A write begun and never committed (the process died inside it): nothing of it stays."""
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM owed")
        db.execute("UPDATE counters SET value = 1")
        db.close()  # no COMMIT

    @rule()
    def crash_and_restart(self) -> None:
        """kill -9 and start again: markers become owed reversals, in the order they were armed."""
        del self.store  # no close(): what is committed is all there is
        self.store = TerminalStore(self.path)
        recovered = self.store.recover()
        assert sorted(recovered) == sorted(self.armed)
        for attempt in sorted(self.armed):
            self.owed.append(("reversal", self.armed[attempt]))
        self.armed.clear()

    @rule()
    def void_latest_approval(self) -> None:
        candidates = [a for a in self.store.attempts()
                      if a.state in ("approved-online", "approved-offline") and a.reversed < a.amount]
        if not candidates:
            return
        target = candidates[-1]
        carrier = self.store.carrier(target.id)
        assert carrier is not None
        stan = self._stans(1)
        rev = build_reversal(carrier, stan=stan, when=WHEN, reason="17")
        self.store.void(target.id, rev)
        self.owed.append(("reversal", rev.stan))

    @invariant()
    def queue_matches_model(self) -> None:
        stored = [(o.kind, o.message.stan) for o in self.store.owed()]
        assert stored == self.owed, "lost, duplicated or reordered owed messages"
        for o in self.store.owed():
            assert o.sends == self.sends.get((o.kind, o.message.stan), 0)

    @invariant()
    def approvals_stay_recorded(self) -> None:
        states = {a.stan: a.state for a in self.store.attempts()}
        assert all(states.get(stan, "").startswith("approved") for stan in self.approved)

    @invariant()
    def markers_match(self) -> None:
        assert sorted(self.store.inflight()) == sorted(self.armed)

    def teardown(self) -> None:
        import shutil

        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
