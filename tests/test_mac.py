"""MAC of MAC-ing dialects (sim.iso8583.mac): algorithm, wire coverage, keys, host policy.

The oracle is ISO/IEC 9797-1 MAC algorithm 3 written out from its definition on
``cryptography``'s DES block primitive (ECB, one block at a time), checked first against
psec's published retail-MAC vector; possim's MAC must agree with it, and with pyemv's
independent implementation, for any message and key.
"""

from __future__ import annotations

import copy
from datetime import datetime

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv.mac import mac_iso9797_3

from sim.core.host import Host
from sim.iso8583.dialect import BUILTIN, DEFAULT, Dialect
from sim.iso8583.errors import DialectError
from sim.iso8583.mac import (
    TEST_MAC_KEY,
    MacKeys,
    MacResult,
    compute_mac,
    key_check_value,
    mac_input,
    sign,
    verify,
    wire_mac_input,
)
from sim.iso8583.message import Message, network_request, parse
from sim.iso8583.samples import sample_sale

from tests.strategies import message_fields

MAC64 = BUILTIN["iso8583-1987-ascii-mac"]
MAC128 = Dialect("mac-128", DEFAULT.spec, mac_field="128")
_BINARY_SPEC = copy.deepcopy(DEFAULT.spec)
_BINARY_SPEC["64"] = {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "MAC"}
MAC64_BINARY = Dialect("mac-64-binary", _BINARY_SPEC, mac_field="64")
_SHORT_SPEC = copy.deepcopy(DEFAULT.spec)
_SHORT_SPEC["64"] = {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "MAC"}
MAC64_SHORT = Dialect("mac-64-4-bytes", _SHORT_SPEC, mac_field="64")
DIALECTS = [MAC64, MAC128, MAC64_BINARY, MAC64_SHORT]
NOW = datetime(2026, 11, 22, 10, 30)
keys16 = st.binary(min_size=16, max_size=16)


# The oracle ----------------------------------------------------------------------------


