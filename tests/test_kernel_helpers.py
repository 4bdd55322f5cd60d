"""Shared helpers for the kernel tests: configs, card variants, hosts, transactions.

Imported by the other ``test_kernel_*`` modules; its own tests check the helpers.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime
from typing import Any, Callable, Iterable

from sim.core.cards import Card, load_cards
from sim.core.host import Host
from sim.emv.card import VirtualCard
from sim.emv.faults import Fault
from sim.emv.kernel import (
    HostTimeout,
    HostUnreachable,
    NeedApdu,
    RandomSelectionParams,
    TerminalConfig,
    Transaction,
    TransactionResult,
    run_transaction,
)
from sim.emv.kernel.commands import CryptogramType
from sim.iso8583.message import Message

WHEN = datetime(2026, 3, 15, 10, 30, 0)
UN = bytes.fromhex("1A2B3C4D")
CARDS = load_cards()
_stan = iter(range(1, 999_999, 10))


def config(profile: str = "countertop-ethernet", **changes: Any) -> TerminalConfig:
    """A profile's kernel configuration with random selection off (tests turn it on when they mean it)."""
    base = TerminalConfig.from_profile(profile)
    changes.setdefault("random_selection", RandomSelectionParams(enabled=False))
    for key in ("tac_denial", "tac_online", "tac_default", "capabilities"):
        if isinstance(changes.get(key), str):
            changes[key] = bytes.fromhex(changes[key])
    return dataclasses.replace(base, **changes)


def variant(label: str, **emv: Any) -> Card:
    """A card of the card set with some EMV personalisation changed (``aip="7800"``, ``cvm_list=...``)."""
    card = CARDS.card(label)
    assert card.emv is not None
    return card.model_copy(update={"emv": card.emv.model_copy(update=emv)})


def virtual(label_or_card: str | Card, *, faults: Iterable[Fault | dict] = (), **kw: Any) -> VirtualCard:
    """A virtual card by label or from a (variant) card model."""
    card = CARDS.card(label_or_card) if isinstance(label_or_card, str) else label_or_card
    return VirtualCard(card, CARDS.issuer(card.issuer), faults=tuple(faults), **kw)


def txn(cfg: TerminalConfig, amount: int, currency: str = "EUR", **kw: Any) -> Transaction:
    """A transaction at :data:`WHEN` with a fresh STAN."""
    kw.setdefault("when", WHEN)
    kw.setdefault("unpredictable_number", UN)
    kw.setdefault("stan", next(_stan))
    return Transaction(cfg, amount=amount, currency=currency, **kw)


def unreachable(message: Message) -> Message:
    raise HostUnreachable("link down")


def timeout(message: Message) -> Message:
    raise HostTimeout("no answer in 30 s")


class Recorder:
    """Wraps a host: records every request, optionally changes the answer."""

    def __init__(self, host: Any | None = None, change: Callable[[Message], Message] | None = None) -> None:
        self.host = host if host is not None else Host()
        self.change = change
        self.requests: list[Message] = []
        self.answers: list[Message] = []

    def __call__(self, message: Message) -> Message:
        self.requests.append(message)
        answer = self.host.handle(message, WHEN)
        if self.change is not None:
            answer = self.change(answer)
        self.answers.append(answer)
        return answer


def run(cfg: TerminalConfig, card: Any, host: Any, amount: int, currency: str = "EUR", *,
        trace: list | None = None, **kw: Any) -> TransactionResult:
    """Build a transaction and run it with :func:`run_transaction`; driver options go through ``kw``."""
    txn_kw = {k: kw.pop(k) for k in list(kw) if k in ("rng", "transaction_type", "force_online", "stan", "amount_other", "when")}
    transaction = txn(cfg, amount, currency, **txn_kw)
    return run_transaction(transaction, card, host, trace=trace, **kw)


def requested_cryptograms(trace: list) -> list[CryptogramType]:
    """The cryptogram types the kernel asked for, in order, from a driver trace."""
    return [CryptogramType(event.apdu[2] & 0xC0) for event, _ in trace
            if isinstance(event, NeedApdu) and event.apdu[1] == 0xAE]


def sent_tvr(trace: list) -> str:
    """The TVR the kernel sent in the first GENERATE AC (CDOL1: 9F02 9F03 9F1A then 95)."""
    first = next(event for event, _ in trace if isinstance(event, NeedApdu) and event.apdu[1] == 0xAE)
    data = first.apdu[5:-1]
    return data[14:19].hex().upper()


def seeded(draw: int) -> random.Random:
    """An RNG whose first ``randint(1, 99)`` is ``draw``."""
    for seed in range(10_000):
        if random.Random(seed).randint(1, 99) == draw:
            return random.Random(seed)
    raise AssertionError(draw)  # pragma: no cover


def test_helpers() -> None:
    assert seeded(42).randint(1, 99) == 42
    assert variant("healthy", aip="7800").emv.aip == "7800"  # type: ignore[union-attr]
    assert config(tac_online="0000000000").tac_online == bytes(5)
