"""The shipped test card set: one TOML file both the virtual cards and the issuer read.

A card and the issuer that authorises it must agree on everything (PAN, PSN, keys,
PIN, balance), so both are built from the same validated data, never from two
copies. The packaged file is ``sim/data/cards.toml``; :func:`load_cards` reads it
(or a user's file of the same shape) and refuses bad data with an error naming the
file, the card, the field and the value.

Examples
--------
>>> cards = load_cards()
>>> card = cards.card("healthy")
>>> card
Card(label='healthy', issuer='possim-visa-test', pan='476173******0010', currency='EUR', status='active')
>>> cards.issuer_for_pan(card.pan).name
'possim Test Bank (Visa-style)'
>>> luhn_valid(card.pan), luhn_valid("4761739001010011")
(True, False)
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from ..iso8583.pretty import mask_pan
from .money import Currency, CurrencyError, currency as lookup_currency

__all__ = [
    "Card",
    "CardSet",
    "CardSetError",
    "EmvParams",
    "IssuerConfig",
    "FAULTS",
    "SCHEME_AIDS",
    "default_path",
    "load_cards",
    "luhn_check_digit",
    "luhn_valid",
]

Status = Literal["active", "lost", "stolen", "blocked"]
"""Card status on the issuer's file: lost answers 41, stolen 43, blocked 57."""

Fault = Literal["chip_mute", "chip_bad_tlv", "magstripe_unreadable", "swipe_first"]
FAULTS: tuple[str, ...] = ("chip_mute", "chip_bad_tlv", "magstripe_unreadable", "swipe_first")
"""Fault tags a card may carry; the virtual card and the scenarios act on them."""

SCHEME_AIDS = {"visa": "A0000000031010", "mastercard": "A0000000041010"}
"""Application identifier each scheme's test cards use (Visa / Mastercard credit-debit)."""

_SECRET_FIELDS = frozenset({"pin", "imk_ac"})
"""Fields whose value never appears in an error message or repr."""


