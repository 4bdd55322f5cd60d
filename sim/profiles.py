"""Hardware profiles: what a terminal model has, can do and is configured with, validated.

A profile is a TOML file in ``hardware_profiles/`` describing one terminal model:
its readers, PIN pad, printer, links to the host, offline store, battery, timeouts,
and the EMV configuration an acquirer loads into it (floor limits, terminal action
codes, random selection, supported applications and CVMs, contactless limits,
9F33/9F40/9F35/9F1A). The kernel (:mod:`sim.emv.kernel`) takes its configuration
from a profile, and the DES and live drivers take latencies, losses, capacities and
timeouts from the same file, so one file describes one device everywhere.

Amounts are integers of minor units per ISO 4217 alpha currency (``EUR = 5000`` is
50.00 EUR). Fields that must agree are checked against each other: the readers,
CVMs and offline data authentication methods listed must be the ones 9F33 says,
so a profile can never claim one thing in its hardware and another on the wire.

A bad profile is refused with :class:`ProfileError`, naming the file, the key
(dotted: ``comms.links.0.kind``) and what is allowed.

Examples
--------
>>> sorted(list_profiles())[:3]
['countertop-ethernet', 'legacy-dialup', 'mobile-3g']
>>> profile = load_profile("countertop-ethernet")
>>> profile.terminal_type, profile.floor_limit("EUR"), profile.comms.primary
('22', 5000, 'ethernet')
>>> profile.online_capable, profile.offline_capable
(True, True)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from .core.money import CurrencyError, currency as lookup_currency
from .validation import first_error

__all__ = [
    "AppConfig",
    "Battery",
    "Comms",
    "ContactlessLimits",
    "CVM_NAMES",
    "HardwareProfile",
    "Link",
    "LINK_DEFAULTS",
    "PROFILE_DIR",
    "ProfileError",
    "RandomSelection",
    "Readers",
    "list_profiles",
    "load_profile",
]

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"
"""Where the shipped profiles live (the repository's ``hardware_profiles/``)."""

LinkKind = Literal["ethernet", "wifi", "3g", "dialup"]

LINK_DEFAULTS: dict[str, dict[str, float | int]] = {
    "ethernet": {"latency_ms": 15, "jitter_ms": 5, "loss_percent": 0.0, "connect_ms": 5},
    "wifi": {"latency_ms": 40, "jitter_ms": 25, "loss_percent": 0.5, "connect_ms": 50},
    "3g": {"latency_ms": 300, "jitter_ms": 200, "loss_percent": 2.0, "connect_ms": 1500},
    "dialup": {"latency_ms": 600, "jitter_ms": 100, "loss_percent": 0.5, "connect_ms": 15000},
}
"""Latency, jitter, loss and connection set-up a link kind has unless the profile says otherwise."""

CVM_NAMES: dict[str, int] = {
    "offline_plaintext_pin": 0x80,
    "online_pin": 0x40,
    "signature": 0x20,
    "offline_enciphered_pin": 0x10,
    "no_cvm": 0x08,
}
"""CVM names a profile lists -> their bit in 9F33 byte 2 (CVM capability)."""

_INPUT_BITS = {"manual": 0x80, "magstripe": 0x40, "contact": 0x20}
"""Card data input -> bit in 9F33 byte 1."""

_ODA_BITS = {"sda": 0x80, "dda": 0x40, "cda": 0x08}
"""Offline data authentication method -> bit in 9F33 byte 3."""


class ProfileError(ValueError):
    """A profile file is missing, not TOML, or breaks a rule.

    Attributes
    ----------
    path : str
        The file.
    key : str or None
        The key at fault, dotted (``comms.links.0.kind``), when one is.
    """

    def __init__(self, message: str, *, path: str, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


# Field types ------------------------------------------------------------------------------------


def _hex(size: int) -> AfterValidator:
    def check(value: str) -> str:
        text = value.strip().upper()
        if not re.fullmatch(r"[0-9A-F]*", text) or len(text) != 2 * size:
            raise ValueError(f"must be {size} bytes of hex ({2 * size} hex digits)")
        return text

    return AfterValidator(check)


def _aid(value: str) -> str:
    text = value.strip().upper()
    if not re.fullmatch(r"[0-9A-F]*", text) or len(text) % 2 or not 5 <= len(text) // 2 <= 16:
        raise ValueError("must be an AID: 5 to 16 bytes of hex")
    return text


def _digits(size: int) -> AfterValidator:
    def check(value: str) -> str:
        if not (value.isascii() and value.isdigit() and len(value) == size):
            raise ValueError(f"must be {size} digits")
        return value

    return AfterValidator(check)


def _terminal_type(value: str) -> str:
    if not re.fullmatch(r"[123][1-6]", value):
        raise ValueError(
            "must be 2 digits: operator 1 financial institution / 2 merchant / 3 cardholder, then "
            "1-3 attended or 4-6 unattended (1/4 online only, 2/5 offline with online, 3/6 offline only)"
        )
    return value


def _currency_table(value: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for code, amount in value.items():
        try:
            alpha = lookup_currency(code).alpha
        except CurrencyError as exc:
            raise ValueError(f"key {code!r}: {exc}") from None
        out[alpha] = amount
    return out


Hex2 = Annotated[StrictStr, _hex(2)]
Hex3 = Annotated[StrictStr, _hex(3)]
Hex5 = Annotated[StrictStr, _hex(5)]
Amounts = Annotated[dict[StrictStr, Annotated[StrictInt, Field(ge=0)]], AfterValidator(_currency_table)]
"""Per-currency amounts in minor units, keyed by ISO 4217 alpha code."""

Number = StrictInt | StrictFloat


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Sections ---------------------------------------------------------------------------------------


class Readers(_Model):
    """Card readers fitted. A reader listed here can still be broken by a DEV scenario.

    ``qr`` is a camera or scanner that reads the QR code a wallet app shows
    (EMVCo consumer-presented mode): QR wallet payments are online only (OFF-09).
    """

    contact: StrictBool
    contactless: StrictBool
    magstripe: StrictBool
    qr: StrictBool = False


class PinPad(_Model):
    """The PIN entry device (integrated or external)."""

    present: StrictBool
    kind: Literal["integrated", "external", "pin_on_glass", "none"] = "integrated"


class Printer(_Model):
    """Receipt printer; ``paper_receipts`` is how many receipts a full roll prints."""

    present: StrictBool
    paper_receipts: StrictInt = Field(default=0, ge=0)


class Link(_Model):
    """One network link to the host, with its impairment defaults (see :data:`LINK_DEFAULTS`)."""

    kind: LinkKind
    latency_ms: Number = Field(ge=0)
    jitter_ms: Number = Field(ge=0)
    loss_percent: Number = Field(ge=0, le=100)
    connect_ms: Number = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in LINK_DEFAULTS:
            return {**LINK_DEFAULTS[data["kind"]], **data}
        return data


class Comms(_Model):
    """Links in order of preference; ``primary`` names the kind tried first."""

    primary: LinkKind
    links: tuple[Link, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _primary_fitted(self) -> "Comms":
        kinds = [link.kind for link in self.links]
        if self.primary not in kinds:
            raise ValueError(f"primary {self.primary!r} is not one of the links fitted: {kinds}")
        return self

    @property
    def primary_link(self) -> Link:
        """The link tried first."""
        return next(link for link in self.links if link.kind == self.primary)


class OfflineStore(_Model):
    """Store-and-forward capacity: offline approvals and reversals held until the host acknowledges."""

    capacity: StrictInt = Field(ge=0)


class Battery(_Model):
    """A battery, for mobile terminals; absent on mains-powered ones."""

    capacity_mah: StrictInt = Field(gt=0)
    transactions_per_charge: StrictInt = Field(gt=0)
    low_percent: StrictInt = Field(default=10, ge=0, le=100)


class Timeouts(_Model):
    """Seconds the terminal waits before giving up (host answer, card, PIN entry, removal)."""

    host_response_s: Number = Field(gt=0)
    connect_s: Number = Field(gt=0)
    card_response_s: Number = Field(default=5, gt=0)
    pin_entry_s: Number = Field(default=30, gt=0)
    card_removal_s: Number = Field(default=30, gt=0)


class ActionCodes(_Model):
    """Terminal Action Codes (EMV Book 3 10.7), 5 bytes of hex each."""

    denial: Hex5
    online: Hex5
    default: Hex5


class RandomSelection(_Model):
    """Random transaction selection (EMV Book 3 10.6.2).

    ``threshold`` is the biased selection threshold per currency (minor units); below
    it the chance is ``target_percent``, rising to ``max_target_percent`` at the floor limit.
    """

    enabled: StrictBool = True
    target_percent: StrictInt = Field(ge=0, le=99)
    max_target_percent: StrictInt = Field(ge=0, le=99)
    threshold: Amounts = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> "RandomSelection":
        if self.max_target_percent < self.target_percent:
            raise ValueError(
                f"max_target_percent {self.max_target_percent} is below target_percent {self.target_percent}"
            )
        return self


class ContactlessLimits(_Model):
    """Contactless limits per currency (minor units).

    ``transaction_limit``: above it the reader asks for another interface (FB-07);
    ``cvm_limit``: above it a CVM is required; ``floor_limit``: contactless floor limit.
    """

    transaction_limit: Amounts = Field(default_factory=dict)
    cvm_limit: Amounts = Field(default_factory=dict)
    floor_limit: Amounts = Field(default_factory=dict)


class AppConfig(_Model):
    """An application the terminal supports: AID, selection rule, version, optional TAC overrides."""

    aid: Annotated[StrictStr, AfterValidator(_aid)]
    label: StrictStr
    partial_selection: StrictBool = True
    version: Hex2 = "0096"
    tac: ActionCodes | None = None


class HardwareProfile(_Model):
    """One terminal model (see the module docstring and the shipped TOML files)."""

    name: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    description: StrictStr
    model: StrictStr = ""
    terminal_type: Annotated[StrictStr, AfterValidator(_terminal_type)]
    country: Annotated[StrictStr, _digits(3)]
    terminal_capabilities: Hex3
    additional_capabilities: Hex5
    message_mode: Literal["single", "dual"] = "single"
    manual_entry: StrictBool = False
    cardholder_confirmation: StrictBool = True
    cvms: tuple[Literal["offline_plaintext_pin", "online_pin", "signature", "offline_enciphered_pin", "no_cvm"], ...]
    oda: tuple[Literal["sda", "dda", "cda"], ...] = ()
    default_ddol: Annotated[StrictStr, Field(pattern=r"^([0-9A-Fa-f]{2})+$")] = "9F3704"
    readers: Readers
    pin_pad: PinPad
    printer: Printer
    comms: Comms
    offline_store: OfflineStore
    battery: Battery | None = None
    timeouts: Timeouts
    floor_limits: Amounts
    tac: ActionCodes
    random_selection: RandomSelection
    contactless: ContactlessLimits = Field(default_factory=ContactlessLimits)
    applications: tuple[AppConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "HardwareProfile":
        caps = bytes.fromhex(self.terminal_capabilities)
        inputs = {"manual": self.manual_entry, "magstripe": self.readers.magstripe, "contact": self.readers.contact}
        for name, fitted in inputs.items():
            if bool(caps[0] & _INPUT_BITS[name]) != fitted:
                raise ValueError(
                    f"terminal_capabilities byte 1 {caps[0]:02X} {'lacks' if fitted else 'has'} the {name} input bit "
                    f"({_INPUT_BITS[name]:02X}) but the profile {'has' if fitted else 'does not have'} {name} input"
                )
        cvm_bits = sum(CVM_NAMES[name] for name in set(self.cvms))
        if caps[1] != cvm_bits:
            raise ValueError(
                f"terminal_capabilities byte 2 is {caps[1]:02X} but cvms {list(self.cvms)} make {cvm_bits:02X}; "
                f"bits: {', '.join(f'{n}={b:02X}' for n, b in CVM_NAMES.items())}"
            )
        oda_bits = sum(_ODA_BITS[name] for name in set(self.oda))
        if caps[2] & 0xC8 != oda_bits:
            raise ValueError(
                f"terminal_capabilities byte 3 {caps[2]:02X} says ODA bits {caps[2] & 0xC8:02X} but oda {list(self.oda)} "
                f"make {oda_bits:02X}; bits: sda=80, dda=40, cda=08"
            )
        if any(name in self.cvms for name in ("offline_plaintext_pin", "online_pin", "offline_enciphered_pin")):
            if not self.pin_pad.present:
                raise ValueError(f"cvms {list(self.cvms)} need a PIN pad but pin_pad.present is false")
        if not (self.readers.contact or self.readers.contactless or self.readers.magstripe or self.manual_entry):
            raise ValueError("the terminal has no way to read a card: fit a reader or allow manual entry")
        return self

    # Derived facts ------------------------------------------------------------------------------

    @property
    def unattended(self) -> bool:
        """Terminal type second digit 4-6."""
        return self.terminal_type[1] in "456"

    @property
    def online_capable(self) -> bool:
        """Terminal type second digit 1, 2, 4, 5: it can reach a host."""
        return self.terminal_type[1] in "1245"

    @property
    def offline_capable(self) -> bool:
        """Terminal type second digit 2, 3, 5, 6: it may approve offline."""
        return self.terminal_type[1] in "2356"

    def floor_limit(self, currency: str) -> int:
        """The floor limit for ``currency`` (alpha or numeric); 0 when not configured (all online)."""
        return self.floor_limits.get(lookup_currency(currency).alpha, 0)


# Loading ----------------------------------------------------------------------------------------


def list_profiles(directory: str | Path | None = None) -> list[str]:
    """Names of the profiles shipped (the TOML file names without ``.toml``), sorted."""
    folder = Path(directory) if directory is not None else PROFILE_DIR
    return sorted(path.stem for path in folder.glob("*.toml"))


def _fail(source: str, exc: ValidationError) -> ProfileError:
    message, key = first_error(source, exc, HardwareProfile, "profile")
    return ProfileError(message, path=source, key=key)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix == ".toml" or candidate.exists() or "/" in text:
        return candidate
    return PROFILE_DIR / f"{text}.toml"


def parse_profile(data: Mapping[str, Any], source: str = "<data>") -> HardwareProfile:
    """Validate an already-parsed profile table (for profiles built in code or tests)."""
    try:
        return HardwareProfile.model_validate(dict(data))
    except ValidationError as exc:
        raise _fail(source, exc) from None


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a profile by name (``"countertop-ethernet"``) or TOML path.

    Raises
    ------
    ProfileError
        The profile does not exist (the message lists the shipped ones), is not
        TOML, or breaks a rule (file, key and allowed values named).
    """
    path = _resolve(name_or_path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(list_profiles())
        raise ProfileError(
            f"{source}: cannot read the profile ({exc.strerror or exc}); shipped profiles: {known}", path=source
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}", path=source) from None
    return parse_profile(data, source)
