"""sim.load.wire: bytes spliced into pyiso8583's encoding equal a full pyiso8583 encode."""

from __future__ import annotations

import copy
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from iso8583.specs import default_ascii

from sim.core.cards import default_path, load_cards
from sim.core.host import Host
from sim.iso8583.dialect import DEFAULT, Dialect
from sim.iso8583.errors import DecodeError, MessageError
from sim.iso8583.framing import parse_framing
from sim.iso8583.message import Message, parse
from sim.live.sales import write_load_cards
from sim.live.traffic import LIFTED_WINDOW_S, Traffic, load_card_set
from sim.load.answers import VARYING, AnswerDecoder
from sim.load.wire import RESTAMPED, TPDU, Template, WireEncoder

from tests.strategies import ebcdic_binary_bitmap

warnings.filterwarnings("ignore", module="pyemv")
NOW = datetime(2026, 11, 30, 10, 0)
CARDS = load_card_set()


def _bcd_trace() -> Dialect:
    """DE7 and DE11 as packed BCD: not text, so never spliced (pyiso8583 encodes them each time)."""
    spec = copy.deepcopy(default_ascii)
    spec["7"].update(data_enc="b", max_len=5)
    spec["11"].update(data_enc="b", max_len=3)
    return Dialect("bcd-trace", spec)


DIALECTS = [DEFAULT, ebcdic_binary_bitmap(), _bcd_trace()]
FRAMINGS = [parse_framing(f) for f in ("be2", "le2", "ascii4", "be2+tpdu", "ascii4+tpdu")]


def _templates() -> list[dict[str, str]]:
    out = []
    for seed in (1, 2):
        traffic = Traffic(seed=seed, cards=CARDS, pool=3)
        traffic.prefill(NOW)
        out += [dict(t) for t in traffic.templates()]
    return out


TEMPLATES = _templates()


def _full(fields: dict[str, str], dialect: Dialect, framing) -> bytes:
    raw, _ = iso8583.encode(dict(fields), dialect.spec)
    return framing.frame(bytes(raw), TPDU if framing.tpdu else None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(TEMPLATES) - 1),
    dialect=st.sampled_from(DIALECTS),
    framing=st.sampled_from(FRAMINGS),
    stan=st.integers(1, 999_999),
    when=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)),
    terminal=st.text("ABCXYZ0123456789 ", min_size=8, max_size=8),
    which=st.sets(st.sampled_from(RESTAMPED)),
)
def test_spliced_bytes_equal_a_full_pyiso8583_encode(index, dialect, framing, stan, when, terminal, which) -> None:
    fields = TEMPLATES[index]
    stamps = {"7": when.strftime("%m%d%H%M%S"), "11": f"{stan:06d}", "12": when.strftime("%H%M%S"), "13": when.strftime("%m%d"),
              "41": terminal}
    values = {k: v for k, v in stamps.items() if k in which and k in fields}
    template = Template(fields, dialect, framing)
    expected = _full({**fields, **values}, dialect, framing)
    assert template.frame(values) == expected
    assert template.encode(values) == _full({**fields, **values}, dialect, parse_framing("be2"))[2:]
    # The fast path is taken where it can be: every restamped text field, none of the BCD ones.
    present = {k for k in RESTAMPED if k in fields}
    if dialect is DIALECTS[2]:
        assert set(template.spliced) == present - {"7", "11"}
    else:
        assert set(template.spliced) == present


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(TEMPLATES) - 1),
    framing=st.sampled_from(FRAMINGS),
    sends=st.lists(
        st.tuples(st.integers(0, 2), st.text("0123456789", min_size=5, max_size=7),
                  st.sampled_from(["LOAD0001", "L0000002", "TERM 03", "T0000004X"])),
        min_size=1, max_size=12,
    ),
)
def test_sends_that_share_their_times_splice_like_full_encodes(index, framing, sends) -> None:
    """The bytes between DE11 and DE41 are kept from the last send with the same times, the
    terminals of a process sending the same pooled messages: each send, whether it reuses
    them or not (another terminal, a trace number or terminal of the wrong length), is what
    pyiso8583 makes of its own fields."""
    fields = TEMPLATES[index]
    template = Template(fields, DEFAULT, framing)
    times = [datetime(2026, 11, 30, 10, 0, s) for s in range(3)]
    for second, stan, terminal in sends:
        when = times[second]
        stamps = {"7": when.strftime("%m%d%H%M%S"), "11": stan, "12": when.strftime("%H%M%S"), "13": when.strftime("%m%d"),
                  "41": terminal}
        values = {k: v for k, v in stamps.items() if k in fields}
        try:
            expected = _full({**fields, **values}, DEFAULT, framing)
        except iso8583.EncodeError:
            with pytest.raises(MessageError, match="11|41"):
                template.frame(values)
            continue
        assert template.frame(values) == expected


