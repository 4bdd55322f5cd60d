"""``possim bench codec``: the catalogue layer against bare pyiso8583, same message, same run.

Both sides handle the same realistic 0200 chip sale (sample_sale: 17 fields, DE55
with 16 tags). The baseline is pyiso8583 alone: ``iso8583.encode`` of a ready
field dict, ``iso8583.decode`` of the bytes. The subject is what possim code
does: build the message from typed values (int amount, trace number, DE55 TLV
bytes), validate it against the catalogue, encode; then decode, validate and
read the typed fields a host uses (PAN, amount, currency, STAN, terminal, entry mode).

DE55's TLV encoding and decoding are pyemv's work, not the catalogue's, and are
reported on their own lines, so the ratio isolates the layer's own cost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import iso8583
from iso8583.specs import default_ascii

from ..emv import tlv
from ..iso8583.message import financial_request, parse
from ..iso8583.samples import SAMPLE_ICC, SAMPLE_PAN, sample_sale
from .timing import best_of

GOAL_RATIO = 0.8
"""The catalogue layer may cost at most 20% over bare pyiso8583."""


@dataclass(frozen=True)
class CodecResult:
    """Messages per second for each path, and the two ratios (subject / baseline)."""

    rates: dict[str, float]
    encode_ratio: float
    decode_ratio: float
    iterations: int
    rounds: int

    @property
    def ok(self) -> bool:
        """Both ratios meet :data:`GOAL_RATIO`."""
        return self.encode_ratio >= GOAL_RATIO and self.decode_ratio >= GOAL_RATIO

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return {
            "rates_per_s": {k: round(v, 1) for k, v in self.rates.items()},
            "encode_ratio": round(self.encode_ratio, 3),
            "decode_ratio": round(self.decode_ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "ok": self.ok,
            "iterations": self.iterations,
            "rounds": self.rounds,
        }


def run(iterations: int = 3000, rounds: int = 5) -> CodecResult:
    """Measure the four paths, interleaved, best of ``rounds``."""
    spec = copy.deepcopy(default_ascii)
    template = sample_sale()
    icc_bytes = tlv.encode(SAMPLE_ICC)
    bare_fields = {k: v for k, v in template.fields.items() if k not in ("p", "1")}
    raw = bytes(iso8583.encode(dict(bare_fields), spec)[0])
    stan = iter(range(1, 10**9))

    def bare_encode() -> bytes:
        return iso8583.encode(dict(bare_fields), spec)[0]

    def possim_encode() -> bytes:
        msg = financial_request(
            pan=SAMPLE_PAN, amount=2500, currency="978", stan=next(stan) % 1_000_000, transmitted="1122103000",
            terminal_id="TERM0001", entry_mode="051", expiry="2812", pan_sequence="001", local_time="103000",
            local_date="1122", merchant_id="MERCHANT0000001", icc=icc_bytes,
            track2=SAMPLE_PAN + "D28122011234567899",
        )
        return msg.encode()

    def bare_decode() -> dict:
        return iso8583.decode(raw, spec)[0]

    def possim_decode() -> tuple:
        msg = parse(raw)
        return (msg.pan, msg.amount, msg.currency, msg.stan, msg.terminal_id, msg.entry_mode)

    def tlv_encode() -> bytes:
        return tlv.encode(SAMPLE_ICC)

    def tlv_decode() -> dict:
        return tlv.decode(icc_bytes)

    if parse(possim_encode()).fields.keys() != parse(raw).fields.keys():
        raise AssertionError("benchmark paths do not build the same message")
    rates = best_of(
        {
            "pyiso8583 encode": bare_encode,
            "possim build+encode": possim_encode,
            "pyiso8583 decode": bare_decode,
            "possim decode+parse": possim_decode,
            "pyemv DE55 TLV encode": tlv_encode,
            "pyemv DE55 TLV decode": tlv_decode,
        },
        iterations,
        rounds,
    )
    return CodecResult(
        rates,
        rates["possim build+encode"] / rates["pyiso8583 encode"],
        rates["possim decode+parse"] / rates["pyiso8583 decode"],
        iterations,
        rounds,
    )
