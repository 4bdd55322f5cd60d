"""The Scapy ISO 8583 layer: dissection from pcaps, stacking, tolerance of garbage, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from sim.iso8583 import DEFAULT, DecodeError, Message
from sim.iso8583.pcap import write_pcap
from sim.iso8583.samples import SAMPLE_PAN, sample_exchange
from sim.iso8583.scapy_layer import ISO8583, ISO8583LE, bind_port, unbind_port

from tests.strategies import message_fields


def _iso_layers(pkt) -> list[ISO8583]:
    layer = pkt.getlayer(ISO8583)
    return layer.iso8583_layers() if layer is not None else []


def test_layer_round_trips_a_message() -> None:
    sale = sample_exchange()[2]
    pkt = ISO8583.from_message(sale)
    again = ISO8583(bytes(pkt))
    assert again.length == len(sale.encode())
    assert again.complete
    assert again.message() == sale
    assert again.mti == "0200"
    assert bytes(pkt)[:2] == len(sale.encode()).to_bytes(2, "big")


def test_rdpcap_gives_iso8583_layers_in_wire_order(tmp_path: Path) -> None:
    path = tmp_path / "sample.pcap"
    exchange = sample_exchange()
    write_pcap(path, exchange)
    layers = [layer for pkt in rdpcap(str(path)) for layer in _iso_layers(pkt)]
    assert [layer.message() for layer in layers] == exchange
    assert all(layer.complete for layer in layers)


def test_several_messages_in_one_segment_are_consecutive_layers(tmp_path: Path) -> None:
    echo, echo_ok, sale, sale_ok, rev, rev_ok = sample_exchange()
    path = tmp_path / "batched.pcap"
    write_pcap(path, [echo, sale, rev, echo_ok, sale_ok, rev_ok], batch=True)
    stacks = [_iso_layers(pkt) for pkt in rdpcap(str(path))]
    stacks = [s for s in stacks if s]
    assert [[layer.mti for layer in s] for s in stacks] == [["0800", "0200", "0400"], ["0810", "0210", "0410"]]


def test_summary_shows_mti_name_and_masked_pan(tmp_path: Path) -> None:
    sale = ISO8583.from_message(sample_exchange()[2])
    assert sale.mysummary() == "ISO8583 0200 financial request 476173******0010"
    path = tmp_path / "s.pcap"
    write_pcap(path, sample_exchange())
    summaries = [pkt.summary() for pkt in rdpcap(str(path))]
    assert any("476173******0010" in s for s in summaries)
    assert not any(SAMPLE_PAN in s for s in summaries)


def test_pan_from_track2_is_masked_too() -> None:
    fields = dict(sample_exchange()[2].fields)
    del fields["2"]
    text = ISO8583.from_message(fields).mysummary()
    assert "476173******0010" in text and SAMPLE_PAN not in text


def test_undecodable_data_stays_raw_and_never_raises() -> None:
    pkt = ISO8583(b"\x00\x05hello")
    assert pkt.data == b"hello"
    assert pkt.mysummary() == "ISO8583 undecodable (5 bytes)"
    assert pkt.try_decode() is None and pkt.mti is None
    with pytest.raises(DecodeError):
        pkt.decode()


def test_truncated_message_is_marked_incomplete() -> None:
    pkt = ISO8583(b"\x00\x50" + b"0800")
    assert not pkt.complete
    assert pkt.data == b"0800"
    assert "undecodable" in pkt.mysummary()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_dissecting_any_bytes_never_raises(data: bytes) -> None:
    frame = bytes(Ether() / IP() / TCP(sport=50123, dport=8583) / data)
    again = Ether(frame)
    again.summary()
    for layer in _iso_layers(again):
        layer.mysummary()
        layer.try_decode()
    assert bytes(again) == frame  # nothing lost or invented: undecodable data stays as bytes


@settings(max_examples=50, deadline=None)
@given(message_fields())
def test_any_catalogue_message_round_trips_through_the_layer(fields: dict[str, str]) -> None:
    pkt = ISO8583(bytes(ISO8583.from_message(fields)))
    assert pkt.message() == Message(fields)


def test_little_endian_layer() -> None:
    echo = sample_exchange()[0]
    raw = bytes(ISO8583LE.from_message(echo))
    assert raw[:2] == len(echo.encode()).to_bytes(2, "little")
    assert ISO8583LE(raw).message() == echo


def test_bind_port_dissects_another_port() -> None:
    payload = bytes(ISO8583.from_message(sample_exchange()[0]))
    frame = bytes(Ether() / IP() / TCP(sport=40000, dport=9000) / payload)
    assert ISO8583 not in Ether(frame)
    bind_port(9000)
    try:
        assert Ether(frame)[ISO8583].mti == "0800"
    finally:
        unbind_port(9000)
    assert ISO8583 not in Ether(frame)


def test_bind_port_refuses_bad_ports() -> None:
    with pytest.raises(ValueError, match="out of range"):
        bind_port(0)


def test_response_answers_its_request() -> None:
    sale, approved = (ISO8583.from_message(m) for m in sample_exchange()[2:4])
    echo = ISO8583.from_message(sample_exchange()[0])
    assert approved.answers(sale)
    assert not sale.answers(approved)
    assert not approved.answers(echo)
    assert sale.hashret() == approved.hashret() != echo.hashret()


def test_layer_uses_its_dialect() -> None:
    assert ISO8583.dialect is DEFAULT
    echo = sample_exchange()[0]
    assert ISO8583.from_message(echo).decode(DEFAULT)["70"] == "301"
