"""Reading an issuer authentication failure out of the card's answer.

When the AIP does not offer EXTERNAL AUTHENTICATE, the terminal hands tag 91 to
the card inside the CDOL2 data and the card checks the ARPC itself during the
second GENERATE AC. The terminal then learns the outcome only from the Card
Verification Results the card returns in 9F10, whose layout is scheme-specific.
possim knows the two cryptogram versions its cards use (see
:mod:`sim.core.crypto` and :mod:`sim.emv.card_risk`):

* Visa CVN 10: 9F10 = ``06 DKI 0A CVR(4)``; CVR byte 2 bit ``08`` = issuer
  authentication failed;
* Mastercard CVN 16: 9F10 = ``DKI 10 CVR(6) ...``; CVR byte 2 bit ``10`` = issuer
  authentication performed, CVR byte 5 bit ``04`` = issuer authentication failed.

Examples
--------
>>> cvr_says_issuer_authentication_failed(bytes.fromhex("06010A03A80800"))
True
>>> cvr_says_issuer_authentication_failed(bytes.fromhex("06010A03600000"))
False
>>> cvr_says_issuer_authentication_failed(bytes.fromhex("1234")) is None
True
"""

from __future__ import annotations

__all__ = ["cvr_says_issuer_authentication_failed"]


def cvr_says_issuer_authentication_failed(iad: bytes) -> bool | None:
    """True/False from the CVR inside 9F10 for CVN 10 and 16; ``None`` for layouts possim does not know."""
    data = bytes(iad)
    if len(data) >= 7 and data[0] == 0x06 and data[2] == 0x0A:
        return bool(data[4] & 0x08)
    if len(data) >= 8 and data[1] == 0x10:
        performed = bool(data[3] & 0x10)
        failed = bool(data[6] & 0x04)
        return failed if performed or failed else None
    return None
