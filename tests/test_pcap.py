"""Pcap reading and writing, and the ``possim pcap`` commands."""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap
from typer.testing import CliRunner

import sim.cli
from sim.iso8583 import Framing, FramingError, Message, MessageError, parse_framing
from sim.iso8583.framing import reply_tpdu
from sim.iso8583.pcap import (
    DEFAULT_START,
    DEFAULT_TPDU,
    CaptureError,
    build_packets,
    direction_of,
    read_messages,
    write_pcap,
)
from sim.iso8583.pcap_cli import pcap_app
from sim.iso8583.samples import SAMPLE_PAN, sample_exchange
from tests.strategies import message_fields

HOST = "127.0.0.1:8583"
TERMINAL = "127.0.0.1:50123"


def _messages(path: Path, **kwargs) -> list[Message]:
    return [c.message for c in read_messages(path, **kwargs)]


# Round trips ---------------------------------------------------------------------------------


def test_sample_exchange_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sample.pcap"
    exchange = sample_exchange()
    write_pcap(path, exchange)
    captured = read_messages(path)
    assert [c.message for c in captured] == exchange
    assert [c.direction for c in captured] == ["request", "response"] * 3
    assert [(c.src, c.dst) for c in captured] == [(TERMINAL, HOST), (HOST, TERMINAL)] * 3
    assert all(c.error is None for c in captured)
    times = [c.time for c in captured]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[0] > DEFAULT_START


def test_writing_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    write_pcap(a, sample_exchange(), max_segment=[5, 77])
    write_pcap(b, sample_exchange(), max_segment=[5, 77])
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.pcap"
    write_pcap(c, sample_exchange(), max_segment=[5, 77], start=DEFAULT_START + 60)
    assert read_messages(c)[0].time == read_messages(a)[0].time + 60


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(message_fields(), min_size=1, max_size=8),
    sizes=st.one_of(st.none(), st.lists(st.integers(1, 120), min_size=1, max_size=6)),
    batch=st.booleans(),
)
def test_any_catalogue_messages_round_trip(messages: list[dict], sizes: list[int] | None, batch: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.pcap"
        write_pcap(path, messages, max_segment=sizes, batch=batch)
        captured = read_messages(path)
    assert [c.message for c in captured] == [Message(m) for m in messages]
    assert all(c.error is None for c in captured)
    for c in captured:
        expected = (TERMINAL, HOST) if c.direction == "request" else (HOST, TERMINAL)
        assert (c.src, c.dst) == expected


@pytest.mark.parametrize("label", ["le2", "ascii4", "be2+tpdu", "ascii4+tpdu"])
def test_other_framings_round_trip(tmp_path: Path, label: str) -> None:
    framing = parse_framing(label)
    path = tmp_path / "f.pcap"
    write_pcap(path, sample_exchange(), framing=framing, max_segment=33)
    captured = read_messages(path, framing=framing)
    assert [c.message for c in captured] == sample_exchange()
    if framing.tpdu:
        assert [c.tpdu for c in captured[:2]] == [DEFAULT_TPDU, reply_tpdu(DEFAULT_TPDU)]
    else:
        assert all(c.tpdu is None for c in captured)


def test_other_port(tmp_path: Path) -> None:
    path = tmp_path / "p.pcap"
    write_pcap(path, sample_exchange(), port=9000)
    assert _messages(path, port=9000) == sample_exchange()
    assert read_messages(path) == []
    assert read_messages(path, port=9000)[0].dst == "127.0.0.1:9000"


# The TCP conversation ------------------------------------------------------------------------


def test_connection_is_a_proper_tcp_conversation() -> None:
    packets = build_packets(sample_exchange(), max_segment=100)
    assert all(p[IP].src == p[IP].dst == "127.0.0.1" for p in packets)
    flags = [str(p[TCP].flags) for p in packets]
    assert flags[:3] == ["S", "SA", "A"]
    assert flags[-3:] == ["FA", "FA", "A"]
    syn, synack = packets[0][TCP], packets[1][TCP]
    assert synack.ack == syn.seq + 1
    next_seq = {syn.sport: syn.seq + 1, synack.sport: synack.seq + 1}
    for pkt in packets[2:]:
        tcp = pkt[TCP]
        assert tcp.seq == next_seq[tcp.sport], "every segment continues its side's stream"
        assert tcp.ack == next_seq[tcp.dport], "every ACK acknowledges all the peer sent"
        next_seq[tcp.sport] += len(tcp.payload) + (1 if "F" in str(tcp.flags) else 0)
    times = [p.time for p in packets]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_requests_go_to_the_host_and_responses_come_back() -> None:
    packets = build_packets(sample_exchange())
    data = [p[TCP] for p in packets if len(p[TCP].payload)]
    assert [tcp.dport for tcp in data] == [8583, 50123] * 3


def test_segments_respect_max_segment() -> None:
    packets = build_packets(sample_exchange(), max_segment=10)
    assert max(len(p[TCP].payload) for p in packets) == 10


# Reading damaged and unusual captures --------------------------------------------------------


def _data_packets(packets):
    return [i for i, p in enumerate(packets) if len(p[TCP].payload)]


def test_retransmissions_and_reordering_are_handled(tmp_path: Path) -> None:
    packets = build_packets(sample_exchange(), max_segment=40)
    data = _data_packets(packets)
    packets[data[1]], packets[data[2]] = packets[data[2]], packets[data[1]]  # out of order
    packets.insert(data[5], packets[data[3]].copy())  # a retransmission, later
    path = tmp_path / "r.pcap"
    wrpcap(str(path), packets)
    assert _messages(path) == sample_exchange()


def test_partial_overlap_retransmission(tmp_path: Path) -> None:
    packets = build_packets(sample_exchange()[:2])
    first = packets[_data_packets(packets)[0]]
    payload = bytes(first[TCP].payload)
    part = first.copy()
    part[TCP].remove_payload()
    part = part / payload[:20]
    del part[IP].len, part[IP].chksum, part[TCP].chksum
    packets.insert(3, part)  # the first 20 bytes arrive alone, then the whole segment again
    path = tmp_path / "o.pcap"
    wrpcap(str(path), packets)
    assert _messages(path) == sample_exchange()[:2]


def test_missing_segment_gives_an_error_record(tmp_path: Path) -> None:
    packets = build_packets(sample_exchange())
    del packets[_data_packets(packets)[1]]  # the 0810, alone in its segment
    path = tmp_path / "gap.pcap"
    wrpcap(str(path), packets)
    captured = read_messages(path)
    assert [c.mti for c in captured] == ["0800", "0200", None, "0210", "0400", "0410"]
    assert captured[2].error.startswith("67 bytes of the stream were not captured")
    assert captured[2].src == HOST


def test_undecodable_frame_is_reported_not_raised(tmp_path: Path) -> None:
    payload = Framing().frame(b"0200ZZZZZZZZZZZZZZZZ1234")
    pkt = Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=50000, dport=8583, flags="PA", seq=10) / payload
    pkt.time = 1000
    path = tmp_path / "bad.pcap"
    wrpcap(str(path), [pkt])
    (record,) = read_messages(path)
    assert record.fields is None and record.mti is None
    assert "field p" in record.error
    assert record.direction == "request" and record.dst == "127.0.0.1:8583"


