"""Hypothesis strategies for ISO 8583 messages valid under the default dialect and the catalogue."""

from __future__ import annotations

import copy
import string

from hypothesis import strategies as st
from iso8583.specs import default_ascii

from sim.emv import tlv
from sim.iso8583.dialect import Dialect
from sim.iso8583.catalogue import CHIP_ENTRY_MODES, MESSAGE_TYPES, NETWORK_CODES, NUMERIC_FIELDS, SIGNED_AMOUNT_FIELDS

TEXT = string.ascii_letters + string.digits + " -./"
ICC_TAGS = ["9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A", "91"]


def _value(key: str, spec: dict) -> st.SearchStrategy[str]:
    props = spec[key]
    size = props["max_len"]
    if key in SIGNED_AMOUNT_FIELDS:  # x+n: credit or debit sign, then the digits
        return st.builds(str.__add__, st.sampled_from("CD"), st.text(string.digits, min_size=size - 1, max_size=size - 1))
    alphabet = string.digits if key in NUMERIC_FIELDS else TEXT
    if props["len_type"] == 0:
        return st.text(alphabet, min_size=size, max_size=size)
    return st.text(alphabet, min_size=1, max_size=min(size, 40))


def ebcdic_binary_bitmap() -> Dialect:
    """A dialect of EBCDIC text and lengths with binary bitmaps (a common mainframe host), for codec tests."""
    spec = copy.deepcopy(default_ascii)
    for props in spec.values():
        for prop in ("data_enc", "len_enc"):
            if props[prop] == "ascii":
                props[prop] = "cp500"
    for key in ("p", "1"):
        spec[key].update(data_enc="b", max_len=8)
    return Dialect("ebcdic-binary-bitmap", spec)


@st.composite
def icc_data(draw: st.DrawFn) -> str:
    tags = draw(st.lists(st.sampled_from(ICC_TAGS), min_size=1, max_size=len(ICC_TAGS), unique=True))
    objects = {t: draw(st.binary(min_size=1, max_size=16)) for t in tags}
    return tlv.encode(objects).hex().upper()


@st.composite
def transmission(draw: st.DrawFn) -> str:
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    return f"{month:02d}{day:02d}{draw(st.integers(0, 23)):02d}{draw(st.integers(0, 59)):02d}{draw(st.integers(0, 59)):02d}"


@st.composite
def message_fields(draw: st.DrawFn, mti: str | None = None) -> dict[str, str]:
    """A field dict for ``mti`` (or any catalogue MTI) that the catalogue accepts."""
    if mti is None:
        mti = draw(st.sampled_from(sorted(MESSAGE_TYPES)))
    mt = MESSAGE_TYPES[mti]
    spec = default_ascii
    optional = draw(st.lists(st.sampled_from(sorted(mt.optional | mt.conditional)), unique=True, max_size=8))
    keys = set(mt.mandatory) | set(optional)
    keys -= {"64", "128"}
    fields: dict[str, str] = {"t": mti}
    for key in keys:
        if key == "7":
            fields[key] = draw(transmission())
        elif key == "70":
            fields[key] = draw(st.sampled_from(sorted(NETWORK_CODES)))
        elif key == "55":
            fields[key] = draw(icc_data())
        elif key == "90":
            fields[key] = draw(st.text(string.digits, min_size=42, max_size=42))
        elif key == "39":
            fields[key] = draw(st.sampled_from(["00", "05", "51", "91", "Y1", "Y3"]))
        else:
            fields[key] = draw(_value(key, spec))
    # Conditional rules: satisfy whichever the drawn fields trigger.
    if "2" in mt.conditional and "35" not in fields:
        fields["2"] = draw(st.text(string.digits, min_size=12, max_size=19))
    if "35" in mt.conditional and fields.get("22", "")[:2] in ("02", "80", "90"):
        fields["35"] = draw(st.text(string.digits + "D", min_size=20, max_size=37))
    if "55" in mt.conditional and fields.get("22", "")[:2] in CHIP_ENTRY_MODES:
        fields["55"] = draw(icc_data())
    if "38" in mt.conditional and fields.get("39") == "00":
        fields["38"] = draw(st.text(string.ascii_uppercase + string.digits, min_size=6, max_size=6))
    return fields
