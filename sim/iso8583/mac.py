"""Message authentication codes (DE64/DE128) for dialects that MAC their messages.

The MAC lives in the wire layer, not in the host core, because it is a property of
the *encoded* message: it covers the bytes a dialect puts on the wire, and terminals
(which must sign what they send) and the host (which must verify it and sign its
answers) both need it without depending on each other. The host core's policy --
answer 63, book nothing, log a security violation -- stays in :mod:`sim.core.host`.

Algorithm
---------
ISO/IEC 9797-1 MAC algorithm 3, the "retail MAC" of ANSI X9.19, computed by psec
(``psec.mac.generate_retail_mac``; nothing here is hand-written crypto):

* key: a double-length DES key ``K = KL || KR`` (16 bytes); single DES CBC under
  ``KL`` over every block, then the last block decrypted under ``KR`` and encrypted
  under ``KL``;
* padding: ISO/IEC 9797-1 method 1 (zero bytes to a multiple of 8), as X9.19 hosts use;
* MAC input: the message encoded under the dialect *with* the MAC field present (so the
  bitmap announces it), minus the MAC field's own bytes. With pyiso8583's
  ``default_ascii`` that is MTI + bitmaps + every other field, in field order;
* MAC value: the leftmost ``n`` bytes as upper-case hex characters, where the MAC
  field holds ``n`` bytes (``default_ascii`` DE64/DE128: 16 characters, 8 bytes; a
  binary field of ``max_len`` 8 holds 8 bytes too).

Keys
----
:data:`TEST_MAC_KEY` is a TEST ONLY terminal MAC key (key check value ``C2D3``);
every simulated terminal uses it unless :class:`MacKeys` gives the terminal (by DE41)
its own. Never put a real key in possim.

Examples
--------
>>> from sim.iso8583.dialect import BUILTIN
>>> from sim.iso8583.message import network_request
>>> dialect = BUILTIN["iso8583-1987-ascii-mac"]
>>> echo = network_request("301", stan=1, transmitted="1122103000", terminal_id="TERM0001")
>>> signed = sign(echo, dialect)
>>> len(signed.get("64"))
16
>>> verify(signed, dialect, TEST_MAC_KEY)
<MacResult.VALID: 'valid'>
>>> verify(signed.replace(DE11="000002"), dialect, TEST_MAC_KEY)
<MacResult.MISMATCH: 'MAC does not verify'>
"""

from __future__ import annotations

import hmac
from enum import Enum
from typing import Mapping

import iso8583
from psec import des as _des
from psec import mac as _mac

from .dialect import Dialect
from .errors import DecodeError, DialectError, MessageError, WireError
from .message import Message

__all__ = [
    "MacKeys", "MacResult", "PADDING", "TEST_MAC_KEY", "TEST_MAC_KEY_NAME",
    "compute_mac", "key_check_value", "mac_input", "mac_length", "sign", "verify", "wire_mac_input",
]

TEST_MAC_KEY_NAME = "TEST ONLY possim terminal MAC key"
TEST_MAC_KEY = bytes.fromhex("3D5B0E97E0B3D57986D0A43D0E4A92E6")
"""TEST ONLY double-length terminal MAC key (odd parity). Key check value ``C2D3``.

>>> key_check_value(TEST_MAC_KEY)
'C2D3'
"""

PADDING = 1
"""ISO/IEC 9797-1 padding method 1 (zeros), as ANSI X9.19 retail MACs use."""


class MacResult(str, Enum):
    """Outcome of checking a message's MAC; anything but ``VALID`` is a security violation (63)."""

    VALID = "valid"
    MISSING = "MAC field missing"
    MALFORMED = "MAC field is not hex characters of the dialect's MAC length"
    MISMATCH = "MAC does not verify"
    NO_KEY = "no MAC key for this terminal"
    UNENCODABLE = "message does not encode (or its frame decode) under the dialect, so no MAC can be computed"


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
        raise ValueError(f"MAC key must be 16 bytes (double-length DES), got {type(key).__name__} of length {len(key)}")
    return bytes(key)


def key_check_value(key: bytes) -> str:
    """The key's check value (first 2 bytes of DES-encrypting zeros, psec), for logs and docs."""
    return _des.generate_kcv(_check_key(key)).hex().upper()


