"""Dialects: which pyiso8583 spec a host speaks, loaded from data, never hand-coded.

A dialect is a pyiso8583 spec dict (see :mod:`iso8583.specs`) plus the few facts
about a host's habits that the spec cannot say (which MTI its reversals use,
whether it MACs). The default is ISO 8583:1987 with pyiso8583's ``default_ascii``
spec: hex-character bitmaps, ASCII lengths, DE55 as hex characters.

Users bring their own host's spec as a JSON or TOML file, either the bare spec
dict or a table ``{name = ..., reversal_mti = ..., mac_field = ..., spec = {...}}``.

Examples
--------
>>> from sim.iso8583.dialect import DEFAULT
>>> raw = DEFAULT.encode({"t": "0800", "7": "1122334455", "11": "000001", "70": "301"})
>>> raw[:4]
b'0800'
>>> DEFAULT.decode(raw)["70"]
'301'
"""

from __future__ import annotations

import codecs
import copy
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import iso8583
from iso8583.specs import default_ascii

from .errors import DecodeError, DialectError, MessageError

FIELD_KEYS: tuple[str, ...] = ("h", "t", "p", *(str(n) for n in range(1, 129)))
"""Every key a pyiso8583 spec may hold: header, MTI, primary bitmap, DE1..DE128."""

_REQUIRED_KEYS = ("h", "t", "p")
_REQUIRED_PROPS = ("data_enc", "len_enc", "len_type", "max_len")
_OPTIONAL_PROPS = ("desc", "len_count", "left_pad", "right_pad")
_MAX_LEN_TYPE = {"b": 2, "bcd": 2}  # text encodings allow up to 4 length digits
_REVERSAL_MTIS = ("0400", "0420")