class CardSetError(ValueError):
    """The card set file is unreadable or breaks a rule.

    Attributes
    ----------
    path : str
        The file.
    card : str or None
        The card label (or ``issuer <id>``) at fault, when one is.
    field : str or None
        The field at fault, dotted for nested ones (``emv.aip``).
    """

    def __init__(self, message: str, *, path: str, card: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.card = card
        self.field = field


@lru_cache(maxsize=4096)
def luhn_valid(pan: str) -> bool:
    """True when ``pan`` is all ASCII digits (at least two) and its Luhn check digit is right.

    The Luhn check is the first thing an issuer does with a PAN it does not know
    (ISO/IEC 7812-1 Annex B); a wrong digit answers 14.

    >>> luhn_valid("4761739001010010"), luhn_valid("4761739001010019"), luhn_valid("47617A")
    (True, False, False)
    """
    if len(pan) < 2 or not (pan.isascii() and pan.isdigit()):
        return False
    return luhn_check_digit(pan[:-1]) == pan[-1]


def luhn_check_digit(body: str) -> str:
    """The Luhn check digit that completes the digits ``body`` into a valid PAN.

    >>> luhn_check_digit("476173900101001")
    '0'
    """
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled: every second digit counting from the check digit
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


# Field validators ---------------------------------------------------------------------------


def _hex(size: int | None = None, *, minimum: int = 1) -> AfterValidator:
    """A validator for hex strings of ``size`` bytes (or at least ``minimum``), upper-cased."""

    def check(value: str) -> str:
        text = value.strip().upper()
        if len(text) % 2 or not re.fullmatch(r"[0-9A-F]*", text):
            raise ValueError("must be hex digits, two per byte")
        count = len(text) // 2
        if size is not None and count != size:
            raise ValueError(f"must be {size} bytes of hex ({2 * size} hex digits)")
        if count < minimum:
            raise ValueError(f"must be at least {minimum} bytes of hex")
        return text

    return AfterValidator(check)


def _digits(low: int, high: int | None = None) -> AfterValidator:
    high = low if high is None else high

    def check(value: str) -> str:
        if not (value.isascii() and value.isdigit() and low <= len(value) <= high):
            size = f"{low}" if low == high else f"{low} to {high}"
            raise ValueError(f"must be {size} digits")
        return value

    return AfterValidator(check)


def _yymm(value: str) -> str:
    if not (len(value) == 4 and value.isdigit() and 1 <= int(value[2:]) <= 12):
        raise ValueError("must be YYMM (4 digits, month 01-12)")
    return value


def _yymmdd(value: str) -> str:
    try:
        datetime.strptime(value, "%y%m%d")
    except ValueError:
        raise ValueError("must be a date YYMMDD") from None
    if len(value) != 6:
        raise ValueError("must be a date YYMMDD")
    return value


def _currency_alpha(value: str) -> str:
    try:
        return lookup_currency(value).alpha
    except CurrencyError as exc:
        raise ValueError(str(exc)) from None


Digits2 = Annotated[StrictStr, _digits(2)]
Digits3 = Annotated[StrictStr, _digits(3)]
CurrencyCode = Annotated[StrictStr, AfterValidator(_currency_alpha)]


# Models -----------------------------------------------------------------------------------


class EmvParams(BaseModel):
    """A chip card's EMV personalisation, as the future virtual card is issued with it.

    The issuer needs only ``cvn`` (which cryptogram it must verify); the rest is for
    the card: AIP (82), AUC (9F07), Issuer Action Codes (9F0D/9F0E/9F0F), lower and
    upper consecutive offline limits (9F14/9F23) and CVM list (8E).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cvn: Literal[10, 16] = Field(description="cryptogram version: 10 Visa CVN 10, 16 Mastercard CVN 16")
    dki: Annotated[StrictStr, _hex(1)] = "01"
    aip: Annotated[StrictStr, _hex(2)]
    auc: Annotated[StrictStr, _hex(2)]
    iac_denial: Annotated[StrictStr, _hex(5)]
    iac_online: Annotated[StrictStr, _hex(5)]
    iac_default: Annotated[StrictStr, _hex(5)]
    lcol: StrictInt = Field(ge=0, le=255)
    ucol: StrictInt = Field(ge=0, le=255)
    cvm_list: Annotated[StrictStr, _hex(minimum=8)]

    @field_validator("cvm_list")
    @classmethod
    def _cvm_rules(cls, value: str) -> str:
        if (len(value) // 2 - 8) % 2:
            raise ValueError("must be amount X (4 bytes), amount Y (4 bytes), then 2-byte CV rules")
        return value

    @field_validator("ucol")
    @classmethod
    def _ucol_not_below_lcol(cls, value: int, info: Any) -> int:
        lcol = info.data.get("lcol")
        if lcol is not None and value < lcol:
            raise ValueError(f"upper consecutive offline limit {value} is below the lower one {lcol}")
        return value


class Card(BaseModel):
    """One test card and its account.

    The repr shows the PAN masked and never the PIN: cards end up in logs and
    test reports, and the project masks PANs everywhere.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    issuer: StrictStr
    pan: Annotated[StrictStr, _digits(12, 19)]
    psn: Digits2
    expiry: Annotated[StrictStr, AfterValidator(_yymm)]
    effective: Annotated[StrictStr, AfterValidator(_yymmdd)]
    service_code: Digits3
    currency: CurrencyCode
    status: Status
    balance: StrictInt = Field(ge=0, description="opening balance, minor units of currency")
    amount_limit: StrictInt = Field(gt=0, description="largest amount of one transaction, minor units")
    velocity_count: StrictInt = Field(gt=0, description="approvals allowed per velocity window")
    velocity_window_seconds: StrictInt = Field(gt=0)
    pin: Annotated[StrictStr, _digits(4, 12)]
    pin_try_limit: StrictInt = Field(default=3, ge=1, le=15, description="the card's PIN try counter (9F17) at issue")
    faults: tuple[Fault, ...] = ()
    emv: EmvParams | None = None

    @field_validator("pan")
    @classmethod
    def _luhn(cls, value: str) -> str:
        if not luhn_valid(value):
            raise ValueError("fails the Luhn check")
        return value

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        yield "label", self.label
        yield "issuer", self.issuer
        yield "pan", self.masked_pan
        yield "currency", self.currency
        yield "status", self.status

    @property
    def masked_pan(self) -> str:
        """The PAN as logs show it: first 6 and last 4 digits."""
        return mask_pan(self.pan)

    @property
    def chip(self) -> bool:
        """True when the card has an EMV application (``[cards.emv]`` present)."""
        return self.emv is not None

    @property
    def currency_info(self) -> Currency:
        """The account currency (alpha, numeric, exponent) from the ISO 4217 table."""
        return lookup_currency(self.currency)

    @property
    def expiry_month(self) -> tuple[int, int]:
        """(year, month) of the last month the card is valid in."""
        return 2000 + int(self.expiry[:2]), int(self.expiry[2:])

    def expired(self, now: datetime | date) -> bool:
        """True when ``now`` is after the last day of the expiry month.

        A card is valid through the end of its expiry month (ISO/IEC 7813), so
        only the year and month of ``now`` matter.
        """
        return (now.year, now.month) > self.expiry_month

    def track2(self, separator: str = "D") -> str:
        """Track 2 equivalent data as a terminal sends it in DE35: PAN, separator, YYMM, service code.

        The discretionary data is a fixed test value; possim never stores track data.
        """
        return f"{self.pan}{separator}{self.expiry}{self.service_code}0000000000"


class IssuerConfig(BaseModel):
    """One issuer: its BIN range, default currency and (test) issuer master key.

    ``bins`` are PAN prefixes: the issuer serves every PAN starting with one of
    them. ``imk_ac`` is a TEST ONLY key and its name must say so.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    name: StrictStr
    scheme: Literal["visa", "mastercard"]
    bins: tuple[Annotated[StrictStr, _digits(1, 11)], ...] = Field(min_length=1)
    currency: CurrencyCode
    country: Digits3
    imk_ac_name: StrictStr
    imk_ac: Annotated[StrictStr, _hex(16)] = Field(repr=False)

    @field_validator("imk_ac_name")
    @classmethod
    def _test_key(cls, value: str) -> str:
        if "TEST ONLY" not in value:
            raise ValueError('must contain "TEST ONLY": possim ships and accepts test keys only')
        return value

    @property
    def imk(self) -> bytes:
        """The issuer master key for application cryptograms, as bytes."""
        return bytes.fromhex(self.imk_ac)

    @property
    def aid(self) -> str:
        """The application identifier this issuer's cards carry."""
        return SCHEME_AIDS[self.scheme]

    def owns(self, pan: str) -> bool:
        """True when ``pan`` falls in this issuer's BIN range."""
        return pan.startswith(self.bins)


class CardSet(BaseModel):
    """A validated card set: issuers by id, cards in file order, looked up by label or PAN."""

    model_config = ConfigDict(frozen=True)

    source: str
    issuers: tuple[IssuerConfig, ...]
    cards: tuple[Card, ...]

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        yield "source", self.source
        yield "issuers", [i.id for i in self.issuers]
        yield "cards", len(self.cards)

    def issuer(self, issuer_id: str) -> IssuerConfig:
        """The issuer with this id; ``KeyError`` naming the known ones otherwise."""
        for config in self.issuers:
            if config.id == issuer_id:
                return config
        raise KeyError(f"no issuer {issuer_id!r} in {self.source}; issuers: {', '.join(i.id for i in self.issuers)}")

    def card(self, label: str) -> Card:
        """The card with this label; ``KeyError`` naming the known labels otherwise."""
        for card in self.cards:
            if card.label == label:
                return card
        raise KeyError(f"no card {label!r} in {self.source}; labels: {', '.join(self.labels)}")

    @property
    def labels(self) -> tuple[str, ...]:
        """Every card label, in file order."""
        return tuple(c.label for c in self.cards)

    def by_pan(self, pan: str) -> Card | None:
        """The card with this PAN, or ``None``."""
        return next((c for c in self.cards if c.pan == pan), None)

    def cards_of(self, issuer_id: str) -> tuple[Card, ...]:
        """The cards one issuer holds accounts for."""
        return tuple(c for c in self.cards if c.issuer == issuer_id)

    def issuer_for_pan(self, pan: str) -> IssuerConfig | None:
        """The issuer whose BIN range holds ``pan``, or ``None`` (answer 15)."""
        return next((i for i in self.issuers if i.owns(pan)), None)


# Loading ----------------------------------------------------------------------------------


def default_path() -> Path:
    """The packaged card set, ``sim/data/cards.toml``."""
    return Path(str(resources.files("sim").joinpath("data", "cards.toml")))


def _shown(field: str, value: Any) -> str:
    """A value fit for an error message: PANs masked, secrets hidden."""
    if field.split(".")[-1] in _SECRET_FIELDS:
        return "<hidden>"
    if field.endswith("pan") and isinstance(value, str):
        return repr(mask_pan(value))
    return repr(value)


def _fail(source: str, owner: str, exc: ValidationError) -> CardSetError:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        text = f"{source}: {owner} field {loc!r} is missing"
    else:
        text = f"{source}: {owner} field {loc!r}: value {_shown(loc, first.get('input'))}: {message}"
    card = owner.split("'")[1] if "'" in owner else owner
    return CardSetError(text, path=source, card=card, field=loc)


def load_cards(path: str | Path | None = None) -> CardSet:
    """Read and validate a card set (default: the packaged ``sim/data/cards.toml``).

    Parameters
    ----------
    path : str or Path, optional
        A TOML file with ``[issuers.<id>]`` tables and ``[[cards]]`` entries, shaped
        like the packaged one (whose comments document every field).

    Returns
    -------
    CardSet

    Raises
    ------
    CardSetError
        The file is missing or not TOML, or a rule is broken: a field's type or
        format, a PAN failing Luhn or outside its issuer's BIN range, a duplicate
        label or PAN, an unknown issuer, overlapping BIN ranges. The message names
        the file, the card (or issuer), the field and the value (PANs masked).
    """
    source_path = default_path() if path is None else Path(path)
    source = str(source_path)
    try:
        data = tomllib.loads(source_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CardSetError(f"{source}: cannot read the card set: {exc.strerror or exc}", path=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise CardSetError(f"{source}: not valid TOML: {exc}", path=source) from None

    unknown = set(data) - {"issuers", "cards"}
    if unknown:
        raise CardSetError(f"{source}: unexpected top-level key(s) {sorted(unknown)}; allowed: issuers, cards", path=source)
    raw_issuers = data.get("issuers")
    raw_cards = data.get("cards")
    if not isinstance(raw_issuers, dict) or not raw_issuers:
        raise CardSetError(f"{source}: no [issuers.<id>] tables", path=source)
    if not isinstance(raw_cards, list) or not raw_cards:
        raise CardSetError(f"{source}: no [[cards]] entries", path=source)

    issuers: dict[str, IssuerConfig] = {}
    for issuer_id, raw in raw_issuers.items():
        owner = f"issuer '{issuer_id}'"
        if not isinstance(raw, dict):
            raise CardSetError(f"{source}: {owner} must be a table", path=source, card=issuer_id)
        try:
            issuers[issuer_id] = IssuerConfig.model_validate({"id": issuer_id, **raw})
        except ValidationError as exc:
            raise _fail(source, owner, exc) from None
    _check_bins(source, list(issuers.values()))

    cards: list[Card] = []
    labels: set[str] = set()
    pans: dict[str, str] = {}
    for index, raw in enumerate(raw_cards, start=1):
        if not isinstance(raw, dict):
            raise CardSetError(f"{source}: card #{index} must be a table", path=source)
        label = str(raw.get("label", f"#{index}"))
        owner = f"card '{label}'"
        issuer = issuers.get(raw.get("issuer"))  # type: ignore[arg-type]
        if "issuer" in raw and issuer is None:
            raise CardSetError(
                f"{source}: {owner} field 'issuer': value {raw['issuer']!r} is not an issuer of this file; "
                f"issuers: {', '.join(issuers)}",
                path=source, card=label, field="issuer",
            )
        filled = dict(raw)
        if issuer is not None and "currency" not in filled:
            filled["currency"] = issuer.currency
        try:
            card = Card.model_validate(filled)
        except ValidationError as exc:
            raise _fail(source, owner, exc) from None
        assert issuer is not None  # "issuer" is a required field, validated above
        if not issuer.owns(card.pan):
            raise CardSetError(
                f"{source}: {owner} field 'pan': value {card.masked_pan!r} is outside issuer "
                f"{issuer.id!r} BIN range {list(issuer.bins)}",
                path=source, card=label, field="pan",
            )
        if card.label in labels:
            raise CardSetError(f"{source}: {owner} field 'label': value {label!r} is used twice", path=source, card=label, field="label")
        if card.pan in pans:
            raise CardSetError(
                f"{source}: {owner} field 'pan': value {card.masked_pan!r} is already card {pans[card.pan]!r}",
                path=source, card=label, field="pan",
            )
        labels.add(card.label)
        pans[card.pan] = card.label
        cards.append(card)
    return CardSet(source=source, issuers=tuple(issuers.values()), cards=tuple(cards))


def _check_bins(source: str, issuers: list[IssuerConfig]) -> None:
    """Refuse BIN ranges shared by two issuers: a PAN must route to exactly one."""
    seen: list[tuple[str, str]] = []
    for config in issuers:
        for prefix in config.bins:
            for other_id, other in seen:
                if other_id != config.id and (prefix.startswith(other) or other.startswith(prefix)):
                    raise CardSetError(
                        f"{source}: issuer '{config.id}' field 'bins': value {prefix!r} overlaps issuer "
                        f"'{other_id}' BIN {other!r}",
                        path=source, card=config.id, field="bins",
                    )
            seen.append((config.id, prefix))
