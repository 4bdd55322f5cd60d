"""Scenarios as data: a TOML file validated with pydantic, errors naming file, key and allowed values.

A scenario says how long to trade, from when, with which terminals (hardware profile
x count), which cards (labels of the card set with weights, and how many cardholders
share each label), how busy each terminal is through the day, how the host is sized,
and which faults to inject when. Times inside the run are hours from the start
(``start_h``, ``duration_h``) so a scenario reads like a timeline.

Examples
--------
>>> s = load_scenario("default")
>>> s.name, s.duration_h > 0, sum(e.count for e in s.estate) > 0
('default', True, True)
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..profiles import LinkKind, list_profiles
from ..validation import first_error

__all__ = ["FAULT_KINDS", "SCENARIO_DIR", "Scenario", "ScenarioError", "check_references", "list_scenarios",
           "load_scenario", "parse_scenario"]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
"""Where the shipped scenarios live."""

FaultKind = Literal[
    "acquirer_outage", "network_outage", "issuer_down", "latency_spike", "loss_burst",
    "reader_failure", "power_loss", "store_full", "printer_out",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

DEFAULT_DIURNAL = (0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.0, 1.1, 1.2, 1.5,
                   1.7, 1.5, 1.2, 1.1, 1.2, 1.5, 1.6, 1.3, 1.0, 0.7, 0.4, 0.3)
"""Relative arrival rate per hour of the (simulated) day: a high street, lunch and evening peaks."""


class ScenarioError(ValueError):
    """A scenario file is missing, not TOML, or breaks a rule; ``path`` and ``key`` say where."""

    def __init__(self, message: str, *, path: str, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AmountRange(_Model):
    """Ticket sizes, log-uniform, in minor units of the card's currency (cents, yen, fils)."""

    min: int = Field(default=300, ge=1)
    max: int = Field(default=12000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "AmountRange":
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self


class EstateEntry(_Model):
    """``count`` terminals of hardware profile ``profile`` (a shipped name or a TOML path)."""

    profile: str
    count: int = Field(ge=1, le=100_000)
    amount: AmountRange | None = None

    @field_validator("profile")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.endswith(".toml") or "/" in value:
            return value
        known = list_profiles()
        if value not in known:
            raise ValueError(f"{value!r} is not a shipped profile; allowed: {', '.join(known)}")
        return value


class CardMixEntry(_Model):
    """A card-set label and its share of cardholders."""

    label: str
    weight: float = Field(gt=0)


class CardDamage(_Model):
    """Share of cardholders whose card is physically damaged (kept for the whole run)."""

    chip_mute: float = Field(default=0.0, ge=0, le=1)
    magstripe_unreadable: float = Field(default=0.0, ge=0, le=1)


class Cards(_Model):
    """Who pays: a weighted mix of card-set labels, cloned into ``holders`` cardholders in all.

    Each label gets its weight's share of the cardholders (at least one), each
    cardholder a card of their own: issuer velocity limits and balances then apply
    per person, as they would on a real high street.
    """

    mix: tuple[CardMixEntry, ...] = Field(min_length=1)
    holders: int = Field(default=1000, ge=1, le=1_000_000)
    damage: CardDamage = CardDamage()
    contactless_share: float = Field(default=0.3, ge=0, le=1)


class Traffic(_Model):
    """Cardholder arrivals: Poisson per terminal, ``rate_per_hour`` scaled by ``diurnal[hour]``."""

    rate_per_hour: float = Field(gt=0, le=3600)
    diurnal: tuple[float, ...] = DEFAULT_DIURNAL
    amount: AmountRange = AmountRange()
    card_time_s: tuple[float, float] = (8.0, 25.0)

    @field_validator("diurnal")
    @classmethod
    def _day(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 24 or any(v < 0 for v in value) or not any(v > 0 for v in value):
            raise ValueError("must be 24 numbers >= 0 (one per hour of the day), at least one > 0")
        return value


class HostSizing(_Model):
    """The host as servers: the acquirer's capacity and service time, then each issuer's; stand-in; cut-off.

    Every message queues for one of the acquirer's ``capacity`` servers (exponential
    service of mean ``service_ms``); messages that reach an issuer (card transactions,
    advices, reversals) then queue for one of that issuer's ``issuer_capacity`` servers
    (mean ``issuer_service_ms``; 0 skips the stage). Only the time is modelled here:
    the decision is the host core's, made when both stages are done.
    """

    capacity: int = Field(default=8, ge=1)
    service_ms: float = Field(default=40.0, ge=0)
    issuer_capacity: int = Field(default=16, ge=1)
    issuer_service_ms: float = Field(default=0.0, ge=0)
    standin_limits: dict[str, int] | None = None
    cutoff: str = "23:00"

    @field_validator("cutoff")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        hh, sep, mm = value.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60 and len(mm) == 2):
            raise ValueError("must be HH:MM (24-hour clock), e.g. '23:00'")
        return value


class Fault(_Model):
    """One scheduled fault: ``kind`` from ``start_h`` for ``duration_h`` hours.

    ``fraction`` is the share of terminals it hits (drawn with the run's seed);
    ``issuer`` names the issuer for ``issuer_down``; ``factor`` multiplies latency
    for ``latency_spike``; ``p_enter``, ``p_leave``, ``loss_bad`` are the
    Gilbert-Elliott parameters of ``loss_burst``; ``rate_per_hour`` is the power cuts
    per hit terminal per hour for ``power_loss``. ``mode`` says how an
    ``acquirer_outage`` looks from the terminal: ``refused`` (connections refused at
    once: nothing sent, Y3/Z3 without a reversal) or ``silent`` (requests accepted and
    never answered: a timeout, a reversal owed, then Y3/Z3). ``link`` narrows a
    ``network_outage``, ``latency_spike`` or ``loss_burst`` to the hit terminals' links of
    that kind (``"3g"``: the cell, not the shop's Wi-Fi); a terminal with another link
    fitted fails over to it while its preferred link is down.
    """

    kind: FaultKind
    start_h: float = Field(ge=0)
    duration_h: float = Field(gt=0)
    fraction: float = Field(default=1.0, gt=0, le=1)
    issuer: str | None = None
    factor: float = Field(default=5.0, ge=1)
    p_enter: float = Field(default=0.05, ge=0, le=1)
    p_leave: float = Field(default=0.3, gt=0, le=1)
    loss_bad: float = Field(default=0.6, ge=0, le=1)
    rate_per_hour: float = Field(default=0.5, gt=0)
    mode: Literal["refused", "silent"] = "refused"
    link: LinkKind | None = None

    @model_validator(mode="after")
    def _needs(self) -> "Fault":
        if self.kind == "issuer_down" and not self.issuer:
            raise ValueError("issuer_down needs 'issuer' (an issuer id of the card set, e.g. 'possim-visa-test')")
        if self.link is not None and self.kind not in ("network_outage", "latency_spike", "loss_burst"):
            raise ValueError(f"'link' narrows network_outage, latency_spike and loss_burst only, not {self.kind}")
        return self

    @property
    def end_h(self) -> float:
        """When the fault ends, hours from the start."""
        return self.start_h + self.duration_h


class Scenario(_Model):
    """A whole run: see the module notes."""

    name: str
    description: str = ""
    seed: int = Field(default=1, ge=0)
    start: datetime = datetime(2026, 11, 27, 8, 0)
    duration_h: float = Field(gt=0, le=24 * 30)
    drain_h: float = Field(default=1.0, ge=0.05)  # >= 3 minutes: the last customers finish before the run ends
    interval_min: float = Field(default=15.0, gt=0)
    reboot_s: float = Field(default=90.0, ge=0)
    retry_s: float = Field(default=60.0, gt=0)
    estate: tuple[EstateEntry, ...] = Field(min_length=1)
    cards: Cards
    traffic: Traffic
    host: HostSizing = HostSizing()
    faults: tuple[Fault, ...] = ()

    @property
    def terminals(self) -> int:
        """Terminals in the estate."""
        return sum(e.count for e in self.estate)


def list_scenarios() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _fail(source: str, exc: ValidationError) -> ScenarioError:
    message, key = first_error(source, exc, Scenario, "scenario")
    return ScenarioError(message, path=source, key=key)


def parse_scenario(data: Mapping[str, Any], source: str = "<data>") -> Scenario:
    """Validate an already-parsed scenario table; :class:`ScenarioError` names the key."""
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise _fail(source, exc) from None


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or Path(text).exists():
        return Path(text)
    return SCENARIO_DIR / f"{text}.toml"


def load_scenario(name_or_path: str | Path = "default") -> Scenario:
    """Load a shipped scenario by name (``"acquirer-outage"``) or a TOML file by path."""
    path = _resolve(name_or_path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read the scenario ({exc.strerror or exc}); shipped: "
                            f"{', '.join(list_scenarios())}", path=source) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}", path=source) from None
    return parse_scenario(data, source)


