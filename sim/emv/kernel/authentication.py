"""Offline data authentication as the terminal performs it (EMV Book 3 section 10.3, Book 2).

Which method: DDA when both the card (AIP 20) and the terminal (9F33 byte 3, 40)
support it, else SDA (AIP 40, 9F33 80), else none (TVR 1:80). CDA is not offered
by any possim terminal. The cryptography is :mod:`sim.emv.oda` (the card uses the
same module to sign); this module decides, gathers the inputs and maps every
failure to its TVR bits:

* missing certificate or signature data -> 1:20 ICC data missing and the failed bit;
* no CA key, a certificate or signature that does not verify -> 1:40 (SDA) / 1:08 (DDA);
* SDA also sets 1:02 "SDA selected"; any attempt sets TSI "ODA performed".

:func:`authenticate` is a generator: DDA needs one INTERNAL AUTHENTICATE, which it
yields through the ``exchange`` it is given (the transaction's APDU helper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Generator, Mapping, Sequence

from .. import dol, oda, tlv
from . import commands
from .commands import Response
from .config import TerminalConfig

__all__ = ["OdaOutcome", "authenticate", "choose_method"]


@dataclass(frozen=True, slots=True)
class OdaOutcome:
    """What offline data authentication came to."""

    method: str | None
    tvr_bits: tuple[str, ...] = ()
    card_data: dict[str, bytes] = field(default_factory=dict)  # 9F45 DAC, 9F4C ICC dynamic number

    @property
    def performed(self) -> bool:
        """True when a method was attempted (TSI 1:80)."""
        return self.method is not None


def choose_method(aip: bytes, capabilities: bytes) -> str | None:
    """``"dda"``, ``"sda"`` or ``None`` from the AIP and 9F33 byte 3."""
    caps = capabilities[2]
    if aip[0] & 0x20 and caps & 0x40:
        return "dda"
    if aip[0] & 0x40 and caps & 0x80:
        return "sda"
    return None


_NEEDED = {"sda": ("8F", "90", "9F32", "93"), "dda": ("8F", "90", "9F32", "9F46", "9F47")}


def authenticate(
    *,
    card: Mapping[str, Any],
    aip: bytes,
    pan: str,
    today: date,
    config: TerminalConfig,
    signed_records: Sequence[tuple[int, bytes]],
    terminal_values: Mapping[str, bytes],
    exchange: Callable[[bytes, str], Generator[Any, Any, Response]],
) -> Generator[Any, Any, OdaOutcome]:
    """Run SDA or DDA for the card's data; returns the :class:`OdaOutcome`."""
    method = choose_method(aip, config.capabilities)
    if method is None:
        return OdaOutcome(None, ("offline_data_authentication_not_performed",))
    selected = ("sda_selected",) if method == "sda" else ()
    failed = selected + ("dda_failed" if method == "dda" else "sda_failed",)
    if any(not isinstance(card.get(tag), bytes) or not card[tag] for tag in _NEEDED[method]):
        return OdaOutcome(method, ("icc_data_missing",) + failed)
    try:
        ca = config.ca_key(bytes(card["84"])[:5].hex(), card["8F"][0])
        if ca is None:
            raise oda.OdaError("no CA public key for this RID and index", step="ca")
        issuer = oda.recover_issuer_key(ca, card["90"], card.get("92"), card["9F32"], pan, today=today)
        static = oda.static_data_to_authenticate(signed_records, aip=aip, tag_list=card.get("9F4A"))
        if method == "sda":
            return OdaOutcome(method, selected, {"9F45": oda.verify_sda(issuer, card["93"], static)})
        icc = oda.recover_icc_key(issuer, card["9F46"], card.get("9F48"), card["9F47"], pan, static, today=today)
    except (oda.OdaError, IndexError, KeyError, ValueError, TypeError):
        return OdaOutcome(method, failed)
    try:
        ddol = dol.parse_dol(card.get("9F49") or config.default_ddol)
    except dol.DolError:
        return OdaOutcome(method, failed)
    if "9F37" not in [entry.tag for entry in ddol]:
        return OdaOutcome(method, failed)  # a DDOL without the unpredictable number proves nothing
    ddol_data = dol.build_dol_data(ddol, terminal_values)
    response = yield from exchange(commands.internal_authenticate(ddol_data), "INTERNAL AUTHENTICATE")
    if not response.ok:
        return OdaOutcome(method, failed)
    try:
        decoded = tlv.decode(response.data)
        template = decoded.get("77")
        sdad = decoded.get("80") if "80" in decoded else (template.get("9F4B") if isinstance(template, dict) else None)
        if not isinstance(sdad, bytes):
            raise oda.OdaError("no signed dynamic application data", step="format")
        return OdaOutcome(method, (), {"9F4C": oda.verify_dda(icc, sdad, ddol_data)})
    except (oda.OdaError, tlv.TlvError, ValueError):
        return OdaOutcome(method, failed)
