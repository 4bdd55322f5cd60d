"""Card personalisation: the files and keys a virtual chip is issued with.

Everything a terminal can read from the card is fixed at issue time from the card set
(``sim/data/cards.toml``): FCIs, directory records, the AFL and its records, DOLs,
ODA certificates and keys. This module computes that image once per card (cached)
so the APDU state machine in :mod:`sim.emv.card` only looks things up.

Record layout (the same for every chip card; the AFL says it to the terminal)
-------------------------------------------------------------------------------
==========  ===  =========================================================================
SFI/record  ODA  tags
==========  ===  =========================================================================
1 / 1       --   PSE directory (only while the PSE is selected): 61 { 4F, 50, 87 }
2 / 1       yes  57 track 2 equivalent, 5F20 cardholder name
2 / 2       yes  5A, 5F24, 5F25, 5F34, 5F28, 5F30, 9F07, 9F08, 8E
3 / 1       yes  8C CDOL1, 8D CDOL2, 9F0D, 9F0E, 9F0F, 9F14, 9F23, 9F42, 9F44, 9F4A, 9F49
4 / 1       no   8F CA index, 90 issuer PK certificate, 9F32, 92 (when the key needs one)
4 / 2       no   93 signed static application data (SDA)
4 / 3       no   9F46 ICC PK certificate, 9F47, 9F48 (when the key needs one)
==========  ===  =========================================================================

AFL: ``10 01 02 02  18 01 01 01  20 01 03 00``. Static data to be authenticated: the
values of the three ODA records (SFI 2 and 3 are in 1..10, so without their ``70``
header) followed by the AIP (9F4A = ``82``).

Scheme profiles
---------------
=============  =====================  ==========================  ===================
scheme         PDOL                   GPO response                INTERNAL AUTH resp.
=============  =====================  ==========================  ===================
visa (CVN 10)  9F1A02 5F2A02 9F0206   format 2: 77 { 82, 94 }     format 1: 80 SDAD
mastercard     none (GPO data 83 00)  format 1: 80 AIP || AFL     format 2: 77 { 9F4B }
=============  =====================  ==========================  ===================

Keys (TEST ONLY, :func:`sim.emv.oda.derive_rsa_key`): Visa-style issuer RSA-1152 e=65537
(4-byte remainder 92), ICC RSA-1024 e=3 (26-byte remainder 9F48); Mastercard-style
issuer RSA-1024 e=3 (no remainder, BB padding), ICC RSA-768 e=3 (10-byte remainder).
The CA is the possim TEST CA, RID = first 5 AID bytes, index F1.
"""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

from . import oda, tlv
from ..core.cards import Card, IssuerConfig

__all__ = [
    "AFL",
    "CA_INDEX",
    "CDOL1",
    "CDOL2",
    "CardImage",
    "DDOL",
    "Dol",
    "PersoError",
    "PPSE_NAME",
    "PSE_NAME",
    "personalise",
]

PSE_NAME = b"1PAY.SYS.DDF01"
PPSE_NAME = b"2PAY.SYS.DDF01"
CA_INDEX = 0xF1
ISSUER_CERT_EXPIRY = "1235"
"""Issuer certificates of the TEST CA are valid through December 2035."""


class PersoError(ValueError):
    """The card cannot be personalised as a chip card (no ``[cards.emv]``)."""


@dataclass(frozen=True, slots=True)
class Dol:
    """A data object list as the card knows it: (tag, length) pairs; the card never parses DOL bytes."""

    entries: tuple[tuple[str, int], ...]
    size: int = field(init=False, repr=False, compare=False)
    """Length of the data a terminal sends for this DOL (checked against every command's data)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", sum(length for _, length in self.entries))

    def encode(self) -> bytes:
        """The DOL as the card stores it (tag bytes, length byte, ...)."""
        return b"".join(bytes.fromhex(tag) + bytes((length,)) for tag, length in self.entries)

    def split(self, data: bytes) -> dict[str, bytes]:
        """Cut the terminal's DOL data into values by tag; the caller checked ``len(data) == size``."""
        out: dict[str, bytes] = {}
        offset = 0
        for tag, length in self.entries:
            out[tag] = bytes(data[offset:offset + length])
            offset += length
        return out


CDOL1 = Dol((("9F02", 6), ("9F03", 6), ("9F1A", 2), ("95", 5), ("5F2A", 2), ("9A", 3), ("9C", 1), ("9F37", 4)))
"""Exactly the terminal data :data:`sim.core.crypto.AC_TAGS` covers (the card adds 82 and 9F36)."""
CDOL2 = Dol((("8A", 2), ("91", 10)) + CDOL1.entries)
"""ARC, issuer authentication data (ARPC || ARPC-RC), then the CDOL1 data again for the second cryptogram."""
DDOL = Dol((("9F37", 4),))
PDOL_VISA = Dol((("9F1A", 2), ("5F2A", 2), ("9F02", 6)))
NO_PDOL = Dol(())

