"""Money: integer minor units with the ISO 4217 exponent, never floats.

The currency table is the maintained ``iso4217`` package (no table here).
An amount is always an ``int`` of minor units (cents, yen, fils) and a
:class:`Currency`; formatting is done with integer arithmetic only.

Examples
--------
>>> currency("KWD").exponent, currency("392").alpha
(3, 'JPY')
>>> format_amount(123456, currency("KWD"))
'123.456 KWD'
>>> format_amount(1000, currency("JPY"))
'1000 JPY'
>>> parse_amount("12.30", currency("USD"))
1230
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import iso4217


class CurrencyError(ValueError):
    """An unknown currency code or an amount that does not fit its currency."""


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: alpha code, numeric code (3 digits, as DE49 carries it), exponent."""

    alpha: str
    numeric: str
    exponent: int


@lru_cache(maxsize=None)
def currency(code: str | int) -> Currency:
    """Look up a currency by alpha code (``"EUR"``) or numeric code (``"978"``, ``978``).

    Raises
    ------
    CurrencyError
        For codes the ISO 4217 table does not hold, or currencies without minor units defined.
    """
    text = str(code).strip().upper()
    found = None
    if text.isdigit():
        number = int(text)
        found = next((c for c in iso4217.Currency if c.number == number), None)
    else:
        found = next((c for c in iso4217.Currency if c.code == text), None)
    if found is None:
        raise CurrencyError(f"currency {code!r} is not in ISO 4217 (give an alpha code like EUR or a numeric like 978)")
    exponent = found.exponent
    if exponent is None or found.number is None:
        raise CurrencyError(f"currency {found.code} has no minor unit in ISO 4217 and cannot carry card amounts")
    return Currency(found.code, f"{found.number:03d}", int(exponent))


def format_amount(minor: int, cur: Currency) -> str:
    """Render minor units as a decimal string with the currency's exponent, using integers only."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise CurrencyError(f"amounts are integers of minor units, got {minor!r}")
    sign = "-" if minor < 0 else ""
    units, frac = divmod(abs(minor), 10**cur.exponent)
    if cur.exponent == 0:
        return f"{sign}{units} {cur.alpha}"
    return f"{sign}{units}.{frac:0{cur.exponent}d} {cur.alpha}"


def parse_amount(text: str, cur: Currency) -> int:
    """Parse ``"12.30"`` into minor units for ``cur``; refuses more decimals than the exponent."""
    raw = text.strip()
    units, dot, frac = raw.partition(".")
    if not units.lstrip("-").isdigit() or (dot and not frac.isdigit()):
        raise CurrencyError(f"amount {text!r} is not a decimal number")
    if len(frac) > cur.exponent:
        raise CurrencyError(f"amount {text!r} has more than {cur.exponent} decimals allowed for {cur.alpha}")
    negative = units.startswith("-")
    value = abs(int(units)) * 10**cur.exponent + (int(frac.ljust(cur.exponent, "0")) if cur.exponent else 0)
    return -value if negative else value
