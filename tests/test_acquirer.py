"""Acquirer: BIN routing, availability and stand-in, network management, format errors, batches."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

import pytest

from sim.core.acquirer import Acquirer, IssuerTimeout, Outage, RoutedIssuer, bin_match
from sim.core.settlement import Totals
from sim.iso8583.message import (
    Message,
    advice,
    financial_request,
    network_request,
    reconciliation_request,
    repeat,
    response,
    reversal,
)

VISA = "4761739001010010"
OTHER_VISA = "4000001234567899"
MASTERCARD = "5413330089010012"
NOBODY = "6011000990139424"
T0 = datetime(2026, 11, 22, 10, 0, 0)


class FakeIssuer:
    """An issuer double: approves (or answers ``code``), books each key once, can lose answers."""

    def __init__(self, name: str, bins: list[str], code: str = "00") -> None:
        self.name = name
        self.bins = bins
        self.code = code
        self.received: list[Message] = []
        self.booked: dict[tuple[str, str, str], int] = {}
        self.lose_answers = 0
        self.lose_requests = 0
        self.raise_error: Exception | None = None

    def bin_match(self, pan: str) -> int:
        return bin_match(pan, self.bins)

    def handle(self, msg: Message, now: datetime) -> Message:
        if self.lose_requests:
            self.lose_requests -= 1
            raise IssuerTimeout()
        if self.raise_error is not None:
            raise self.raise_error
        self.received.append(msg)
        mti = msg.original_mti
        key = (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")
        if mti in ("0100", "0200"):
            answer = response(msg, self.code, auth_code="ISS001" if self.code == "00" else None)
            if self.code == "00":
                self.booked.setdefault(key, msg.amount or 0)
        elif mti in ("0120", "0220"):
            self.booked.setdefault(key, msg.amount or 0)
            answer = response(msg, "00")
        else:
            original = msg.original
            assert original is not None
            self.booked.pop((key[0], original.stan, original.transmitted), None)
            answer = response(msg, "00")
        if self.lose_answers:
            self.lose_answers -= 1
            raise IssuerTimeout()
        return answer


def sale(pan: str = VISA, amount: int = 1000, stan: int = 1, *, tid: str = "TERM0001", mti: str = "0200",
         pin: bool = False, currency: str = "978") -> Message:
    return financial_request(
        pan=pan, amount=amount, currency=currency, stan=stan, transmitted="1122100000", terminal_id=tid,
        entry_mode="012", pin_block="0123456789ABCDEF" if pin else None,
    ).replace(t=mti)


def offline_advice(pan: str = VISA, amount: int = 300, stan: int = 50, tid: str = "TERM0001") -> Message:
    return advice(response_code="Y1", pan=pan, amount=amount, currency="978", stan=stan,
                  transmitted="1122100500", terminal_id=tid, entry_mode="051", icc={"9F26": bytes(8)})


def make(config: dict | None = None, **codes: str) -> tuple[Acquirer, FakeIssuer, FakeIssuer, FakeIssuer]:
    broad = FakeIssuer("broad", ["4"], codes.get("broad", "00"))
    narrow = FakeIssuer("narrow", ["476173"], codes.get("narrow", "00"))
    master = FakeIssuer("master", ["51-55"], codes.get("master", "00"))
    cfg = {"standin": {"limits": {"EUR": 5000}}}
    cfg.update(config or {})
    return Acquirer([broad, narrow, master], cfg), broad, narrow, master


def test_routes_by_longest_bin_prefix() -> None:
    acq, broad, narrow, master = make()
    assert acq.handle(sale(VISA), T0).response_code == "00"
    assert acq.handle(sale(OTHER_VISA, stan=2), T0).response_code == "00"
    assert acq.handle(sale(MASTERCARD, stan=3), T0).response_code == "00"
    assert [m.stan for m in narrow.received] == ["000001"]
    assert [m.stan for m in broad.received] == ["000002"]
    assert [m.stan for m in master.received] == ["000003"]
    assert [d.issuer for d in acq.decisions] == ["narrow", "broad", "master"]


def test_unknown_bin_answers_15_and_reaches_no_issuer() -> None:
    acq, broad, narrow, master = make()
    answer = acq.handle(sale(NOBODY), T0)
    assert (answer.mti, answer.response_code) == ("0210", "15")
    assert not (broad.received or narrow.received or master.received)
    assert acq.decisions[-1].route == "acquirer" and acq.decisions[-1].reason == "no issuer serves this BIN"


def test_bin_ranges_and_the_routed_issuer_adapter() -> None:
    assert bin_match("5413330089010012", ["51-55"]) == 1
    assert bin_match("5413330089010012", ["541300-541399", "5"]) == 4
    assert bin_match("5613330089010012", ["51-55"]) == 0
    with pytest.raises(ValueError, match="'55-51'"):
        bin_match("5", ["55-51"])

    class PlainIssuer:  # offers only handle(), as an issuer loaded from data may
        def handle(self, msg: Message, now: datetime) -> Message:
            return response(msg, "05")

    routed = RoutedIssuer(PlainIssuer(), ["6011"], name="discover-test")
    acq = Acquirer([routed])
    assert acq.handle(sale(NOBODY), T0).response_code == "05"
    with pytest.raises(ValueError, match="name="):
        RoutedIssuer(PlainIssuer(), ["6011"])
    with pytest.raises(ValueError, match="'60x1'"):
        RoutedIssuer(PlainIssuer(), ["60x1"], name="x")
    with pytest.raises(TypeError, match="bin_match"):
        Acquirer([PlainIssuer()])  # type: ignore[list-item]


def test_echo_sign_on_and_sign_off() -> None:
    acq, *_ = make()
    for code in ("301", "001", "002"):
        answer = acq.handle(network_request(code, stan=7, transmitted="1122095900", terminal_id="TERM0001"), T0)
        assert (answer.mti, answer.response_code, answer.network_code, answer.stan) == ("0810", "00", code, "000007")
    assert acq.terminal_state("TERM0001") == "signed-off"
    assert acq.handle(network_request("301", stan=8, transmitted="1122095900"), T0).response_code == "00"


def test_signed_off_terminal_is_refused_requests_but_not_advices_or_reversals() -> None:
    acq, _, narrow, _ = make()
    acq.handle(network_request("002", stan=1, transmitted="1122095900", terminal_id="TERM0001"), T0)
    refused = acq.handle(sale(stan=2), T0)
    assert refused.response_code == "91" and acq.decisions[-1].reason == "terminal signed off"
    assert narrow.received == []
    assert acq.handle(sale(stan=2, tid="TERM0002"), T0).response_code == "00"  # other terminals unaffected
    assert acq.handle(offline_advice(), T0).response_code == "00"
    assert acq.handle(reversal(sale(stan=2, tid="TERM0002"), stan=3, transmitted="1122100100"), T0).response_code == "00"
    acq.handle(network_request("001", stan=4, transmitted="1122095900", terminal_id="TERM0001"), T0)
    assert acq.handle(sale(stan=5), T0).response_code == "00"


def test_sign_on_can_be_required_and_the_refusal_code_chosen() -> None:
    acq, *_ = make({"require_sign_on": True, "signed_off_code": "96"})
    assert acq.handle(sale(), T0).response_code == "96"
    acq.handle(network_request("001", stan=2, transmitted="1122095900", terminal_id="TERM0001"), T0)
    assert acq.handle(sale(stan=3), T0).response_code == "00"


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: Message({k: v for k, v in sale().fields.items() if k != "4"}), "DE4"),
        (lambda: sale().replace(DE4="00000000001X"), "DE4"),
        (lambda: sale().replace(DE22="051", DE55="9F2608AABB"), "DE55"),
        (lambda: sale().replace(DE2="47617390010100X0"), "DE2"),
        (lambda: sale().replace(t="0300"), "0300"),
        (lambda: response(sale(), "00", auth_code="123456"), "0210"),
        (lambda: Message({"t": "0200", "4": "000000000100"}), "DE3"),
        (lambda: Message({"t": "0800", "7": "1122100000", "11": "000001", "70": "001"}), "DE41"),
        (lambda: Message({"x": "y"}), "None"),
    ],
)
def test_format_errors_are_answered_30_never_raised(build: Callable[[], Message], field: str) -> None:
    acq, broad, narrow, master = make()
    answer = acq.handle(build(), T0)
    assert answer.response_code == "30"
    decision = acq.decisions[-1]
    assert decision.route == "acquirer" and decision.reason.startswith("format error") and field in decision.reason
    assert VISA not in decision.reason and "47617390010100X0" not in repr(decision)
    assert not (broad.received or narrow.received or master.received)


def test_format_error_answers_echo_the_matching_key() -> None:
    acq, *_ = make()
    answer = acq.handle(sale(stan=42).replace(DE4="12AB"), T0)
    assert (answer.mti, answer.stan, answer.terminal_id) == ("0210", "000042", "TERM0001")


def test_issuer_refusing_a_malformed_message_is_a_format_error() -> None:
    from sim.iso8583.errors import MessageError

    acq, _, narrow, _ = make()
    narrow.raise_error = MessageError("DE55 tag 9F26 has length 7; allowed: 8", field="55")
    assert acq.handle(sale(), T0).response_code == "30"


def test_issuer_down_stand_in_approves_below_limit_and_answers_91_above() -> None:
    acq, _, narrow, _ = make()
    acq.set_available("narrow", False, T0)
    low = acq.handle(sale(amount=4999, stan=1), T0)
    high = acq.handle(sale(amount=5000, stan=2), T0)
    assert low.response_code == "00" and low.auth_code and low.auth_code.startswith("ST")
    assert high.response_code == "91"
    first, second = list(acq.decisions)[-2:]
    assert first.stand_in and first.route == "standin" and "issuer unavailable" in first.reason
    assert second.stand_in and "not below stand-in limit 5000" in second.reason
    assert narrow.received == []
    delivered = acq.set_available("narrow", True, T0 + timedelta(minutes=5))
    assert [(d.mti, d.stan, d.outcome) for d in delivered] == [("0220", "000001", "acknowledged")]
    assert narrow.received[0].auth_code == low.auth_code and narrow.booked == {("TERM0001", "000001", "1122100000"): 4999}
    assert acq.set_available("narrow", True, T0 + timedelta(minutes=6)) == []  # exactly once
    assert acq.deliver_advices(T0 + timedelta(minutes=7)) == []


def test_fault_schedule_outage_and_advices_before_the_next_request() -> None:
    start = T0 + timedelta(minutes=1)
    window = {"issuer": "narrow", "start": start.isoformat(), "end": start + timedelta(minutes=10)}
    acq, _, narrow, _ = make({"outages": [window]})
    assert acq.handle(sale(stan=1), T0).auth_code == "ISS001"
    assert acq.handle(sale(stan=2), start).auth_code.startswith("ST")  # type: ignore[union-attr]
    assert not acq.available("narrow", start + timedelta(minutes=9)) and acq.available("broad", start)
    acq.handle(sale(stan=3), start + timedelta(minutes=10))
    assert [(m.mti, m.stan) for m in narrow.received] == [("0200", "000001"), ("0220", "000002"), ("0200", "000003")]
    extra = acq.schedule_outage("broad", T0, T0 + timedelta(seconds=1))
    assert extra == Outage("broad", T0, T0 + timedelta(seconds=1))


def test_issuer_timeout_or_91_makes_stand_in_decide() -> None:
    acq, _, narrow, _ = make()
    narrow.lose_answers = 1  # the issuer books, its answer is lost
    answer = acq.handle(sale(stan=1), T0)
    assert answer.auth_code.startswith("ST") and "issuer timed out" in acq.decisions[-1].reason  # type: ignore[union-attr]
    acq.handle(sale(stan=2), T0)  # up again: the advice goes first, the issuer books it once
    assert [m.mti for m in narrow.received] == ["0200", "0220", "0200"]
    assert narrow.booked[("TERM0001", "000001", "1122100000")] == 1000
    acq91, *_ = make(broad="91")
    assert acq91.handle(sale(OTHER_VISA), T0).auth_code.startswith("ST")  # type: ignore[union-attr]
    assert "issuer answered 91" in acq91.decisions[-1].reason


def test_repeated_request_gets_the_same_stand_in_answer_and_one_advice() -> None:
    acq, _, narrow, _ = make()
    acq.set_available("narrow", False, T0)
    first = acq.handle(sale(), T0)
    acq.set_available("narrow", True, T0)
    again = acq.handle(sale(), T0)  # the terminal never got the first answer
    assert again == first
    assert [m.mti for m in narrow.received] == ["0220"]


def test_advices_are_queued_while_the_issuer_is_down_and_sent_once() -> None:
    acq, _, narrow, _ = make()
    acq.set_available("narrow", False, T0)
    adv = offline_advice()
    assert acq.handle(adv, T0).response_code == "00"
    assert acq.handle(repeat(adv), T0).response_code == "00"  # the terminal repeats: still one owed
    assert acq.decisions[-1].route == "queued"
    assert [q.mti for q in acq.standin.queued("narrow")] == ["0220"]
    narrow.lose_answers = 1
    lost = acq.set_available("narrow", True, T0)
    assert [d.outcome for d in lost] == ["no answer"]
    done = acq.deliver_advices(T0 + timedelta(seconds=30))
    assert [(d.mti, d.outcome) for d in done] == [("0221", "acknowledged")]
    assert [m.mti for m in narrow.received] == ["0220", "0221"] and len(narrow.booked) == 1
    assert acq.settlement.totals("TERM0001", "978") == Totals(debits_count=1, debits_amount=300)


def test_reversal_routes_to_the_original_issuer_and_queues_behind_its_advice() -> None:
    acq, _, narrow, _ = make()
    acq.set_available("narrow", False, T0)
    original = sale(stan=1)
    acq.handle(original, T0)
    rev = reversal(original, stan=2, transmitted="1122100100", reason="68")
    rev = rev.replace(DE2=None)  # no PAN: routed through DE90
    answer = acq.handle(rev, T0)
    assert (answer.mti, answer.response_code) == ("0410", "00") and acq.decisions[-1].route == "queued"
    assert [q.mti for q in acq.standin.queued("narrow")] == ["0220", "0420"]
    acq.set_available("narrow", True, T0)
    assert [m.mti for m in narrow.received] == ["0220", "0420"] and narrow.booked == {}
    assert acq.settlement.totals("TERM0001", "978") == Totals()


def test_reversal_while_up_goes_to_the_issuer_and_nets_the_batch() -> None:
    acq, _, narrow, _ = make()
    original = sale(stan=1)
    acq.handle(original, T0)
    assert acq.handle(reversal(original, stan=2, transmitted="1122100100"), T0).response_code == "00"
    assert [m.mti for m in narrow.received] == ["0200", "0400"]
    assert acq.settlement.totals("TERM0001", "978") == Totals()


def test_reversal_of_an_original_nobody_saw_is_acknowledged() -> None:
    acq, *_ = make()
    rev = reversal(sale(stan=1), stan=2, transmitted="1122100100").replace(DE2=None)
    assert acq.handle(rev, T0).response_code == "00"
    assert acq.decisions[-1].reason == "original not found; nothing to release"


def test_batches_and_reconciliation_through_the_acquirer() -> None:
    acq, *_ = make(narrow="51")
    acq.handle(sale(OTHER_VISA, 700, stan=1), T0)
    acq.handle(sale(VISA, 900, stan=2), T0)  # declined 51: not in the batch
    acq.handle(offline_advice(OTHER_VISA, 300, stan=3), T0)
    eod = reconciliation_request(terminal_id="TERM0001", stan=4, transmitted="1122180000", currency="978",
                                 credits_count=0, credits_amount=0, debits_count=2, debits_amount=1000)
    assert acq.handle(eod, T0 + timedelta(hours=8)).response_code == "00"
    wrong = eod.replace(DE88="0000000000000001")
    assert acq.handle(wrong, T0 + timedelta(hours=8)).response_code == "95"
    assert acq.decisions[-1].reason == "totals differ; batch upload expected"


def test_decision_records_mask_pans_and_reach_the_callback() -> None:
    seen = []
    acq = Acquirer([FakeIssuer("narrow", ["476173"])], on_decision=seen.append)
    acq.handle(sale(pin=True), T0)
    assert seen == list(acq.decisions) and seen[0].pan == "476173******0010"
    assert VISA not in repr(seen) and VISA not in repr(acq.deliveries)


def test_config_errors_name_the_key_or_value() -> None:
    issuer = FakeIssuer("narrow", ["476173"])
    with pytest.raises(ValueError, match="'outage'"):
        Acquirer([issuer], {"outage": []})
    with pytest.raises(ValueError, match="'ghost'"):
        Acquirer([issuer], {"outages": [{"issuer": "ghost", "start": T0, "end": T0 + timedelta(1)}]})
    with pytest.raises(ValueError, match="end"):
        Acquirer([issuer], {"outages": [{"issuer": "narrow", "start": T0, "end": T0}]})
    with pytest.raises(ValueError, match="start"):
        Acquirer([issuer], {"outages": [{"issuer": "narrow", "start": "yesterday", "end": T0}]})
    with pytest.raises(ValueError, match="already registered"):
        Acquirer([issuer, FakeIssuer("narrow", ["4"])])
    with pytest.raises(ValueError, match="'nobody'"):
        Acquirer([issuer]).set_available("nobody", False, T0)


def test_repeated_request_gets_the_first_answer_even_after_the_issuer_goes_down() -> None:
    """REV-03 at the acquirer: an issuer approval is replayed, not replaced by a stand-in approval."""
    from datetime import datetime, timedelta

    from sim.core.host import Host
    from sim.iso8583.samples import sample_sale

    host = Host()
    now = datetime(2026, 11, 22, 10, 30)
    sale = sample_sale(stan=77).replace(DE22="012", DE55=None, DE35=None)
    first = host.handle(sale, now)
    assert first.response_code == "00"
    host.set_issuer_available("possim-visa-test", False, now)
    again = host.handle(sale, now + timedelta(seconds=30))
    assert (again.response_code, again.auth_code) == ("00", first.auth_code)
    other = host.handle(sale.replace(DE4="000000009999"), now + timedelta(seconds=40))
    assert other.response_code == "94"
    host.set_issuer_available("possim-visa-test", True, now + timedelta(minutes=1))
    assert host.balance(sale.pan) == host.cards.card("healthy").balance - 2500


def test_repeat_of_a_chip_request_with_track_data_in_de55_is_replayed_and_other_chip_data_is_a_duplicate() -> None:
    """REV-03 with DE55 holding track tags (57): what the window remembers leaves them out, and
    still tells a true repeat (same chip data, other track tags) from other chip data (94)."""
    from sim.core.host import Host
    from sim.emv import tlv
    from sim.iso8583.samples import sample_sale

    host = Host()
    now = datetime(2026, 11, 22, 10, 30)
    sale = sample_sale(stan=78)
    objects = tlv.decode(bytes.fromhex(sale.fields["55"]))
    with_track = dict(objects, **{"57": bytes.fromhex("4761739001010010D28122011234567899")})
    first_msg = sale.replace(DE55=tlv.encode(with_track).hex().upper())
    first = host.handle(first_msg, now)
    other_track = dict(objects, **{"57": bytes.fromhex("4761739001010010D28122019999999999")})
    again = host.handle(sale.replace(DE55=tlv.encode(other_track).hex().upper()), now + timedelta(seconds=20))
    assert (again.response_code, again.auth_code) == (first.response_code, first.auth_code)
    assert host.acquirer.decisions[-1].reason.startswith("duplicate request: original answer replayed")
    changed = dict(with_track, **{"9F36": b"\x00\x99"})
    other = host.handle(sale.replace(DE55=tlv.encode(changed).hex().upper()), now + timedelta(seconds=30))
    assert other.response_code == "94"
