"""Dialects: loading user specs with clear errors, and decoding that fails only in documented ways."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iso8583.specs import default_ascii, default

from sim.iso8583 import DEFAULT, DialectError, WireError, load_dialect, parse, resolve_dialect
from sim.iso8583.samples import sample_sale


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bare_json_spec_loads_and_encodes(tmp_path: Path) -> None:
    path = _write(tmp_path, "acme.json", json.dumps(default_ascii))
    dialect = load_dialect(path)
    assert dialect.name == "acme"
    assert parse(sample_sale().encode(dialect), dialect) == sample_sale()


def test_toml_wrapper_with_habits(tmp_path: Path) -> None:
    lines = ['name = "acme-binary"', 'reversal_mti = "0420"', 'mac_field = 64', "[spec]"]
    for key, props in default.items():
        lines.append(f'"{key}" = {{ ' + ", ".join(f"{k} = {json.dumps(v)}" for k, v in props.items()) + " }")
    dialect = load_dialect(_write(tmp_path, "acme.toml", "\n".join(lines)))
    assert (dialect.name, dialect.reversal_mti, dialect.mac_field) == ("acme-binary", "0420", "64")
    fields = dict(sample_sale().fields, **{"64": "0011223344556677"})
    raw = dialect.encode(dict(fields))
    ascii_raw = DEFAULT.encode(dict(fields))
    assert raw[:4] == b"0200"
    assert raw[4:12] == bytes.fromhex(ascii_raw[4:20].decode())  # binary bitmaps, not hex characters
    assert dialect.decode(raw)["4"] == "000000002500"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("t"), "lacks field 't'"),
        (lambda s: s.update({"200": s["2"]}), "field '200' is not a field"),
        (lambda s: s["4"].pop("max_len"), "field '4' lacks property 'max_len'"),
        (lambda s: s["4"].update(len_type=9), "field '4': property 'len_type' is 9; allowed: integer 0..4"),
        (lambda s: s["4"].update(data_enc="klingon"), "field '4': property 'data_enc' is 'klingon'"),
        (lambda s: s["2"].update(len_enc="bcd", len_type=3), "property 'len_type' is 3; allowed: integer 0..2"),
        (lambda s: s["4"].update(max_len=-1), "property 'max_len' is -1"),
        (lambda s: s["4"].update(colour="red"), "unknown property 'colour'"),
        (lambda s: s["4"].update(left_pad="00"), "property 'left_pad' is '00'; allowed: one character"),
        (lambda s: s["t"].update(len_type=2), "field 't' must be fixed length"),
    ],
)
def test_bad_spec_errors_name_file_field_property(tmp_path: Path, mutate, message: str) -> None:
    spec = copy.deepcopy(default_ascii)
    mutate(spec)
    path = _write(tmp_path, "bad.json", json.dumps(spec))
    with pytest.raises(DialectError) as err:
        load_dialect(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DialectError, match="cannot read"):
        load_dialect(tmp_path / "missing.json")
    with pytest.raises(DialectError, match="not valid JSON"):
        load_dialect(_write(tmp_path, "x.json", "{"))
    with pytest.raises(DialectError, match="not valid TOML"):
        load_dialect(_write(tmp_path, "x.toml", "= ="))
    with pytest.raises(DialectError, match=r"end in \.json or \.toml"):
        load_dialect(_write(tmp_path, "x.yaml", "{}"))
    with pytest.raises(DialectError, match="reversal_mti is '0500'"):
        load_dialect(_write(tmp_path, "r.json", json.dumps({"spec": default_ascii, "reversal_mti": "0500"})))
    with pytest.raises(DialectError, match="unknown keys"):
        load_dialect(_write(tmp_path, "k.json", json.dumps({"spec": default_ascii, "framing": "be2"})))


def test_resolve_builtin_or_file(tmp_path: Path) -> None:
    assert resolve_dialect(None) is DEFAULT
    assert resolve_dialect("iso8583-1987-ascii-0420").reversal_mti == "0420"
    with pytest.raises(DialectError, match="neither built in"):
        resolve_dialect("acme")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.one_of(st.binary(max_size=300), st.binary(max_size=40).map(lambda b: b"0200" + b)))
def test_random_bytes_raise_only_wire_errors(junk: bytes) -> None:
    try:
        parse(junk)
    except WireError:
        pass


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_corrupted_messages_raise_only_wire_errors(pos: int, byte: int) -> None:
    raw = bytearray(sample_sale().encode())
    raw[pos % len(raw)] = byte
    try:
        msg = parse(bytes(raw))
        msg.icc
    except WireError:
        pass
