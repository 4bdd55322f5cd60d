"""A minimal scripted terminal for the virtual card tests (no tests here, only helpers).

It does what a reader and a kernel do around the card, and no more: T=0 exchanges
(61xx -> GET RESPONSE, 6Cxx -> resend with the right Le), building GPO and GENERATE AC
data from fixed terminal values, and collecting records by the AFL.
"""

from __future__ import annotations

from typing import Any

from sim.core import crypto
from sim.emv import tlv
from sim.emv.apdu import build, sw_of
from sim.emv.card import VirtualCard

H = bytes.fromhex

TERMINAL: dict[str, bytes] = {
    "9F02": H("000000002500"),  # 25.00
    "9F03": H("000000000000"),
    "9F1A": H("0250"),
    "95": H("0000008000"),
    "5F2A": H("0978"),
    "9A": H("260315"),
    "9C": H("00"),
    "9F37": H("1A2B3C4D"),
}
CDOL1_TAGS = ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37")

P1_AAC, P1_TC, P1_ARQC = 0x00, 0x40, 0x80


def exchange(card: VirtualCard, apdu: bytes) -> bytes:
    """Send one command as a T=0 reader would: follow 61xx with GET RESPONSE, 6Cxx with a resend."""
    answer = card.execute(apdu)
    if answer[-2] == 0x6C and len(answer) == 2:
        answer = card.execute(apdu[:-1] + answer[-1:])
    while answer[-2] == 0x61:
        head = answer[:-2]
        answer = head + card.execute(build(0x00, 0xC0, 0x00, 0x00, le=answer[-1] or 256))
    return answer


def sw(answer: bytes) -> int:
    return sw_of(answer)


def data(answer: bytes) -> dict[str, Any]:
    """Decoded response data of a 9000 answer."""
    assert sw_of(answer) == 0x9000, f"SW {answer[-2:].hex().upper()}"
    return tlv.decode(answer[:-2])


def select(card: VirtualCard, name: bytes, p2: int = 0x00) -> bytes:
    return exchange(card, build(0x00, 0xA4, 0x04, p2, name, le=0))


def read_record(card: VirtualCard, sfi: int, number: int) -> bytes:
    return exchange(card, build(0x00, 0xB2, number, (sfi << 3) | 4, le=0))


def gpo(card: VirtualCard, pdol_data: bytes | None = None) -> bytes:
    if pdol_data is None:
        pdol_data = bytes(card.image.pdol.size)
    return exchange(card, build(0x80, 0xA8, 0x00, 0x00, tlv.encode({"83": pdol_data}), le=0))


def get_data(card: VirtualCard, tag: int) -> bytes:
    return exchange(card, build(0x80, 0xCA, tag >> 8, tag & 0xFF, le=0))


def start(card: VirtualCard) -> VirtualCard:
    """Power on, select the application, GET PROCESSING OPTIONS: ready for READ RECORD / GENERATE AC."""
    card.power_on()
    assert sw(select(card, card.image.aid)) == 0x9000
    assert sw(gpo(card)) == 0x9000
    return card


def afl_entries(afl: bytes) -> list[tuple[int, int, int, int]]:
    return [(afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]) for i in range(0, len(afl), 4)]


def read_by_afl(card: VirtualCard, afl: bytes) -> tuple[dict[tuple[int, int], bytes], list[tuple[int, bytes]]]:
    """All AFL records (raw ``70`` templates) and the ODA-flagged ones in order."""
    records: dict[tuple[int, int], bytes] = {}
    oda: list[tuple[int, bytes]] = []
    for sfi, first, last, signed in afl_entries(afl):
        for number in range(first, last + 1):
            answer = read_record(card, sfi, number)
            assert sw(answer) == 0x9000, (sfi, number, answer.hex())
            records[(sfi, number)] = answer[:-2]
            if number < first + signed:
                oda.append((sfi, answer[:-2]))
    return records, oda


def flat(records: dict[tuple[int, int], bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for record in records.values():
        out.update(tlv.decode(record)["70"])
    return out


def cdol1(**override: bytes) -> bytes:
    values = {**TERMINAL, **override}
    return b"".join(values[t] for t in CDOL1_TAGS)


def first_ac(card: VirtualCard, p1: int, **override: bytes) -> bytes:
    return exchange(card, build(0x80, 0xAE, p1, 0x00, cdol1(**override), le=0))


def second_ac(card: VirtualCard, p1: int, arc: bytes, tag_91: bytes = bytes(10), **override: bytes) -> bytes:
    return exchange(card, build(0x80, 0xAE, p1, 0x00, arc + tag_91 + cdol1(**override), le=0))


def ac_fields(answer: bytes) -> dict[str, bytes]:
    return data(answer)["77"]


def issuer_view(card: VirtualCard, answer: bytes, **override: bytes) -> dict[str, bytes]:
    """DE55 as the issuer receives it: terminal data, the card's 77 fields, the AIP."""
    return {**TERMINAL, **override, **ac_fields(answer), "82": card.image.aip}


def arpc_for(card: VirtualCard, arqc: bytes, code: str = "00") -> bytes:
    return crypto.arpc(crypto.icc_master_key(card.issuer, card.card), arqc, code)


def pin_block(pin: str) -> bytes:
    """ISO 9564 format 2 plaintext PIN block, as VERIFY P2 = 80 carries it."""
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


def verify(card: VirtualCard, pin: str) -> bytes:
    return exchange(card, build(0x00, 0x20, 0x00, 0x80, pin_block(pin)))