def _mac_field(dialect: Dialect) -> str:
    if dialect.mac_field is None:
        raise DialectError(f"dialect {dialect.name} does not MAC (no mac_field)")
    return dialect.mac_field


def mac_length(dialect: Dialect) -> tuple[int, int]:
    """``(bytes of MAC, characters of the field's value)`` for the dialect's MAC field.

    >>> from sim.iso8583.dialect import BUILTIN
    >>> mac_length(BUILTIN["iso8583-1987-ascii-mac"])
    (8, 16)
    """
    key = _mac_field(dialect)
    props = dialect.spec.get(key)
    if props is None:
        raise DialectError(f"dialect {dialect.name}: mac_field {key} is not defined in the spec")
    max_len = props["max_len"]
    if props["data_enc"] == "b":
        size, chars = max_len, 2 * max_len
    else:
        size, chars = max_len // 2, 2 * (max_len // 2)
    if props["data_enc"] != "b" and max_len % 2:
        raise DialectError(f"dialect {dialect.name}: field {key} is {max_len} characters; a MAC in hex needs an even number")
    if not 4 <= size <= 8:
        raise DialectError(
            f"dialect {dialect.name}: field {key} holds a {size}-byte MAC; allowed: 4..8 bytes "
            f"(max_len 4..8 for binary, 8..16 hex characters for text)"
        )
    return size, chars


def mac_input(fields: Mapping[str, str], dialect: Dialect) -> bytes:
    """The bytes the MAC covers: the message encoded with its MAC field, minus that field.

    Any value already in the MAC field is ignored (a placeholder of zeros is encoded),
    so signing and verifying compute over the same bytes.

    Raises
    ------
    MessageError
        The fields do not encode under the dialect (the field is named).
    """
    key = _mac_field(dialect)
    _, chars = mac_length(dialect)
    data = {k: v for k, v in fields.items() if k not in ("p", "1")}
    data[key] = "0" * chars
    try:
        _, encoded = iso8583.encode(data, dialect.spec)
    except iso8583.EncodeError as exc:
        raise MessageError(f"{dialect.name}: cannot encode for the MAC: {exc}", field=exc.field) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise MessageError(f"{dialect.name}: cannot encode for the MAC: {exc!r}") from None
    return _without(encoded, key)


def wire_mac_input(raw: bytes, dialect: Dialect) -> bytes:
    """The bytes the MAC covers in a received frame: ``raw`` minus the MAC field's bytes.

    A receiver verifies over exactly what came over the wire, not over a re-encoding
    (which would forgive, say, a bitmap sent in lower-case hex).

    Raises
    ------
    DecodeError
        ``raw`` does not decode under the dialect.
    """
    key = _mac_field(dialect)
    try:
        _, encoded = iso8583.decode(bytes(raw), dialect.spec)
    except iso8583.DecodeError as exc:
        raise DecodeError(f"{dialect.name}: cannot decode: {exc}", field=exc.field) from None
    except (KeyError, TypeError, IndexError, ValueError, UnicodeError, OverflowError) as exc:
        raise DecodeError(f"{dialect.name}: cannot decode: {exc!r}") from None
    return _without(encoded, key)


def _without(encoded: Mapping[str, Mapping[str, bytes]], key: str) -> bytes:
    """Concatenate pyiso8583's per-field encodings (in wire order) leaving out field ``key``."""
    return b"".join(part["len"] + part["data"] for name, part in encoded.items() if name != key)


def compute_mac(fields: Mapping[str, str], dialect: Dialect, key: bytes = TEST_MAC_KEY) -> str:
    """The MAC field's value for ``fields`` under ``dialect`` and ``key`` (upper-case hex)."""
    size, _ = mac_length(dialect)
    key = _check_key(key)
    mac = _mac.generate_retail_mac(key[:8], key[8:], mac_input(fields, dialect), PADDING, size)
    return mac.hex().upper()


