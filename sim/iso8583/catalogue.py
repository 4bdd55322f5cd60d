"""The message catalogue: which MTIs possim speaks, which fields each must carry.

All rules live in :data:`MESSAGE_TYPES`, written as data the way jPOS writes its
field checks: ``M`` mandatory, ``C`` conditional (a named rule in
:data:`CONDITIONS` decides), ``O`` optional. A field outside the three is
*unexpected*: tolerated by default (hosts add private fields), refused when
``strict``.

Batch upload (SET-01) follows the common POS host convention: after a 0510 ``95`` the
terminal sends one 0320 per transaction of its batch -- the original transaction's
data (DE2/DE3/DE4/DE22/DE49, DE55 for chip), DE39 the original decision (``00``, ``Y1``,
``Y3``, or a decline), DE90 naming the original (MTI, STAN, DE7), with its own DE11 and
DE7 -- each answered 0330; a 0321 repeats a 0320 that got no answer. Then it sends a
0500 with DE3 ``960000`` (settlement after upload; the first 0500 has ``920000``, or no
DE3), which the host answers 0510 ``00`` when the totals now match.

Examples
--------
>>> response_mti("0200"), response_mti("0221"), response_mti("0401"), response_mti("0321")
('0210', '0230', '0410', '0330')
>>> sorted(MESSAGE_TYPES["0800"].mandatory, key=int)
['7', '11', '70']
>>> validate({"t": "0800", "7": "1122103000", "11": "000001"})
Traceback (most recent call last):
...
sim.iso8583.errors.MessageError: 0800 network management request: mandatory field DE70 (Network Management Information Code) is missing
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from .errors import MessageError

Fields = Mapping[str, str]

CHIP_ENTRY_MODES = ("05", "07")
"""DE22 positions 1-2 for chip read (contact, contactless): DE55 must be present."""

SWIPE_ENTRY_MODES = ("02", "80", "90")
"""DE22 positions 1-2 for magnetic stripe read (plain, fallback, full track): DE35 must be present."""

NETWORK_CODES = {"001": "sign-on", "002": "sign-off", "301": "echo test"}
"""DE70 network management information codes possim understands."""


def _needs_pan(f: Fields) -> bool:
    return "35" not in f


def _chip(f: Fields) -> bool:
    return f.get("22", "")[:2] in CHIP_ENTRY_MODES


def _swiped(f: Fields) -> bool:
    return f.get("22", "")[:2] in SWIPE_ENTRY_MODES


def _approved(f: Fields) -> bool:
    return f.get("39") == "00"


CONDITIONS: dict[str, tuple[str, Callable[[Fields], bool]]] = {
    "2": ("when DE35 (track 2) is absent", _needs_pan),
    "35": ("when DE22 says magstripe read (02x, 80x, 90x)", _swiped),
    "55": ("when DE22 says chip read (05x, 07x)", _chip),
    "38": ("when DE39 is 00 (approved)", _approved),
}
"""Conditional fields: the rule that makes each one required, in words and as code."""


@dataclass(frozen=True)
class MessageType:
    """One MTI's place in the catalogue and its field matrix."""

    mti: str
    name: str
    response: str | None
    mandatory: frozenset[str]
    conditional: frozenset[str]
    optional: frozenset[str]

    @property
    def is_request(self) -> bool:
        """True for messages that expect an answer (0xx0 and their repeats)."""
        return self.response is not None

    @property
    def allowed(self) -> frozenset[str]:
        """Every field this MTI may carry, bitmaps and MTI included."""
        return self.mandatory | self.conditional | self.optional | {"t", "p", "1"}


def _fields(spec: str) -> frozenset[str]:
    return frozenset(spec.split()) if spec else frozenset()


def _mt(mti: str, name: str, response: str | None, m: str, c: str = "", o: str = "") -> MessageType:
    return MessageType(mti, name, response, _fields(m), _fields(c), _fields(o))


# Field matrices. Common optional fields of card-present traffic:
_TXN_O = "12 13 14 18 19 23 25 32 37 42 43 45 48 52 60 61 62 63 64 128"
_RSP_O = "2 3 4 12 13 14 15 22 23 32 37 42 44 48 49 54 60 61 62 63 64 128"
_REV_O = "2 12 13 14 22 23 25 32 35 37 38 39 42 43 48 55 60 62 63 64 95 128"
_ADV_O = "12 13 14 18 23 25 32 37 38 42 43 48 60 61 62 63 64 128"
# An advice reports a finished transaction: track 2 may come along but is never required
# (a terminal must not keep it after the authorization, SEC-03), so a swiped completion is valid.
# DE3 of a 0500: 920000 settlement (the default when absent), 960000 settlement after a batch upload.
_REC_O = "3 15 32 42 48 60 63 64 75 77 87 89 97 128"
# A batch upload (0320) is one transaction of the batch as the terminal recorded it: the original's
# own data, DE39 its decision, DE90 naming the original (MTI, STAN, DE7); DE11/DE7 are the 0320's own.
# Track 2 may come along (as in an advice) but is never required.
_UPL_O = "12 13 14 23 25 32 35 37 38 42 43 48 60 61 62 63 64 128"