def test_offsets_are_pyiso8583s_own_layout() -> None:
    fields = next(t for t in TEMPLATES if "55" in t and "12" in t)
    raw, encoded = iso8583.encode(dict(fields), DEFAULT.spec)
    template = Template(fields, DEFAULT)
    for key, (start, end, codec) in template.spliced.items():
        assert raw[start:end] == encoded[key]["data"] == fields[key].encode(codec)


def test_values_that_do_not_fit_are_left_to_pyiso8583() -> None:
    fields = TEMPLATES[0]
    template = Template(fields, DEFAULT)
    with pytest.raises(MessageError, match="11"):
        template.encode({"11": "1234567"})  # too long: pyiso8583 refuses it, naming the field
    with pytest.raises(MessageError):
        DEFAULT.encode({**fields, "11": "1234567"})
    other = {"41": "OTHER001", "11": "000077"}  # DE41 is not restamped: a full encode
    assert template.encode(other) == DEFAULT.encode({**fields, **other})


@pytest.mark.parametrize("framing", ["be2", "ascii4+tpdu"])
def test_every_frame_of_a_stream_is_the_full_encode_and_the_host_answers_as_expected(framing: str) -> None:
    framing_ = parse_framing(framing)
    traffic = Traffic(seed=21, cards=CARDS, pool=8)
    traffic.prefill(NOW)
    wire = WireEncoder(DEFAULT, framing_)
    wire.prepare(traffic.templates())
    host = Host(cards=CARDS)
    now = NOW
    kinds = set()
    for i in range(400):
        now += timedelta(milliseconds=700)
        request = traffic.next(now.replace(microsecond=0))
        frame = wire.frame(request)
        assert frame == _full(dict(request.fields), DEFAULT, framing_)
        payload = frame[framing_.header_length + (5 if framing_.tpdu else 0):]
        message = parse(payload, strict=True)  # a valid catalogue message
        assert message.match_key == request.key and message.mti == request.mti
        answer = DEFAULT.decode(host.receive(payload, now))
        assert answer["39"] == request.expected, (request, answer["39"])
        kinds.add((request.kind, request.template is not None))
    assert {k for k, pooled in kinds if pooled} >= {"chip sale", "contactless", "refund", "advice", "echo", "reversal"}


def test_write_load_cards_lifts_velocity_everywhere_and_only_funded_balances(tmp_path: Path) -> None:
    shipped = load_cards(default_path())
    lifted = load_cards(write_load_cards(tmp_path / "cards.toml", velocity_count=1000, balance=10**12))
    assert [c.label for c in lifted.cards] == [c.label for c in shipped.cards]
    for before, after in zip(shipped.cards, lifted.cards):
        assert after.velocity_count == 1000 and after.velocity_window_seconds == LIFTED_WINDOW_S
        assert after.balance == (10**12 if before.balance >= 100_000 else before.balance)
        blank = {"velocity_count": 0, "velocity_window_seconds": 1, "balance": 0}
        assert after.model_copy(update=blank) == before.model_copy(update=blank)


@pytest.mark.parametrize("cards", ["write_load_cards", "load_card_set"])
def test_a_load_card_sets_approvals_leave_the_issuer_a_bounded_velocity_log(tmp_path: Path, cards: str) -> None:
    """Soak tests approve one card thousands of times a second: the issuer remembers only the
    approvals the card's velocity window still counts, so what it keeps stays at a second's worth."""
    from sim.live.bench_host import request_pool

    card_set = load_cards(write_load_cards(tmp_path / "c.toml")) if cards == "write_load_cards" else load_card_set()
    host = Host(cards=card_set)
    sale = {k: v for k, v in request_pool(1)[0].items()}
    pan = sale["2"]
    issuer = next(i for i in host.issuers.values() if i.card(pan) is not None)
    now = NOW
    for n in range(3_000):  # 600 approvals a second for five seconds
        now += timedelta(microseconds=1_666)
        answer = host.handle(Message({**sale, "11": f"{n % 999_999 + 1:06d}", "41": f"V{n // 500:07d}",
                                      "7": now.strftime("%m%d%H%M%S")}), now)
        assert answer.response_code == "00", answer.fields
    assert len(issuer._state[pan].approvals) <= 601