def test_stream_ending_inside_a_frame(tmp_path: Path) -> None:
    packets = build_packets(sample_exchange()[:2], max_segment=30)
    del packets[_data_packets(packets)[-1]]
    path = tmp_path / "cut.pcap"
    wrpcap(str(path), packets)
    captured = read_messages(path)
    assert captured[0].mti == "0800"
    assert "ends inside a frame" in captured[-1].error


def test_garbage_length_header_stops_the_stream(tmp_path: Path) -> None:
    pkt = Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=50000, dport=8583, flags="PA") / b"ABCD0800"
    path = tmp_path / "garbage.pcap"
    wrpcap(str(path), [pkt])
    (record,) = read_messages(path, framing=parse_framing("ascii4"))
    assert "cannot be followed" in record.error and "ascii4" in record.error


def test_link_padding_is_not_taken_as_data(tmp_path: Path) -> None:
    packets = build_packets(sample_exchange()[:2], max_segment=3)
    padded = [Ether(bytes(p) + b"\x00" * max(0, 60 - len(p))) for p in packets]  # Ethernet minimum frame
    for p, q in zip(padded, packets):
        p.time = q.time
    path = tmp_path / "pad.pcap"
    wrpcap(str(path), padded)
    assert _messages(path) == sample_exchange()[:2]


def test_ipv6_capture(tmp_path: Path) -> None:
    from scapy.layers.inet6 import IPv6

    packets = []
    for p in build_packets(sample_exchange(), max_segment=90):
        tcp = p[TCP].copy()
        del tcp.chksum
        q = Ether() / IPv6(src="::1", dst="::1") / tcp
        q.time = p.time
        packets.append(q)
    path = tmp_path / "v6.pcap"
    wrpcap(str(path), packets)
    captured = read_messages(path)
    assert [c.message for c in captured] == sample_exchange()
    assert captured[0].dst == "[::1]:8583"


# Errors ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pcap"):
        read_messages(tmp_path / "nope.pcap")


