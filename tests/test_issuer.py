"""The issuer: every response code path, advices, reversals, duplicates, currencies, and a model check."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sim.core.cards import load_cards
from sim.core.crypto import (
    ArqcResult,
    PinResult,
    chip_data,
    encrypt_pin_block,
    icc_master_key,
    verify_arpc,
)
from sim.core.issuer import CHECK_ORDER, Check, Issuer, IssuerError, build_issuers, route
from sim.core.ledger import Kind, Outcome
from sim.iso8583 import (
    Message,
    advice,
    authorization_request,
    financial_request,
    network_request,
    parse,
    repeat,
    reversal,
)

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

CARDS = load_cards()
NOW = datetime(2026, 3, 15, 10, 30, 0)


class Terminal:
    """Builds requests the way a terminal would: increasing STANs, DE7 from ``now``."""

    def __init__(self, tid: str = "TERM0001") -> None:
        self.tid = tid
        self.stan = 0

    def next_stan(self) -> int:
        self.stan += 1
        return self.stan

    def sale(
        self,
        label: str,
        amount: int,
        now: datetime = NOW,
        *,
        mti: str = "0200",
        chip: bool = True,
        pin: str | None = None,
        processing_code: str = "000000",
        currency: str | None = None,
        icc_amount: int | None = None,
        pan: str | None = None,
        expiry: str | None = None,
    ) -> Message:
        card = CARDS.card(label)
        issuer = CARDS.issuer(card.issuer)
        stan = self.next_stan()
        cur = currency or card.currency_info.numeric
        common = dict(
            amount=amount, currency=cur, stan=stan, transmitted=now, terminal_id=self.tid,
            processing_code=processing_code, pan_sequence="0" + card.psn,
        )
        if pin is not None:
            common["pin_block"] = encrypt_pin_block(pin, card.pan)
        if chip and card.chip:
            icc = chip_data(issuer, card, amount=amount if icc_amount is None else icc_amount, currency=cur,
                            country=issuer.country, date=now, un=stan.to_bytes(4, "big"), atc=stan % 0x10000)
            fields = dict(pan=pan or card.pan, entry_mode="051", expiry=expiry or card.expiry, icc=icc)
        else:
            fields = dict(track2=card.track2() if pan is None else pan + "D" + card.expiry + "2010000",
                          entry_mode="901")
        build = authorization_request if mti == "0100" else financial_request
        return build(**common, **fields)

    def advice(self, label: str, amount: int, now: datetime = NOW, *, code: str = "Y1", mti: str = "0220",
               processing_code: str = "000000", original: Message | None = None) -> Message:
        card = CARDS.card(label)
        issuer = CARDS.issuer(card.issuer)
        stan = self.next_stan()
        extra = {}
        if original is not None:
            extra["90"] = f"{original.original_mti}{original.stan}{original.transmitted}" + "0" * 22
        icc = chip_data(issuer, card, amount=amount, currency=card.currency_info.numeric, country=issuer.country,
                        date=now, un=stan.to_bytes(4, "big"), atc=stan % 0x10000)
        icc["9F27"] = b"\x40"  # TC: approved offline
        return advice(response_code=code, mti=mti, pan=card.pan, amount=amount, currency=card.currency_info.numeric,
                      stan=stan, transmitted=now, terminal_id=self.tid, entry_mode="051", icc=icc,
                      processing_code=processing_code, expiry=card.expiry, extra=extra or None)

    def reverse(self, original: Message, now: datetime = NOW, *, amount: int | None = None, mti: str = "0400") -> Message:
        return reversal(original, stan=self.next_stan(), transmitted=now, amount=amount, mti=mti, reason="68")


@pytest.fixture
def issuers() -> dict[str, Issuer]:
    return build_issuers(CARDS)


@pytest.fixture
def visa(issuers) -> Issuer:
    return issuers["possim-visa-test"]


@pytest.fixture
def mc(issuers) -> Issuer:
    return issuers["possim-mc-test"]


@pytest.fixture
def term() -> Terminal:
    return Terminal()


def pan(label: str) -> str:
    return CARDS.card(label).pan


# Approvals ------------------------------------------------------------------------------------


def test_chip_sale_approved_with_arpc_and_debited_once(visa: Issuer, term: Terminal) -> None:
    req = term.sale("healthy", 2_500)
    answer = visa.handle(req, NOW)
    assert (answer.mti, answer.response_code, answer.auth_code) == ("0210", "00", "000001")
    card = CARDS.card("healthy")
    tag_91 = answer.icc["91"]
    assert verify_arpc(icc_master_key(CARDS.issuer(card.issuer), card), req.icc["9F26"], tag_91)
    assert tag_91[8:] == b"00"
    assert visa.balance(card.pan) == 1_000_000 - 2_500 and visa.available(card.pan) == 997_500
    debits = [p for p in visa.ledger.entries() if p.kind is Kind.DEBIT]
    assert len(debits) == 1 and debits[0].amount == 2_500
    decision = visa.last_decision
    assert decision.approved and decision.check is Check.APPROVED and decision.cryptogram.ok
    assert parse(answer.encode()).response_code == "00"  # a valid wire message


def test_auth_codes_come_from_a_counter(visa: Issuer, term: Terminal) -> None:
    codes = [visa.handle(term.sale("healthy", 100, chip=False), NOW).auth_code for _ in range(3)]
    assert codes == ["000001", "000002", "000003"]


def test_mastercard_cvn16_chip_sale(mc: Issuer, term: Terminal) -> None:
    req = term.sale("mc-healthy", 12_345)
    answer = mc.handle(req, NOW)
    assert answer.response_code == "00"
    card = CARDS.card("mc-healthy")
    assert verify_arpc(icc_master_key(CARDS.issuer(card.issuer), card), req.icc["9F26"], answer.icc["91"])
    assert mc.balance(card.pan) == 1_000_000 - 12_345


@pytest.mark.parametrize(
    ("label", "amount", "numeric", "exponent"),
    [("jpy-healthy", 1_000, "392", 0), ("healthy", 1_050, "978", 2), ("mc-healthy", 1_050, "840", 2),
     ("kwd-healthy", 1_234, "414", 3)],
)
def test_currencies_with_exponents_0_2_3(issuers, term: Terminal, label: str, amount: int, numeric: str, exponent: int) -> None:
    card = CARDS.card(label)
    assert card.currency_info.exponent == exponent
    issuer = issuers[card.issuer]
    req = term.sale(label, amount)
    assert req.currency == numeric and req.fields["4"] == f"{amount:012d}"
    answer = issuer.handle(req, NOW)
    assert answer.response_code == "00"
    balance = issuer.balance(card.pan)
    assert type(balance) is int and balance == card.balance - amount
    posting = issuer.ledger.entries()[-1]
    assert posting.currency == card.currency and type(posting.amount) is int and posting.amount == amount


def test_stripe_only_card_is_swiped_and_approved(mc: Issuer, term: Terminal) -> None:
    req = term.sale("magstripe-only", 500, chip=True)  # no chip on the card: the terminal swipes
    assert req.entry_mode == "901" and "35" in req.fields
    assert mc.handle(req, NOW).response_code == "00"
    assert mc.last_decision.cryptogram is None


def test_refund_credits(visa: Issuer, term: Terminal) -> None:
    answer = visa.handle(term.sale("healthy", 700, processing_code="200000"), NOW)
    assert answer.response_code == "00"
    assert visa.balance(pan("healthy")) == 1_000_700
    assert visa.ledger.entries()[-1].kind is Kind.CREDIT


def test_refund_ignores_limits_and_funds(visa: Issuer, term: Terminal) -> None:
    answer = visa.handle(term.sale("low-limits", 50_000, processing_code="200000", chip=False), NOW)
    assert answer.response_code == "00"


def test_network_management(visa: Issuer) -> None:
    echo = network_request("301", stan=1, transmitted=NOW, terminal_id="TERM0001")
    answer = visa.handle(echo, NOW)
    assert (answer.mti, answer.response_code, answer.network_code) == ("0810", "00", "301")


# Declines, in check order ---------------------------------------------------------------------


def _broken(req: Message, **changes: str | None) -> Message:
    fields = dict(req.fields)
    for k, v in changes.items():
        if v is None:
            fields.pop(k, None)
        else:
            fields[k] = v
    return Message(fields)


@pytest.mark.parametrize(
    "changes",
    [
        {"49": None},  # mandatory field missing
        {"4": "00000000AB00"},  # not digits
        {"49": "999"},  # no such currency
        {"55": "9F0206"},  # malformed TLV
        {"52": "XYZ"},  # not a PIN block
        {"14": "2813"},  # not YYMM
        {"3": "00"},  # too short
        {"2": "47617A"},  # not a PAN
        {"2": "4761739"},  # too short a PAN
    ],
)
def test_format_errors_answer_30(visa: Issuer, term: Terminal, changes: dict) -> None:
    req = _broken(term.sale("healthy", 100), **changes)
    answer = visa.handle(req, NOW)
    assert answer.mti == "0210" and answer.response_code == "30"
    assert visa.last_decision.check is Check.FORMAT
    assert visa.balance(pan("healthy")) == 1_000_000


def test_format_error_without_de7_still_answers(visa: Issuer, term: Terminal) -> None:
    req = _broken(term.sale("healthy", 100), **{"7": None, "11": None})
    answer = visa.handle(req, NOW)
    assert answer.response_code == "30" and answer.fields["7"] == "0315103000" and answer.fields["11"] == "000000"


def test_zero_amount_is_13(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("healthy", 0, chip=False), NOW).response_code == "13"


def test_luhn_14_bin_15_unknown_account_14(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("healthy", 100, chip=False, pan="4761739001010011"), NOW).response_code == "14"
    assert visa.last_decision.check is Check.LUHN
    assert visa.handle(term.sale("healthy", 100, chip=False, pan="4000000000000002"), NOW).response_code == "15"
    assert visa.handle(term.sale("healthy", 100, chip=False, pan="5413330089010012"), NOW).response_code == "15"
    assert visa.handle(term.sale("healthy", 100, chip=False, pan="4761730000000003"), NOW).response_code == "14"
    assert visa.last_decision.reason == "no account for this PAN"


@pytest.mark.parametrize(("label", "code", "issuer_id"), [("lost", "41", "possim-visa-test"),
                                                         ("stolen", "43", "possim-mc-test"),
                                                         ("blocked", "57", "possim-mc-test")])
def test_status_declines(issuers, term: Terminal, label: str, code: str, issuer_id: str) -> None:
    issuer = issuers[issuer_id]
    answer = issuer.handle(term.sale(label, 100), NOW)
    assert answer.response_code == code and "55" not in answer.fields  # no ARPC before the cryptogram check
    assert issuer.balance(pan(label)) == 1_000_000


def test_expired_is_54_against_now(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("expired", 100, chip=False), NOW).response_code == "54"
    assert visa.handle(term.sale("expired", 100, chip=False, now=datetime(2023, 12, 31)), datetime(2023, 12, 31)).response_code == "00"
    assert visa.handle(term.sale("healthy", 100, now=datetime(2029, 1, 1)), datetime(2029, 1, 1)).response_code == "54"


def test_presented_expiry_must_match(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("healthy", 100, expiry="2912"), NOW).response_code == "54"


def test_currency_other_than_the_account_is_12(visa: Issuer, term: Terminal) -> None:
    answer = visa.handle(term.sale("healthy", 100, currency="840", chip=False), NOW)
    assert answer.response_code == "12" and visa.last_decision.check is Check.TRANSACTION


def test_unsupported_processing_code_is_12(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("healthy", 100, processing_code="310000", chip=False), NOW).response_code == "12"
    assert visa.handle(term.sale("healthy", 100, processing_code="200000", mti="0100", chip=False), NOW).response_code == "12"


def test_online_pin_55_then_75_on_the_third_wrong(visa: Issuer, term: Terminal) -> None:
    codes = [visa.handle(term.sale("pin-1234", 100, pin="0000"), NOW).response_code for _ in range(3)]
    assert codes == ["55", "55", "75"]
    assert visa.last_decision.pin is PinResult.WRONG
    # blocked: even the right PIN is refused until reset
    assert visa.handle(term.sale("pin-1234", 100, pin="1234"), NOW).response_code == "75"
    visa.reset_pin_tries(pan("pin-1234"))
    assert visa.handle(term.sale("pin-1234", 100, pin="1234"), NOW).response_code == "00"
    assert visa.last_decision.pin is PinResult.CORRECT


def test_a_right_pin_resets_the_count(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("pin-1234", 100, pin="9999"), NOW).response_code == "55"
    assert visa.handle(term.sale("pin-1234", 100, pin="9999"), NOW).response_code == "55"
    assert visa.pin_failures(pan("pin-1234")) == 2
    assert visa.handle(term.sale("pin-1234", 100, pin="1234"), NOW).response_code == "00"
    assert visa.pin_failures(pan("pin-1234")) == 0
    assert visa.handle(term.sale("pin-1234", 100, pin="9999"), NOW).response_code == "55"


def test_pin_under_another_key_is_wrong(visa: Issuer, term: Terminal) -> None:
    req = term.sale("pin-1234", 100)
    bad = _broken(req, **{"52": "0123456789ABCDEF"})
    assert visa.handle(bad, NOW).response_code == "55"


def test_tampered_de55_is_05_without_arpc_and_logged(visa: Issuer, term: Terminal) -> None:
    req = term.sale("healthy", 2_500)
    icc = dict(req.icc)
    icc["9F37"] = bytes(4)
    from sim.emv import tlv

    tampered = _broken(req, **{"55": tlv.encode(icc).hex().upper()})
    answer = visa.handle(tampered, NOW)
    assert answer.response_code == "05" and "55" not in answer.fields
    decision = visa.last_decision
    assert decision.check is Check.CRYPTOGRAM and decision.cryptogram.result is ArqcResult.MISMATCH
    assert "cryptogram failure" in str(decision)
    assert visa.balance(pan("healthy")) == 1_000_000


def test_de4_changed_under_de55_is_05(visa: Issuer, term: Terminal) -> None:
    answer = visa.handle(term.sale("healthy", 2_500, icc_amount=25), NOW)
    assert answer.response_code == "05"
    assert visa.last_decision.cryptogram.result is ArqcResult.AMOUNT_MISMATCH


def test_chip_entry_for_a_stripe_only_card_is_05(mc: Issuer, term: Terminal) -> None:
    healthy = term.sale("mc-healthy", 100)
    stripe = _broken(healthy, **{"2": pan("magstripe-only"), "14": "2812"})
    assert mc.handle(stripe, NOW).response_code == "05"
    assert mc.last_decision.cryptogram.result is ArqcResult.NO_CHIP


def test_amount_limit_61(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("low-limits", 5_000), NOW).response_code == "00"
    answer = visa.handle(term.sale("low-limits", 5_001), NOW)
    assert answer.response_code == "61"
    assert answer.icc["91"][8:] == b"61"  # the ARQC verified: an ARPC for the decline


def test_velocity_65_per_window_on_now(visa: Issuer, term: Terminal) -> None:
    times = [NOW + timedelta(seconds=s) for s in (0, 60, 120)]
    for t in times:
        assert visa.handle(term.sale("low-limits", 100, now=t), t).response_code == "00"
    later = NOW + timedelta(seconds=599)
    assert visa.handle(term.sale("low-limits", 100, now=later), later).response_code == "65"
    after = NOW + timedelta(seconds=600)
    assert visa.handle(term.sale("low-limits", 100, now=after), after).response_code == "00"


def test_insufficient_funds_51_balance_unchanged(visa: Issuer, term: Terminal) -> None:
    req = term.sale("insufficient-funds", 501)
    answer = visa.handle(req, NOW)
    assert answer.response_code == "51"
    card = CARDS.card("insufficient-funds")
    assert verify_arpc(icc_master_key(CARDS.issuer(card.issuer), card), req.icc["9F26"], answer.icc["91"])
    assert visa.balance(card.pan) == 500
    assert visa.handle(term.sale("insufficient-funds", 500), NOW).response_code == "00"


def test_holds_count_against_funds(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.sale("insufficient-funds", 400, mti="0100"), NOW).response_code == "00"
    assert visa.balance(pan("insufficient-funds")) == 500 and visa.held(pan("insufficient-funds")) == 400
    assert visa.handle(term.sale("insufficient-funds", 101), NOW).response_code == "51"


def test_check_order_is_documented() -> None:
    assert CHECK_ORDER[:5] == (Check.FORMAT, Check.DUPLICATE, Check.LEDGER, Check.LUHN, Check.ISSUER)
    assert CHECK_ORDER[-3:] == (Check.AMOUNT_LIMIT, Check.VELOCITY, Check.FUNDS)


def test_earlier_checks_win(visa: Issuer, term: Terminal) -> None:
    # expired AND over the funds: expiry comes first
    assert visa.handle(term.sale("expired", 10**7, chip=False), NOW).response_code == "54"
    # wrong PIN AND over the limit: PIN comes first
    assert visa.handle(term.sale("pin-1234", 10**7, pin="0000"), NOW).response_code == "55"


# Duplicates -------------------------------------------------------------------------------------


def test_duplicate_gets_the_first_answer_and_no_second_debit(visa: Issuer, term: Terminal) -> None:
    req = term.sale("healthy", 2_500)
    first = visa.handle(req, NOW)
    again = visa.handle(req, NOW + timedelta(seconds=30))
    assert again == first and again.encode() == first.encode()
    assert visa.balance(pan("healthy")) == 997_500
    assert visa.last_decision.duplicate and visa.last_decision.check is Check.DUPLICATE


def test_duplicate_of_a_decline_is_the_same_decline(visa: Issuer, term: Terminal) -> None:
    req = term.sale("insufficient-funds", 10_000)
    assert visa.handle(req, NOW).response_code == "51"
    assert visa.handle(req, NOW).response_code == "51"
    assert visa.decisions[-1].duplicate


def test_same_key_other_content_is_94(visa: Issuer, term: Terminal) -> None:
    req = term.sale("healthy", 2_500, chip=False)
    visa.handle(req, NOW)
    changed = _broken(req, **{"4": "000000009999"})
    assert visa.handle(changed, NOW).response_code == "94"
    assert visa.balance(pan("healthy")) == 997_500


def test_duplicate_after_the_window_is_94_never_a_second_debit(visa: Issuer, term: Terminal) -> None:
    req = term.sale("healthy", 2_500, chip=False)
    visa.handle(req, NOW)
    late = NOW + visa.duplicate_window + timedelta(seconds=1)
    assert visa.handle(req, late).response_code == "94"
    assert visa.last_decision.check is Check.LEDGER
    assert visa.balance(pan("healthy")) == 997_500


def test_duplicate_window_is_configurable() -> None:
    issuer = Issuer.from_card_set(CARDS, "possim-visa-test", duplicate_window=timedelta(seconds=5))
    term = Terminal()
    req = term.sale("healthy", 100, chip=False)
    assert issuer.handle(req, NOW).response_code == "00"
    assert issuer.handle(req, NOW + timedelta(seconds=5)).response_code == "00"  # replayed
    assert issuer.handle(req, NOW + timedelta(seconds=11)).response_code == "94"


# Advices ------------------------------------------------------------------------------------------


def test_offline_advice_booked_once_and_repeats_acknowledged(visa: Issuer, term: Terminal) -> None:
    adv = term.advice("healthy", 1_500)
    first = visa.handle(adv, NOW)
    assert (first.mti, first.response_code) == ("0230", "00")
    for n in range(3):
        again = visa.handle(repeat(adv), NOW + timedelta(minutes=n * 30))  # inside and outside the window
        assert (again.mti, again.response_code) == ("0230", "00")
    assert visa.balance(pan("healthy")) == 998_500
    assert sum(1 for p in visa.ledger.entries() if p.kind is Kind.DEBIT) == 1


def test_advices_are_booked_whatever_status_limits_and_funds(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.advice("lost", 100), NOW).response_code == "00"
    assert visa.balance(pan("lost")) == 999_900
    assert visa.handle(term.advice("insufficient-funds", 900), NOW).response_code == "00"
    assert visa.balance(pan("insufficient-funds")) == -400
    assert visa.handle(term.advice("low-limits", 9_999), NOW).response_code == "00"


def test_advice_of_a_declined_transaction_is_not_booked(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.advice("healthy", 100, code="Z1"), NOW).response_code == "00"
    assert visa.balance(pan("healthy")) == 1_000_000
    assert visa.last_decision.ledger is None


def test_advice_for_an_unknown_card(visa: Issuer, term: Terminal) -> None:
    adv = _broken(term.advice("healthy", 100), **{"2": "4000000000000002"})
    assert visa.handle(adv, NOW).response_code == "15"


def test_stand_in_authorization_advice_holds(visa: Issuer, term: Terminal) -> None:
    assert visa.handle(term.advice("healthy", 800, code="00", mti="0120"), NOW).mti == "0130"
    assert visa.held(pan("healthy")) == 800 and visa.balance(pan("healthy")) == 1_000_000


def test_offline_refund_advice_credits(visa: Issuer, term: Terminal) -> None:
    visa.handle(term.advice("healthy", 300, processing_code="200000"), NOW)
    assert visa.balance(pan("healthy")) == 1_000_300


def test_completion_advice_captures_the_hold(visa: Issuer, term: Terminal) -> None:
    auth = term.sale("healthy", 5_000, mti="0100")
    assert visa.handle(auth, NOW).response_code == "00"
    assert visa.held(pan("healthy")) == 5_000
    completion = term.advice("healthy", 4_200, code="00", original=auth)
    assert visa.handle(completion, NOW).response_code == "00"
    assert visa.held(pan("healthy")) == 0 and visa.balance(pan("healthy")) == 995_800
    assert visa.handle(repeat(completion), NOW + timedelta(hours=1)).response_code == "00"
    assert visa.balance(pan("healthy")) == 995_800
    # reversing the completion gives the captured amount back
    visa.handle(term.reverse(completion), NOW)
    assert visa.balance(pan("healthy")) == 1_000_000


# Reversals ----------------------------------------------------------------------------------------


def test_reversal_releases_once(visa: Issuer, term: Terminal) -> None:
    sale = term.sale("healthy", 2_500)
    visa.handle(sale, NOW)
    rev = term.reverse(sale)
    answer = visa.handle(rev, NOW + timedelta(seconds=40))
    assert (answer.mti, answer.response_code) == ("0410", "00")
    assert visa.balance(pan("healthy")) == 1_000_000
    for n in range(3):
        assert visa.handle(repeat(rev), NOW + timedelta(minutes=20 * n)).response_code == "00"
    assert visa.balance(pan("healthy")) == 1_000_000
    assert sum(1 for p in visa.ledger.entries() if p.kind is Kind.REVERSAL) == 1


def test_reversal_of_a_hold_releases_it(visa: Issuer, term: Terminal) -> None:
    auth = term.sale("healthy", 3_000, mti="0100")
    visa.handle(auth, NOW)
    visa.handle(term.reverse(auth, mti="0420"), NOW)
    assert visa.held(pan("healthy")) == 0 and visa.available(pan("healthy")) == 1_000_000


def test_partial_reversal(visa: Issuer, term: Terminal) -> None:
    sale = term.sale("kwd-healthy", 10_000)
    visa.handle(sale, NOW)
    visa.handle(term.reverse(sale, amount=2_500), NOW)
    assert visa.balance(pan("kwd-healthy")) == 5_000_000 - 7_500
    visa.handle(term.reverse(sale, amount=9_000), NOW)  # capped at what is left
    assert visa.balance(pan("kwd-healthy")) == 5_000_000


def test_reversal_of_a_refund(visa: Issuer, term: Terminal) -> None:
    refund = term.sale("healthy", 700, processing_code="200000", chip=False)
    visa.handle(refund, NOW)
    visa.handle(term.reverse(refund), NOW)
    assert visa.balance(pan("healthy")) == 1_000_000


def test_reversal_of_an_unknown_transaction_is_acknowledged_not_booked(visa: Issuer, term: Terminal) -> None:
    sale = term.sale("healthy", 2_500)  # never reached the issuer
    answer = visa.handle(term.reverse(sale), NOW)
    assert answer.response_code == "00"
    assert visa.last_decision.ledger is Outcome.UNKNOWN_ORIGINAL
    recorded = visa.ledger.entries()[-1]
    assert not recorded.booked and recorded.balance_effect == 0
    # the original arriving late (REV-02 order) is not booked
    assert visa.handle(sale, NOW + timedelta(seconds=5)).response_code == "05"
    assert visa.last_decision.check is Check.LEDGER
    assert visa.balance(pan("healthy")) == 1_000_000


def test_reversal_with_another_pan_is_refused(visa: Issuer, term: Terminal) -> None:
    sale = term.sale("healthy", 2_500)
    visa.handle(sale, NOW)
    rev = _broken(term.reverse(sale), **{"2": pan("lost")})
    assert visa.handle(rev, NOW).response_code == "12"
    assert visa.balance(pan("healthy")) == 997_500


def test_reversal_of_a_declined_request_books_nothing(visa: Issuer, term: Terminal) -> None:
    sale = term.sale("insufficient-funds", 10_000)
    visa.handle(sale, NOW)
    assert visa.handle(term.reverse(sale), NOW).response_code == "00"
    assert visa.balance(pan("insufficient-funds")) == 500


# Records, security, API -------------------------------------------------------------------------


def test_decisions_mask_pans_and_keep_no_pin_block(visa: Issuer, term: Terminal) -> None:
    seen = []
    issuer = Issuer.from_card_set(CARDS, "possim-visa-test", on_decision=seen.append)
    req = term.sale("pin-1234", 100, pin="1234")
    answer = issuer.handle(req, NOW)
    assert seen == list(issuer.decisions)
    text = " ".join(repr(d) + str(d) for d in issuer.decisions)
    assert pan("pin-1234") not in text and "476173******0051" in text
    assert req.fields["52"] not in text
    assert "52" not in answer.fields and "35" not in answer.fields


def test_decision_records_are_frozen(visa: Issuer, term: Terminal) -> None:
    visa.handle(term.sale("healthy", 100), NOW)
    with pytest.raises(AttributeError):
        visa.last_decision.code = "05"  # type: ignore[misc]


def test_keep_decisions_bounds_the_log(term: Terminal) -> None:
    issuer = Issuer.from_card_set(CARDS, "possim-visa-test", keep_decisions=2)
    for _ in range(5):
        issuer.handle(term.sale("healthy", 1, chip=False), NOW)
    assert len(issuer.decisions) == 2


def test_responses_and_unknown_mtis_raise(visa: Issuer, term: Terminal) -> None:
    answer = visa.handle(term.sale("healthy", 100), NOW)
    with pytest.raises(IssuerError, match="0210"):
        visa.handle(answer, NOW)
    with pytest.raises(IssuerError):
        visa.handle(Message({"t": "9999"}), NOW)


def test_routing_and_construction(issuers) -> None:
    assert route(issuers.values(), pan("healthy")).config.id == "possim-visa-test"
    assert route(issuers.values(), pan("stolen")).config.id == "possim-mc-test"
    assert route(issuers.values(), "4000000000000002") is None
    with pytest.raises(ValueError, match="does not belong"):
        Issuer(CARDS.issuer("possim-visa-test"), [CARDS.card("stolen")])
    visa = issuers["possim-visa-test"]
    assert visa.card(pan("healthy")).label == "healthy" and visa.card(pan("stolen")) is None
    assert {c.issuer for c in visa.cards} == {"possim-visa-test"}


def test_the_issuer_is_an_acquirer_issuer_port(visa: Issuer) -> None:
    from sim.core.acquirer import IssuerPort

    assert isinstance(visa, IssuerPort)
    assert visa.name == "possim-visa-test"
    assert visa.bin_match(pan("healthy")) == 6 and visa.bin_match(pan("stolen")) == 0


def test_ledger_postings_satisfy_the_history_checker(visa: Issuer, term: Terminal) -> None:
    from sim.core.history import HistoryEvent, check, effects_from, posting_effect

    card = CARDS.card("healthy")
    sale = term.sale("healthy", 2_500)
    visa.handle(sale, NOW)
    visa.handle(sale, NOW)  # duplicate
    rev = term.reverse(sale, amount=1_000)
    visa.handle(rev, NOW)
    visa.handle(repeat(rev), NOW)
    adv = term.advice("healthy", 700)
    visa.handle(adv, NOW)
    visa.handle(repeat(adv), NOW)
    declined = term.sale("insufficient-funds", 9_999)
    visa.handle(declined, NOW)

    def event(kind: str, msg: Message, amount: int, label: str = "healthy") -> HistoryEvent:
        return HistoryEvent(kind, msg.terminal_id, msg.stan, CARDS.card(label).pan, amount, "978", msg.transmitted)

    history = [
        event("invoked", sale, 2_500), event("approved-online", sale, 2_500), event("reversed", sale, 1_000),
        event("approved-offline", adv, 700),
        event("invoked", declined, 9_999, "insufficient-funds"), event("declined", declined, 9_999, "insufficient-funds"),
    ]
    verdict = check(history, effects_from(visa.ledger.entries(), posting_effect))
    assert verdict.ok, verdict
    assert visa.balance(card.pan) == 1_000_000 - 1_500 - 700


# Model-based: the issuer against an independent model of balances ---------------------------------

MODEL_LABELS = ["healthy", "insufficient-funds", "low-limits", "kwd-healthy"]


class IssuerMachine(RuleBasedStateMachine):
    """Random auths, sales, advices, repeats, duplicates and reversals; balances checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.issuer = Issuer.from_card_set(CARDS, "possim-visa-test")
        self.term = Terminal("TERMSM01")
        self.now = NOW
        self.cards = {label: CARDS.card(label) for label in MODEL_LABELS}
        self.balance = {label: card.balance for label, card in self.cards.items()}
        self.held = {label: 0 for label in MODEL_LABELS}
        self.approvals: dict[str, deque[datetime]] = {label: deque() for label in MODEL_LABELS}
        self.sent: list[tuple[Message, Message, datetime]] = []  # request, answer, when
        self.booked: list[dict] = []  # originals that moved money
        self.advices: list[Message] = []
        self.reversals: list[Message] = []

    def expected_code(self, label: str, amount: int) -> str:
        card = self.cards[label]
        if amount > card.amount_limit:
            return "61"
        window = timedelta(seconds=card.velocity_window_seconds)
        recent = [t for t in self.approvals[label] if self.now - t < window]
        if len(recent) >= card.velocity_count:
            return "65"
        if amount > self.balance[label] - self.held[label]:
            return "51"
        return "00"

    @rule(seconds=st.integers(0, 400))
    def wait(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(label=st.sampled_from(MODEL_LABELS), amount=st.integers(1, 6_000), mti=st.sampled_from(["0100", "0200"]),
          chip=st.booleans())
    def request(self, label: str, amount: int, mti: str, chip: bool) -> None:
        expected = self.expected_code(label, amount)
        req = self.term.sale(label, amount, self.now, mti=mti, chip=chip)
        answer = self.issuer.handle(req, self.now)
        assert answer.response_code == expected, (expected, self.issuer.last_decision)
        self.sent.append((req, answer, self.now))
        if expected == "00":
            self.approvals[label].append(self.now)
            kind = "hold" if mti == "0100" else "debit"
            if kind == "hold":
                self.held[label] += amount
            else:
                self.balance[label] -= amount
            self.booked.append({"msg": req, "label": label, "kind": kind, "amount": amount, "reversed": 0})

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        recent = [s for s in self.sent if self.now - s[2] <= self.issuer.duplicate_window]
        if not recent:
            return
        req, answer, _ = data.draw(st.sampled_from(recent))
        assert self.issuer.handle(req, self.now) == answer

    @rule(label=st.sampled_from(MODEL_LABELS), amount=st.integers(1, 6_000), code=st.sampled_from(["Y1", "Y3", "Z1", "Z3"]))
    def offline_advice(self, label: str, amount: int, code: str) -> None:
        adv = self.term.advice(label, amount, self.now, code=code)
        assert self.issuer.handle(adv, self.now).response_code == "00"
        self.advices.append(adv)
        if code.startswith("Y"):
            self.balance[label] -= amount
            self.booked.append({"msg": adv, "label": label, "kind": "debit", "amount": amount, "reversed": 0})

    @rule(data=st.data())
    def repeat_advice(self, data: st.DataObject) -> None:
        if self.advices:
            adv = data.draw(st.sampled_from(self.advices))
            assert self.issuer.handle(repeat(adv), self.now).response_code == "00"

    @rule(data=st.data(), partial=st.none() | st.integers(0, 6_000), mti=st.sampled_from(["0400", "0420"]))
    def reverse(self, data: st.DataObject, partial: int | None, mti: str) -> None:
        if not self.booked:
            return
        entry = data.draw(st.sampled_from(self.booked))
        original: Message = entry["msg"]
        rev = self.term.reverse(original, self.now, amount=partial, mti=mti)
        assert self.issuer.handle(rev, self.now).response_code == "00"
        self.reversals.append(rev)
        wanted = rev.amount
        value = min(wanted, entry["amount"] - entry["reversed"])
        entry["reversed"] += value
        if entry["kind"] == "hold":
            self.held[entry["label"]] -= value
        else:
            self.balance[entry["label"]] += value

    @rule(data=st.data())
    def repeat_reversal(self, data: st.DataObject) -> None:
        if self.reversals:
            rev = data.draw(st.sampled_from(self.reversals))
            assert self.issuer.handle(repeat(rev), self.now).response_code == "00"

    @rule(label=st.sampled_from(MODEL_LABELS))
    def reverse_unknown(self, label: str) -> None:
        ghost = self.term.sale(label, 100, self.now, chip=False)  # never sent
        assert self.issuer.handle(self.term.reverse(ghost, self.now), self.now).response_code == "00"

    @invariant()
    def balances_match_the_model(self) -> None:
        for label, card in self.cards.items():
            assert self.issuer.balance(card.pan) == self.balance[label], label
            assert self.issuer.held(card.pan) == self.held[label], label
            assert self.issuer.available(card.pan) == self.balance[label] - self.held[label]

    @invariant()
    def each_original_booked_once(self) -> None:
        originals = [p.key for p in self.issuer.ledger.entries() if p.kind in (Kind.DEBIT, Kind.HOLD, Kind.CREDIT)]
        assert len(originals) == len(set(originals))


IssuerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestIssuerMachine = IssuerMachine.TestCase
TestIssuerMachine.pytestmark = pytest.mark.filterwarnings(  # type: ignore[attr-defined]
    "ignore::cryptography.utils.CryptographyDeprecationWarning"
)
