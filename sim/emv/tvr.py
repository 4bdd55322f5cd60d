"""Terminal Verification Results (95) and Transaction Status Information (9B) as named bits.

The kernel records every finding of a transaction as one bit of the TVR (what went
wrong or needs attention) and every stage it completed as one bit of the TSI. The
layouts are EMV 4.4 Book 3 Annex C5 (TVR) and C6 (TSI). Conformance scenarios,
test reports and the action analysis all speak of bits as ``byte:mask`` (``4:80``
transaction exceeds floor limit), so each bit here has that address, a stable
snake-case name and the book's wording.

Bits are addressed by name (``"expired_application"``), by ``byte:mask``
(``"2:40"``) or by :class:`Bit`. Registers are mutable while a transaction runs
(the kernel owns one of each) and are copied into frozen results as hex.

Examples
--------
>>> tvr = Tvr()
>>> tvr.set("expired_application")
>>> tvr.set("4:80")
>>> tvr.hex(), tvr.names()
('0040008000', ['expired_application', 'transaction_exceeds_floor_limit'])
>>> tvr.test("2:40"), tvr.test("1:10")
(True, False)
>>> Tvr.from_hex("0000008000").intersects(bytes.fromhex("DC4000A800"))
True
>>> Tsi.from_hex("E800").names()
['offline_data_authentication_performed', 'cardholder_verification_performed', 'card_risk_management_performed', 'terminal_risk_management_performed']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Iterable, Self

__all__ = ["Bit", "BitRegister", "TSI_BITS", "TVR_BITS", "Tsi", "Tvr", "TvrError"]


class TvrError(ValueError):
    """An unknown bit name or address, or a register value of the wrong size."""


@dataclass(frozen=True, slots=True)
class Bit:
    """One named bit: 1-based byte number, mask within the byte, name, EMV wording."""

    byte: int
    mask: int
    name: str
    text: str

    @property
    def address(self) -> str:
        """``byte:mask`` as the conformance catalogue writes it (``"4:80"``)."""
        return f"{self.byte}:{self.mask:02X}"


def _bits(rows: Iterable[tuple[int, int, str, str]]) -> tuple[Bit, ...]:
    return tuple(Bit(b, m, n, t) for b, m, n, t in rows)


TVR_BITS: tuple[Bit, ...] = _bits(
    [
        (1, 0x80, "offline_data_authentication_not_performed", "Offline data authentication was not performed"),
        (1, 0x40, "sda_failed", "SDA failed"),
        (1, 0x20, "icc_data_missing", "ICC data missing"),
        (1, 0x10, "card_on_exception_file", "Card appears on terminal exception file"),
        (1, 0x08, "dda_failed", "DDA failed"),
        (1, 0x04, "cda_failed", "CDA failed"),
        (1, 0x02, "sda_selected", "SDA selected"),
        (2, 0x80, "application_versions_differ", "ICC and terminal have different application versions"),
        (2, 0x40, "expired_application", "Expired application"),
        (2, 0x20, "application_not_yet_effective", "Application not yet effective"),
        (2, 0x10, "service_not_allowed", "Requested service not allowed for card product"),
        (2, 0x08, "new_card", "New card"),
        (3, 0x80, "cardholder_verification_failed", "Cardholder verification was not successful"),
        (3, 0x40, "unrecognised_cvm", "Unrecognised CVM"),
        (3, 0x20, "pin_try_limit_exceeded", "PIN Try Limit exceeded"),
        (3, 0x10, "pin_pad_missing", "PIN entry required and PIN pad not present or not working"),
        (3, 0x08, "pin_not_entered", "PIN entry required, PIN pad present, but PIN was not entered"),
        (3, 0x04, "online_pin_entered", "Online PIN entered"),
        (4, 0x80, "transaction_exceeds_floor_limit", "Transaction exceeds floor limit"),
        (4, 0x40, "lcol_exceeded", "Lower consecutive offline limit exceeded"),
        (4, 0x20, "ucol_exceeded", "Upper consecutive offline limit exceeded"),
        (4, 0x10, "random_selection", "Transaction selected randomly for online processing"),
        (4, 0x08, "merchant_forced_online", "Merchant forced transaction online"),
        (5, 0x80, "default_tdol_used", "Default TDOL used"),
        (5, 0x40, "issuer_authentication_failed", "Issuer authentication failed"),
        (5, 0x20, "script_failed_before_final_gen_ac", "Script processing failed before final GENERATE AC"),
        (5, 0x10, "script_failed_after_final_gen_ac", "Script processing failed after final GENERATE AC"),
    ]
)
"""The TVR bits a contact kernel sets (EMV 4.4 Book 3 C5); the rest are RFU or kernel-specific."""

TSI_BITS: tuple[Bit, ...] = _bits(
    [
        (1, 0x80, "offline_data_authentication_performed", "Offline data authentication was performed"),
        (1, 0x40, "cardholder_verification_performed", "Cardholder verification was performed"),
        (1, 0x20, "card_risk_management_performed", "Card risk management was performed"),
        (1, 0x10, "issuer_authentication_performed", "Issuer authentication was performed"),
        (1, 0x08, "terminal_risk_management_performed", "Terminal risk management was performed"),
        (1, 0x04, "script_processing_performed", "Script processing was performed"),
    ]
)
"""The TSI bits (EMV 4.4 Book 3 C6); byte 2 is RFU."""


class BitRegister:
    """A fixed-size register of named bits; subclasses give the size and the bit table."""

    SIZE: ClassVar[int] = 0
    BITS: ClassVar[tuple[Bit, ...]] = ()
    _BY_NAME: ClassVar[dict[str, Bit]]
    _BY_ADDRESS: ClassVar[dict[tuple[int, int], Bit]]

    __slots__ = ("_value",)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._BY_NAME = {bit.name: bit for bit in cls.BITS}
        cls._BY_ADDRESS = {(bit.byte, bit.mask): bit for bit in cls.BITS}

    def __init__(self, value: bytes | None = None) -> None:
        raw = bytes(self.SIZE) if value is None else bytes(value)
        if len(raw) != self.SIZE:
            raise TvrError(f"{type(self).__name__} is {self.SIZE} bytes; got {len(raw)}")
        self._value = bytearray(raw)

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """A register from hex (``"0000008000"``); raises :class:`TvrError` on bad hex or size."""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise TvrError(f"{cls.__name__} {text!r} is not hex") from None
        return cls(raw)

    @classmethod
    def bit(cls, which: str | Bit) -> Bit:
        """Resolve a name, a ``byte:mask`` address or a :class:`Bit` of this register.

        Raises
        ------
        TvrError
            The name or address is not a bit of this register (the message lists the names).
        """
        if isinstance(which, Bit):
            if cls._BY_NAME.get(which.name) != which:
                raise TvrError(f"{which.name} is not a {cls.__name__} bit")
            return which
        if ":" in which:
            byte_text, _, mask_text = which.partition(":")
            try:
                key = (int(byte_text), int(mask_text, 16))
            except ValueError:
                key = (0, 0)
            found = cls._BY_ADDRESS.get(key)
        else:
            found = cls._BY_NAME.get(which)
        if found is None:
            raise TvrError(f"{which!r} is not a {cls.__name__} bit; known: {', '.join(cls._BY_NAME)}")
        return found

    def set(self, *which: str | Bit) -> None:
        """Set bits to 1 (they are never cleared during a transaction)."""
        for item in which:
            bit = self.bit(item)
            self._value[bit.byte - 1] |= bit.mask

    def test(self, which: str | Bit) -> bool:
        """True when the bit is set."""
        bit = self.bit(which)
        return bool(self._value[bit.byte - 1] & bit.mask)

    def intersects(self, mask: bytes) -> bool:
        """True when any bit set here is also set in ``mask`` (an action code, same size)."""
        if len(mask) != self.SIZE:
            raise TvrError(f"mask is {len(mask)} bytes; {type(self).__name__} is {self.SIZE}")
        return any(a & b for a, b in zip(self._value, mask))

    def matching(self, mask: bytes) -> list[str]:
        """Names of the set bits that ``mask`` also has: why an action code fired."""
        return [bit.name for bit in self.set_bits() if mask[bit.byte - 1] & bit.mask]

    def set_bits(self) -> list[Bit]:
        """The set bits in register order (unnamed RFU bits left out)."""
        return list(_set_bits(type(self), bytes(self._value)))

    def names(self) -> list[str]:
        """Names of the set bits in register order."""
        return [bit.name for bit in self.set_bits()]

    def addresses(self) -> list[str]:
        """``byte:mask`` of the set bits in register order."""
        return [bit.address for bit in self.set_bits()]

    def hex(self) -> str:
        """The register as upper-case hex (what DE55 and reports show)."""
        return self._value.hex().upper()

    def __bytes__(self) -> bytes:
        return bytes(self._value)

    def copy(self) -> Self:
        """An independent copy (a snapshot at first GENERATE AC)."""
        return type(self)(bytes(self._value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BitRegister):
            return NotImplemented
        return type(self) is type(other) and self._value == other._value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()} {self.addresses()})"


@lru_cache(maxsize=1024)
def _set_bits(register: type[BitRegister], value: bytes) -> tuple[Bit, ...]:
    """The bits of ``register`` set in ``value``, remembered: a few TVR and TSI values (most
    often none or one bit set) are asked for in every transaction's action analysis and result."""
    return tuple(bit for bit in register.BITS if value[bit.byte - 1] & bit.mask)


class Tvr(BitRegister):
    """Terminal Verification Results, tag 95: 5 bytes of findings."""

    SIZE = 5
    BITS = TVR_BITS
    __slots__ = ()


class Tsi(BitRegister):
    """Transaction Status Information, tag 9B: 2 bytes of stages performed."""

    SIZE = 2
    BITS = TSI_BITS
    __slots__ = ()
