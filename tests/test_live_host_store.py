"""The host's replay log: a group of events commits whole, in order, across INSERT chunks."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sim.live.store import _ROWS_PER_INSERT, Event, StateStore

IDENT = {"schema": "1", "host_config": "{}", "cards_sha256": "x"}


def _events(first: int, count: int) -> list[Event]:
    at = datetime(2026, 11, 22, 10, 30)
    return [Event(seq, "message", at + timedelta(microseconds=seq), "d", bytes([seq % 256]) * 3, "correct" if seq % 2 else None,
                  b"answer-%d" % seq, None, '{"mac": "valid"}' if seq % 3 == 0 else None)
            for seq in range(first, first + count)]


@pytest.mark.parametrize("sizes", [[1], [_ROWS_PER_INSERT], [_ROWS_PER_INSERT + 1, 3], [2 * _ROWS_PER_INSERT + 7, 1, 250]])
def test_groups_come_back_in_order_field_for_field(tmp_path: Path, sizes: list[int]) -> None:
    store = StateStore.open(tmp_path / "st", IDENT)
    written: list[Event] = []
    for size in sizes:
        group = _events(len(written) + 1, size)
        store.append(group)
        written += group
    store.close()
    reopened = StateStore.open(tmp_path / "st", IDENT)
    assert list(reopened.events()) == written
    assert reopened.last_seq == len(written)
    reopened.close()


def test_a_group_that_fails_leaves_nothing_of_itself(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "st", IDENT)
    store.append(_events(1, 5))
    clash = _events(6, _ROWS_PER_INSERT + 10) + _events(3, 1)  # the last row repeats seq 3: the whole group fails
    with pytest.raises(sqlite3.IntegrityError):
        store.append(clash)
    assert [e.seq for e in store.events()] == [1, 2, 3, 4, 5]
    store.append(_events(6, 2))
    assert store.count() == 7
    store.close()
