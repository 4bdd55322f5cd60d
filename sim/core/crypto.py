"""Issuer cryptography on pyemv and psec: ICC keys, ARQC, ARPC and online PIN.

Nothing here is hand-written crypto: key derivation, MACs and cryptograms are
pyemv's, PIN blocks and Triple DES are psec's. This module only decides which of
their functions a card of the test set uses and feeds them the right bytes.

Cryptogram versions (pick per card with ``[cards.emv] cvn``):

======  ==========================  ================================  ================
CVN     ICC master key              AC session key                    AC padding
======  ==========================  ================================  ================
10      EMV option A (PAN, PSN)     none: the ICC MK-AC itself        ISO 9797-1 m.1
        ``kd.derive_icc_mk_a``                                        (Visa)
16      EMV option A (PAN, PSN)     Mastercard SKD:                   ISO 9797-1 m.2
        ``kd.derive_icc_mk_a``      ``kd.derive_common_sk`` with      (EMV)
                                    R = ATC || 0000 || UN
======  ==========================  ================================  ================

Both compute the ARQC over the CDOL1 data 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36
plus the Card Verification Results taken from 9F10 (4 bytes at offset 3 for Visa
CVN 10, 6 bytes at offset 2 for Mastercard CVN 16), and both answer with an ARPC by
method 1 (``ac.generate_arpc_1``) under the ICC MK-AC, carried in tag 91 as
ARPC (8 bytes) || ARPC response code (2 bytes). possim's ARPC response code is the
two ASCII characters of DE39 (``"00"`` -> ``3030``). These are exactly pyemv's
``cvn.VisaCVN10`` and ``cvn.MasterCardCVN16``; the tests check it against them and
against pyemv's published vectors.

Online PIN: ISO 9564 format 0 PIN block (``psec.pinblock``) under Triple DES ECB
with the zone PIN key :data:`TEST_ZPK` (``psec.des``). One zone key serves the
whole simulated network; it is a TEST ONLY key.

Examples
--------
>>> from sim.core.cards import load_cards
>>> cards = load_cards()
>>> card, issuer = cards.card("healthy"), cards.issuer("possim-visa-test")
>>> icc = chip_data(issuer, card, amount=2500, currency="978", country="250",
...     date=datetime(2026, 3, 15), un=bytes.fromhex("1A2B3C4D"), atc=7)
>>> verify_arqc(issuer, card, icc).result
<ArqcResult.VERIFIED: 'verified'>
>>> len(arpc(icc_master_key(issuer, card), icc["9F26"], "00"))
10
"""

from __future__ import annotations

import hmac
import warnings
from datetime import date, datetime
from enum import Enum
from functools import lru_cache
from typing import Any, Mapping, NamedTuple

from cryptography.utils import CryptographyDeprecationWarning
from psec import des as _des
from psec import pinblock as _pinblock
from pyemv import ac as _ac
from pyemv import kd as _kd

from .cards import Card, IssuerConfig

# pyemv and psec build two-key (and, for the MAC, single-key) Triple DES, as the payment
# schemes still use 3DES, and cryptography warns at every such cipher. The ciphers they
# build here no longer do (:func:`_direct_cipher_lookups`); the filter stays for any other
# path into them. One filter by category at the front of the list is the cheapest way
# through the warnings machinery (a message regex costs a pattern match per warning).
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)