def test_bare_loops_match_every_echoed_request(tmp_path: Path) -> None:
    """The benchmark's loops (the kit's writes, and with them its ISO 8583 work) run clean against the echo server."""
    import sys

    from sim.bench.load import _bare
    from sim.live.process import start_command

    ready = tmp_path / "echo.ready.json"
    echo = start_command([sys.executable, "-m", "sim.live.bench_host", "--ready-file", str(ready)], ready)
    try:
        measures = [_bare(echo.port, connections=2, in_flight=3, duration=1.0, name=name)  # raises on a mismatched answer
                    for name in ("bare batched", "bare+codec")]
    finally:
        echo.stop()  # by PID
    for measure in measures:
        assert measure.requests > 100 and measure.cpu_seconds > 0


# Answers: AnswerDecoder gives exactly pyiso8583's fields ---------------------------------------------


def _answer_fields(fields: dict[str, str], values: dict[str, str | None]) -> dict[str, str]:
    """``fields`` as an answer: MTI class +10, ``values`` put in (None: the field left out)."""
    out = {k: v for k, v in fields.items() if k not in ("p", "1")}
    out["t"] = out["t"][:2] + str(int(out["t"][2]) + 1) + out["t"][3]
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_TEXT = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -", min_size=1, max_size=1)


def _value(key: str) -> st.SearchStrategy[str | None]:
    spec = default_ascii[key]
    longest = spec["max_len"] if spec["len_type"] == 0 else min(spec["max_len"], 24)
    shortest = spec["max_len"] if spec["len_type"] == 0 else 1
    return st.one_of(st.none(), st.lists(_TEXT, min_size=shortest, max_size=longest).map("".join))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dialect=st.sampled_from(DIALECTS),
    answers=st.lists(
        st.tuples(st.integers(0, len(TEMPLATES) - 1), st.fixed_dictionaries({k: _value(k) for k in VARYING})),
        min_size=1, max_size=12,
    ),
    capacity=st.sampled_from([1, 3, 1024]),
)
def test_answer_decoder_gives_pyiso8583s_fields(dialect, answers, capacity) -> None:
    """A stream of answers (some layouts repeated, varying fields changed or left out) through one
    decoder: every answer decodes to exactly what pyiso8583 gives, whether learnt or read in place."""
    decoder = AnswerDecoder(dialect, capacity=capacity)
    wanted = ("t", "41", "11", "39")
    picker = AnswerDecoder(dialect, capacity=capacity, wanted=wanted)
    raws = []
    for index, values in answers:
        try:
            raws.append(dialect.encode(_answer_fields(TEMPLATES[index], values)))
        except MessageError:
            continue  # e.g. text in a BCD field of the bcd-trace dialect
    for raw in raws + raws:  # every layout comes round again
        decoded = decoder.decode(raw)
        full = dialect.decode(raw)
        assert decoded == full
        assert list(decoded) == list(full)  # same order, too
        assert picker.decode(raw) == {k: full[k] for k in wanted if k in full}  # the wanted fields alone, exactly
    if capacity >= 2 * len(raws):
        assert decoder.hits >= len(raws)  # the second round at least is read in place
        assert picker.hits >= len(raws)


@pytest.mark.parametrize("pool", [4, 0])
def test_answer_decoder_reads_the_hosts_answers_in_place(pool: int) -> None:
    """The host's answers, to a pooled stream or (pool 0) to sales each with its own ARQC, so
    each answer with its own ARPC in DE55: mostly read in place, each equal to a full decode."""
    traffic = Traffic(seed=5, cards=CARDS, pool=pool)
    traffic.prefill(NOW)
    wire = WireEncoder(DEFAULT, parse_framing("be2"))
    host = Host(cards=CARDS)
    decoder = AnswerDecoder(DEFAULT)
    now = NOW
    arpcs = set()
    for _ in range(300):
        now += timedelta(milliseconds=900)
        request = traffic.next(now.replace(microsecond=0))
        answer = host.receive(wire.frame(request)[2:], now)
        fields = decoder.decode(answer)
        assert fields == DEFAULT.decode(answer)
        assert (fields["t"][:2], fields["41"], fields["11"]) == request.key
        if request.kind == "chip sale" and fields["39"] == "00":
            arpcs.add(fields["55"])
    assert decoder.hits > decoder.misses
    if pool == 0:
        assert len(arpcs) > 20  # fresh ARPCs, all of them


def test_answer_decoder_fails_as_the_dialect_does() -> None:
    fields = _answer_fields(TEMPLATES[0], {"39": "00"})
    raw = DEFAULT.encode(dict(fields))
    decoder = AnswerDecoder(DEFAULT)
    assert decoder.decode(raw)["39"] == "00"
    # A byte that is not ASCII in the known layout's DE39: pyiso8583 refuses it, naming the field.
    _, encoded = iso8583.decode(raw, DEFAULT.spec)
    spans, pos = {}, 0
    for key, piece in encoded.items():
        pos += len(piece["len"])
        spans[key] = pos
        pos += len(piece["data"])
    bad = raw[:spans["39"]] + b"\xff0" + raw[spans["39"] + 2:]
    with pytest.raises(DecodeError) as caught:
        decoder.decode(bad)
    assert caught.value.field == "39"
    with pytest.raises(DecodeError, match="Extra data"):
        decoder.decode(raw + b"0")
    assert decoder.decode(bytearray(raw)) == DEFAULT.decode(raw)


