"""The cardholders: the shipped card set cloned into many accounts, each with its own virtual card.

A label of the card set (``healthy``, ``insufficient-funds``, ``chip-mute``...) is one
*kind* of card. A day of trading needs many cardholders of each kind, or velocity
limits and balances would be those of one person shopping everywhere at once. So the
labels in the scenario's mix are cloned into ``holders`` cards, shared by weight: same
issuer, BIN, issuer keys, EMV personalisation, limits and faults; a PAN of their own
(Luhn-valid, in the issuer's BIN) and an ICC certificate for it. Clones of one label
share its ICC RSA key pair (generating an RSA key per cardholder would dominate the run). The host is built on the same cloned set, so every card has an
account at its issuer, and the card's cryptograms verify there (ICC keys derive from
the PAN). Every card is personalised when the population is built, as cards are issued
before they are used: a long run does not grow by the cards it meets for the first time.

Damage (``cards.damage``) is drawn per cardholder with the run's seed and kept for the
whole run: a damaged card stays damaged.

Each cardholder's PAN digest (what a terminal's same-PAN log keeps instead of the PAN)
is computed once here, for :meth:`Population.digest`: a terminal's log then holds up to
200 references to the population's digests rather than 200 strings of its own, so the
estate's logs weigh what their entries do, not what their entries' text does.

Examples
--------
>>> import random
>>> from sim.des.scenario import load_scenario
>>> pop = Population(load_scenario("default").cards, random.Random(1))
>>> holder = pop.draw(random.Random(2))
>>> pop.cards.by_pan(holder.card.card.pan) is holder.card.card
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

from ..core.cards import Card, CardSet, load_cards, luhn_check_digit
from ..emv.card import VirtualCard
from ..emv.faults import Fault
from ..emv.kernel.config import pan_digest
from .scenario import Cards

__all__ = ["Holder", "Population", "clone_pan"]


def clone_pan(pan: str, label_index: int, holder: int) -> str:
    """A Luhn-valid PAN of the same length and BIN (first 6 digits) for cardholder ``holder`` of a label.

    >>> clone_pan("4761739001010010", 3, 17)
    '4761730300000174'
    """
    width = len(pan) - 6 - 1 - 2
    body = f"{pan[:6]}{label_index:02d}{holder:0{width}d}"
    return body + luhn_check_digit(body)


@dataclass(slots=True)
class Holder:
    """One cardholder: the virtual card (with its non-volatile counters) and how they pay."""

    card: VirtualCard
    swipe_first: bool
    pin: str


class Population:
    """The cardholders of a run, drawn with the scenario's weights.

    Parameters
    ----------
    spec : Cards
        The scenario's ``[cards]`` table.
    rng : random.Random
        Seeds the damage draw and each card's own RNG.
    base : CardSet, optional
        The card set to clone (default: the shipped one).
    """

    def __init__(self, spec: Cards, rng: random.Random, base: CardSet | None = None) -> None:
        base = base if base is not None else load_cards()
        labels = list(base.labels)
        cloned: list[Card] = []
        self.holders: list[Holder] = []
        weights: list[float] = []
        damage = spec.damage
        total_weight = sum(entry.weight for entry in spec.mix)
        for entry in spec.mix:
            try:
                template = base.card(entry.label)
            except KeyError:
                raise ValueError(f"cards.mix: label {entry.label!r} is not in the card set; allowed: "
                                 f"{', '.join(labels)}") from None
            index = labels.index(entry.label)
            issuer = base.issuer(template.issuer)
            count = max(1, round(spec.holders * entry.weight / total_weight))
            for n in range(count):
                card = template.model_copy(update={"pan": clone_pan(template.pan, index, n),
                                                   "label": f"{template.label}-{n}"})
                cloned.append(card)
                faults: list[Fault] = []
                if card.emv is not None and rng.random() < damage.chip_mute:
                    faults.append(Fault("ATR", "mute"))
                if rng.random() < damage.magstripe_unreadable:
                    faults.append(Fault("SWIPE", "track_unreadable"))
                virtual = VirtualCard(card, issuer, faults=faults, seed=rng.getrandbits(32),
                                      icc_key_label=f"icc {template.pan} {template.psn}").personalise()
                self.holders.append(Holder(virtual, "swipe_first" in card.faults, card.pin))
                weights.append(entry.weight / count)
        self.cards = CardSet(source=f"{base.source} (cloned into {len(cloned)} cardholders)",
                             issuers=base.issuers, cards=tuple(cloned))
        self._cum = list(accumulate(weights))
        self._total = self._cum[-1]
        self._digests = {digest: digest for digest in (pan_digest(card.pan) for card in cloned)}

    def __len__(self) -> int:
        return len(self.holders)

    def digest(self, log_key: str) -> str:
        """The population's own copy of a PAN digest equal to ``log_key`` (``log_key`` itself if none is).

        >>> from sim.des.scenario import load_scenario
        >>> pop = Population(load_scenario("default").cards, random.Random(1))
        >>> pan = pop.holders[0].card.card.pan
        >>> pop.digest(pan_digest(pan)) is pop.digest(pan_digest(pan)), pop.digest("other") == "other"
        (True, True)
        """
        return self._digests.get(log_key, log_key)

    def draw(self, rng: random.Random) -> Holder:
        """The next cardholder at a till, by the mix's weights."""
        return rng.choices(self.holders, cum_weights=self._cum)[0]
