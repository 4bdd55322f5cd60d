"""Offline data authentication (EMV 4.4 Book 2): certificates, SDA and DDA signatures.

Both sides of ODA live here so that they cannot drift apart: the virtual card
*creates* the issuer and ICC public key certificates and signs static and dynamic
data; the kernel *recovers* and verifies them. The RSA is the textbook EMV one
(Book 2 Annex A2.1, "digital signature scheme giving message recovery"): signing is
``pow(m, d, n)``, recovery ``pow(s, e, n)``, the hash SHA-1, all with Python ints and
:mod:`hashlib`. No padding scheme beyond Book 2's own (header ``6A``, trailer ``BC``,
``BB`` fill).

Keys
----
* The possim TEST certification authority: one key pair per RID
  (``A000000003`` and ``A000000004``), index ``F1``, stored in
  ``sim/data/test_ca/TEST_ONLY_possim_ca_keys.toml``. A terminal (virtual or real)
  loads the public halves as its CAPK list (:func:`ca_public_keys`).
* Issuer and ICC key pairs are derived deterministically from a label
  (:func:`derive_rsa_key`), so the same card set always yields the same
  certificates, run after run, without shipping a key file per card.

All of it is TEST ONLY: RSA-1024/1408 and SHA-1 are what EMV test cards use, not a
recommendation.

Certificate layouts (recovered data, Book 2 tables 6, 13, 7 and 17)
--------------------------------------------------------------------
=================  ===========================================================
issuer cert (02)   6A 02 | issuer id (4, cn, F-padded) | expiry MMYY (2) |
                   serial (3) | hash algo 01 | PK algo 01 | NI (1) | e len (1) |
                   key or leftmost NCA-36 bytes (BB-padded) | SHA-1 (20) | BC
ICC cert (04)      6A 04 | PAN (10, cn, F-padded) | expiry MMYY (2) | serial (3) |
                   01 | 01 | NIC (1) | e len (1) | key or leftmost NI-42 bytes |
                   SHA-1 (20) | BC
SSAD 93 (03)       6A 03 | 01 | DAC (2) | BB * (NI-26) | SHA-1 (20) | BC
SDAD 9F4B (05)     6A 05 | 01 | LDD (1) | ICC dynamic data (LDD) |
                   BB * (NIC-LDD-25) | SHA-1 (20) | BC
=================  ===========================================================

The hashes cover everything between header and hash, then: for the issuer cert the
remainder and exponent; for the ICC cert the remainder, exponent and the static data
to be authenticated; for SSAD the static data; for SDAD the DDOL data.

Examples
--------
>>> ca = ca_private_key("A000000003", 0xF1)
>>> issuer = derive_rsa_key("doc issuer", 1024, 3)
>>> cert, rem = make_issuer_certificate(ca, issuer.public, "476173", "1230", b"\\x00\\x00\\x01")
>>> recover_issuer_key(ca.public, cert, rem, b"\\x03", "4761739001010010").key == issuer.public
True
"""

from __future__ import annotations

import hashlib
import hmac
import random
import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Iterable

__all__ = [
    "CaPublicKey",
    "IccPublicKey",
    "IssuerPublicKey",
    "OdaError",
    "RsaPrivateKey",
    "RsaPublicKey",
    "ca_public_key",
    "derive_rsa_key",
    "make_icc_certificate",
    "make_issuer_certificate",
    "recover",
    "recover_icc_key",
    "recover_issuer_key",
    "sign_dynamic_data",
    "sign_static_data",
    "static_data_to_authenticate",
    "ca_private_key",
    "ca_public_keys",
    "test_ca_private_key",
    "test_ca_public_keys",
    "verify_dda",
    "verify_sda",
]

HEADER = 0x6A
TRAILER = 0xBC
PAD = 0xBB
SHA1 = 0x01
RSA = 0x01
HASH_LEN = 20

FORMAT_ISSUER = 0x02
FORMAT_SSAD = 0x03
FORMAT_ICC = 0x04
FORMAT_SDAD = 0x05

ALLOWED_EXPONENTS = (3, 65537)
"""Book 2 allows only these public exponents for CA, issuer and ICC keys."""

CA_KEY_FILE = "TEST_ONLY_possim_ca_keys.toml"


