"""The terminal's configuration as the kernel uses it: built from a hardware profile.

:class:`TerminalConfig` is everything about the *terminal* a transaction needs
(capabilities, floor limits, action codes, random selection, supported
applications, CA keys, the exception file and the same-PAN log). Per-transaction
inputs (amount, date, unpredictable number) go to
:class:`~sim.emv.kernel.transaction.Transaction` instead. Tests change one thing
with :func:`dataclasses.replace`.

Currencies are keyed by ISO 4217 *numeric* code here (what 5F2A carries); the
profile's alpha keys are converted once, in :meth:`TerminalConfig.from_profile`.

Examples
--------
>>> config = TerminalConfig.from_profile("countertop-ethernet")
>>> config.floor_limit("978"), config.online_capable, config.offline_capable
(5000, True, True)
>>> config.receipt, TerminalConfig.from_profile("mobile-3g", paper_left=0).receipt
('printed', 'not printed: out of paper')
>>> log = PanLog().record("4761739001010010", "978", 1200)
>>> log.latest("4761739001010010", "978"), log.latest("4761739001010028", "978")
(1200, 0)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ...core.money import currency as lookup_currency
from ...profiles import HardwareProfile, load_profile
from ..oda import CaPublicKey, test_ca_public_keys
from .events import Interface

__all__ = [
    "Application",
    "ExceptionFile",
    "PanLog",
    "RECEIPT_NO_PRINTER",
    "RECEIPT_OUT_OF_PAPER",
    "RECEIPT_PRINTED",
    "RandomSelectionParams",
    "TerminalConfig",
    "pan_digest",
]

RECEIPT_PRINTED = "printed"
RECEIPT_OUT_OF_PAPER = "not printed: out of paper"
RECEIPT_NO_PRINTER = "not printed: no printer"
"""A transaction's receipt status (:attr:`TerminalConfig.receipt`, ``TransactionResult.receipt``)."""