def test_not_a_pcap(tmp_path: Path) -> None:
    path = tmp_path / "text.pcap"
    path.write_text("hello, this is not a capture\n")
    with pytest.raises(CaptureError, match="not a pcap"):
        read_messages(path)


def test_invalid_message_names_index_and_field(tmp_path: Path) -> None:
    bad = dict(sample_exchange()[2].fields)
    del bad["4"]
    with pytest.raises(MessageError, match=r"message \[1\] \(0200\).*DE4") as info:
        write_pcap(tmp_path / "x.pcap", [sample_exchange()[0], bad])
    assert info.value.field == "4"
    assert not (tmp_path / "x.pcap").exists()


def test_oversize_message_is_a_framing_error(tmp_path: Path) -> None:
    with pytest.raises(FramingError):
        write_pcap(tmp_path / "x.pcap", sample_exchange(), framing=Framing(max_length=50))


@pytest.mark.parametrize("kwargs", [{"max_segment": 0}, {"max_segment": []}, {"port": 70000}, {"client_port": 8583}])
def test_bad_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        write_pcap(tmp_path / "x.pcap", sample_exchange(), **kwargs)


def test_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot write capture"):
        write_pcap(tmp_path / "no" / "such" / "dir.pcap", sample_exchange())


def test_direction_rules() -> None:
    assert direction_of("0200", False) == "request"
    assert direction_of("0410", True) == "response"
    assert direction_of("0620", True) == "request"
    assert direction_of("9999", False) == "response"
    assert direction_of(None, False) == "response"


# The command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    """``possim`` with its command groups registered once."""
    if not any(group.name == "pcap" for group in sim.cli.app.registered_groups):
        try:
            sim.cli._register()
        except ImportError:  # another command group is not installed: test pcap alone
            sim.cli.app.add_typer(pcap_app, name="pcap")
    runner = CliRunner()
    return lambda *args: runner.invoke(sim.cli.app, [str(a) for a in args])


@pytest.fixture
def sample_pcap(tmp_path: Path) -> Path:
    path = tmp_path / "sample.pcap"
    write_pcap(path, sample_exchange(), max_segment=64)
    return path


def test_dissect_prints_masked_messages(cli, sample_pcap: Path) -> None:
    result = cli("pcap", "dissect", sample_pcap)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "476173******0010" in out
    assert SAMPLE_PAN not in out and "D28122011234567899" not in out
    for text in ("0200 financial request", "0410 reversal response", "Application Cryptogram", "00 (approved)",
                 "127.0.0.1:50123 → 127.0.0.1:8583", "request", "response", "2025-12-01T10:30:00"):
        assert text in out


def test_dissect_json_is_valid_and_masked(cli, sample_pcap: Path) -> None:
    result = cli("pcap", "dissect", sample_pcap, "--json")
    assert result.exit_code == 0, result.output
    assert SAMPLE_PAN not in result.stdout
    records = json.loads(result.stdout)
    assert [r["mti"] for r in records] == ["0800", "0810", "0200", "0210", "0400", "0410"]
    sale = records[2]
    assert sale["direction"] == "request" and sale["name"] == "financial request"
    assert sale["src"] == "127.0.0.1:50123" and sale["dst"] == "127.0.0.1:8583"
    values = {f["field"]: f["value"] for f in sale["fields"]}
    assert values["2"] == "476173******0010"
    assert values["35"].startswith("476173******0010D") and set(values["35"][17:]) == {"*"}
    assert {t["tag"]: t["value"] for t in sale["icc"]}["9F26"] == "8E19ED4BCF3D5E93"
    assert sale["error"] is None


def test_dissect_hides_pin_block_and_card_data_in_icc(cli, tmp_path: Path) -> None:
    sale = sample_exchange()[2].replace(DE52="0123456789ABCDEF")
    path = tmp_path / "pin.pcap"
    write_pcap(path, [sale])
    for args in ((), ("--json",)):
        result = cli("pcap", "dissect", path, *args)
        assert result.exit_code == 0
        assert "0123456789ABCDEF" not in result.stdout and SAMPLE_PAN not in result.stdout


