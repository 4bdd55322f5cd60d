"""The journal: each line is its record as JSON, PANs masked, and the file rotates at its size."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.live.journal import MessageJournal, line

_text = st.text(max_size=30)
_keys = st.one_of(st.sampled_from(["t", "2", "11", "39", "41", "55"]), _text)


@st.composite
def records(draw: st.DrawFn) -> tuple[dict, dict]:
    fields = draw(st.dictionaries(_keys, _text, max_size=8))
    record: dict = {
        "conn": draw(st.integers(-5, 10**9)), "peer": draw(_text), "dir": draw(st.sampled_from(["in", "out"])),
        "mti": draw(st.one_of(st.none(), _text)), "fields": fields, "de39": draw(st.one_of(st.none(), _text)),
        "bytes": draw(st.integers(0, 10**6)),
    }
    if draw(st.booleans()):
        record["latency_ms"] = draw(st.floats(allow_nan=True, allow_infinity=True))
    if draw(st.booleans()):
        record["rule"] = draw(_text)
    if draw(st.booleans()):
        record["note"] = draw(_text)
    record["time"] = draw(_text)
    return record, fields


@settings(max_examples=300, deadline=None)
@given(records())
def test_a_journal_line_is_the_record_as_json(pair: tuple[dict, dict]) -> None:
    """Any record (any text, NaN and infinite latencies included) is one line of JSON that reads
    back as the record; the journal counts its bytes exactly."""
    record, _ = pair
    data = line(record)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    back = json.loads(data)
    expected = dict(record)
    latency = record.get("latency_ms")
    if latency is not None and not math.isfinite(latency):
        expected["latency_ms"] = None  # JSON has no NaN or infinity
    assert back == expected


def test_journal_times_are_isoformat_utc(tmp_path: Path) -> None:
    journal = MessageJournal(tmp_path / "j.jsonl")
    journal.message(1, "127.0.0.1:5", "in", {"t": "0800", "11": "000001"}, 40)
    journal.event(1, "127.0.0.1:5", "closed", "idle")
    journal.close()
    text = (tmp_path / "j.jsonl").read_bytes()
    for entry in map(json.loads, text.splitlines()):
        when = datetime.fromisoformat(entry["time"])
        assert when.utcoffset() == timedelta(0) and entry["time"] == when.isoformat()


def test_journal_lines_parse_and_mask(tmp_path: Path) -> None:
    journal = MessageJournal(tmp_path / "j.jsonl")
    request = {"t": "0200", "2": "4761739001010010", "11": "000001", "52": "0123456789ABCDEF", "55": "9F2608"}
    journal.message(3, "127.0.0.1:5000", "in", request, 187)
    journal.message(3, "127.0.0.1:5000", "out", {"t": "0210", "39": "00", "11": "000001"}, 90,
                    latency_ms=1.23456, note="declined for 4761739001010010")
    journal.close()
    lines = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [r["dir"] for r in lines] == ["in", "out"]
    assert lines[0]["fields"]["2"] == "476173******0010"
    assert lines[0]["fields"]["52"] == "<16 chars hidden>"
    assert "55" not in lines[0]["fields"]
    assert lines[1]["latency_ms"] == 1.235 and lines[1]["de39"] == "00"
    assert "4761739001010010" not in (tmp_path / "j.jsonl").read_text()


def test_journal_rotates_at_its_size_keeps_whole_lines_and_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = MessageJournal(path, max_bytes=2_000, keep=2)
    fields = {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001000", "11": "000001", "41": "TERM0001"}
    for n in range(60):
        journal.message(n, "127.0.0.1:5000", "in", {**fields, "11": f"{n:06d}"}, 120)
    journal.close()
    assert journal.rotations >= 3
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["j.jsonl", "j.jsonl.1", "j.jsonl.2"]  # the oldest beyond keep are gone
    lines = [json.loads(line) for f in (files[2], files[1], files[0]) for line in f.read_text().splitlines()]
    conns = [line["conn"] for line in lines]
    assert conns == list(range(conns[0], 60))  # whole lines, in order, the newest kept
    assert all(f.stat().st_size < 2_000 + 400 for f in files)
    assert all(line["fields"]["2"] == "476173******0010" for line in lines)


def test_journal_size_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive number of bytes"):
        MessageJournal(tmp_path / "j", max_bytes=0)
    with pytest.raises(ValueError, match="0 or more"):
        MessageJournal(tmp_path / "j", keep=-1)