def test_bench_ratios_by_rate_and_by_cpu() -> None:
    from sim.bench.load import LoadBench, Measure

    bench = LoadBench(8, 4, 4.0)
    bench.measures = {
        "bare": Measure("bare", 60_000, 4.0, 1.0),  # 15,000/s, 16.7 us each
        "bare batched": Measure("bare batched", 200_000, 4.0, 0.8),  # 4 us each
        "bare+codec": Measure("bare+codec", 30_000, 4.0, 0.9),  # 30 us each
        "locust echo": Measure("locust echo", 20_000, 2.0, 0.72),  # 10,000/s (a window of its own), 36 us each
    }
    out = bench.as_dict()
    assert out["ratios"]["locust echo / bare"] == pytest.approx(10_000 / 15_000)
    assert out["ratios_by_cpu"]["locust echo / bare"] == pytest.approx((1.0 / 60_000) / (0.72 / 20_000))
    assert out["ratios_by_cpu"]["locust echo / bare+codec"] == pytest.approx(30 / 36)
    assert out["cpu_us_split"]["Locust (locust echo - bare+codec)"] == pytest.approx(6.0)
    assert out["cpu_us_split"]["ISO 8583 work (bare+codec - bare batched)"] == pytest.approx(26.0)
    assert out["ratios"]["locust echo / bare batched"] == pytest.approx(10_000 / 50_000)


def test_bench_rounds_keep_each_clients_fastest_round() -> None:
    from sim.bench.load import LoadBench, Measure, run

    bench = LoadBench(8, 4, 4.0, rounds=3)
    for measure in (Measure("bare", 60_000, 4.0, 1.0), Measure("locust echo", 40_000, 4.0, 1.0),
                    Measure("bare", 48_000, 4.0, 1.0), Measure("locust echo", 44_000, 4.0, 1.1),
                    Measure("bare", 64_000, 4.0, 1.0)):
        bench.keep_best(measure)
    assert bench.measures["bare"].requests == 64_000
    assert bench.measures["locust echo"].requests == 44_000
    assert bench.ratio("locust echo") == pytest.approx(44_000 / 64_000)
    assert bench.as_dict()["rounds"] == 3
    with pytest.raises(ValueError, match="rounds 0"):
        run(rounds=0)


def test_answer_decoder_stops_learning_answers_that_never_repeat() -> None:
    """Answers that differ outside the varying fields (here DE42) are all new layouts: once
    the decoder is full it stops remembering them; answers that repeat keep it learning."""
    fields = _answer_fields(TEMPLATES[0], {"39": "00"})
    unique = [DEFAULT.encode({**fields, "42": f"{n:015d}"}) for n in range(1, 41)]
    decoder = AnswerDecoder(DEFAULT, capacity=8)
    assert [decoder.decode(raw) for raw in unique] == [DEFAULT.decode(raw) for raw in unique]
    assert not decoder.learning and decoder.hits == 0 and decoder._size <= 8
    repeating = [DEFAULT.encode({**fields, "11": f"{n:06d}"}) for n in range(1, 41)]
    decoder = AnswerDecoder(DEFAULT, capacity=8)
    assert [decoder.decode(raw) for raw in repeating] == [DEFAULT.decode(raw) for raw in repeating]
    assert decoder.learning and decoder.misses == 1 and decoder.hits == 39


class _SlowPeer:
    """A socket whose kernel takes at most ``room`` bytes per ``send``; ``sendall`` takes the rest."""

    def __init__(self, room: int) -> None:
        self.room, self.wire, self.sends, self.sendalls = room, bytearray(), 0, 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        taken = bytes(data[: self.room])
        self.wire += taken
        return len(taken)

    def sendall(self, data: memoryview) -> None:
        self.sendalls += 1
        self.wire += data


@given(frames=st.lists(st.binary(min_size=1, max_size=50), max_size=8), room=st.integers(0, 200))
def test_queued_frames_go_out_whole_and_in_order_in_one_write_when_the_kernel_takes_them(frames: list[bytes], room: int) -> None:
    from sim.load.outbox import send_queued

    peer, outbox = _SlowPeer(room), list(frames)
    send_queued(peer, outbox)
    data = b"".join(frames)
    assert bytes(peer.wire) == data and outbox == []
    assert peer.sends == (1 if frames else 0)
    assert peer.sendalls == (1 if len(data) > room else 0)