AFL = bytes.fromhex("10010202" "18010101" "20010300")
ODA_RECORDS = ((2, 1), (2, 2), (3, 1))


@dataclass(frozen=True, slots=True)
class _Profile:
    label: str
    app_version: str
    pdol: Dol
    gpo_format: int
    auth_format: int
    issuer_bits: int
    issuer_exponent: int
    icc_bits: int
    icc_exponent: int


_PROFILES = {
    "visa": _Profile("VISA TEST", "008C", PDOL_VISA, 2, 1, 1152, 65537, 1024, 3),
    "mastercard": _Profile("MASTERCARD TEST", "0002", NO_PDOL, 1, 2, 1024, 3, 768, 3),
}


@dataclass(frozen=True, eq=False)
class CardImage:
    """What is written on one chip at issue: read-only for the card's whole life.

    Attributes
    ----------
    aid : bytes
        The one application (ADF name).
    fci_pse, fci_ppse, fci_adf : bytes
        SELECT responses (``6F`` templates).
    pse_records : Mapping[int, bytes]
        Directory records of the PSE (SFI 1), by record number.
    records : Mapping[tuple[int, int], bytes]
        Application records by (SFI, record number), each a ``70`` template.
    pdol, cdol1, cdol2, ddol : Dol
        The card's DOLs.
    aip, afl : bytes
        Application interchange profile (from the card set) and file locator.
    gpo_format, auth_format : int
        1 (``80``) or 2 (``77``) for GET PROCESSING OPTIONS and INTERNAL AUTHENTICATE.
    static_data : bytes
        Static data to be authenticated (what the SSAD and ICC certificate sign).
    icc_key : oda.RsaPrivateKey
        The ICC key that signs dynamic data.
    """

    aid: bytes
    fci_pse: bytes
    fci_ppse: bytes
    fci_adf: bytes
    pse_records: Mapping[int, bytes]
    records: Mapping[tuple[int, int], bytes]
    pdol: Dol
    cdol1: Dol
    cdol2: Dol
    ddol: Dol
    aip: bytes
    afl: bytes
    gpo_format: int
    auth_format: int
    static_data: bytes
    icc_key: oda.RsaPrivateKey


def _cn(digits: str) -> bytes:
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


def _n(digits: str, size: int) -> bytes:
    return bytes.fromhex(digits.zfill(2 * size))


def _track2_equivalent(card: Card) -> bytes:
    return _cn(card.track2("D"))


def _expiry_date(card: Card) -> bytes:
    """5F24 is YYMMDD: the last day of the expiry month."""
    year, month = card.expiry_month
    return bytes.fromhex(f"{card.expiry}{calendar.monthrange(year, month)[1]:02d}")


def _cardholder_name(card: Card) -> bytes:
    return f"{card.label.upper().replace('-', ' ')}/POSSIM TEST"[:26].encode("ascii")


def _digest(*parts: str, size: int) -> bytes:
    return hashlib.sha1("|".join(parts).encode()).digest()[:size]


def _issuer_identifier(card: Card, issuer: IssuerConfig) -> str:
    prefix = next((b for b in issuer.bins if card.pan.startswith(b)), card.pan[:6])
    return card.pan[: min(max(len(prefix), 3), 8)]


@lru_cache(maxsize=64)
def _issuer_credentials(issuer: IssuerConfig, identifier: str) -> tuple[oda.RsaPrivateKey, bytes, bytes]:
    """The issuer's TEST key pair and its certificate (with remainder) from the TEST CA."""
    profile = _PROFILES[issuer.scheme]
    key = oda.derive_rsa_key(f"issuer {issuer.id}", profile.issuer_bits, profile.issuer_exponent)
    ca = oda.ca_private_key(issuer.aid[:10], CA_INDEX)
    serial = _digest("issuer", issuer.id, identifier, size=3)
    cert, remainder = oda.make_issuer_certificate(ca, key.public, identifier, ISSUER_CERT_EXPIRY, serial)
    return key, cert, remainder


def _record(objects: dict[str, bytes]) -> bytes:
    return tlv.encode({"70": objects})