class _Algorithms:
    """cryptography's cipher algorithms with ``TripleDES`` built directly (see :func:`_direct_cipher_lookups`)."""

    def __init__(self, algorithms: Any, triple_des: type) -> None:
        self._module = algorithms
        self._triple_des = triple_des

    def TripleDES(self, key: bytes) -> Any:  # noqa: N802 -- the name the libraries call
        """cryptography's ``TripleDES`` of ``key`` given as three keys, as it expands one or two itself.

        The same class and the same key bytes as ``TripleDES(key)`` makes, without the
        deprecation warning it raises for a one- or two-key ``key`` (bytes: what pyemv
        and psec pass).

        >>> from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        >>> key = bytes(range(16))
        >>> _Algorithms(None, TripleDES).TripleDES(key).key == key + key[:8]
        True
        """
        size = len(key)
        if size == 16:
            key = key + key[:8]
        elif size == 8:
            key = key + key + key
        return self._triple_des(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _direct_cipher_lookups() -> list[str]:
    """Let pyemv and psec build cryptography's ``TripleDES`` without the lookups that dwarf it.

    For every cipher they build (three or four per ARQC check and ARPC, twenty per chip
    transaction) they ask three things that cost more than the key schedule:

    * ``TripleDES`` from ``cryptography.hazmat.primitives.ciphers.algorithms``, whose
      attribute hook warns that the class has moved: 2.2 us. The class is the same one
      (``cryptography.hazmat.decrepit``), now found directly.
    * ``TripleDES(key)`` with a one- or two-key ``key``, which warns that such keys are
      deprecated before it expands the key to three: 1.2 us. The key now arrives
      expanded the same way, so the cipher is the same and nothing warns.
    * ``default_backend()``, which runs an import statement: 0.8 us. Every cipher is
      given the backend object it returns (current cryptography ignores it anyway).

    Every other name still comes from cryptography's module. A library module that no
    longer looks these up that way is left alone. Returns the modules changed.
    """
    import importlib

    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
    from cryptography.hazmat.primitives.ciphers import algorithms as primitives

    if getattr(primitives, "TripleDES", None) is not decrepit.TripleDES:
        return []
    direct = _Algorithms(primitives, decrepit.TripleDES)
    backend = default_backend()

    def the_backend() -> Any:
        return backend

    changed = []
    for name in ("pyemv.tools", "pyemv.mac", "psec.des", "psec.mac"):
        module = importlib.import_module(name)
        if getattr(module, "_algorithms", None) is primitives and getattr(module, "_default_backend", None) is default_backend:
            module._algorithms = direct  # type: ignore[attr-defined]
            module._default_backend = the_backend  # type: ignore[attr-defined]
            changed.append(name)
    return changed


_direct_cipher_lookups()

__all__ = [
    "AC_TAGS",
    "ArqcCheck",
    "ArqcResult",
    "CryptoError",
    "PinResult",
    "SUPPORTED_CVNS",
    "TEST_ZPK",
    "TEST_ZPK_NAME",
    "ac_data",
    "arpc",
    "card_arqc",
    "chip_data",
    "decrypt_pin",
    "encrypt_pin_block",
    "extract_cvr",
    "forget_cryptograms",
    "generate_ac",
    "icc_master_key",
    "issuer_application_data",
    "session_key",
    "verify_arpc",
    "verify_arqc",
    "verify_pin_block",
]

TEST_ZPK_NAME = "TEST ONLY possim zone PIN key"
TEST_ZPK = bytes.fromhex("5B6E1F3D8A4C2E7091D3A5B7C9E0F214")
"""TEST ONLY zone PIN key (double-length Triple DES) every simulated terminal and host share.

Its key check value (psec ``generate_kcv``) is ``D159``. Never put a real key here.
"""

SUPPORTED_CVNS = (10, 16)
"""Cryptogram version numbers possim verifies: Visa CVN 10 and Mastercard CVN 16."""

AC_TAGS: tuple[tuple[str, int], ...] = (
    ("9F02", 6),  # amount, authorised
    ("9F03", 6),  # amount, other
    ("9F1A", 2),  # terminal country code
    ("95", 5),  # terminal verification results
    ("5F2A", 2),  # transaction currency code
    ("9A", 3),  # transaction date
    ("9C", 1),  # transaction type
    ("9F37", 4),  # unpredictable number
    ("82", 2),  # application interchange profile
    ("9F36", 2),  # application transaction counter
)
"""The CDOL1 data objects the cryptogram covers, in order, with their lengths."""

_AC_TAG_NAMES = tuple(tag for tag, _ in AC_TAGS)
_AC_SIZES = [size for _, size in AC_TAGS]

_OPTIONAL_ZERO = {"9F03"}
"""Tags a terminal may leave out of DE55 when zero (amount, other); read as zeros."""

_CVR_SLICE = {10: slice(3, 7), 16: slice(2, 8)}
"""Where the Card Verification Results sit inside 9F10 for each CVN."""

_CVN_BYTE = {10: (2, 0x0A), 16: (1, 0x10)}
"""Offset and value of the cryptogram version byte inside 9F10 for each CVN."""

_PADDING = {10: _ac.PaddingType.VISA, 16: _ac.PaddingType.EMV}


class CryptoError(ValueError):
    """Cryptogram input is missing or malformed, or the CVN is not one possim supports."""


class ArqcResult(str, Enum):
    """Outcome of an ARQC check, as a decision record logs it."""

    VERIFIED = "verified"
    MISMATCH = "ARQC does not verify"
    MISSING_DATA = "cryptogram data missing or malformed"
    WRONG_CVN = "9F10 names another cryptogram version"
    UNSUPPORTED_CVN = "cryptogram version not supported"
    NO_CHIP = "card has no chip application"
    AMOUNT_MISMATCH = "9F02 differs from DE4"


class ArqcCheck(NamedTuple):
    """The result of verifying one ARQC: outcome, CVN used, ATC seen, a detail for logs.

    A named tuple, as the issuer's decisions: one is made for every chip request.
    """

    result: ArqcResult
    cvn: int | None = None
    atc: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True only when the cryptogram verified."""
        return self.result is ArqcResult.VERIFIED

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.result.value}{extra}"


class PinResult(str, Enum):
    """Outcome of an online PIN check."""

    CORRECT = "correct"
    WRONG = "wrong"
    UNREADABLE = "PIN block does not decode"


# Keys ---------------------------------------------------------------------------------------


def _cvn(cvn: int) -> int:
    if cvn not in SUPPORTED_CVNS:
        raise CryptoError(f"cryptogram version {cvn} is not supported; supported: {SUPPORTED_CVNS}")
    return cvn


def icc_master_key(issuer: IssuerConfig | bytes, card: Card | str, psn: str | None = None) -> bytes:
    """The card's ICC master key for AC, derived from the issuer master key (EMV option A).

    The issuer never stores per-card keys: it re-derives them from the IMK, the PAN
    and the PAN sequence number, as an HSM does (``pyemv.kd.derive_icc_mk_a``).

    Parameters
    ----------
    issuer : IssuerConfig or bytes
        The issuer (its TEST ONLY IMK-AC) or the 16-byte IMK itself.
    card : Card or str
        The card, or its PAN (then give ``psn``).
    psn : str, optional
        Two-digit PAN sequence number when ``card`` is a PAN (default ``"00"``).
    """
    imk = issuer.imk if isinstance(issuer, IssuerConfig) else bytes(issuer)
    if isinstance(card, Card):
        pan, psn = card.pan, card.psn
    else:
        pan = card
    return _derive_icc_mk(imk, pan, (psn or "00")[-2:])


_PER_TRANSACTION = 256
"""Entries of the caches whose values one transaction reuses (its session key, cryptograms,
ARPC) and the next transaction never does: enough for the transactions in flight at once,
few enough to be full within minutes, so a long run holds no more than a short one."""


@lru_cache(maxsize=65_536)
def _derive_icc_mk(imk: bytes, pan: str, psn: str) -> bytes:
    """Option A derivation, remembered: a pure function of its inputs, and on every ARQC's path."""
    return _kd.derive_icc_mk_a(imk, pan, psn)


def session_key(icc_mk: bytes, cvn: int, atc: bytes, un: bytes) -> bytes:
    """The AC session key for one transaction.

    CVN 10 has none (the ICC MK-AC computes the cryptogram); CVN 16 derives one by
    Mastercard SKD from the ATC and the unpredictable number.
    """
    if _cvn(cvn) == 10:
        return icc_mk
    return _derive_session_key(icc_mk, bytes(atc) + b"\x00\x00" + bytes(un))


@lru_cache(maxsize=_PER_TRANSACTION)
def _derive_session_key(icc_mk: bytes, diversifier: bytes) -> bytes:
    """Mastercard SKD, remembered: the card's two GENERATE ACs, the ARQC check and the ARPC all need it."""
    return _kd.derive_common_sk(icc_mk, diversifier)


# Cryptogram data ------------------------------------------------------------------------------


def _value(icc: Mapping[str, Any], tag: str) -> bytes:
    value = icc.get(tag)
    if type(value) is bytes:
        return value
    if value is None and tag in _OPTIONAL_ZERO:
        return bytes(6)
    if not isinstance(value, (bytes, bytearray)):
        raise CryptoError(f"tag {tag} is missing from the chip data" if value is None else f"tag {tag} is not a primitive value")
    return bytes(value)


def extract_cvr(cvn: int, iad: bytes) -> bytes:
    """The Card Verification Results inside 9F10, after checking 9F10 names ``cvn``.

    Raises
    ------
    CryptoError
        9F10 is too short, or its cryptogram version byte is not ``cvn``
        (:class:`ArqcResult.WRONG_CVN` when the issuer verifies).
    """
    part = _CVR_SLICE[_cvn(cvn)]
    if len(iad) < part.stop:
        raise CryptoError(f"9F10 is {len(iad)} bytes; CVN {cvn} needs at least {part.stop}")
    offset, expected = _CVN_BYTE[cvn]
    if iad[offset] != expected:
        raise CryptoError(f"9F10 names cryptogram version {iad[offset]:#04x}, the card uses CVN {cvn}")
    return bytes(iad[part])


def issuer_application_data(cvn: int, cvr: bytes | None = None, dki: str = "01") -> bytes:
    """A 9F10 for ``cvn`` as the test cards build it.

    Visa CVN 10: ``06 DKI 0A CVR(4)``. Mastercard CVN 16: ``DKI 10 CVR(6) DAC(2)
    counters(8)`` (18 bytes). ``cvr`` defaults to "ARQC requested in first GENERATE AC".
    """
    key_index = bytes.fromhex(dki)
    if _cvn(cvn) == 10:
        body = cvr if cvr is not None else bytes.fromhex("03A00000")
        if len(body) != 4:
            raise CryptoError("CVN 10 CVR is 4 bytes")
        return b"\x06" + key_index + b"\x0a" + body
    body = cvr if cvr is not None else bytes.fromhex("A00000000000")
    if len(body) != 6:
        raise CryptoError("CVN 16 CVR is 6 bytes")
    return key_index + b"\x10" + body + bytes(2) + bytes(8)


def ac_data(cvn: int, icc: Mapping[str, Any]) -> bytes:
    """The bytes the cryptogram covers: CDOL1 data objects in order, then the CVR.

    Raises
    ------
    CryptoError
        A tag is missing, has the wrong length, or 9F10 does not match ``cvn``.
    """
    values = [icc.get(tag) for tag in _AC_TAG_NAMES]
    if [len(v) if type(v) is bytes else -1 for v in values] == _AC_SIZES:  # all there, all bytes of the right size
        return b"".join(values) + extract_cvr(cvn, _value(icc, "9F10"))
    parts = []
    for tag, size in AC_TAGS:
        value = _value(icc, tag)
        if len(value) != size:
            raise CryptoError(f"tag {tag} is {len(value)} bytes; expected {size}")
        parts.append(value)
    parts.append(extract_cvr(cvn, _value(icc, "9F10")))
    return b"".join(parts)


def generate_ac(icc_mk: bytes, cvn: int, icc: Mapping[str, Any]) -> bytes:
    """The 8-byte application cryptogram (ARQC, TC or AAC) over ``icc`` data."""
    key = session_key(icc_mk, cvn, _value(icc, "9F36"), _value(icc, "9F37"))
    return _mac_ac(key, ac_data(cvn, icc), _PADDING[cvn])


@lru_cache(maxsize=_PER_TRANSACTION)
def _mac_ac(key: bytes, data: bytes, padding: int) -> bytes:
    """pyemv's cryptogram, remembered: a pure function of key and data. Where card and issuer
    share a process (the simulation, ``possim terminal``), the issuer's ARQC check is the
    card's own computation over the same bytes; any other bytes or key compute afresh."""
    return _ac.generate_ac(key, data, padding, 8)


def card_arqc(issuer: IssuerConfig, card: Card, icc: Mapping[str, Any]) -> bytes:
    """The ARQC ``card`` computes over ``icc``: what a virtual card answers to GENERATE AC.

    The card side of :func:`verify_arqc`. Give every CDOL1 tag and 9F10;
    9F26 in ``icc`` is ignored.
    """
    if card.emv is None:
        raise CryptoError(f"card {card.label!r} has no chip application")
    return generate_ac(icc_master_key(issuer, card), card.emv.cvn, icc)


def _bcd(number: int | str, size: int) -> bytes:
    text = str(number)
    if not text.isdigit() or len(text) > 2 * size:
        raise CryptoError(f"{number!r} does not fit {size} bytes of BCD")
    return bytes.fromhex(text.zfill(2 * size))


def chip_data(
    issuer: IssuerConfig,
    card: Card,
    *,
    amount: int,
    currency: str,
    country: str,
    date: date | datetime,
    un: bytes,
    atc: int,
    tvr: bytes = bytes.fromhex("0000008000"),
    transaction_type: str = "00",
    amount_other: int = 0,
    cvr: bytes | None = None,
) -> dict[str, bytes]:
    """A complete DE55 for an online chip transaction, with a valid ARQC.

    Everything the terminal and the card put in DE55 for ONL-01: 9F26 ARQC, 9F27,
    9F10, 9F37, 9F36, 95, 9A, 9C, 9F02, 9F03, 5F2A, 82, 9F1A, 5F34 and 84. Inputs
    that vary (unpredictable number, ATC, date) are arguments, never drawn here.

    Parameters
    ----------
    amount, amount_other : int
        Minor units, as DE4 carries them (``amount`` must equal DE4).
    currency, country : str
        ISO numeric codes, 3 digits (``"978"``, ``"250"``).
    date : date or datetime
        Transaction date (9A).
    un : bytes
        4-byte unpredictable number (9F37).
    atc : int
        Application transaction counter (9F36), 0..65535.
    tvr : bytes
        Terminal verification results (95); default "transaction exceeds floor limit".
    """
    if card.emv is None:
        raise CryptoError(f"card {card.label!r} has no chip application")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise CryptoError(f"amount {amount!r} must be an int of minor units")
    if len(un) != 4:
        raise CryptoError("unpredictable number (9F37) is 4 bytes")
    icc: dict[str, bytes] = {
        "9F02": _bcd(amount, 6),
        "9F03": _bcd(amount_other, 6),
        "9F1A": _bcd(country, 2),
        "95": bytes(tvr),
        "5F2A": _bcd(currency, 2),
        "9A": bytes.fromhex(date.strftime("%y%m%d")),
        "9C": _bcd(transaction_type, 1),
        "9F37": bytes(un),
        "82": bytes.fromhex(card.emv.aip),
        "9F36": atc.to_bytes(2, "big"),
        "9F10": issuer_application_data(card.emv.cvn, cvr, card.emv.dki),
        "9F27": b"\x80",
        "5F34": _bcd(card.psn, 1),
        "84": bytes.fromhex(issuer.aid),
    }
    icc["9F26"] = card_arqc(issuer, card, icc)
    return icc


def verify_arqc(
    issuer: IssuerConfig, card: Card, icc: Mapping[str, Any], *, amount: int | None = None
) -> ArqcCheck:
    """Check the ARQC in ``icc`` (DE55) the way the issuer's HSM would.

    Parameters
    ----------
    amount : int, optional
        DE4; when given, 9F02 must carry the same amount (a DE4 changed on the way
        with DE55 left alone is as much tampering as a changed cryptogram).

    Returns
    -------
    ArqcCheck
        Never raises on bad card data: every failure is a result to log and answer 05 to.
    """
    if card.emv is None:
        return ArqcCheck(ArqcResult.NO_CHIP)
    cvn = card.emv.cvn
    if cvn not in SUPPORTED_CVNS:
        return ArqcCheck(ArqcResult.UNSUPPORTED_CVN, cvn)
    try:
        atc = int.from_bytes(_value(icc, "9F36"), "big")
        received = _value(icc, "9F26")
        if len(received) != 8:
            raise CryptoError(f"9F26 is {len(received)} bytes; expected 8")
        if amount is not None and _value(icc, "9F02") != _bcd(amount, 6):
            return ArqcCheck(ArqcResult.AMOUNT_MISMATCH, cvn, atc, f"9F02 {_value(icc, '9F02').hex()} DE4 {amount}")
        try:
            extract_cvr(cvn, _value(icc, "9F10"))
        except CryptoError as exc:
            if "names cryptogram version" in str(exc):
                return ArqcCheck(ArqcResult.WRONG_CVN, cvn, atc, str(exc))
            raise
        expected = generate_ac(icc_master_key(issuer, card), cvn, icc)
    except CryptoError as exc:
        return ArqcCheck(ArqcResult.MISSING_DATA, cvn, None, str(exc))
    if not hmac.compare_digest(expected, received):
        return ArqcCheck(ArqcResult.MISMATCH, cvn, atc)
    return ArqcCheck(ArqcResult.VERIFIED, cvn, atc)


def _arpc_rc(response_code: str | bytes) -> bytes:
    code = response_code.encode("ascii") if isinstance(response_code, str) else bytes(response_code)
    if len(code) != 2:
        raise CryptoError(f"ARPC response code {response_code!r} must be 2 characters (DE39)")
    return code


def arpc(icc_mk: bytes, arqc: bytes, response_code: str | bytes) -> bytes:
    """Tag 91 issuer authentication data: ARPC (method 1) || ARPC response code.

    ``response_code`` is DE39 (``"00"``, ``"51"``); its ASCII bytes are the ARPC-RC.
    """
    code = _arpc_rc(response_code)
    return _arpc_1(icc_mk, bytes(arqc), code) + code


def verify_arpc(icc_mk: bytes, arqc: bytes, tag_91: bytes) -> bool:
    """True when tag 91 is the right ARPC for ``arqc``: what the card checks in EXTERNAL AUTHENTICATE
    or the second GENERATE AC (a failure sets TVR 5:40, ONL-07)."""
    if len(tag_91) != 10 or len(arqc) != 8:
        return False
    expected = _arpc_1(icc_mk, bytes(arqc), bytes(tag_91[8:]))
    return hmac.compare_digest(expected, bytes(tag_91[:8]))


def forget_cryptograms() -> None:
    """Drop remembered cryptograms and ARPCs (keys stay): a benchmark of a host whose cards
    compute in another process starts from here, so every ARQC check is computed."""
    _mac_ac.cache_clear()
    _arpc_1.cache_clear()


@lru_cache(maxsize=_PER_TRANSACTION)
def _arpc_1(icc_mk: bytes, arqc: bytes, code: bytes) -> bytes:
    """pyemv's ARPC method 1, remembered: the card checks the very ARPC the issuer computed."""
    return _ac.generate_arpc_1(icc_mk, arqc, code)


# Online PIN -----------------------------------------------------------------------------------


def encrypt_pin_block(pin: str, pan: str, zpk: bytes = TEST_ZPK) -> str:
    """DE52: the ISO 9564 format 0 PIN block for ``pin`` and ``pan`` encrypted under ``zpk``, as 16 hex characters.

    >>> encrypt_pin_block("1234", "5544332211009966", bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
    '24B5254F5321BBC2'
    """
    try:
        clear = _pinblock.encode_pinblock_iso_0(pin, pan)
    except ValueError as exc:
        raise CryptoError(f"cannot build a PIN block: {exc}") from None
    return _des.encrypt_tdes_ecb(zpk, clear).hex().upper()


def decrypt_pin(pin_block: str, pan: str, zpk: bytes = TEST_ZPK) -> str:
    """The clear PIN inside a DE52 PIN block; raises :class:`CryptoError` when it does not decode.

    Callers compare and drop the result at once; possim never keeps a PIN or a PIN block.
    """
    try:
        clear = _des.decrypt_tdes_ecb(zpk, bytes.fromhex(pin_block))
        return _pinblock.decode_pinblock_iso_0(clear, pan)
    except ValueError as exc:
        raise CryptoError(f"PIN block does not decode: {exc}") from None


def verify_pin_block(pin_block: str, pan: str, expected_pin: str, zpk: bytes = TEST_ZPK) -> PinResult:
    """Check a DE52 PIN block against the PIN on file, in constant time."""
    try:
        pin = decrypt_pin(pin_block, pan, zpk)
    except CryptoError:
        return PinResult.UNREADABLE
    if hmac.compare_digest(pin.encode("ascii"), expected_pin.encode("ascii")):
        return PinResult.CORRECT
    return PinResult.WRONG
