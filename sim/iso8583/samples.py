"""Sample messages: a realistic chip sale and its exchange, for demos, pcaps and benchmarks.

The values are test data (a test BIN, zero keys' worth of cryptogram): nothing
here is a real card.
"""

from __future__ import annotations

from .message import Message, financial_request, network_request, response, reversal

SAMPLE_PAN = "4761739001010010"
"""A Luhn-valid PAN in a public test BIN (EMVCo/Visa test card range)."""

SAMPLE_ICC: dict[str, bytes] = {
    k: bytes.fromhex(v)
    for k, v in {
        "9F26": "8E19ED4BCF3D5E93",  # ARQC
        "9F27": "80",  # CID: ARQC
        "9F10": "06010A03A0B800",  # IAD (Visa CVN 10 layout)
        "9F37": "1A2B3C4D",  # unpredictable number
        "9F36": "0027",  # ATC
        "95": "0000008000",  # TVR: transaction exceeds floor limit
        "9A": "261122",  # transaction date
        "9C": "00",  # goods and services
        "9F02": "000000002500",  # amount authorised
        "5F2A": "0978",  # EUR
        "82": "1800",  # AIP: cardholder verification supported, terminal risk management
        "9F1A": "0250",  # terminal country: France
        "9F34": "420300",  # CVM results: online PIN, successful
        "9F33": "E0F8C8",  # terminal capabilities
        "9F35": "22",  # attended, offline with online capability, merchant
        "84": "A0000000031010",  # DF name (Visa credit/debit)
    }.items()
}
"""DE55 of an online chip sale: the tags ONL-01 asks for, and a few more."""


def sample_sale(stan: int = 1, transmitted: str = "1122103000", terminal_id: str = "TERM0001") -> Message:
    """A 0200 chip sale of 25.00 EUR with online PIN and full DE55."""
    return financial_request(
        pan=SAMPLE_PAN,
        amount=2500,
        currency="978",
        stan=stan,
        transmitted=transmitted,
        terminal_id=terminal_id,
        entry_mode="051",
        expiry="2812",
        pan_sequence="001",
        local_time=transmitted[4:],
        local_date=transmitted[:4],
        merchant_id="MERCHANT0000001",
        icc=SAMPLE_ICC,
        track2=SAMPLE_PAN + "D28122011234567899",
    )


def sample_exchange() -> list[Message]:
    """An echo, an approved chip sale with ARPC, and a reversal of it, each with its answer."""
    echo = network_request("301", stan=1, transmitted="1122102959", terminal_id="TERM0001")
    sale = sample_sale(stan=2)
    approved = response(sale, "00", auth_code="A1B2C3", icc={"91": bytes.fromhex("3A5B7C9D1E2F40510012")})
    rev = reversal(sale, stan=3, transmitted="1122103100", reason="68")
    return [echo, response(echo, "00"), sale, approved, rev, response(rev, "00")]