def _check_encoding(where: str, prop: str, value: Any, extra: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise DialectError(f"{where}: property {prop!r} is {value!r}; allowed: {', '.join(extra)} or a Python codec name")
    if value in extra:
        return
    try:
        codecs.lookup(value)
    except LookupError:
        raise DialectError(
            f"{where}: property {prop!r} is {value!r}; allowed: {', '.join(extra)} or a Python codec name (ascii, cp500, ...)"
        ) from None


def validate_spec(spec: Any, source: str = "<spec>") -> dict[str, dict[str, Any]]:
    """Check a pyiso8583 spec dict and return a deep copy of it.

    Parameters
    ----------
    spec : Any
        The candidate spec (parsed JSON/TOML).
    source : str
        Where it came from, for error messages (a file path).

    Returns
    -------
    dict
        A private copy of the spec, safe from later mutation by the caller.

    Raises
    ------
    DialectError
        Naming the source, the field key, the property and what is allowed.

    Examples
    --------
    >>> validate_spec({"t": {}}, "my.json")
    Traceback (most recent call last):
    ...
    sim.iso8583.errors.DialectError: my.json: spec lacks field 'h' (message header; use max_len 0 for none)
    """
    if not isinstance(spec, Mapping):
        raise DialectError(f"{source}: a spec must be a table of fields, got {type(spec).__name__}")
    for key in _REQUIRED_KEYS:
        if key not in spec:
            hint = {"h": "message header; use max_len 0 for none", "t": "message type", "p": "primary bitmap"}[key]
            raise DialectError(f"{source}: spec lacks field {key!r} ({hint})")
    allowed = set(FIELD_KEYS)
    out: dict[str, dict[str, Any]] = {}
    for key, props in spec.items():
        where = f"{source}: field {key!r}"
        if key not in allowed:
            raise DialectError(f"{where} is not a field; allowed: h, t, p, 1..128")
        if not isinstance(props, Mapping):
            raise DialectError(f"{where} must be a table of properties, got {props!r}")
        for prop in _REQUIRED_PROPS:
            if prop not in props:
                raise DialectError(f"{where} lacks property {prop!r} (required: {', '.join(_REQUIRED_PROPS)})")
        for prop in props:
            if prop not in _REQUIRED_PROPS and prop not in _OPTIONAL_PROPS:
                raise DialectError(
                    f"{where}: unknown property {prop!r}; allowed: {', '.join(_REQUIRED_PROPS + _OPTIONAL_PROPS)}"
                )
        _check_encoding(where, "data_enc", props["data_enc"], ("b",))
        _check_encoding(where, "len_enc", props["len_enc"], ("b", "bcd"))
        len_type, max_len = props["len_type"], props["max_len"]
        limit = _MAX_LEN_TYPE.get(props["len_enc"], 4)
        if not isinstance(len_type, int) or isinstance(len_type, bool) or not 0 <= len_type <= limit:
            raise DialectError(f"{where}: property 'len_type' is {len_type!r}; allowed: integer 0..{limit}")
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 0:
            raise DialectError(f"{where}: property 'max_len' is {max_len!r}; allowed: integer >= 0")
        if props.get("len_count", "bytes") not in ("bytes", "nibbles"):
            raise DialectError(f"{where}: property 'len_count' is {props['len_count']!r}; allowed: bytes, nibbles")
        for pad in ("left_pad", "right_pad"):
            if pad in props and not (isinstance(props[pad], str) and len(props[pad]) == 1):
                raise DialectError(f"{where}: property {pad!r} is {props[pad]!r}; allowed: one character")
        out[key] = dict(props)
    for key in ("t", "p"):
        if out[key]["len_type"] != 0 or out[key]["max_len"] == 0:
            raise DialectError(f"{source}: field {key!r} must be fixed length (len_type 0, max_len > 0)")
    return out


@dataclass(frozen=True)
class Dialect:
    """A host's ISO 8583 dialect: a pyiso8583 spec and its habits.

    Attributes
    ----------
    name : str
        Shown in logs, reports and pcaps.
    spec : dict
        The pyiso8583 spec. Treat as read-only.
    reversal_mti : str
        ``"0400"`` (repeats as 0401) or ``"0420"`` (repeats as 0421).
    mac_field : str or None
        ``"64"`` or ``"128"`` when the host MACs its messages, else None.
    """

    name: str
    spec: dict[str, dict[str, Any]] = field(repr=False)
    reversal_mti: str = "0400"
    mac_field: str | None = None

    def encode(self, fields: dict[str, str]) -> bytes:
        """Encode a field dict (``{"t": MTI, "2": PAN, ...}``) to bytes.

        The dict gains the ``"p"`` (and ``"1"``) bitmap keys as pyiso8583 does.

        Raises
        ------
        MessageError
            Naming the field pyiso8583 refused and why.
        """
        try:
            raw, _ = iso8583.encode(fields, self.spec)
        except iso8583.EncodeError as exc:
            raise MessageError(f"{self.name}: cannot encode: {exc}", field=exc.field) from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise MessageError(f"{self.name}: cannot encode: {exc!r}") from None
        return bytes(raw)

    def decode(self, raw: bytes) -> dict[str, str]:
        """Decode bytes to a field dict; raises :class:`DecodeError` naming the field."""
        try:
            decoded, _ = iso8583.decode(raw, self.spec)
        except iso8583.DecodeError as exc:
            raise DecodeError(f"{self.name}: cannot decode: {exc}", field=exc.field) from None
        except (KeyError, TypeError, IndexError, ValueError, UnicodeError, OverflowError) as exc:
            raise DecodeError(f"{self.name}: cannot decode: {exc!r}") from None
        return decoded

    def describe(self, key: str) -> str:
        """The spec's description of a field, or ``"DE<n>"`` when it has none."""
        props = self.spec.get(key)
        return props.get("desc", f"DE{key}") if props else f"DE{key}"


DEFAULT = Dialect("iso8583-1987-ascii", copy.deepcopy(default_ascii))
"""ISO 8583:1987, pyiso8583 ``default_ascii``: the wire default (DESIGN.md)."""

BUILTIN: dict[str, Dialect] = {
    DEFAULT.name: DEFAULT,
    "iso8583-1987-ascii-0420": Dialect("iso8583-1987-ascii-0420", DEFAULT.spec, reversal_mti="0420"),
    "iso8583-1987-ascii-mac": Dialect("iso8583-1987-ascii-mac", DEFAULT.spec, mac_field="64"),
}


def load_dialect(path: str | Path) -> Dialect:
    """Load a dialect from a JSON or TOML file.

    Parameters
    ----------
    path : str or Path
        A ``.json`` or ``.toml`` file holding either a bare pyiso8583 spec or a table
        with ``spec`` and optional ``name``, ``reversal_mti`` (0400/0420), ``mac_field`` (64/128).

    Raises
    ------
    DialectError
        When the file is missing, unparsable or holds a bad spec; the message names
        the file, the field and the property at fault and what is allowed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DialectError(f"{path}: cannot read dialect file: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise DialectError(f"{path}: dialect files end in .json or .toml")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DialectError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if isinstance(data, Mapping) and "spec" in data:
        meta, spec = data, data["spec"]
        unknown = set(meta) - {"name", "spec", "reversal_mti", "mac_field"}
        if unknown:
            raise DialectError(f"{path}: unknown keys {sorted(unknown)}; allowed: name, spec, reversal_mti, mac_field")
    else:
        meta, spec = {}, data
    name = meta.get("name", path.stem)
    reversal = meta.get("reversal_mti", "0400")
    if reversal not in _REVERSAL_MTIS:
        raise DialectError(f"{path}: reversal_mti is {reversal!r}; allowed: {', '.join(_REVERSAL_MTIS)}")
    mac_field = meta.get("mac_field")
    if mac_field is not None:
        mac_field = str(mac_field)
        if mac_field not in ("64", "128"):
            raise DialectError(f"{path}: mac_field is {mac_field!r}; allowed: 64, 128")
    checked = validate_spec(spec, str(path))
    if mac_field is not None and mac_field not in checked:
        raise DialectError(f"{path}: mac_field {mac_field} is not defined in the spec")
    return Dialect(str(name), checked, reversal, mac_field)


def resolve_dialect(name_or_path: str | None) -> Dialect:
    """A built-in dialect by name, or one loaded from a file path; None gives the default."""
    if name_or_path is None:
        return DEFAULT
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() in (".json", ".toml"):
        return load_dialect(path)
    raise DialectError(
        f"dialect {name_or_path!r} is neither built in ({', '.join(BUILTIN)}) nor a .json/.toml file"
    )
