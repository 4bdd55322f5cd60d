"""Terminal risk management (EMV Book 3 section 10.6): floor limit, random selection, velocity.

Pure functions returning the TVR bits to set; the transaction gathers their
inputs (the card's counters by GET DATA, the draw from the seeded RNG) and applies
them. All arithmetic on amounts is integer: the random selection's interpolation
is compared by cross-multiplication, never through floats.

Examples
--------
>>> floor_limit_exceeded(4000, 1500, 5000)
True
>>> random_selected(amount=500, floor_limit=5000, threshold=1000, target=10, max_target=50, draw=10)
True
>>> velocity(atc=12, last_online_atc=5, lcol=5, ucol=10)
['lcol_exceeded']
"""

from __future__ import annotations

__all__ = ["floor_limit_exceeded", "random_selected", "velocity"]


def floor_limit_exceeded(amount: int, log_amount: int, floor_limit: int) -> bool:
    """Book 3 10.6.1: the amount plus the latest same-PAN amount in the log reaches the floor limit (4:80)."""
    return amount + log_amount >= floor_limit


def random_selected(
    *, amount: int, floor_limit: int, threshold: int, target: int, max_target: int, draw: int
) -> bool:
    """Book 3 10.6.2: is this below-floor transaction selected for online processing (4:10)?

    ``draw`` is the terminal's random number, 1 to 99. Below the biased selection
    threshold the transaction is selected when ``draw <= target``. From the
    threshold up to the floor limit the target percentage rises linearly to
    ``max_target``::

        interpolation = (amount - threshold) / (floor_limit - threshold)
        transaction_target = target + (max_target - target) * interpolation

    and the transaction is selected when ``draw <= transaction_target``. At or
    above the floor limit random selection does not apply (the floor limit check does).
    """
    if not 1 <= draw <= 99:
        raise ValueError(f"random selection draw {draw} is not 1..99")
    if amount >= floor_limit:
        return False
    if amount < threshold or floor_limit <= threshold:
        return draw <= target
    span = floor_limit - threshold
    # draw <= target + (max_target - target) * (amount - threshold) / span, in integers
    return draw * span <= target * span + (max_target - target) * (amount - threshold)


def velocity(*, atc: int | None, last_online_atc: int | None, lcol: int, ucol: int) -> list[str]:
    """Book 3 10.6.3: TVR bits from the card's counters (lcol_exceeded 4:40, ucol_exceeded 4:20, new_card 2:08).

    ``atc`` (9F36) and ``last_online_atc`` (9F13) are ``None`` when GET DATA did not
    return them. The card counts its ATC up at GET PROCESSING OPTIONS, so during a
    transaction the ATC is above the last online ATC; an ATC less than or equal to it
    means a counter went wrong: both limits then count as exceeded and velocity
    checking stops there. Otherwise ``atc - last_online_atc`` (this transaction
    included) is compared with each limit, equal being not exceeded; a last online
    ATC of zero marks a new card.

    >>> velocity(atc=7, last_online_atc=5, lcol=2, ucol=4)
    []
    >>> velocity(atc=8, last_online_atc=5, lcol=2, ucol=4)
    ['lcol_exceeded']
    >>> velocity(atc=5, last_online_atc=5, lcol=2, ucol=4)
    ['lcol_exceeded', 'ucol_exceeded']
    """
    if atc is None or last_online_atc is None or atc <= last_online_atc:
        return ["lcol_exceeded", "ucol_exceeded"]
    bits = []
    offline = atc - last_online_atc
    if offline > lcol:
        bits.append("lcol_exceeded")
    if offline > ucol:
        bits.append("ucol_exceeded")
    if last_online_atc == 0:
        bits.append("new_card")
    return bits
