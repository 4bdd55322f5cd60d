"""Judge a live terminal's state directory against what the host booked (the history checker).

The terminal's ``history`` table (:mod:`.store`) is what it saw, written in the same
SQLite transactions as the outcomes; the host's booked effects come from its admin
``booked`` command (or :meth:`sim.core.host.Host.booked_effects`). Both sides carry
PANs masked the same way (first 6, last 4), so they compare without card numbers
leaving the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from ...core.history import BookedEffect, HistoryEvent, Verdict, check
from ...iso8583.pretty import mask_pan
from .service import STORE_FILE
from .store import TerminalStore

__all__ = ["booked_effects", "history_events", "judge"]


def history_events(store: TerminalStore) -> list[HistoryEvent]:
    """The terminal's history as the checker reads it."""
    return [HistoryEvent(kind, tid, stan, pan, amount, cur, de7, direction)
            for kind, tid, stan, de7, pan, amount, cur, direction in store.history()]


def booked_effects(rows: Iterable[Mapping[str, Any]]) -> list[BookedEffect]:
    """Rows of the host's admin ``booked`` answer (or dicts like them), PANs masked."""
    return [BookedEffect.from_mapping({**row, "pan": mask_pan(str(row["pan"]))}) for row in rows]


def judge(state: str | Path, booked: Iterable[Mapping[str, Any]], terminal_id: str | None = None) -> Verdict:
    """Check the history in state directory ``state`` against ``booked`` (only ``terminal_id``'s rows, if given)."""
    store = TerminalStore(Path(state) / STORE_FILE)
    try:
        events = history_events(store)
    finally:
        store.close()
    rows = [r for r in booked if terminal_id is None or r["terminal_id"] == terminal_id]
    return check(events, booked_effects(rows))
