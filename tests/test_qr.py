"""QR wallet payments (OFF-09): the consumer-presented QR code and the kernel's online-only path."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, strategies as st

from sim.emv import tlv
from sim.emv.kernel import Cancelled, NeedOnline, Outcome, ScanQr, TerminalConfig, TransactionResult, run_transaction
from sim.emv.qr import PAYLOAD_FORMAT, QrError, parse_wallet_qr, wallet_qr

from tests.test_kernel_helpers import CARDS, Recorder, config, timeout, txn, unreachable, virtual


def run_qr(profile: str, label: str, host, amount: int, **kw) -> TransactionResult:
    """A QR wallet payment of ``amount`` EUR with the wallet holding card ``label``."""
    return run_transaction(txn(config(profile), amount, payment_method="qr"), virtual(label), host, **kw)


def _qr(objects: dict) -> str:
    return base64.b64encode(tlv.encode(objects)).decode()


@given(
    pan=st.text("0123456789", min_size=12, max_size=19),
    expiry=st.from_regex(r"\A[0-9]{2}(0[1-9]|1[0-2])\Z"),
    psn=st.none() | st.from_regex(r"\A[0-9]{2}\Z"),
)
def test_wallet_qr_round_trips(pan: str, expiry: str, psn: str | None) -> None:
    payment = parse_wallet_qr(wallet_qr(pan=pan, expiry=expiry, psn=psn, aid="A0000000041010", label="MC"))
    assert (payment.pan, payment.expiry, payment.psn, payment.aid, payment.label) == (pan, expiry, psn, "A0000000041010", "MC")
    assert pan not in repr(payment) or len(pan) < 13


def test_track2_equivalent_data_is_read_too() -> None:
    text = _qr({"85": PAYLOAD_FORMAT, "61": {"4F": bytes.fromhex("A0000000031010"),
                                            "57": bytes.fromhex("4761739001010010D28122010000000F")}})
    payment = parse_wallet_qr(text)
    assert (payment.pan, payment.expiry) == ("4761739001010010", "2812")


@pytest.mark.parametrize(
    "text,words",
    [
        ("%%%", "not Base64"),
        (base64.b64encode(b"\x9f").decode(), "not BER-TLV"),
        (_qr({"85": b"CPV02", "61": {"5A": bytes.fromhex("4761739001010010")}}), "payload format"),
        (_qr({"85": PAYLOAD_FORMAT}), "no application template"),
        (_qr({"85": PAYLOAD_FORMAT, "61": {"4F": bytes.fromhex("A0000000031010")}}), "no valid PAN"),
    ],
)
def test_bad_codes_are_refused_with_the_reason(text: str, words: str) -> None:
    with pytest.raises(QrError, match=words):
        parse_wallet_qr(text)


def test_qr_payment_goes_online_with_entry_mode_03_and_no_chip_or_track_data() -> None:
    host = Recorder()
    trace: list = []
    result = run_qr("mobile-3g", "healthy", host, 1000, trace=trace)
    assert [type(event) for event, _ in trace][:2] == [ScanQr, NeedOnline]
    assert result.approved and result.arc == "00" and result.entry_mode == "031" and result.interface == "qr"
    request = host.requests[0]
    assert request.pan == CARDS.card("healthy").pan and request.fields["14"] == "2812"
    assert "35" not in request.fields and "55" not in request.fields and result.cryptogram is None


def test_qr_payment_with_the_host_unreachable_is_declined_saying_why() -> None:
    result = run_qr("mobile-3g", "offline-only-iac", unreachable, 1000)
    assert result.declined and result.arc is None and result.pending == () and result.messages == ()
    assert "QR wallet payments are online only" in result.reason


def test_qr_payment_that_times_out_owes_a_reversal() -> None:
    result = run_qr("mobile-3g", "healthy", timeout, 1000)
    assert result.declined and result.pending_mtis == ("0400",) and "online only" in result.reason


def test_terminal_without_a_scanner_declines_qr() -> None:
    result = run_qr("countertop-ethernet", "healthy", Recorder(), 1000)
    assert result.declined and "scanner" in result.reason and result.messages == ()


def test_unreadable_codes_are_scanned_again_then_given_up() -> None:
    t = txn(config("mobile-3g"), 1000, payment_method="qr")
    event = t.next_event()
    for _ in range(6):
        assert isinstance(event, ScanQr)
        event = t.send("garbage")
    assert t.result is not None and t.result.terminated and "not Base64" in t.result.reason


def test_cancelled_scan_terminates() -> None:
    t = txn(config("mobile-3g"), 1000, payment_method="qr")
    t.next_event()
    done = t.send(Cancelled("customer left"))
    assert done.result.outcome is Outcome.TERMINATED and "customer left" in done.result.reason


def test_unknown_payment_method_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed: card, qr"):
        txn(TerminalConfig(), 1000, payment_method="cheque")


def test_mobile_profile_has_a_scanner_and_the_countertop_has_none() -> None:
    assert "qr" in config("mobile-3g").readers and "qr" not in config("countertop-ethernet").readers