def test_dissect_with_framing_and_dialect_options(cli, tmp_path: Path) -> None:
    path = tmp_path / "tpdu.pcap"
    write_pcap(path, sample_exchange(), framing=parse_framing("le2+tpdu"), port=9100)
    result = cli("pcap", "dissect", path, "--framing", "le2+tpdu", "--port", "9100", "--dialect",
                 "iso8583-1987-ascii", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 6


def test_dissect_shows_undecodable_frames(cli, tmp_path: Path) -> None:
    pkt = Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=50000, dport=8583, flags="PA") / (
        Framing().frame(b"0200ZZZZZZZZZZZZZZZZ" + SAMPLE_PAN.encode())
    )
    path = tmp_path / "bad.pcap"
    wrpcap(str(path), [pkt])
    result = cli("pcap", "dissect", path)
    assert result.exit_code == 0
    assert "undecodable" in result.stdout and SAMPLE_PAN not in result.stdout
    record = json.loads(cli("pcap", "dissect", path, "--json").stdout)[0]
    assert record["mti"] is None and record["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing.pcap",), "missing.pcap"),
        (("{text}",), "not a pcap"),
        (("{pcap}", "--framing", "be3"), "framing kind 'be3' is unknown"),
        (("{pcap}", "--dialect", "nosuch"), "dialect 'nosuch'"),
        (("{pcap}", "--dialect", "{missing_json}"), "cannot read dialect file"),
    ],
)
def test_dissect_bad_inputs_exit_2(cli, tmp_path: Path, sample_pcap: Path, args: tuple, message: str) -> None:
    text = tmp_path / "text.pcap"
    text.write_text("not a capture")
    paths = {"text": text, "pcap": sample_pcap, "missing_json": tmp_path / "none.json"}
    result = cli("pcap", "dissect", *(a.format(**paths) if a.startswith("{") else tmp_path / a if a.endswith(".pcap") else a for a in args))
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_write_sample_is_the_default(cli, tmp_path: Path) -> None:
    out = tmp_path / "out.pcap"
    result = cli("pcap", "write", out)
    assert result.exit_code == 0, result.output
    assert "wrote 6 messages" in result.stdout and "tshark -r" in result.stdout
    assert _messages(out) == sample_exchange()
    out2 = tmp_path / "out2.pcap"
    assert cli("pcap", "write", out2, "--sample").exit_code == 0
    assert out2.read_bytes() == out.read_bytes()


def test_write_from_json(cli, tmp_path: Path) -> None:
    source = tmp_path / "msgs.json"
    messages = [dict(m.fields) for m in sample_exchange()[:2]]
    source.write_text(json.dumps(messages))
    out = tmp_path / "out.pcap"
    result = cli("pcap", "write", out, "--messages", source, "--port", "9001", "--framing", "ascii4", "--max-segment", "7")
    assert result.exit_code == 0, result.output
    assert "does not read ascii4" in result.stdout
    assert _messages(out, port=9001, framing=parse_framing("ascii4")) == sample_exchange()[:2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "msgs.json: not valid JSON"),
        ('{"t": "0800"}', "expected a JSON list"),
        ('["0800"]', "message [0]: expected an object"),
        ('[{"7": "1122103000"}]', 'message [0]: no "t"'),
        ('[{"t": "0800", "7": 1122103000, "11": "000001", "70": "301"}]', "message [0] field '7'"),
        ('[{"t": "0800", "x": "1"}]', "key 'x' is not a field"),
        ('[{"t": "0800", "7": "1122103000", "11": "000001", "70": "301"}, {"t": "0800", "7": "1122103000"}]',
         "msgs.json: message [1] (0800): 0800 network management request: mandatory field DE11"),
        ('[{"t": "0999", "7": "1122103000"}]', "message [0] (0999): MTI '0999' is not in the catalogue"),
    ],
)
def test_write_bad_json_exits_2(cli, tmp_path: Path, content: str, message: str) -> None:
    source = tmp_path / "msgs.json"
    source.write_text(content)
    result = cli("pcap", "write", tmp_path / "out.pcap", "--messages", source)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.pcap").exists()


def test_write_refuses_both_sources(cli, tmp_path: Path) -> None:
    source = tmp_path / "msgs.json"
    source.write_text("[]")
    result = cli("pcap", "write", tmp_path / "o.pcap", "--messages", source, "--sample")
    assert result.exit_code == 2 and "not both" in result.stderr


def test_write_missing_json_exits_2(cli, tmp_path: Path) -> None:
    result = cli("pcap", "write", tmp_path / "o.pcap", "--messages", tmp_path / "none.json")
    assert result.exit_code == 2 and "none.json" in result.stderr


def test_repr_masks_card_data(tmp_path: Path) -> None:
    path = tmp_path / "r.pcap"
    write_pcap(path, sample_exchange())
    text = repr(read_messages(path))
    assert "476173******0010" in text and SAMPLE_PAN not in text


def test_times_are_decimal_seconds(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write_pcap(path, sample_exchange()[:1], start=Decimal("1000.5"), think=0)
    assert read_messages(path)[0].time == Decimal("1000.500150")