def check_references(scenario: Scenario, source: str = "<scenario>") -> None:
    """Check what a scenario names outside itself: profile files, card labels, issuers.

    A profile given as a path must load; every card label must be in the card set;
    an ``issuer_down`` must name an issuer of it. :class:`ScenarioError` names the key.

    >>> check_references(load_scenario("default"))
    """
    from ..core.cards import load_cards
    from ..profiles import ProfileError, load_profile

    for i, entry in enumerate(scenario.estate):
        try:
            load_profile(entry.profile)
        except (ProfileError, OSError) as exc:
            raise ScenarioError(f"{source}: key 'estate.{i}.profile': {exc}", path=source,
                                key=f"estate.{i}.profile") from None
    cards = load_cards()
    for i, item in enumerate(scenario.cards.mix):
        if item.label not in cards.labels:
            raise ScenarioError(f"{source}: key 'cards.mix.{i}.label': value {item.label!r} is not in the card set; "
                                f"allowed: {', '.join(cards.labels)}", path=source, key=f"cards.mix.{i}.label")
    issuers = [issuer.id for issuer in cards.issuers]
    for i, fault in enumerate(scenario.faults):
        if fault.kind == "issuer_down" and fault.issuer not in issuers:
            raise ScenarioError(f"{source}: key 'faults.{i}.issuer': value {fault.issuer!r} is not an issuer of the "
                                f"card set; allowed: {', '.join(issuers)}", path=source, key=f"faults.{i}.issuer")