def _block(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(TripleDES(key), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def oracle_retail_mac(key1: bytes, key2: bytes, data: bytes, size: int = 8) -> bytes:
    """ISO/IEC 9797-1 algorithm 3, padding method 1, from the definition."""
    padded = data + bytes(-len(data) % 8) if data else bytes(8)
    state = bytes(8)
    for i in range(0, len(padded), 8):
        state = _block(key1, bytes(a ^ b for a, b in zip(state, padded[i : i + 8])))
    return _block(key1, _block(key2, state, decrypt=True))[:size]


def test_oracle_reproduces_psecs_published_retail_mac_vector() -> None:
    # psec.mac.generate_retail_mac docstring: padding method 2 of this one block is 8 bytes 80 00 ... 00
    key1 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    key2 = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
    data = bytes.fromhex("1234567890ABCDEF") + bytes.fromhex("8000000000000000")
    assert oracle_retail_mac(key1, key2, data).hex().upper() == "644AA5C915DBDAF8"


def test_test_key_check_value_matches_the_documented_one() -> None:
    assert key_check_value(TEST_MAC_KEY) == "C2D3"
    assert _block(TEST_MAC_KEY, bytes(8))[:2].hex().upper() == "C2D3"


# The algorithm over the wire ---------------------------------------------------------------


def _cut(raw: bytes, value: str) -> bytes:
    """``raw`` without the one occurrence of the MAC's encoded value (found, not computed)."""
    needle = value.encode()
    assert raw.count(needle) == 1, "the MAC's characters must occur once in the frame"
    return raw.replace(needle, b"", 1)


@settings(max_examples=60, deadline=None)
@given(fields=message_fields(), key=keys16)
def test_mac_is_retail_mac_of_the_frame_without_its_mac_field(fields: dict[str, str], key: bytes) -> None:
    signed = sign(Message(fields), MAC64, key)
    raw = signed.encode(MAC64)
    covered = _cut(raw, signed.fields["64"])
    assert mac_input(signed.fields, MAC64) == covered == wire_mac_input(raw, MAC64)
    expected = oracle_retail_mac(key[:8], key[8:], covered)
    assert signed.fields["64"] == expected.hex().upper()
    assert signed.fields["64"] == mac_iso9797_3(key[:8], key[8:], covered, 1).hex().upper()


def test_binary_and_short_mac_fields() -> None:
    msg = sample_sale()
    signed = sign(msg, MAC64_BINARY)
    raw = signed.encode(MAC64_BINARY)
    mac = bytes.fromhex(signed.fields["64"])
    assert raw.count(mac) == 1
    assert mac == oracle_retail_mac(TEST_MAC_KEY[:8], TEST_MAC_KEY[8:], raw.replace(mac, b"", 1))
    short = sign(msg, MAC64_SHORT)
    assert len(short.fields["64"]) == 8
    raw = short.encode(MAC64_SHORT)
    covered = raw.replace(short.fields["64"].encode(), b"", 1)
    assert short.fields["64"] == oracle_retail_mac(TEST_MAC_KEY[:8], TEST_MAC_KEY[8:], covered, 4).hex().upper()
    assert verify(parse(raw, MAC64_SHORT), MAC64_SHORT, TEST_MAC_KEY, raw=raw) is MacResult.VALID


def test_de128_mac_sits_after_the_secondary_fields() -> None:
    echo = network_request("301", stan=7, transmitted="1122103000", terminal_id="TERM0001")
    signed = sign(echo, MAC128)
    raw = signed.encode(MAC128)
    assert raw.endswith(signed.fields["128"].encode())
    assert signed.fields["128"] == oracle_retail_mac(TEST_MAC_KEY[:8], TEST_MAC_KEY[8:], raw[:-16]).hex().upper()
    assert verify(parse(raw, MAC128), MAC128, TEST_MAC_KEY, raw=raw) is MacResult.VALID


@settings(max_examples=150, deadline=None)
@given(fields=message_fields(), data=st.data())
def test_any_single_bit_change_of_the_frame_breaks_the_mac(fields: dict[str, str], data: st.DataObject) -> None:
    dialect = data.draw(st.sampled_from(DIALECTS))
    raw = sign(Message(fields), dialect).encode(dialect)
    at = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    changed = bytearray(raw)
    changed[at] ^= 1 << bit
    changed = bytes(changed)
    try:
        received = Message(dialect.decode(changed))
    except Exception:  # noqa: BLE001 - a frame that no longer decodes is rejected before any MAC check
        return
    assert verify(received, dialect, TEST_MAC_KEY, raw=changed) is not MacResult.VALID
    # and the host, given that frame, never answers anything but 63 (or drops it)
    answer = Host().receive(changed, NOW, dialect)
    if answer is not None:
        assert dialect.decode(answer)["39"] == "63"


@settings(max_examples=40, deadline=None)
@given(fields=message_fields(), key=keys16, other=keys16)
def test_a_frame_verifies_with_its_key_and_not_with_another(fields: dict[str, str], key: bytes, other: bytes) -> None:
    raw = sign(Message(fields), MAC64, key).encode(MAC64)
    msg = parse(raw, MAC64)
    assert verify(msg, MAC64, key, raw=raw) is MacResult.VALID
    assert verify(msg, MAC64, key) is MacResult.VALID
    if other[:8] != key[:8] or other[8:] != key[8:]:
        assert verify(msg, MAC64, other, raw=raw) is MacResult.MISMATCH


def test_verify_reports_missing_malformed_and_keyless() -> None:
    msg = sample_sale()
    assert verify(msg, MAC64, TEST_MAC_KEY) is MacResult.MISSING
    assert verify(msg.replace(DE64="XYZ"), MAC64, TEST_MAC_KEY) is MacResult.MALFORMED
    assert verify(msg.replace(DE64="abcdef0123456789"), MAC64, TEST_MAC_KEY) is MacResult.MALFORMED  # lower case
    signed = sign(msg, MAC64)
    assert verify(signed, MAC64, None) is MacResult.NO_KEY
    assert verify(signed, MAC64, TEST_MAC_KEY, raw=b"garbage") is MacResult.UNENCODABLE


def test_sign_leaves_messages_of_dialects_without_mac_alone() -> None:
    msg = sample_sale()
    assert sign(msg, DEFAULT) is msg
    with pytest.raises(DialectError, match="does not MAC"):
        verify(msg, DEFAULT, TEST_MAC_KEY)


def test_a_mac_field_too_small_is_refused_naming_it() -> None:
    spec = copy.deepcopy(DEFAULT.spec)
    spec["64"] = {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": "MAC"}
    with pytest.raises(DialectError, match="field 64 holds a 2-byte MAC; allowed: 4..8"):
        compute_mac({"t": "0800"}, Dialect("tiny", spec, mac_field="64"))


# Keys -----------------------------------------------------------------------------------------


def test_mac_keys_by_terminal_with_default_and_errors() -> None:
    own = "00112233445566778899AABBCCDDEEFF"
    keys = MacKeys.from_config({"keys": {"TERM0002": own}})
    assert keys.key_for("TERM0002") == bytes.fromhex(own)
    assert keys.key_for("TERM0001") == TEST_MAC_KEY
    assert MacKeys.from_config({"default_key": ""}).key_for("TERM0001") is None
    with pytest.raises(ValueError, match=r"\[mac\] has unknown keys \['key'\]; allowed: keys, default_key"):
        MacKeys.from_config({"key": own})
    with pytest.raises(ValueError, match="MAC key for terminal 'T9' is 'zz'"):
        MacKeys({"T9": "zz"})
    with pytest.raises(ValueError, match="MAC key for the default is 'short'"):
        MacKeys(default="short")


# The host's policy ------------------------------------------------------------------------------


def _echo(stan: int = 1, tid: str = "TERM0001") -> Message:
    return network_request("301", stan=stan, transmitted="1122103000", terminal_id=tid)


def test_host_answers_a_good_mac_normally_and_signs_the_answer() -> None:
    host = Host()
    raw = host.receive(sign(_echo(), MAC64).encode(MAC64), NOW, MAC64)
    assert raw is not None
    answer = parse(raw, MAC64)
    assert answer.response_code == "00"
    assert verify(answer, MAC64, TEST_MAC_KEY, raw=raw) is MacResult.VALID


def test_host_uses_the_terminals_own_key() -> None:
    own = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    host = Host({"mac": {"keys": {"TERM0002": own.hex()}}})
    assert parse(host.receive(sign(_echo(1, "TERM0002"), MAC64, own).encode(MAC64), NOW, MAC64), MAC64).response_code == "00"
    raw = host.receive(sign(_echo(2, "TERM0002"), MAC64).encode(MAC64), NOW, MAC64)  # signed with the default key
    answer = parse(raw, MAC64)
    assert answer.response_code == "63"
    assert verify(answer, MAC64, own, raw=raw) is MacResult.VALID
    assert host.acquirer.decisions[-1].reason.startswith("security violation: MAC does not verify")


def test_host_without_a_key_for_the_terminal_refuses_it_and_answers_unsigned() -> None:
    host = Host({"mac": {"default_key": ""}})
    raw = host.receive(sign(_echo(), MAC64).encode(MAC64), NOW, MAC64)
    fields = MAC64.decode(raw)
    assert fields["39"] == "63" and "64" not in fields
    assert "no MAC key for this terminal" in host.acquirer.decisions[-1].reason


def test_host_handle_with_the_dialect_checks_the_mac_without_bytes() -> None:
    host = Host()
    assert host.handle(sign(_echo(), MAC64), NOW, MAC64).response_code == "00"
    assert host.handle(_echo(2), NOW, MAC64).response_code == "63"
    assert host.handle(_echo(3), NOW).response_code == "00"  # no dialect: in-process, nothing to authenticate


def test_a_repeat_differing_only_in_track_data_gets_the_first_answer_on_a_mac_dialect() -> None:
    # REV-03: the duplicate check ignores track and PIN data, so it must ignore the MAC that covers them.
    host = Host()
    first = sample_sale()
    again = first.replace(**{"35": first.fields["35"][:-4] + "0000"})
    answers = [parse(host.receive(sign(m, MAC64).encode(MAC64), NOW, MAC64) or b"", MAC64) for m in (first, again)]
    assert answers[0].response_code != "94"
    assert [a.response_code for a in answers] == [answers[0].response_code] * 2
