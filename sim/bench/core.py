"""``possim bench core``: CPU time per operation of the sans-IO core, against bare pyiso8583.

What the live host and the simulation pay for every transaction, measured in one
process on CPU time (``time.process_time``, best of N rounds, garbage collector
paused), with no sockets, journal or scheduler around it:

* **baseline**: bare ``iso8583.encode`` + ``iso8583.decode`` of the same chip 0200
  (17 fields, DE55 with 16 tags): the least any ISO 8583 host pays per message;
* **parse+validate**: :func:`sim.iso8583.message.parse` of its bytes (decode and
  catalogue check);
* **host.handle**: :meth:`sim.core.host.Host.handle` answering a chip 0200 with a
  valid ARQC (approved, ARPC in tag 91), Visa and Mastercard cards alternating;
* **host.receive**: the same from bytes to bytes (decode, answer, encode);
* **kernel+card+host**: one whole chip transaction in-process
  (:func:`sim.emv.kernel.run_transaction` with a virtual card and the host).

Each subject is reported in CPU microseconds per operation and as a multiple of
the baseline measured in the same run, so a slower machine moves both together.
Every round starts from a fresh host and fresh requests (built outside the timed
loop), so no answer is a duplicate replay and no remembered state carries over
from one round to the next beyond what a long-running host keeps anyway.
"""

from __future__ import annotations

import copy
import gc
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

__all__ = ["CoreBench", "run"]

CARD_LABELS = ("healthy", "mc-healthy")
"""A Visa (CVN 10) and a Mastercard (CVN 16) card of the shipped set, alternating."""


@dataclass(frozen=True)
class CoreBench:
    """CPU microseconds per operation, best round, and the ratios to the baseline."""

    us: dict[str, float]
    baseline: str
    operations: int
    rounds: int

    def ratio(self, name: str) -> float:
        """``name``'s cost as a multiple of the baseline's."""
        return self.us[name] / self.us[self.baseline]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "cpu_us_per_op": {k: round(v, 1) for k, v in self.us.items()},
            "ratio_to_baseline": {k: round(self.ratio(k), 2) for k in self.us},
            "baseline": self.baseline,
            "operations": self.operations,
            "rounds": self.rounds,
        }


def _timed(setup: Callable[[], Callable[[], int]]) -> float:
    """CPU seconds per operation of one round: ``setup()`` (not timed) returns the loop, which returns its count.

    A loop may carry a ``verify`` attribute: called after the clock stops, it raises
    when the round did not do what it claims (a sale declined, a transaction offline).
    """
    loop = setup()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        count = loop()
        elapsed = time.process_time() - start
    finally:
        if enabled:
            gc.enable()
    verify = getattr(loop, "verify", None)
    if verify is not None:
        verify()
    return elapsed / max(count, 1)


def run(operations: int = 300, rounds: int = 5, transactions: int = 100) -> CoreBench:
    """Measure every path, interleaved round by round, best of ``rounds``.

    ``operations`` messages per round for the message paths, ``transactions`` for
    the whole kernel+card+host path.
    """
    import iso8583
    from iso8583.specs import default_ascii

    from ..core.cards import load_cards
    from ..core.crypto import forget_cryptograms
    from ..core.host import Host
    from ..emv.card import VirtualCard
    from ..emv.kernel import TerminalConfig, Transaction, run_transaction
    from ..iso8583.message import Message, parse
    from ..live.sales import chip_sale, write_load_cards

    with tempfile.TemporaryDirectory() as tmp:  # velocity and balances raised: every sale is approved
        cards = load_cards(write_load_cards(Path(tmp) / "cards.toml"))
    now = datetime(2026, 11, 27, 9, 0)
    spec = copy.deepcopy(default_ascii)
    requests = [
        {k: v for k, v in chip_sale(CARD_LABELS[i % len(CARD_LABELS)], 1000 + i, stan=i + 1,
                                     when=now + timedelta(seconds=i), card_set=cards).fields.items()
         if k not in ("p", "1")}
        for i in range(operations)
    ]
    raws = [bytes(iso8583.encode(dict(f), spec)[0]) for f in requests]
    config = TerminalConfig.from_profile("countertop-ethernet", terminal_id="BENCH001")

    def check(host: Host, answers: list[Message]) -> None:
        codes = {a.response_code for a in answers}
        if codes != {"00"}:
            raise AssertionError(f"benchmark sales were not all approved: DE39 {sorted(codes)}")

    def baseline() -> Callable[[], int]:
        pool = [dict(f) for f in requests]

        def loop() -> int:
            for fields in pool:
                iso8583.decode(bytes(iso8583.encode(fields, spec)[0]), spec)
            return len(pool)
        return loop

    def parsing() -> Callable[[], int]:
        def loop() -> int:
            for raw in raws:
                parse(raw)
            return len(raws)
        return loop

    def handle() -> Callable[[], int]:
        host = Host({"settlement": {"capture_authorizations": False}}, cards=cards)
        pool = [Message(dict(f)) for f in requests]
        forget_cryptograms()  # as for a live host: the cards computed their ARQCs elsewhere
        answers: list[Message] = []

        def loop() -> int:
            for msg in pool:
                answers.append(host.handle(msg, now))
            return len(pool)
        return _checked(loop, lambda: check(host, answers))

    def receive() -> Callable[[], int]:
        host = Host({"settlement": {"capture_authorizations": False}}, cards=cards)
        forget_cryptograms()
        answers: list[bytes | None] = []

        def loop() -> int:
            for raw in raws:
                answers.append(host.receive(raw, now))
            return len(raws)
        return _checked(loop, lambda: check(host, [parse(a) for a in answers if a is not None] or [Message({})]))

    def transaction() -> Callable[[], int]:
        host = Host({"settlement": {"capture_authorizations": False}}, cards=cards)
        virtual = [VirtualCard.from_label(label, cards) for label in CARD_LABELS]
        for card in virtual:
            card.image  # noqa: B018 -- personalise outside the timed loop
        txns = [
            Transaction(config, amount=5000 + i, currency=virtual[i % 2].card.currency_info,
                        when=now + timedelta(seconds=30 * i), unpredictable_number=(i + 7).to_bytes(4, "big"),
                        stan=i + 1)
            for i in range(transactions)
        ]
        results: list[Any] = []

        def loop() -> int:
            for i, txn in enumerate(txns):
                results.append(run_transaction(txn, virtual[i % 2], host))
            return len(txns)

        def verify() -> None:
            online = sum(1 for r in results if r.online)
            if online != len(results):
                raise AssertionError(f"only {online} of {len(results)} benchmark transactions went online")
        return _checked(loop, verify)

    subjects: dict[str, Callable[[], Callable[[], int]]] = {
        "pyiso8583 encode+decode (baseline)": baseline,
        "parse + validate (bytes -> Message)": parsing,
        "host.handle (chip 0200, approved)": handle,
        "host.receive (bytes -> bytes)": receive,
        "kernel + card + host (one transaction)": transaction,
    }
    best = {name: float("inf") for name in subjects}
    for _ in range(rounds):
        for name, setup in subjects.items():
            best[name] = min(best[name], _timed(setup) * 1e6)
    return CoreBench(best, "pyiso8583 encode+decode (baseline)", operations, rounds)


def _checked(loop: Callable[[], int], verify: Callable[[], None]) -> Callable[[], int]:
    """``loop`` with the check :func:`_timed` runs once the clock has stopped."""
    loop.verify = verify  # type: ignore[attr-defined]
    return loop