def pan_digest(pan: str) -> str:
    """A stable digest of a PAN: how the same-PAN log recognises a card without keeping its number."""
    return hashlib.sha256(pan.encode("ascii")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Application:
    """A terminal-supported application: AID, partial-selection flag, version (9F09), optional TACs."""

    aid: bytes
    label: str
    partial_selection: bool = True
    version: bytes = bytes.fromhex("0096")
    tac_denial: bytes | None = None
    tac_online: bytes | None = None
    tac_default: bytes | None = None

    def matches(self, card_aid: bytes) -> bool:
        """True when the card's ADF name selects this application (exactly, or by partial name)."""
        if card_aid == self.aid:
            return True
        return self.partial_selection and card_aid.startswith(self.aid) and len(card_aid) > len(self.aid)


@dataclass(frozen=True, slots=True)
class RandomSelectionParams:
    """Random transaction selection (EMV Book 3 10.6.2); thresholds per numeric currency."""

    enabled: bool = True
    target_percent: int = 0
    max_target_percent: int = 0
    thresholds: Mapping[str, int] = field(default_factory=dict)

    def threshold(self, currency: str) -> int:
        """Biased selection threshold for ``currency`` (0 when not configured)."""
        return self.thresholds.get(currency, 0)


@dataclass(frozen=True, slots=True)
class ExceptionFile:
    """The terminal's hot list: PANs (optionally with a PAN sequence number) it must not accept offline.

    A card found here sets TVR 1:10 (EMV Book 3 10.6); what follows is up to the
    action codes (ONL-04, OFF-08).
    """

    entries: frozenset[tuple[str, str | None]] = frozenset()

    @classmethod
    def of(cls, *pans: str | tuple[str, str | None]) -> "ExceptionFile":
        """An exception file listing ``pans`` (``"4761..."`` or ``("4761...", "01")``)."""
        items = {(p, None) if isinstance(p, str) else (p[0], p[1]) for p in pans}
        return cls(frozenset(items))

    def contains(self, pan: str, psn: str | None = None) -> bool:
        """True when ``pan`` is listed for any sequence number, or for ``psn``."""
        return (pan, None) in self.entries or (psn is not None and (pan, psn) in self.entries)

    def __repr__(self) -> str:
        return f"ExceptionFile({len(self.entries)} entries)"


@dataclass(frozen=True, slots=True)
class PanLog:
    """The same-PAN transaction log for split-sale detection (EMV Book 3 10.6.1).

    Keeps only PAN digests, currencies and amounts of approved transactions, newest
    last. :meth:`record` returns a new log: the driver keeps the current one.
    """

    entries: tuple[tuple[str, str, int], ...] = ()
    size: int = 200

    def latest(self, pan: str, currency: str) -> int:
        """Amount of the most recent approved transaction with this PAN and currency (0: none)."""
        return self.latest_digest(pan_digest(pan), currency)

    def latest_digest(self, key: str, currency: str) -> int:
        """As :meth:`latest`, from the PAN's digest (a transaction works it out once, for this and its result)."""
        for digest, cur, amount in reversed(self.entries):
            if digest == key and cur == currency:
                return amount
        return 0

    def record(self, pan: str, currency: str, amount: int) -> "PanLog":
        """A log with this approval added (the oldest dropped beyond ``size``)."""
        return self.record_digest(pan_digest(pan), currency, amount)

    def record_digest(self, digest: str, currency: str, amount: int) -> "PanLog":
        """As :meth:`record`, from a result's ``log_key`` (the driver never sees the PAN)."""
        entries = (*self.entries, (digest, currency, amount))[-self.size :]
        return PanLog(entries, self.size)

    def __repr__(self) -> str:
        return f"PanLog({len(self.entries)} entries)"


def _numeric(table: Mapping[str, int]) -> dict[str, int]:
    return {lookup_currency(code).numeric: amount for code, amount in table.items()}


@dataclass(frozen=True)
class TerminalConfig:
    """Terminal-side configuration of the kernel (see the module docstring).

    Attributes
    ----------
    terminal_type : str
        9F35; its second digit says attended/unattended and online/offline capability.
    capabilities, additional_capabilities : bytes
        9F33 (3 bytes) and 9F40 (5 bytes).
    readers : frozenset of str
        Interfaces fitted: ``contact``, ``contactless``, ``magstripe``, and ``qr``
        (a scanner for wallet QR codes).
    floor_limits : mapping
        Numeric currency -> floor limit in minor units (absent: 0, everything online).
    tac_denial, tac_online, tac_default : bytes
        Terminal action codes (an application may override them).
    offline_store_free : int or None
        Free places in the offline store: 0 forbids offline approvals (OFF-07);
        ``None`` means not limited.
    printer : bool
        A receipt printer is fitted.
    paper_left : int or None
        Receipts the paper roll still prints: 0 is out of paper (DEV-02), ``None``
        not counted. Like ``offline_store_free`` it is device state the driver keeps
        and passes in; the transaction goes on without paper, its receipt marked
        not printed.
    """

    terminal_id: str = "TERM0001"
    merchant_id: str = "POSSIM000000001"
    country: str = "250"
    terminal_type: str = "22"
    capabilities: bytes = bytes.fromhex("E0E8C0")
    additional_capabilities: bytes = bytes.fromhex("6000F0A001")
    message_mode: str = "single"
    readers: frozenset[Interface] = frozenset({"contact", "contactless", "magstripe"})
    manual_entry: bool = True
    pin_pad: bool = True
    cardholder_confirmation: bool = True
    floor_limits: Mapping[str, int] = field(default_factory=dict)
    tac_denial: bytes = bytes.fromhex("0010000000")
    tac_online: bytes = bytes.fromhex("DC4004F800")
    tac_default: bytes = bytes.fromhex("DC4000A800")
    random_selection: RandomSelectionParams = field(default_factory=RandomSelectionParams)
    contactless_transaction_limits: Mapping[str, int] = field(default_factory=dict)
    contactless_cvm_limits: Mapping[str, int] = field(default_factory=dict)
    contactless_floor_limits: Mapping[str, int] = field(default_factory=dict)
    applications: tuple[Application, ...] = (
        Application(bytes.fromhex("A0000000031010"), "VISA", True, bytes.fromhex("008C")),
        Application(bytes.fromhex("A0000000041010"), "MASTERCARD", True, bytes.fromhex("0002")),
    )
    default_ddol: bytes = bytes.fromhex("9F3704")
    ca_keys: tuple[CaPublicKey, ...] = field(default_factory=test_ca_public_keys)
    exception_file: ExceptionFile = field(default_factory=ExceptionFile)
    pan_log: PanLog = field(default_factory=PanLog)
    offline_store_free: int | None = None
    printer: bool = True
    paper_left: int | None = None
    profile_name: str = ""

    @classmethod
    def from_profile(
        cls,
        profile: HardwareProfile | str | Path,
        *,
        terminal_id: str = "TERM0001",
        merchant_id: str = "POSSIM000000001",
        exception_file: ExceptionFile | Iterable[str] = (),
        pan_log: PanLog | None = None,
        offline_store_free: int | None = None,
        paper_left: int | None = None,
    ) -> "TerminalConfig":
        """The kernel configuration of a hardware profile (a loaded one, a name or a path)."""
        prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
        readers = {name for name in ("contact", "contactless", "magstripe", "qr") if getattr(prof.readers, name)}
        apps = tuple(
            Application(
                bytes.fromhex(app.aid), app.label, app.partial_selection, bytes.fromhex(app.version),
                *(bytes.fromhex(getattr(app.tac, k)) if app.tac else None for k in ("denial", "online", "default")),
            )
            for app in prof.applications
        )
        rs = prof.random_selection
        files = exception_file if isinstance(exception_file, ExceptionFile) else ExceptionFile.of(*exception_file)
        return cls(
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            country=prof.country,
            terminal_type=prof.terminal_type,
            capabilities=bytes.fromhex(prof.terminal_capabilities),
            additional_capabilities=bytes.fromhex(prof.additional_capabilities),
            message_mode=prof.message_mode,
            readers=frozenset(readers),  # type: ignore[arg-type]
            manual_entry=prof.manual_entry,
            pin_pad=prof.pin_pad.present,
            cardholder_confirmation=prof.cardholder_confirmation,
            floor_limits=_numeric(prof.floor_limits),
            tac_denial=bytes.fromhex(prof.tac.denial),
            tac_online=bytes.fromhex(prof.tac.online),
            tac_default=bytes.fromhex(prof.tac.default),
            random_selection=RandomSelectionParams(
                rs.enabled, rs.target_percent, rs.max_target_percent, _numeric(rs.threshold)
            ),
            contactless_transaction_limits=_numeric(prof.contactless.transaction_limit),
            contactless_cvm_limits=_numeric(prof.contactless.cvm_limit),
            contactless_floor_limits=_numeric(prof.contactless.floor_limit),
            applications=apps,
            default_ddol=bytes.fromhex(prof.default_ddol),
            exception_file=files,
            pan_log=pan_log if pan_log is not None else PanLog(),
            offline_store_free=offline_store_free,
            printer=prof.printer.present,
            paper_left=paper_left,
            profile_name=prof.name,
        )

    # Derived facts ----------------------------------------------------------------------------

    @property
    def unattended(self) -> bool:
        """Terminal type second digit 4-6."""
        return self.terminal_type[1] in "456"

    @property
    def online_capable(self) -> bool:
        """The terminal can reach a host (terminal type second digit 1, 2, 4, 5)."""
        return self.terminal_type[1] in "1245"

    @property
    def offline_capable(self) -> bool:
        """The terminal may approve offline (second digit 2, 3, 5, 6) and has room to store it."""
        return self.terminal_type[1] in "2356" and self.offline_store_free != 0

    @property
    def online_only(self) -> bool:
        """Every approval must come from the host (second digit 1 or 4, or a full offline store)."""
        return self.online_capable and not self.offline_capable

    @property
    def receipt(self) -> str:
        """What becomes of this terminal's receipt: ``printed``, or ``not printed:`` and why (DEV-02)."""
        if not self.printer:
            return RECEIPT_NO_PRINTER
        if self.paper_left is not None and self.paper_left <= 0:
            return RECEIPT_OUT_OF_PAPER
        return RECEIPT_PRINTED

    def floor_limit(self, currency: str, interface: str = "contact") -> int:
        """Floor limit for ``currency`` (numeric) on ``interface``; 0 when not configured."""
        if interface == "contactless" and currency in self.contactless_floor_limits:
            return self.contactless_floor_limits[currency]
        return self.floor_limits.get(currency, 0)

    def application(self, card_aid: bytes) -> Application | None:
        """The terminal application a card ADF name selects, or ``None``."""
        return next((app for app in self.applications if app.matches(card_aid)), None)

    def action_codes(self, app: Application | None) -> tuple[bytes, bytes, bytes]:
        """(denial, online, default) TACs for ``app``: its overrides, else the terminal's."""
        if app is None:
            return self.tac_denial, self.tac_online, self.tac_default
        return (
            app.tac_denial or self.tac_denial,
            app.tac_online or self.tac_online,
            app.tac_default or self.tac_default,
        )

    def ca_key(self, rid: str, index: int) -> CaPublicKey | None:
        """The CA public key for a RID and index (tag 8F), or ``None``."""
        return next((k for k in self.ca_keys if k.rid == rid.upper() and k.index == index), None)

    @property
    def pin_capability_digit(self) -> str:
        """DE22 position 3: ``1`` the terminal can accept PINs, ``2`` it cannot."""
        return "1" if self.pin_pad else "2"
