"""Human-readable messages for logs, journals and reports, with card data masked.

PANs show first 6 and last 4 digits (PCI DSS); track data, PIN blocks and CVV-bearing
fields are replaced wholesale. Every printer in possim goes through :func:`masked`.

Examples
--------
>>> mask_pan("4761739001010010")
'476173******0010'
>>> masked({"t": "0200", "2": "4761739001010010", "35": "4761739001010010D2812"})["35"]
'476173******0010D****'
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator, Mapping

from ..emv import tlv
from ..emv.tags import show_value, tag_name
from .codes import describe_code
from .dialect import DEFAULT, Dialect

SECRET_FIELDS = frozenset({"45", "52", "53"})
"""Track 1, PIN block, security control data: shown only as a length."""
_TRACK_FIELDS = ("35", "36")
_SECRET_TAGS = frozenset({"57", "5A", "9F1F", "9F20", "56", "9F6B"})
"""Tags carrying PAN or track data inside DE55."""


@lru_cache(maxsize=4096)
def mask_pan(pan: str) -> str:
    """Keep the first 6 and last 4 digits; short values are masked entirely but the last 4.

    Remembered for the latest PANs: every decision record and journal line masks one.
    """
    if len(pan) <= 10:
        return "*" * max(len(pan) - 4, 0) + pan[-4:]
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _mask_track(track: str) -> str:
    for sep in ("D", "=", "d"):
        if sep in track:
            pan, _, rest = track.partition(sep)
            return mask_pan(pan) + sep + "*" * len(rest)
    return mask_pan(track)


def masked(fields: Mapping[str, str]) -> dict[str, str]:
    """A copy of a field dict safe to print: PAN masked, track data and PIN blocks hidden."""
    out = dict(fields)
    if "2" in out:
        out["2"] = mask_pan(out["2"])
    for key in _TRACK_FIELDS:
        if key in out:
            out[key] = _mask_track(out[key])
    for key in SECRET_FIELDS.intersection(out):
        out[key] = f"<{len(out[key])} chars hidden>"
    if "55" in out:
        out["55"] = "<see DE55 tags>"
    return out


def icc_tags(fields: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """DE55 as ``(tag, name, value)`` rows, PAN and track tags masked; ``[]`` if absent or malformed."""
    raw = fields.get("55")
    if not raw:
        return []
    try:
        objects = tlv.decode(bytes.fromhex(raw), flatten=True)
    except (ValueError, tlv.TlvError):
        return [("--", "malformed DE55", f"{len(raw)} hex chars")]
    rows = []
    for tag, value in objects.items():
        shown = show_value(tag, value)
        if tag in _SECRET_TAGS:
            shown = _mask_track(shown)
        rows.append((tag, tag_name(tag), shown))
    return rows


def field_rows(fields: Mapping[str, str], dialect: Dialect = DEFAULT) -> Iterator[tuple[str, str, str]]:
    """``(field, description, masked value)`` in field order, bitmaps left out."""
    safe = masked(fields)

    def order(key: str) -> int:
        return -1 if key == "t" else int(key) if key.isdigit() else 0

    for key in sorted((k for k in safe if k not in ("p", "1", "h")), key=order):
        desc = dialect.describe(key)
        value = safe[key]
        if key == "39":
            value = f"{value} ({describe_code(value)})"
        yield (key, desc, value)


def summary(message: Any) -> str:
    """One line: MTI, masked PAN, amount, STAN, terminal, response code."""
    fields = message.fields if hasattr(message, "fields") else message
    parts = [fields.get("t", "????")]
    if "2" in fields or "35" in fields:
        pan = fields.get("2") or fields["35"].replace("=", "D").split("D", 1)[0]
        parts.append(mask_pan(pan))
    for key, label in (("4", "amt"), ("49", "cur"), ("11", "stan"), ("41", "tid"), ("39", "rc"), ("70", "nmic")):
        if key in fields:
            parts.append(f"{label}={fields[key]}")
    return " ".join(parts)


def pretty(message: Any, dialect: Dialect = DEFAULT) -> str:
    """Multi-line text of a message: fields with names, then DE55 tags with names."""
    fields = message.fields if hasattr(message, "fields") else message
    lines = [f"{key:>4}  {desc:<40} {value}" for key, desc, value in field_rows(fields, dialect)]
    for tag, name, value in icc_tags(fields):
        lines.append(f"      {tag:>6}  {name:<40} {value}")
    return "\n".join(lines)
