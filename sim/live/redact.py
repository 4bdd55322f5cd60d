"""What the replay log may keep of a request: everything the core decides on, no track or PIN data.

The replay log (:mod:`.store`) rebuilds the host's state by running every stored
request through a fresh core, so it must keep what the core decides on. SEC-03 says
track data, CVV and PIN blocks are not kept after the authorization. The two meet
because the core uses only part of those fields:

* **DE35** (track 2): the core reads the PAN (when there is no DE2), the expiry (YYMM
  after the separator, when there is no DE14) and checks the shape. The log keeps no
  track 2 at all, not even cut short: the PAN goes into DE2 and the expiry into DE14
  (when the request had none), and a marker records what replay needs to rebuild the
  shape in memory -- the separator, the service code, which fields came from the track
  (:func:`split_track2`). The discretionary data (CVV, PVV) goes. A value that is no
  PAN or expiry (letters, more than 19 digits), or differs from the request's own
  DE2/DE14, is kept in the marker as a value of its own. A value without a separator
  that is nothing but digits is a PAN; any other is recorded only as "redacted".
  Replay rebuilds exactly what was kept before: PAN, separator, YYMM, service code.
* **DE45** (track 1): the core does not read it; dropped.
* **DE52** (PIN block): the core checks its shape and then whether it holds the
  card's PIN. Stored instead of it: the outcome of that check (``correct``,
  ``wrong``, ``unreadable``, ``malformed``, ``no-card``), computed here with the same
  test key and the card set. Replay turns the outcome back into a PIN block that
  gives the same outcome (:func:`restore_request`), in memory only.
* **DE55** tags 56, 57, 9F1F, 9F20, 9F6B (track data inside chip data): removed.
* **DE64/DE128** (MAC, on a dialect that MACs): kept as received, with the verdict
  the core reached on it at receipt (``valid``, ``missing``, ``malformed``,
  ``mismatch``, ``no-key``, ``unencodable``). A redacted request no longer matches its
  MAC, so replay does not check again a MAC found valid (:mod:`.store`); a request
  refused 63 is replayed through the check with a MAC that fails it the same way
  (a ``mismatch`` the redaction happened to make right is made wrong again).

PANs stay in clear in the replay log: the core needs them to find the accounts.
The state directory therefore holds test card numbers (see :mod:`.store`).

Replay checks that every replayed answer equals the stored one, so a core that one
day starts reading a field this module drops is caught at the next start, not
silently mis-rebuilt.

Examples
--------
>>> red = redact_request({"t": "0200", "35": "4761739001010010D28122011234567899"}, None)
>>> red.fields["2"], red.fields["14"], "35" in red.fields, red.marks
('4761739001010010', '2812', False, {'track2': {'sep': 'D', 'svc': '201', 'moved': ['2', '14']}})
>>> restore_request(dict(red.fields), red.pin, None, red.marks)["35"]
'4761739001010010D2812201'
>>> strip_track2("%B4761^ME/YOU^2812")
'REDACTED'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.cards import CardSet
from ..core.crypto import CryptoError, PinResult, encrypt_pin_block, verify_pin_block
from ..emv import tlv
from ..iso8583.dialect import Dialect
from ..iso8583.errors import WireError
from ..iso8583.mac import MacKeys, MacResult, compute_mac
from ..iso8583.message import Message

TRACK_SEPARATORS = ("D", "=", "d")
SECRET_ICC_TAGS = ("56", "57", "9F1F", "9F20", "9F6B")
"""DE55 tags carrying track data (track 1/2 equivalents, discretionary data)."""

PIN_OUTCOMES = ("correct", "wrong", "unreadable", "malformed", "no-card")
"""What the replay log keeps of a DE52 PIN block."""

MAC_VERDICTS = {r: r.name.lower().replace("_", "-") for r in MacResult}
"""What the replay log keeps of the core's MAC check, by outcome (``valid``, ``mismatch``, ...)."""

_HEX = frozenset("0123456789ABCDEFabcdef")


def strip_track2(track: str) -> str:
    """Track 2 without its discretionary data: PAN, separator, YYMM, service code.

    For the session pcap, which shows requests as they went on the wire; the replay log
    keeps no track 2 at all (:func:`split_track2`).
    """
    for sep in TRACK_SEPARATORS:
        if sep in track:
            pan, _, rest = track.partition(sep)
            return f"{pan}{sep}{rest[:7]}"
    if track.isascii() and track.isdigit() and len(track) <= 19:
        return track
    return "REDACTED"


