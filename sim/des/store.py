"""The terminal's durable store-and-forward queue, modelled as data that survives power loss.

What is in here is money (DESIGN.md, "Data that must never be lost"): offline
approvals owed as 0220 advices, reversals owed as 0400, completions, and the
*in-flight* marker a terminal writes before it sends an online request so that a
power cut mid-request still ends in a reversal. A record leaves only when the host
answers it. The power-loss model keeps this object and drops everything else the
terminal holds in memory (the kernel's transaction, the open exchange).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..iso8583.message import Message, repeat

__all__ = ["Record", "Store"]

Kind = Literal["advice", "reversal", "completion", "inflight"]


@dataclass(slots=True)
class Record:
    """One owed message; ``key`` is the history key of the attempt it settles."""

    kind: Kind
    message: Message
    key: tuple[str, str, str | None]
    amount: int
    sent: bool = False

    def wire(self) -> Message:
        """What goes on the wire now: the first send, else the repeat form (0221, 0401)."""
        return repeat(self.message) if self.sent else self.message


@dataclass(slots=True)
class Store:
    """FIFO of :class:`Record`; ``capacity`` from the hardware profile.

    ``blocked`` counts ``store_full`` faults in force: while it is non-zero the store
    reports no free place, as a store whose flash is full or failing would (OFF-07).

    >>> from sim.iso8583.message import network_request
    >>> store = Store(1)
    >>> msg = network_request("301", stan=1, transmitted="1122103000", terminal_id="T1")
    >>> store.add(Record("advice", msg, ("T1", "000001", None), 100)); store.free
    0
    >>> store.add(Record("reversal", msg, ("T1", "000001", None), 100)); len(store), store.overflow
    (2, 1)
    """

    capacity: int
    records: list[Record] = field(default_factory=list)
    overflow: int = 0
    blocked: int = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def free(self) -> int:
        """Slots the kernel may still use for offline approvals (``offline_store_free``)."""
        if self.blocked:
            return 0
        return max(0, self.capacity - len(self.records))

    def add(self, record: Record) -> None:
        """Keep ``record`` durably. A reversal is never refused: beyond capacity it is counted in ``overflow``."""
        if len(self.records) >= self.capacity:
            self.overflow += 1
        self.records.append(record)

    def remove(self, record: Record) -> None:
        """Drop an acknowledged record."""
        self.records.remove(record)

    def owed(self) -> list[Record]:
        """Records to forward, in order (in-flight markers wait for a reboot to become reversals)."""
        return [r for r in self.records if r.kind != "inflight"]

    @property
    def backlog(self) -> int:
        """How many records are owed to the host (in-flight markers excluded)."""
        return sum(1 for r in self.records if r.kind != "inflight")