MESSAGE_TYPES: dict[str, MessageType] = {
    mt.mti: mt
    for mt in [
        _mt("0100", "authorization request", "0110", "3 4 7 11 22 41 49", "2 35 55", _TXN_O),
        _mt("0110", "authorization response", None, "7 11 39 41", "38", _RSP_O + " 55"),
        _mt("0120", "authorization advice", "0130", "3 4 7 11 22 39 41 49", "2 55", _ADV_O + " 35"),
        _mt("0121", "authorization advice repeat", "0130", "3 4 7 11 22 39 41 49", "2 55", _ADV_O + " 35"),
        _mt("0130", "authorization advice response", None, "7 11 39 41", "", _RSP_O),
        _mt("0200", "financial request", "0210", "3 4 7 11 22 41 49", "2 35 55", _TXN_O),
        _mt("0210", "financial response", None, "7 11 39 41", "38", _RSP_O + " 55"),
        _mt("0220", "financial advice", "0230", "3 4 7 11 22 39 41 49", "2 55", _ADV_O + " 35"),
        _mt("0221", "financial advice repeat", "0230", "3 4 7 11 22 39 41 49", "2 55", _ADV_O + " 35"),
        _mt("0230", "financial advice response", None, "7 11 39 41", "", _RSP_O),
        _mt("0400", "reversal request", "0410", "3 4 7 11 41 49 90", "", _REV_O),
        _mt("0401", "reversal request repeat", "0410", "3 4 7 11 41 49 90", "", _REV_O),
        _mt("0410", "reversal response", None, "7 11 39 41", "", _RSP_O + " 90"),
        _mt("0420", "reversal advice", "0430", "3 4 7 11 41 49 90", "", _REV_O),
        _mt("0421", "reversal advice repeat", "0430", "3 4 7 11 41 49 90", "", _REV_O),
        _mt("0430", "reversal advice response", None, "7 11 39 41", "", _RSP_O + " 90"),
        _mt("0320", "batch upload", "0330", "3 4 7 11 22 39 41 49 90", "2 55", _UPL_O),
        _mt("0321", "batch upload repeat", "0330", "3 4 7 11 22 39 41 49 90", "2 55", _UPL_O),
        _mt("0330", "batch upload response", None, "7 11 39 41", "", _RSP_O + " 90"),
        _mt("0500", "reconciliation request", "0510", "7 11 41 50 74 76 86 88", "", _REC_O),
        _mt("0510", "reconciliation response", None, "7 11 39 41", "", _REC_O + " 50 74 76 86 88"),
        _mt("0800", "network management request", "0810", "7 11 70", "", "12 13 41 42 48 53 64 128"),
        _mt("0810", "network management response", None, "7 11 39 70", "", "12 13 41 42 48 53 64 128"),
    ]
}

REPEATS = {"0121": "0120", "0221": "0220", "0321": "0320", "0401": "0400", "0421": "0420"}
"""Repeat MTI → original MTI: same message sent again because no answer came."""

NUMERIC_FIELDS = frozenset("2 3 4 7 11 12 13 14 15 18 19 22 23 25 32 49 50 70 74 75 76 77 86 87 88 89 90".split())
"""Fields whose content must be decimal digits (ISO 8583 ``n``)."""

SIGNED_AMOUNT_FIELDS = frozenset("28 29 30 31 97".split())
"""Fields of type ``x+n``: ``C`` (credit) or ``D`` (debit), then the amount's digits."""


def response_mti(mti: str) -> str:
    """The MTI that answers ``mti`` (repeats are answered like their originals).

    Raises
    ------
    MessageError
        When ``mti`` is not a request in the catalogue.
    """
    mt = MESSAGE_TYPES.get(mti)
    if mt is None or mt.response is None:
        requests = ", ".join(m for m, t in MESSAGE_TYPES.items() if t.is_request)
        raise MessageError(f"MTI {mti!r} is not a request possim answers; requests: {requests}", field="t")
    return mt.response


def original_mti(mti: str) -> str:
    """The MTI of a message's first transmission: ``0221`` → ``0220``, others unchanged."""
    return REPEATS.get(mti, mti)


def match_key(fields: Fields) -> tuple[str, str, str]:
    """Request/response matching key: MTI class (first two digits) + DE41 + DE11.

    The jPOS QMUX convention: a 0200 and its 0210 (or a 0221 and its 0230) share it.

    >>> match_key({"t": "0200", "41": "TERM0001", "11": "000042"})
    ('02', 'TERM0001', '000042')
    >>> match_key({"t": "0210", "41": "TERM0001", "11": "000042"})
    ('02', 'TERM0001', '000042')
    """
    return (fields.get("t", "")[:2], fields.get("41", ""), fields.get("11", ""))


def _describe(key: str, descriptions: Mapping[str, str] | None) -> str:
    table = descriptions or _DEFAULT_DESC
    return f"DE{key} ({table[key]})" if key in table else f"DE{key}"