def _pin_outcome(block: str, pan: str | None, cards: CardSet) -> str:
    if not (len(block) == 16 and all(c in _HEX for c in block)):
        return "malformed"
    card = cards.by_pan(pan) if pan else None
    if card is None:
        return "no-card"
    result = verify_pin_block(block, card.pan, card.pin)
    return {PinResult.CORRECT: "correct", PinResult.WRONG: "wrong"}.get(result, "unreadable")


def _other_pin(pin: str) -> str:
    """A PIN of the same length that differs in every digit."""
    return "".join(str((int(d) + 1) % 10) for d in pin)


def _unreadable_block(pan: str, pin: str) -> str:
    """The first of a fixed sequence of blocks that does not decode for ``pan`` (deterministic)."""
    for n in range(0xFFFFFFFFFFFFFFFF, 0, -1):
        block = f"{n:016X}"
        if verify_pin_block(block, pan, pin) is PinResult.UNREADABLE:
            return block
    raise CryptoError("no unreadable PIN block found")  # pragma: no cover - the first candidates do


def pin_block_for(outcome: str, pan: str | None, cards: CardSet) -> str:
    """A DE52 value that the core's PIN check turns into ``outcome`` (built for replay, never stored)."""
    if outcome == "malformed":
        return "X" * 16
    card = cards.by_pan(pan) if pan else None
    if outcome == "no-card" or card is None:
        return "0" * 16
    if outcome == "correct":
        return encrypt_pin_block(card.pin, card.pan)
    if outcome == "wrong":
        return encrypt_pin_block(_other_pin(card.pin), card.pan)
    if outcome == "unreadable":
        return _unreadable_block(card.pan, card.pin)
    raise ValueError(f"PIN outcome {outcome!r}; allowed: {', '.join(PIN_OUTCOMES)}")


def _strip_icc(value: str, objects: Mapping[str, Any] | None = None) -> str:
    """DE55 without its track tags; ``objects``: ``value`` already decoded (the core's)."""
    if objects is None:
        try:
            objects = tlv.decode(bytes.fromhex(value))
        except (ValueError, tlv.TlvError):
            return value  # malformed DE55: the core answers 30 on it, the value is kept as received
    if not any(tag in objects for tag in SECRET_ICC_TAGS):
        return value
    kept = {tag: data for tag, data in objects.items() if tag not in SECRET_ICC_TAGS}
    return tlv.encode(kept).hex().upper()


def _pan_like(value: str) -> bool:
    return 0 < len(value) <= 19 and value.isascii() and value.isdigit()