class OdaError(ValueError):
    """Offline data authentication failed; ``step`` says which check (for logs and tests).

    The kernel maps any :class:`OdaError` to "SDA failed" (TVR 1:40) or "DDA failed"
    (TVR 1:08); the message is for the transaction log.
    """

    def __init__(self, message: str, *, step: str) -> None:
        super().__init__(message)
        self.step = step


# Keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    """An RSA public key; ``size`` is the modulus length in bytes (NCA, NI, NIC in Book 2)."""

    modulus: int
    exponent: int

    @property
    def size(self) -> int:
        return (self.modulus.bit_length() + 7) // 8

    @property
    def modulus_bytes(self) -> bytes:
        return self.modulus.to_bytes(self.size, "big")

    @property
    def exponent_bytes(self) -> bytes:
        """The exponent as a card stores it (9F32/9F47): ``03`` or ``010001``."""
        return self.exponent.to_bytes((self.exponent.bit_length() + 7) // 8, "big")

    @classmethod
    def from_bytes(cls, modulus: bytes, exponent: bytes) -> "RsaPublicKey":
        return cls(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


@dataclass(frozen=True, slots=True)
class RsaPrivateKey:
    """An RSA key pair; the private exponent never appears in a repr."""

    modulus: int
    exponent: int
    private_exponent: int = field(repr=False)
    primes: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    """The factors p, q when known: signing then takes the CRT path (same result, about 3x faster)."""

    @property
    def public(self) -> RsaPublicKey:
        return RsaPublicKey(self.modulus, self.exponent)

    @property
    def size(self) -> int:
        return self.public.size

    def sign(self, message: bytes) -> bytes:
        """The RSA signature of a recovered-data block (Book 2 A2.1): ``m^d mod n``, NI bytes."""
        if len(message) != self.size:
            raise OdaError(f"block is {len(message)} bytes; the key signs {self.size}", step="sign")
        value = int.from_bytes(message, "big")
        if value >= self.modulus:
            raise OdaError("block is not below the modulus", step="sign")
        if self.primes is None:
            return pow(value, self.private_exponent, self.modulus).to_bytes(self.size, "big")
        p, q = self.primes
        d = self.private_exponent
        mp, mq = pow(value % p, d % (p - 1), p), pow(value % q, d % (q - 1), q)
        h = (pow(q, -1, p) * (mp - mq)) % p
        return (mq + h * q).to_bytes(self.size, "big")


@dataclass(frozen=True, slots=True)
class CaPublicKey:
    """A certification authority public key as a terminal's CAPK list holds it."""

    rid: str
    index: int
    key: RsaPublicKey
    name: str = ""

    @property
    def checksum(self) -> bytes:
        """The CAPK check value: SHA-1 over RID, index, modulus and exponent (Book 2 11.2.2)."""
        data = bytes.fromhex(self.rid) + bytes((self.index,)) + self.key.modulus_bytes + self.key.exponent_bytes
        return hashlib.sha1(data).digest()


@dataclass(frozen=True, slots=True)
class IssuerPublicKey:
    """An issuer public key recovered from its certificate, with the certificate's fields."""

    key: RsaPublicKey
    issuer_identifier: str
    expiry: str
    serial: bytes


@dataclass(frozen=True, slots=True)
class IccPublicKey:
    """An ICC public key recovered from its certificate, with the certificate's fields."""

    key: RsaPublicKey
    pan: str
    expiry: str
    serial: bytes


_SMALL_PRIMES = tuple(p for p in range(3, 2000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2)))
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def _probably_prime(n: int) -> bool:
    """Miller-Rabin with fixed bases: ample for random (not adversarial) candidates."""
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for base in _MR_BASES:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rng: random.Random, bits: int, exponent: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (0b11 << (bits - 2)) | 1
        if (candidate - 1) % exponent and _probably_prime(candidate):
            return candidate


@lru_cache(maxsize=256)
def derive_rsa_key(label: str, bits: int, exponent: int = 3) -> RsaPrivateKey:
    """A TEST ONLY RSA key pair derived from ``label``: same label, same key, every run.

    Determinism is the point: a seeded simulation must produce the same certificates
    and signatures each time, and a card set must not need a key file per card. The
    two top bits of each prime are set, so the modulus has exactly ``bits`` bits and
    its first byte is above ``6A`` (every recovered-data block is below the modulus).

    Parameters
    ----------
    label : str
        Any text naming the key (issuer id, PAN and PSN...).
    bits : int
        Modulus size, a multiple of 16 between 512 and 1984 (EMV's maximum).
    exponent : int
        3 or 65537.
    """
    if exponent not in ALLOWED_EXPONENTS:
        raise ValueError(f"public exponent must be one of {ALLOWED_EXPONENTS}, got {exponent}")
    if bits % 16 or not 512 <= bits <= 1984:
        raise ValueError(f"modulus size must be a multiple of 16 between 512 and 1984 bits, got {bits}")
    rng = random.Random(hashlib.sha256(f"possim TEST ONLY RSA|{label}|{bits}|{exponent}".encode()).digest())
    while True:
        p = _prime(rng, bits // 2, exponent)
        q = _prime(rng, bits // 2, exponent)
        n = p * q
        if p != q and n.bit_length() == bits:
            break
    phi = (p - 1) * (q - 1)
    return RsaPrivateKey(n, exponent, pow(exponent, -1, phi), (p, q))


@lru_cache(maxsize=1)
def _ca_file() -> dict:
    text = resources.files("sim").joinpath("data", "test_ca", CA_KEY_FILE).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _hex_int(text: str) -> int:
    """A hex number from the key file, which wraps long values over several lines."""
    return int("".join(text.split()), 16)


@lru_cache(maxsize=None)
def _ca_keys() -> dict[tuple[str, int], tuple[str, RsaPrivateKey]]:
    keys: dict[tuple[str, int], tuple[str, RsaPrivateKey]] = {}
    for entry in _ca_file()["keys"]:
        pair = RsaPrivateKey(_hex_int(entry["modulus"]), _hex_int(entry["exponent"]), _hex_int(entry["private_exponent"]))
        keys[(entry["rid"].upper(), int(entry["index"], 16))] = (entry["name"], pair)
    return keys


def ca_public_keys() -> tuple[CaPublicKey, ...]:
    """The possim TEST CA public keys, as a terminal's CAPK list (RID, index, modulus, exponent)."""
    return tuple(CaPublicKey(rid, index, pair.public, name) for (rid, index), (name, pair) in _ca_keys().items())


def ca_public_key(rid: str, index: int) -> CaPublicKey:
    """The TEST CA public key for ``rid`` (10 hex digits, the AID's first 5 bytes) and ``index`` (tag 8F).

    Raises
    ------
    KeyError
        No such key: the kernel treats that as "ODA failed" (CA key missing).
    """
    found = _ca_keys().get((rid.upper(), index))
    if found is None:
        known = ", ".join(f"{r}/{i:02X}" for r, i in _ca_keys())
        raise KeyError(f"no TEST CA public key {rid.upper()}/{index:02X}; known: {known}")
    name, pair = found
    return CaPublicKey(rid.upper(), index, pair.public, name)


def ca_private_key(rid: str, index: int) -> RsaPrivateKey:
    """The TEST CA private key that signs issuer certificates (the card personalisation uses it)."""
    found = _ca_keys().get((rid.upper(), index))
    if found is None:
        raise KeyError(f"no TEST CA key {rid.upper()}/{index:02X}")
    return found[1]


# Earlier names, kept for callers that import them; ``__test__ = False`` stops pytest
# from collecting a ``test_``-named function imported into a test module.
test_ca_public_keys = ca_public_keys
test_ca_private_key = ca_private_key
ca_public_keys.__test__ = False  # type: ignore[attr-defined]
ca_private_key.__test__ = False  # type: ignore[attr-defined]


# Field helpers -----------------------------------------------------------------------------------


def _cn(digits: str, size: int) -> bytes:
    """Compressed numeric: digits left-justified, padded with F to ``size`` bytes."""
    if not digits.isdigit() or len(digits) > 2 * size:
        raise OdaError(f"{len(digits)} digits do not fit {size} bytes of cn", step="format")
    return bytes.fromhex(digits.ljust(2 * size, "F"))


def _cn_digits(value: bytes) -> str:
    return value.hex().upper().rstrip("F")


def _mmyy(expiry: str) -> bytes:
    if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[:2]) <= 12:
        raise OdaError(f"certificate expiry must be MMYY, got {expiry!r}", step="format")
    return bytes.fromhex(expiry)


def _check_expiry(expiry: str, today: date | None, what: str) -> None:
    """Book 2 5.3 step 6 / 6.4 step 7: valid through the last day of the expiry month."""
    if today is None:
        return
    month, year = int(expiry[:2]), 2000 + int(expiry[2:])
    if (year, month) < (today.year, today.month):
        raise OdaError(f"{what} expired {expiry[:2]}/{expiry[2:]}", step="expiry")


def _exponent_value(exponent: bytes) -> int:
    value = int.from_bytes(exponent, "big")
    if value not in ALLOWED_EXPONENTS:
        raise OdaError(f"public exponent {exponent.hex().upper()} is neither 3 nor 65537", step="exponent")
    return value


def _split_key(key: RsaPublicKey, room: int) -> tuple[bytes, bytes]:
    """The key's leftmost ``room`` bytes (BB-padded when shorter) and the remainder."""
    modulus = key.modulus_bytes
    if len(modulus) <= room:
        return modulus + bytes([PAD]) * (room - len(modulus)), b""
    return modulus[:room], modulus[room:]


def _block(body: bytes, hashed_tail: bytes) -> bytes:
    """6A || body || SHA-1(body || hashed_tail) || BC."""
    digest = hashlib.sha1(body + hashed_tail).digest()
    return bytes([HEADER]) + body + digest + bytes([TRAILER])


# Raw recovery -------------------------------------------------------------------------------------


def recover(signed: bytes, key: RsaPublicKey, *, what: str = "certificate") -> bytes:
    """Book 2 A2.1 recovery: ``s^e mod n`` as ``size`` bytes, with header and trailer checked.

    Raises
    ------
    OdaError
        The signed block's length is not the modulus length (step ``length``), or the
        recovered data does not start with ``6A`` and end with ``BC`` (step ``header``).
    """
    if len(signed) != key.size:
        raise OdaError(f"{what} is {len(signed)} bytes; the key modulus is {key.size}", step="length")
    value = int.from_bytes(signed, "big")
    if value >= key.modulus:
        raise OdaError(f"{what} is not below the modulus", step="length")
    data = pow(value, key.exponent, key.modulus).to_bytes(key.size, "big")
    if data[-1] != TRAILER:
        raise OdaError(f"recovered {what} trailer is {data[-1]:02X}, not BC", step="header")
    if data[0] != HEADER:
        raise OdaError(f"recovered {what} header is {data[0]:02X}, not 6A", step="header")
    return data


def _check_hash(data: bytes, hashed_tail: bytes, what: str) -> None:
    body, digest = data[1:-1 - HASH_LEN], data[-1 - HASH_LEN:-1]
    expected = hashlib.sha1(body + hashed_tail).digest()
    if not hmac.compare_digest(expected, digest):
        raise OdaError(f"{what} hash does not match", step="hash")


def _check_format(data: bytes, expected: int, what: str) -> None:
    if data[1] != expected:
        raise OdaError(f"{what} format is {data[1]:02X}, expected {expected:02X}", step="format")


# Certificates ----------------------------------------------------------------------------------------


def make_issuer_certificate(
    ca: RsaPrivateKey, issuer: RsaPublicKey, issuer_identifier: str, expiry: str, serial: bytes
) -> tuple[bytes, bytes]:
    """The issuer public key certificate (tag 90) and remainder (tag 92, maybe empty).

    Parameters
    ----------
    ca : RsaPrivateKey
        The certification authority key that signs (NCA bytes).
    issuer : RsaPublicKey
        The issuer key being certified (NI <= NCA).
    issuer_identifier : str
        The leftmost 3 to 8 PAN digits the issuer's cards start with.
    expiry : str
        MMYY.
    serial : bytes
        3-byte certificate serial number.
    """
    if issuer.size > ca.size:
        raise OdaError(f"issuer key ({issuer.size} bytes) is longer than the CA key ({ca.size})", step="length")
    if not 3 <= len(issuer_identifier) <= 8:
        raise OdaError("the issuer identifier is the leftmost 3 to 8 PAN digits", step="format")
    if len(serial) != 3:
        raise OdaError("certificate serial number is 3 bytes", step="format")
    leftmost, remainder = _split_key(issuer, ca.size - 36)
    exponent = issuer.exponent_bytes
    body = (
        bytes([FORMAT_ISSUER]) + _cn(issuer_identifier, 4) + _mmyy(expiry) + serial
        + bytes([SHA1, RSA, issuer.size, len(exponent)]) + leftmost
    )
    return ca.sign(_block(body, remainder + exponent)), remainder


def recover_issuer_key(
    ca: CaPublicKey | RsaPublicKey,
    cert: bytes,
    remainder: bytes | None,
    exponent: bytes,
    pan: str,
    *,
    today: date | None = None,
) -> IssuerPublicKey:
    """Recover and check the issuer public key (Book 2 section 5.3 / 6.3).

    Parameters
    ----------
    ca : CaPublicKey or RsaPublicKey
        The CA key the terminal found for RID and tag 8F.
    cert, remainder, exponent : bytes
        Tags 90, 92 (``None`` or empty when the card has none) and 9F32.
    pan : str
        The application PAN (tag 5A digits): the issuer identifier must prefix it.
    today : date, optional
        Transaction date; when given, an expired certificate fails. The kernel passes
        the transaction date (sans-IO: no clock is read here).

    Raises
    ------
    OdaError
        At the first failing check; ``step`` is one of length, header, format, hash,
        algorithm, identifier, expiry, remainder, exponent.
    """
    key = ca.key if isinstance(ca, CaPublicKey) else ca
    data = recover(bytes(cert), key, what="issuer public key certificate")
    _check_format(data, FORMAT_ISSUER, "issuer public key certificate")
    issuer_id, expiry, serial = data[2:6], data[6:8], data[8:11]
    hash_algo, pk_algo, size, exp_len = data[11], data[12], data[13], data[14]
    leftmost = data[15:-1 - HASH_LEN]
    rem = bytes(remainder or b"")
    exponent = bytes(exponent)
    _exponent_value(exponent)
    if hash_algo != SHA1 or pk_algo != RSA:
        raise OdaError(f"hash/PK algorithm {hash_algo:02X}/{pk_algo:02X} not 01/01", step="algorithm")
    if size > len(leftmost) and len(rem) != size - len(leftmost):
        raise OdaError(f"issuer key is {size} bytes: expected a {size - len(leftmost)}-byte remainder, got {len(rem)}",
                       step="remainder")
    _check_hash(data, rem + exponent, "issuer public key certificate")
    if exp_len != len(exponent):
        raise OdaError(f"certificate says a {exp_len}-byte exponent, 9F32 has {len(exponent)}", step="exponent")
    identifier = _cn_digits(issuer_id)
    if not (3 <= len(identifier) <= 8 and identifier.isdigit() and pan.startswith(identifier)):
        raise OdaError(f"issuer identifier {identifier} does not prefix the PAN", step="identifier")
    expiry_text = expiry.hex()
    _check_expiry(expiry_text, today, "issuer public key certificate")
    modulus = leftmost[:size] if size <= len(leftmost) else leftmost + rem
    return IssuerPublicKey(RsaPublicKey.from_bytes(modulus, exponent), identifier, expiry_text, bytes(serial))


def make_icc_certificate(
    issuer: RsaPrivateKey, icc: RsaPublicKey, pan: str, expiry: str, serial: bytes, static_data: bytes
) -> tuple[bytes, bytes]:
    """The ICC public key certificate (tag 9F46) and remainder (tag 9F48, maybe empty).

    ``static_data`` is the static data to be authenticated
    (:func:`static_data_to_authenticate`): the certificate binds the ICC key to it.
    """
    if icc.size > issuer.size:
        raise OdaError(f"ICC key ({icc.size} bytes) is longer than the issuer key ({issuer.size})", step="length")
    if len(serial) != 3:
        raise OdaError("certificate serial number is 3 bytes", step="format")
    leftmost, remainder = _split_key(icc, issuer.size - 42)
    exponent = icc.exponent_bytes
    body = (
        bytes([FORMAT_ICC]) + _cn(pan, 10) + _mmyy(expiry) + serial
        + bytes([SHA1, RSA, icc.size, len(exponent)]) + leftmost
    )
    return issuer.sign(_block(body, remainder + exponent + static_data)), remainder


def recover_icc_key(
    issuer: IssuerPublicKey | RsaPublicKey,
    cert: bytes,
    remainder: bytes | None,
    exponent: bytes,
    pan: str,
    static_data: bytes,
    *,
    today: date | None = None,
) -> IccPublicKey:
    """Recover and check the ICC public key (Book 2 section 6.4).

    Parameters
    ----------
    issuer : IssuerPublicKey or RsaPublicKey
        From :func:`recover_issuer_key`.
    cert, remainder, exponent : bytes
        Tags 9F46, 9F48 (``None`` or empty when absent) and 9F47.
    pan : str
        Tag 5A digits; must equal the PAN in the certificate.
    static_data : bytes
        The static data to be authenticated, as the terminal collected it.
    today : date, optional
        Transaction date for the expiry check.

    Raises
    ------
    OdaError
        At the first failing check (see :func:`recover_issuer_key` for the steps; ``pan``
        when the certificate names another PAN).
    """
    key = issuer.key if isinstance(issuer, IssuerPublicKey) else issuer
    data = recover(bytes(cert), key, what="ICC public key certificate")
    _check_format(data, FORMAT_ICC, "ICC public key certificate")
    cert_pan, expiry, serial = data[2:12], data[12:14], data[14:17]
    hash_algo, pk_algo, size, exp_len = data[17], data[18], data[19], data[20]
    leftmost = data[21:-1 - HASH_LEN]
    rem = bytes(remainder or b"")
    exponent = bytes(exponent)
    _exponent_value(exponent)
    if hash_algo != SHA1 or pk_algo != RSA:
        raise OdaError(f"hash/PK algorithm {hash_algo:02X}/{pk_algo:02X} not 01/01", step="algorithm")
    if size > len(leftmost) and len(rem) != size - len(leftmost):
        raise OdaError(f"ICC key is {size} bytes: expected a {size - len(leftmost)}-byte remainder, got {len(rem)}",
                       step="remainder")
    _check_hash(data, rem + exponent + bytes(static_data), "ICC public key certificate")
    if exp_len != len(exponent):
        raise OdaError(f"certificate says a {exp_len}-byte exponent, 9F47 has {len(exponent)}", step="exponent")
    if _cn_digits(cert_pan) != pan:
        raise OdaError("the ICC certificate names another PAN", step="pan")
    expiry_text = expiry.hex()
    _check_expiry(expiry_text, today, "ICC public key certificate")
    modulus = leftmost[:size] if size <= len(leftmost) else leftmost + rem
    return IccPublicKey(RsaPublicKey.from_bytes(modulus, exponent), pan, expiry_text, bytes(serial))


# SDA and DDA ------------------------------------------------------------------------------------------


def sign_static_data(issuer: RsaPrivateKey, static_data: bytes, dac: bytes) -> bytes:
    """Signed Static Application Data (tag 93) over the static data, carrying the 2-byte DAC."""
    if len(dac) != 2:
        raise OdaError("the data authentication code is 2 bytes", step="format")
    body = bytes([FORMAT_SSAD, SHA1]) + dac + bytes([PAD]) * (issuer.size - 26)
    return issuer.sign(_block(body, static_data))


def verify_sda(issuer: IssuerPublicKey | RsaPublicKey, signed_static_data: bytes, static_data: bytes) -> bytes:
    """Verify tag 93 against the static data (Book 2 section 5.4); returns the DAC (tag 9F45).

    Raises
    ------
    OdaError
        Length, header, format, algorithm or hash check failed.
    """
    key = issuer.key if isinstance(issuer, IssuerPublicKey) else issuer
    data = recover(bytes(signed_static_data), key, what="signed static application data")
    _check_format(data, FORMAT_SSAD, "signed static application data")
    if data[2] != SHA1:
        raise OdaError(f"hash algorithm {data[2]:02X} is not SHA-1 (01)", step="algorithm")
    _check_hash(data, bytes(static_data), "signed static application data")
    return bytes(data[3:5])


def sign_dynamic_data(icc: RsaPrivateKey, icc_dynamic_data: bytes, ddol_data: bytes) -> bytes:
    """Signed Dynamic Application Data (tag 9F4B) for INTERNAL AUTHENTICATE.

    ``icc_dynamic_data`` is ``len(IDN) || IDN`` (ICC dynamic number, 2 to 8 bytes);
    ``ddol_data`` is the command data the terminal sent (its DDOL values).
    """
    room = icc.size - 25
    if len(icc_dynamic_data) > room:
        raise OdaError(f"ICC dynamic data ({len(icc_dynamic_data)} bytes) exceeds {room}", step="length")
    body = (
        bytes([FORMAT_SDAD, SHA1, len(icc_dynamic_data)]) + icc_dynamic_data
        + bytes([PAD]) * (room - len(icc_dynamic_data))
    )
    return icc.sign(_block(body, ddol_data))


def verify_dda(icc: IccPublicKey | RsaPublicKey, signed_dynamic_data: bytes, ddol_data: bytes) -> bytes:
    """Verify tag 9F4B against the DDOL data sent (Book 2 section 6.5); returns the ICC dynamic number (9F4C).

    Raises
    ------
    OdaError
        Length, header, format, algorithm or hash check failed, or the ICC dynamic data
        length is impossible.
    """
    key = icc.key if isinstance(icc, IccPublicKey) else icc
    data = recover(bytes(signed_dynamic_data), key, what="signed dynamic application data")
    _check_format(data, FORMAT_SDAD, "signed dynamic application data")
    if data[2] != SHA1:
        raise OdaError(f"hash algorithm {data[2]:02X} is not SHA-1 (01)", step="algorithm")
    _check_hash(data, bytes(ddol_data), "signed dynamic application data")
    ldd = data[3]
    if ldd < 1 or ldd > key.size - 25:
        raise OdaError(f"ICC dynamic data length {ldd} is impossible", step="format")
    dynamic = data[4:4 + ldd]
    idn_len = dynamic[0]
    if not 2 <= idn_len <= 8 or idn_len + 1 > ldd:
        raise OdaError(f"ICC dynamic number length {idn_len} is not 2..8", step="format")
    return bytes(dynamic[1:1 + idn_len])


def static_data_to_authenticate(
    records: Iterable[tuple[int, bytes]], *, aip: bytes | None = None, tag_list: bytes | None = None
) -> bytes:
    """The static data to be authenticated (Book 3 section 10.3), from the records the AFL flags.

    Parameters
    ----------
    records : iterable of (sfi, record)
        Each READ RECORD response (data only, no SW) the AFL marks for ODA, in AFL order.
        For SFI 1 to 10 only the value of the ``70`` template counts; for SFI 11 to 30
        the whole record, tag and length included.
    aip : bytes, optional
        The AIP (82); appended when ``tag_list`` is ``82``.
    tag_list : bytes, optional
        Value of tag 9F4A. Book 3 allows only ``82`` in it.

    Raises
    ------
    OdaError
        A record of SFI 1..10 is not a ``70`` template whose length covers it exactly,
        or the tag list names anything but ``82``.
    """
    out = bytearray()
    for sfi, record in records:
        record = bytes(record)
        if sfi > 10:
            out += record
            continue
        out += _template_70_value(record)
    if tag_list:
        if bytes(tag_list) != b"\x82":
            raise OdaError(f"9F4A lists {bytes(tag_list).hex().upper()}; only 82 is allowed", step="tag_list")
        if aip is None or len(aip) != 2:
            raise OdaError("9F4A lists the AIP (82) but no 2-byte AIP was given", step="tag_list")
        out += bytes(aip)
    return bytes(out)


def _template_70_value(record: bytes) -> bytes:
    """The value of a ``70`` record template; only its one-to-three-byte length header is read."""
    if len(record) < 2 or record[0] != 0x70:
        raise OdaError("an ODA record in SFI 1..10 must be a '70' template", step="record")
    first = record[1]
    if first < 0x80:
        start, length = 2, first
    elif first in (0x81, 0x82) and len(record) >= 2 + (first & 0x7F):
        count = first & 0x7F
        start, length = 2 + count, int.from_bytes(record[2:2 + count], "big")
    else:
        raise OdaError("an ODA record has an unusable length field", step="record")
    if start + length != len(record):
        raise OdaError("an ODA record's '70' length does not match its size", step="record")
    return record[start:]