def validate(
    fields: Fields,
    *,
    mac_field: str | None = None,
    strict: bool = False,
    descriptions: Mapping[str, str] | None = None,
    content: Iterable[str] | None = None,
) -> "MessageType":
    """Check a message against the catalogue; return its :class:`MessageType`.

    Parameters
    ----------
    fields : mapping
        Decoded fields (``{"t": "0200", "2": ..., ...}``), as pyiso8583 gives them.
    mac_field : str, optional
        ``"64"`` or ``"128"`` when the dialect MACs: that field becomes mandatory.
    strict : bool
        Refuse fields outside the MTI's matrix.
    descriptions : mapping, optional
        Field descriptions (a dialect's) to name fields in errors.
    content : iterable of str, optional
        Check the content of only these fields (constructors pass the fields a
        caller gave as raw strings; the rest they formatted themselves). Default: all.

    Raises
    ------
    MessageError
        The first rule broken, naming the MTI, the field and what was expected.
    """
    mti = fields.get("t")
    mt = MESSAGE_TYPES.get(mti)  # type: ignore[arg-type]
    if mt is None:
        raise MessageError(f"MTI {mti!r} is not in the catalogue; known: {', '.join(MESSAGE_TYPES)}", field="t")
    if not mt.mandatory <= fields.keys():
        key = min(mt.mandatory - fields.keys(), key=int)
        raise MessageError(f"{mti} {mt.name}: mandatory field {_describe(key, descriptions)} is missing", field=key)
    for key in mt.conditional:
        if key not in fields:
            rule, applies = CONDITIONS[key]
            if applies(fields):
                raise MessageError(f"{mti} {mt.name}: field {_describe(key, descriptions)} is required {rule}", field=key)
    if mac_field is not None and mac_field not in fields:
        raise MessageError(f"{mti} {mt.name}: MAC field DE{mac_field} is missing (this dialect MACs)", field=mac_field)
    if strict:
        allowed = mt.allowed
        for key in fields:
            if key not in allowed and key != mac_field:
                raise MessageError(f"{mti} {mt.name}: field {_describe(key, descriptions)} is not expected", field=key)
    check_content(fields, fields.keys() if content is None else content, mt, descriptions)
    return mt


def check_content(
    fields: Fields, keys: Iterable[str], mt: MessageType, descriptions: Mapping[str, str] | None = None
) -> None:
    """Check the content of ``keys``: digits where ISO 8583 says ``n``, C/D + digits where it says
    ``x+n``, a real DE7, a known DE70.

    >>> check_content({"t": "0500", "97": "X0000000000001234"}, ["97"], MESSAGE_TYPES["0500"])
    Traceback (most recent call last):
    ...
    sim.iso8583.errors.MessageError: 0500 reconciliation request: field DE97 (Amount, Net Settlement) is 'X0000000000001234'; allowed: C or D, then digits
    """
    if type(keys) is _KEYS_VIEW and _plain_content(fields):
        keys = ()  # the usual case, told at once; otherwise the first field at fault is named
    for key in keys:
        if key in NUMERIC_FIELDS:
            value = fields.get(key)
            if value is not None and not (value.isdigit() and value.isascii()):
                raise MessageError(
                    f"{mt.mti} {mt.name}: field {_describe(key, descriptions)} is {value!r}; allowed: digits only",
                    field=key,
                )
        elif key in SIGNED_AMOUNT_FIELDS:
            value = fields.get(key)
            if value is not None and not (value[:1] in ("C", "D") and value[1:].isdigit() and value.isascii()):
                raise MessageError(
                    f"{mt.mti} {mt.name}: field {_describe(key, descriptions)} is {value!r}; allowed: C or D, then digits",
                    field=key,
                )
    code = fields.get("70")
    if code is not None and code not in NETWORK_CODES:
        allowed_codes = ", ".join(f"{c} {n}" for c, n in NETWORK_CODES.items())
        raise MessageError(f"{mt.mti} {mt.name}: DE70 is {code!r}; allowed: {allowed_codes}", field="70")
    when = fields.get("7")
    if when is not None and not _is_mmddhhmmss(when):
        raise MessageError(f"{mt.mti} {mt.name}: DE7 is {when!r}; allowed: a date-time MMDDhhmmss", field="7")


_KEYS_VIEW = type({}.keys())


_CONTENT_KIND = {**{k: "n" for k in NUMERIC_FIELDS}, **{k: "x+n" for k in SIGNED_AMOUNT_FIELDS}}


def _plain_content(fields: Fields) -> bool:
    """True when every field of ``fields`` that must be digits (or C/D and digits) is."""
    kind_of = _CONTENT_KIND.get
    for key, value in fields.items():
        kind = kind_of(key)
        if kind is None:
            continue
        if kind == "n":
            if not (value.isdigit() and value.isascii()):
                return False
        elif not (value[:1] in ("C", "D") and value[1:].isdigit() and value.isascii()):
            return False
    return True


_MMDDHHMMSS = re.compile(r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]\Z")


def _is_mmddhhmmss(value: str) -> bool:
    return _MMDDHHMMSS.match(value) is not None


def _default_descriptions() -> dict[str, str]:
    from iso8583.specs import default_ascii

    return {k: v["desc"] for k, v in default_ascii.items()}


_DEFAULT_DESC = _default_descriptions()