def split_track2(track: str, fields: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Take a track 2 apart: ``(fields to add, marker)``; nothing of it is kept as a track.

    The PAN goes into DE2 and the YYMM into DE14 when the request has none and they
    fit (up to 19 digits; 4 digits); when the request has its own, equal to the track's,
    nothing more is needed. The marker holds the separator, the service code, the fields
    added (``moved``), and, apart, what could not be placed: a value that is no PAN or
    YYMM, or one that differs from the request's own DE2/DE14 (a request at odds with
    itself, which the core refuses).

    >>> split_track2("4761739001010010=2812201999", {"2": "4761739001010010"})
    ({'14': '2812'}, {'sep': '=', 'svc': '201', 'moved': ['14']})
    >>> split_track2("4761X39D2812", {})
    ({'14': '2812'}, {'sep': 'D', 'svc': '', 'pan': '4761X39', 'moved': ['14']})
    """
    added: dict[str, str] = {}
    marker: dict[str, Any]
    for sep in TRACK_SEPARATORS:
        if sep in track:
            pan, _, rest = track.partition(sep)
            expiry, marker = rest[:4], {"sep": sep, "svc": rest[4:7]}
            break
    else:
        if not _pan_like(track):
            return added, {"redacted": True}
        pan, expiry, marker = track, "", {"sep": "", "svc": "", "exp": ""}
    if "2" not in fields and _pan_like(pan):
        added["2"] = pan
    elif fields.get("2") != pan:
        marker["pan"] = pan
    if "exp" not in marker:
        if "14" not in fields and len(expiry) == 4 and expiry.isascii() and expiry.isdigit():
            added["14"] = expiry
        elif fields.get("14") != expiry:
            marker["exp"] = expiry
    marker["moved"] = sorted(added, key=int)
    return added, marker


def join_track2(fields: dict[str, str], marker: Mapping[str, Any]) -> None:
    """Rebuild in ``fields`` the track 2 :func:`split_track2` took apart (in memory, for replay).

    The result is what :func:`strip_track2` makes of the original: PAN, separator,
    YYMM, service code. Fields added from the track are removed again.
    """
    if marker.get("redacted"):
        fields["35"] = "REDACTED"
        return
    moved = marker.get("moved", ())
    pan = fields.pop("2") if "2" in moved else marker.get("pan", fields.get("2", ""))
    expiry = fields.pop("14") if "14" in moved else marker.get("exp", fields.get("14", ""))
    fields["35"] = f"{pan}{marker.get('sep', '')}{expiry}{marker.get('svc', '')}"


@dataclass(frozen=True, slots=True)
class Redacted:
    """A request as the replay log keeps it.

    Attributes
    ----------
    fields : dict
        The fields to store (bitmaps left out; the dialect recomputes them).
    pin : str or None
        The PIN check outcome standing in for DE52, or ``None`` when there was no DE52.
    changed : bool
        False when nothing was removed: the received bytes can be stored as they are.
    marks : dict
        What else replay needs: ``track2`` (:func:`split_track2`'s marker) and ``mac``
        (the MAC verdict), each only when there is one.
    """

    fields: Mapping[str, str]
    pin: str | None
    changed: bool
    marks: dict[str, Any] = field(default_factory=dict)


def redact_request(
    fields: Mapping[str, str], cards: CardSet | None, *, mac: MacResult | None = None,
    icc: Mapping[str, Any] | None = None,
) -> Redacted:
    """Strip track and PIN data from a request's fields for the replay log; see the module notes.

    ``mac`` is the core's verdict on the request's MAC (dialects that MAC), kept as a mark.
    ``cards`` is only needed when the request has a PIN block. ``icc``: DE55 as the core
    decoded it (:attr:`.exchange.CoreAnswer.icc`), when it did.
    """
    marks: dict[str, Any] = {} if mac is None else {"mac": MAC_VERDICTS[mac]}
    if not ("35" in fields or "45" in fields or "52" in fields or "55" in fields):
        return Redacted(fields, None, False, marks)
    out = {k: v for k, v in fields.items() if k not in ("p", "1", "35", "45", "52")}
    changed = "35" in fields or "45" in fields or "52" in fields
    pin = None
    if "52" in fields:
        if cards is None:
            raise ValueError("redact_request: a request with a PIN block needs the card set")
        pin = _pin_outcome(fields["52"], Message(dict(fields)).pan, cards)
    if "35" in fields:
        added, marks["track2"] = split_track2(fields["35"], fields)
        out.update(added)
    if "55" in fields:
        out["55"] = _strip_icc(fields["55"], icc)
        changed = changed or out["55"] != fields["55"]
    return Redacted(out, pin, changed, marks)


def capture_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """A request as the session pcap shows it: the wire's fields without track 1, PIN block,
    track 2 discretionary data or track data inside DE55."""
    out = {k: v for k, v in fields.items() if k not in ("p", "1", "45", "52")}
    if "35" in out:
        out["35"] = strip_track2(out["35"])
    if "55" in out:
        out["55"] = _strip_icc(out["55"])
    return out


def restore_request(
    fields: dict[str, str], pin: str | None, cards: CardSet | None, marks: Mapping[str, Any] | None = None,
    dialect: Dialect | None = None, keys: MacKeys | None = None,
) -> dict[str, str]:
    """The fields to replay: the stored ones plus a PIN block giving the recorded outcome,
    track 2 rebuilt (:func:`join_track2`) and, for a request refused for its MAC, a MAC
    the core refuses the same way (``dialect`` and the host's ``keys`` needed for that).
    A MAC found valid is left as received: replay does not check it again. In memory only."""
    marks = marks or {}
    if "track2" in marks:
        join_track2(fields, marks["track2"])
    if pin is not None:
        if cards is None:
            raise ValueError("restore_request: a PIN outcome needs the card set")
        fields["52"] = pin_block_for(pin, Message(dict(fields)).pan, cards)
    verdict = marks.get("mac")
    if verdict is not None and dialect is not None and dialect.mac_field is not None and keys is not None:
        _restore_mac(fields, verdict, dialect, keys)
    return fields


def _restore_mac(fields: dict[str, str], verdict: str, dialect: Dialect, keys: MacKeys) -> None:
    """Give ``fields`` of a request refused for its MAC a MAC the core refuses the same way."""
    name = dialect.mac_field
    assert name is not None
    key = keys.key_for(fields.get("41"))
    if verdict == "missing":
        fields.pop(name, None)
    elif verdict == "mismatch" and key is not None:
        try:
            right = compute_mac(fields, dialect, key)
        except WireError:
            return  # does not encode: the core will find that again
        if fields.get(name) == right:  # a wrong MAC that the redaction happened to make right
            fields[name] = ("1" if right[0] != "1" else "2") + right[1:]
    # valid: not checked again; malformed, no-key: the stored field (as received) gives the same verdict