@lru_cache(maxsize=256)
def personalise(card: Card, issuer: IssuerConfig, icc_key_label: str | None = None) -> CardImage:
    """The chip image of ``card`` (cached: cards of the same label share it).

    ``icc_key_label`` names the ICC key pair (default ``"icc <PAN> <PSN>"``); clones of
    one card may share a key pair, each with its own certificate for its own PAN.

    Raises
    ------
    PersoError
        The card has no EMV application (a stripe-only card has no chip to personalise).
    """
    emv = card.emv
    if emv is None:
        raise PersoError(f"card {card.label!r} has no chip application ([cards.emv] missing)")
    profile = _PROFILES[issuer.scheme]
    aid = bytes.fromhex(issuer.aid)
    label = profile.label.encode("ascii")
    aip = bytes.fromhex(emv.aip)
    currency = card.currency_info

    directory_entry = {"4F": aid, "50": label, "87": b"\x01"}
    fci_pse = tlv.encode({"6F": {"84": PSE_NAME, "A5": {"88": b"\x01", "5F2D": b"en"}}})
    fci_ppse = tlv.encode({"6F": {"84": PPSE_NAME, "A5": {"BF0C": {"61": directory_entry}}}})
    proprietary: dict[str, bytes] = {"50": label, "87": b"\x01"}
    if profile.pdol.entries:
        proprietary["9F38"] = profile.pdol.encode()
    proprietary["5F2D"] = b"en"
    fci_adf = tlv.encode({"6F": {"84": aid, "A5": proprietary}})

    records: dict[tuple[int, int], bytes] = {
        (2, 1): _record({"57": _track2_equivalent(card), "5F20": _cardholder_name(card)}),
        (2, 2): _record({
            "5A": _cn(card.pan),
            "5F24": _expiry_date(card),
            "5F25": bytes.fromhex(card.effective),
            "5F34": _n(card.psn, 1),
            "5F28": _n(issuer.country, 2),
            "5F30": _n(card.service_code, 2),
            "9F07": bytes.fromhex(emv.auc),
            "9F08": bytes.fromhex(profile.app_version),
            "8E": bytes.fromhex(emv.cvm_list),
        }),
        (3, 1): _record({
            "8C": CDOL1.encode(),
            "8D": CDOL2.encode(),
            "9F0D": bytes.fromhex(emv.iac_default),
            "9F0E": bytes.fromhex(emv.iac_denial),
            "9F0F": bytes.fromhex(emv.iac_online),
            "9F14": bytes((emv.lcol,)),
            "9F23": bytes((emv.ucol,)),
            "9F42": _n(currency.numeric, 2),
            "9F44": _n(str(currency.exponent), 1),
            "9F4A": b"\x82",
            "9F49": DDOL.encode(),
        }),
    }
    static_data = oda.static_data_to_authenticate(
        ((sfi, records[(sfi, rec)]) for sfi, rec in ODA_RECORDS), aip=aip, tag_list=b"\x82"
    )

    identifier = _issuer_identifier(card, issuer)
    issuer_key, issuer_cert, issuer_rem = _issuer_credentials(issuer, identifier)
    icc_key = oda.derive_rsa_key(icc_key_label or f"icc {card.pan} {card.psn}", profile.icc_bits, profile.icc_exponent)
    icc_expiry = card.expiry[2:] + card.expiry[:2]
    icc_cert, icc_rem = oda.make_icc_certificate(
        issuer_key, icc_key.public, card.pan, icc_expiry, _digest("icc", card.pan, card.psn, size=3), static_data
    )
    ssad = oda.sign_static_data(issuer_key, static_data, _digest("dac", card.pan, card.psn, size=2))

    issuer_record: dict[str, bytes] = {"8F": bytes((CA_INDEX,)), "90": issuer_cert, "9F32": issuer_key.public.exponent_bytes}
    if issuer_rem:
        issuer_record["92"] = issuer_rem
    icc_record: dict[str, bytes] = {"9F46": icc_cert, "9F47": icc_key.public.exponent_bytes}
    if icc_rem:
        icc_record["9F48"] = icc_rem
    records[(4, 1)] = _record(issuer_record)
    records[(4, 2)] = _record({"93": ssad})
    records[(4, 3)] = _record(icc_record)

    return CardImage(
        aid=aid,
        fci_pse=fci_pse,
        fci_ppse=fci_ppse,
        fci_adf=fci_adf,
        pse_records=MappingProxyType({1: _record({"61": directory_entry})}),
        records=MappingProxyType(records),
        pdol=profile.pdol,
        cdol1=CDOL1,
        cdol2=CDOL2,
        ddol=DDOL,
        aip=aip,
        afl=AFL,
        gpo_format=profile.gpo_format,
        auth_format=profile.auth_format,
        static_data=static_data,
        icc_key=icc_key,
    )