def sign(msg: Message, dialect: Dialect, key: bytes = TEST_MAC_KEY) -> Message:
    """``msg`` with its MAC field set, ready to encode; unchanged when the dialect does not MAC.

    This is the one call a sender needs before ``msg.encode(dialect)``: terminals sign
    requests with their key, the host signs answers with the terminal's key. A repeat
    (0221, 0401) is a new message with a new MTI and must be signed again.
    """
    if dialect.mac_field is None:
        return msg
    return msg.replace(**{dialect.mac_field: compute_mac(msg.fields, dialect, key)})


def verify(msg: Message, dialect: Dialect, key: bytes | None, *, raw: bytes | None = None) -> MacResult:
    """Check ``msg``'s MAC field under ``dialect`` with ``key`` (``None``: no key is known).

    ``raw``, when given, is the frame ``msg`` was decoded from: the MAC is then checked
    over those very bytes (:func:`wire_mac_input`); without it, over the message's
    encoding under the dialect (:func:`mac_input`), which is the same for any sender
    that encodes as pyiso8583 does. The MAC must be upper-case hex, as :func:`sign` writes it.

    Never raises on bad traffic: a missing, malformed or wrong MAC, or a message that
    cannot be encoded to compute one, is a :class:`MacResult` other than ``VALID``.
    """
    field = _mac_field(dialect)
    received = msg.fields.get(field)
    if received is None:
        return MacResult.MISSING
    size, chars = mac_length(dialect)
    if len(received) != chars or not all(c in "0123456789ABCDEF" for c in received):
        return MacResult.MALFORMED
    if key is None:
        return MacResult.NO_KEY
    key = _check_key(key)
    try:
        data = mac_input(msg.fields, dialect) if raw is None else wire_mac_input(raw, dialect)
    except WireError:
        return MacResult.UNENCODABLE
    expected = _mac.generate_retail_mac(key[:8], key[8:], data, PADDING, size).hex().upper()
    if hmac.compare_digest(expected, received):
        return MacResult.VALID
    return MacResult.MISMATCH


class MacKeys:
    """Terminal MAC keys by DE41, with a default for terminals not listed.

    Parameters
    ----------
    keys : mapping, optional
        ``{terminal_id: key}``; a key is 16 bytes or 32 hex characters.
    default : bytes or str or None
        The key of every other terminal: :data:`TEST_MAC_KEY` unless given; ``None``
        or ``""`` means terminals not listed have no key (their messages get 63).

    >>> keys = MacKeys({"TERM0002": "00112233445566778899AABBCCDDEEFF"})
    >>> keys.key_for("TERM0002").hex().upper()
    '00112233445566778899AABBCCDDEEFF'
    >>> keys.key_for("TERM0001") == TEST_MAC_KEY
    True
    >>> MacKeys({"T1": "00"})
    Traceback (most recent call last):
    ...
    ValueError: MAC key for terminal 'T1' is '00'; allowed: 32 hex characters (a double-length DES key)
    """

    def __init__(self, keys: Mapping[str, bytes | str] | None = None, default: bytes | str | None = TEST_MAC_KEY) -> None:
        if keys is not None and not isinstance(keys, Mapping):
            raise ValueError(f"MAC keys must be a table of terminal id -> key, got {keys!r}")
        self._keys = {str(tid): _parse_key(value, f"terminal {tid!r}") for tid, value in (keys or {}).items()}
        self.default = None if default in (None, "") else _parse_key(default, "the default")  # type: ignore[arg-type]

    def key_for(self, terminal_id: str | None) -> bytes | None:
        """The key of terminal ``terminal_id`` (DE41), the default, or ``None``."""
        return self._keys.get(terminal_id or "", self.default)

    @classmethod
    def from_config(cls, config: Mapping[str, object] | None) -> "MacKeys":
        """From a host config section ``{"keys": {tid: hex}, "default_key": hex or ""}``."""
        cfg = dict(config or {})
        unknown = set(cfg) - {"keys", "default_key"}
        if unknown:
            raise ValueError(f"host config [mac] has unknown keys {sorted(unknown)}; allowed: keys, default_key")
        return cls(cfg.get("keys"), cfg.get("default_key", TEST_MAC_KEY))  # type: ignore[arg-type]


def _parse_key(value: bytes | str, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return bytes(value)
    if isinstance(value, str) and len(value) == 32:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise ValueError(f"MAC key for {what} is {value!r}; allowed: 32 hex characters (a double-length DES key)")
