"""Typed messages: constructors that take Python values, accessors that give them back.

A :class:`Message` wraps the field dict pyiso8583 works with (``{"t": "0200",
"4": "000000001000", ...}``) and adds typed accessors (``amount`` is an ``int`` of
minor units, ``icc`` a TLV dict). Constructors are pure functions: every time
stamp, trace number and amount comes in as an argument, never from a clock.

Examples
--------
>>> req = financial_request(pan="4761739001010010", amount=1000, currency="840",
...     stan=1, transmitted="1122103000", terminal_id="TERM0001", entry_mode="051",
...     icc={"9F26": bytes(8), "9F02": bytes.fromhex("000000001000")})
>>> req.mti, req.amount, req.match_key
('0200', 1000, ('02', 'TERM0001', '000001'))
>>> rsp = response(req, "00", auth_code="A1B2C3")
>>> rsp.mti, rsp.response_code, rsp.auth_code
('0210', '00', 'A1B2C3')
>>> parse(req.encode()).icc["9F02"].hex()
'000000001000'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from datetime import datetime
from typing import Any, Mapping

from ..emv import tlv
from .catalogue import MESSAGE_TYPES, REPEATS, MessageType, match_key, original_mti, response_mti, validate
from .dialect import DEFAULT, Dialect
from .errors import MessageError

MAX_AMOUNT = 10**12 - 1
"""Largest amount DE4 (n12) can carry, in minor units."""

ECHOED = ("2", "3", "4", "11", "12", "13", "22", "23", "32", "37", "41", "42", "49", "50", "70", "90")
"""Request fields a response carries back unchanged (when the request had them)."""


@dataclass(frozen=True, slots=True)
class OriginalData:
    """DE90 original data elements (n42): what a reversal or its answer refers to.

    >>> OriginalData("0200", "000123", "1122103000").encode()
    '020000012311221030000000000000000000000000'
    >>> OriginalData.parse('020000012311221030000000000000000000000000').stan
    '000123'
    """

    mti: str
    stan: str
    transmitted: str
    acquirer: str = "0" * 11
    forwarder: str = "0" * 11

    def encode(self) -> str:
        """The 42-digit DE90 value."""
        return f"{self.mti}{self.stan}{self.transmitted}{self.acquirer}{self.forwarder}"

    @classmethod
    def parse(cls, value: str) -> "OriginalData":
        """Split a DE90 value; raises :class:`MessageError` when it is not 42 digits."""
        if len(value) != 42 or not value.isdigit():
            raise MessageError(f"DE90 is {value!r}; allowed: 42 digits (MTI, STAN, DE7, acquirer, forwarder)", field="90")
        return cls(value[0:4], value[4:10], value[10:20], value[20:31], value[31:42])


class Message:
    """One ISO 8583 message: its fields as strings, typed accessors over them.

    ``fields`` is the dict pyiso8583 encodes and decodes. Treat it as read-only;
    :meth:`replace` makes a changed copy.
    """

    __slots__ = ("fields", "type", "_icc", "_checked")

    def __init__(self, fields: dict[str, str], mtype: MessageType | None = None) -> None:
        self.fields = fields
        self.type = mtype if mtype is not None else MESSAGE_TYPES.get(fields.get("t", ""))
        self._icc: dict[str, Any] | None = None
        self._checked: MessageType | None = None

    def checked(self) -> MessageType:
        """``validate(self.fields)``, worked out once per message: the acquirer and the
        issuer both check what they are handed, and a request passes through both.

        Raises :class:`MessageError` (every time) while the fields break a rule.
        """
        mtype = self._checked
        if mtype is None:
            mtype = self._checked = validate(self.fields)
        return mtype

    def __repr__(self) -> str:
        from .pretty import summary

        return f"<Message {summary(self)}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return _data(self.fields) == _data(other.fields)

    __hash__ = None  # type: ignore[assignment]

    def get(self, key: str, default: str | None = None) -> str | None:
        """A raw field value by data element number (``"39"``)."""
        return self.fields.get(key, default)

    def replace(self, **changes: str | None) -> "Message":
        """A copy with fields changed (``replace(DE39="05")``); ``None`` removes a field."""
        fields = dict(self.fields)
        for name, value in changes.items():
            key = name[2:] if name.startswith("DE") else name
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        fields.pop("p", None)
        fields.pop("1", None)
        return Message(fields)

    def encode(self, dialect: Dialect = DEFAULT) -> bytes:
        """Encode with ``dialect`` (bitmaps computed by pyiso8583)."""
        return dialect.encode(self.fields)  # pyiso8583 only (re)writes the bitmap keys

    # Typed accessors ----------------------------------------------------------------------

    @property
    def mti(self) -> str:
        """Message type indicator, e.g. ``"0200"``."""
        return self.fields["t"]

    @property
    def original_mti(self) -> str:
        """MTI of the first transmission (``0221`` → ``0220``)."""
        return original_mti(self.fields["t"])

    @property
    def is_repeat(self) -> bool:
        """True for 0121, 0221, 0401, 0421."""
        return original_mti(self.fields["t"]) != self.fields["t"]

    @property
    def pan(self) -> str | None:
        """DE2, or the PAN inside DE35 track 2 when DE2 is absent."""
        pan = self.fields.get("2")
        if pan is None and "35" in self.fields:
            pan = self.fields["35"].replace("=", "D").split("D", 1)[0]
        return pan

    @property
    def processing_code(self) -> str | None:
        """DE3: transaction type (2 digits) + from/to account types."""
        return self.fields.get("3")

    @property
    def amount(self) -> int | None:
        """DE4 in minor units of :attr:`currency`."""
        value = self.fields.get("4")
        return int(value) if value is not None else None

    @property
    def currency(self) -> str | None:
        """DE49 ISO 4217 numeric currency code."""
        return self.fields.get("49")

    @property
    def stan(self) -> str | None:
        """DE11 system trace audit number."""
        return self.fields.get("11")

    @property
    def transmitted(self) -> str | None:
        """DE7 transmission date and time, MMDDhhmmss."""
        return self.fields.get("7")

    @property
    def terminal_id(self) -> str | None:
        """DE41 card acceptor terminal identification."""
        return self.fields.get("41")

    @property
    def entry_mode(self) -> str | None:
        """DE22 POS entry mode (``051`` chip with PIN, ``901`` swipe, ``801`` fallback swipe...)."""
        return self.fields.get("22")

    @property
    def response_code(self) -> str | None:
        """DE39 as sent (``"00"``, ``"51"``, or a terminal code like ``"Y1"`` in advices)."""
        return self.fields.get("39")

    @property
    def auth_code(self) -> str | None:
        """DE38 authorization identification response."""
        return self.fields.get("38")

    @property
    def network_code(self) -> str | None:
        """DE70 network management information code (``001``, ``002``, ``301``)."""
        return self.fields.get("70")

    @property
    def original(self) -> OriginalData | None:
        """DE90 parsed, for reversals."""
        value = self.fields.get("90")
        return OriginalData.parse(value) if value is not None else None

    @property
    def icc(self) -> dict[str, Any]:
        """DE55 decoded as a TLV dict (``{}`` when absent); raises :class:`MessageError` if malformed."""
        if self._icc is None:
            raw = self.fields.get("55")
            if raw is None:
                self._icc = {}
            else:
                try:
                    self._icc = tlv.decode(bytes.fromhex(raw))
                except (ValueError, tlv.TlvError) as exc:
                    raise MessageError(f"DE55 is not BER-TLV in hex characters: {exc}", field="55") from None
        return self._icc

    @property
    def decoded_icc(self) -> dict[str, Any] | None:
        """DE55 as :attr:`icc` decoded it, or ``None`` when nothing has decoded it yet (never raises)."""
        return self._icc

    @property
    def match_key(self) -> tuple[str, str, str]:
        """MTI class + DE41 + DE11: pairs a request with its response."""
        return match_key(self.fields)


def _data(fields: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in ("p", "1")}


def parse(raw: bytes, dialect: Dialect = DEFAULT, *, strict: bool = False) -> Message:
    """Decode and validate bytes into a :class:`Message`.

    Raises
    ------
    DecodeError
        The bytes do not decode under the dialect.
    MessageError
        They decode, but break the catalogue's rules (the field is named).
    """
    fields = dialect.decode(raw)
    mtype = validate(fields, mac_field=dialect.mac_field, strict=strict)
    return Message(fields, mtype)


# Constructors ------------------------------------------------------------------------------


def _n(value: int | str, width: int, field: str) -> str:
    if type(value) is str and len(value) == width and value.isdigit() and value.isascii():
        return value
    text = str(value)
    if not text.isdigit() or len(text) > width:
        raise MessageError(f"DE{field} is {value!r}; allowed: up to {width} digits", field=field)
    return text.zfill(width)


def _when(moment: datetime | str, field: str = "7") -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%m%d%H%M%S")
    return _n(moment, 10, field)


def _amount(amount: int) -> str:
    if type(amount) is int and 0 <= amount <= MAX_AMOUNT:
        return f"{amount:012d}"
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_AMOUNT:
        raise MessageError(f"DE4 amount is {amount!r}; allowed: an int of minor units 0..{MAX_AMOUNT}", field="4")
    return f"{amount:012d}"


def _icc(icc: Mapping[str, Any] | bytes | None) -> str | None:
    if icc is None:
        return None
    data = icc if isinstance(icc, (bytes, bytearray)) else tlv.encode(icc)
    return data.hex().upper()


def _currency(currency: Any) -> str:
    return _n(getattr(currency, "numeric", currency), 3, "49")


def _finish(fields: dict[str, str], extra: Mapping[str, str] | None, raw: tuple[str, ...] = ()) -> Message:
    """Add ``extra`` fields and validate; content is checked for the raw strings callers gave."""
    if extra:
        fields.update(extra)
        raw = (*raw, *extra)
    return Message(fields, validate(fields, content=raw))


def transaction_request(
    mti: str,
    *,
    amount: int,
    currency: Any,
    stan: int | str,
    transmitted: datetime | str,
    terminal_id: str,
    entry_mode: str,
    pan: str | None = None,
    track2: str | None = None,
    processing_code: str = "000000",
    expiry: str | None = None,
    pan_sequence: str | None = None,
    icc: Mapping[str, Any] | bytes | None = None,
    pin_block: str | None = None,
    merchant_id: str | None = None,
    local_time: str | None = None,
    local_date: str | None = None,
    rrn: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Message:
    """A 0100 authorization or 0200 financial request (see :func:`financial_request`).

    ``icc`` is a TLV dict (encoded with pyemv) or ready TLV bytes; it becomes DE55.
    ``extra`` adds raw fields by number (``{"48": "..."}``).
    """
    fields = {
        "t": mti,
        "3": _n(processing_code, 6, "3"),
        "4": _amount(amount),
        "7": _when(transmitted),
        "11": _n(stan, 6, "11"),
        "22": _n(entry_mode, 3, "22"),
        "41": terminal_id,
        "49": _currency(currency),
    }
    # Plain ifs, not a dict of optionals filtered: this is the hot path of every terminal.
    if pan is not None:
        fields["2"] = pan
    if local_time is not None:
        fields["12"] = _n(local_time, 6, "12")
    if local_date is not None:
        fields["13"] = _n(local_date, 4, "13")
    if expiry is not None:
        fields["14"] = _n(expiry, 4, "14")
    if pan_sequence is not None:
        fields["23"] = _n(pan_sequence, 3, "23")
    if track2 is not None:
        fields["35"] = track2
    if rrn is not None:
        fields["37"] = rrn
    if merchant_id is not None:
        fields["42"] = merchant_id
    if pin_block is not None:
        fields["52"] = pin_block
    if icc is not None:
        fields["55"] = _icc(icc)  # type: ignore[assignment]
    return _finish(fields, extra, ("2", "7"))


authorization_request = partial(transaction_request, "0100")
authorization_request.__doc__ = """A 0100 (dual message: hold now, capture by advice later); arguments as :func:`transaction_request`."""

financial_request = partial(transaction_request, "0200")
financial_request.__doc__ = """A 0200 (single message: debit now); arguments as :func:`transaction_request`."""


def advice(
    *,
    response_code: str,
    mti: str = "0220",
    auth_code: str | None = None,
    **kwargs: Any,
) -> Message:
    """A 0220/0120 advice of a completed transaction (an offline approval, a stand-in).

    ``response_code`` says how it ended (``Y1``, ``Y3``, ``00``); other arguments as
    :func:`transaction_request`.
    """
    if original_mti(mti) not in ("0120", "0220"):
        raise MessageError(f"advice MTI {mti!r}; allowed: 0120, 0121, 0220, 0221", field="t")
    extra = dict(kwargs.pop("extra", None) or {})
    extra["39"] = response_code
    if auth_code is not None:
        extra["38"] = auth_code
    return transaction_request(mti, extra=extra, **kwargs)


def repeat(message: Message) -> Message:
    """The repeat of an advice or reversal (0220 → 0221, 0400 → 0401), otherwise identical."""
    mti = message.mti
    if mti in REPEATS:
        return message
    if mti not in _REPEAT_OF:
        raise MessageError(f"MTI {mti} has no repeat form; repeats exist for {', '.join(_REPEAT_OF)}", field="t")
    return message.replace(t=_REPEAT_OF[mti])


_REPEAT_OF = {first: again for again, first in REPEATS.items()}


def reversal(
    original: Message,
    *,
    stan: int | str,
    transmitted: datetime | str,
    mti: str = "0400",
    amount: int | None = None,
    reason: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Message:
    """A 0400/0420 reversal of ``original``, DE90 pointing at it.

    ``amount`` is the amount to reverse, carried in DE4 (default: all of it). Less is
    a partial reversal: DE95 then carries the replacement amount, what the original
    transaction finally comes to (original amount minus ``amount``). ``reason`` goes in DE39 (e.g. ``"68"`` timeout).
    """
    if original_mti(mti) not in ("0400", "0420"):
        raise MessageError(f"reversal MTI {mti!r}; allowed: 0400, 0401, 0420, 0421", field="t")
    src = original.fields
    full = original.amount or 0
    value = full if amount is None else amount
    fields = {
        "t": mti,
        "3": src.get("3", "000000"),
        "4": _amount(value),
        "7": _when(transmitted),
        "11": _n(stan, 6, "11"),
        "41": src.get("41", ""),
        "49": src.get("49", ""),
        "90": OriginalData(original.original_mti, src.get("11", ""), src.get("7", "")).encode(),
    }
    for key in ("2", "14", "22", "23", "37", "38", "42"):
        if key in src:
            fields[key] = src[key]
    if value < full:
        fields["95"] = f"{full - value:012d}".ljust(42, "0")  # replacement: what the sale finally is
    if reason is not None:
        fields["39"] = reason
    return _finish(fields, extra, ("7",))


def response(
    request: Message,
    code: str,
    *,
    auth_code: str | None = None,
    icc: Mapping[str, Any] | bytes | None = None,
    extra: Mapping[str, str] | None = None,
) -> Message:
    """The answer to ``request``: response MTI, echoed fields, DE39 ``code``.

    ``auth_code`` is DE38 (approvals); ``icc`` DE55 issuer data (91 ARPC, 71/72 scripts).
    """
    src = request.fields
    fields = {"t": response_mti(src["t"])}
    for key in ECHOED:
        if key in src:
            fields[key] = src[key]
    fields["7"] = src.get("7", "")
    fields["39"] = str(code)
    if auth_code is not None:
        fields["38"] = auth_code
    icc_hex = _icc(icc)
    if icc_hex is not None:
        fields["55"] = icc_hex
    return _finish(fields, extra, ("7",))


def network_request(
    code: str, *, stan: int | str, transmitted: datetime | str, terminal_id: str | None = None
) -> Message:
    """An 0800: ``"301"`` echo, ``"001"`` sign-on, ``"002"`` sign-off."""
    fields = {"t": "0800", "7": _when(transmitted), "11": _n(stan, 6, "11"), "70": code}
    if terminal_id is not None:
        fields["41"] = terminal_id
    return _finish(fields, None, ("7", "70"))


def reconciliation_request(
    *,
    terminal_id: str,
    stan: int | str,
    transmitted: datetime | str,
    currency: Any,
    credits_count: int,
    credits_amount: int,
    debits_count: int,
    debits_amount: int,
    batch: str | None = None,
    processing_code: str | None = None,
) -> Message:
    """A 0500 with one currency's totals: DE74/86 credits, DE76/88 debits, DE50 currency.

    ``processing_code`` (DE3): ``"920000"`` settlement, ``"960000"`` settlement after a
    batch upload (SET-01); absent means ``920000``.
    """
    fields = {
        "t": "0500",
        "7": _when(transmitted),
        "11": _n(stan, 6, "11"),
        "41": terminal_id,
        "50": _currency(currency),
        "74": _n(credits_count, 10, "74"),
        "76": _n(debits_count, 10, "76"),
        "86": _n(credits_amount, 16, "86"),
        "88": _n(debits_amount, 16, "88"),
    }
    if batch is not None:
        fields["60"] = batch
    if processing_code is not None:
        fields["3"] = _n(processing_code, 6, "3")
    return _finish(fields, None, ("7",))


_UPLOADED = ("2", "3", "4", "12", "13", "14", "22", "23", "25", "32", "37", "38", "42", "43", "49", "55")
"""Fields of the original transaction a 0320 carries (never track 2, track 1 or a PIN block)."""


def batch_upload(
    original: Message,
    *,
    stan: int | str,
    transmitted: datetime | str,
    response_code: str | None = None,
    mti: str = "0320",
) -> Message:
    """A 0320 batch upload of one transaction of the batch (SET-01), after a 0510 ``95``.

    It carries ``original``'s data (PAN from DE2 or track 2, DE3, DE4, DE22, DE49,
    DE55 for chip, ...) but no track data or PIN block, DE39 the original decision
    (``response_code``, else ``original``'s DE39, else ``00``), DE90 naming the original
    (MTI, STAN, DE7), and its own ``stan`` and ``transmitted``.

    >>> sale = financial_request(pan="4761739001010010", amount=1250, currency="978", stan=17,
    ...     transmitted="1130101500", terminal_id="TERM0001", entry_mode="012")
    >>> up = batch_upload(sale, stan=40, transmitted="1130180000")
    >>> up.mti, up.stan, up.response_code, up.original.stan, up.original.mti
    ('0320', '000040', '00', '000017', '0200')
    >>> uploaded_transaction(up) == sale.replace(DE39="00")
    True
    """
    if original_mti(mti) != "0320":
        raise MessageError(f"batch upload MTI {mti!r}; allowed: 0320, 0321", field="t")
    src = original.fields
    fields = {"t": mti}
    for key in _UPLOADED:
        if key in src:
            fields[key] = src[key]
    if "2" not in fields and original.pan:
        fields["2"] = original.pan
    fields["7"] = _when(transmitted)
    fields["11"] = _n(stan, 6, "11")
    fields["39"] = response_code or src.get("39") or "00"
    fields["41"] = src.get("41", "")
    fields["90"] = OriginalData(original.original_mti, src.get("11", ""), src.get("7", "")).encode()
    return _finish(fields, None, ("7",))


def uploaded_transaction(upload: Message) -> Message:
    """The transaction a 0320/0321 uploads, as its original message: DE90's MTI, STAN and DE7, DE39 kept.

    Raises :class:`MessageError` when DE90 is missing or malformed.
    """
    original = upload.original
    if original is None:
        raise MessageError(f"{upload.mti}: DE90 (original data) is missing", field="90")
    fields = {k: v for k, v in upload.fields.items() if k not in ("p", "1", "90")}
    fields.update({"t": original.mti, "11": original.stan, "7": original.transmitted})
    return Message(fields)
