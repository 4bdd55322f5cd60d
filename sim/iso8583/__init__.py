"""The ISO 8583 wire layer: dialects on pyiso8583, framing, the message catalogue, pcaps.

The names most callers need are re-exported here::

    from sim.iso8583 import DEFAULT, Framing, parse, financial_request, response
"""

from .catalogue import MESSAGE_TYPES, match_key, response_mti, validate
from .codes import ResponseCode, TerminalCode
from .dialect import DEFAULT, Dialect, load_dialect, resolve_dialect
from .errors import DecodeError, DialectError, FramingError, MessageError, WireError
from .framing import Frame, Framing, StreamDecoder, parse_framing
from .message import (
    Message,
    OriginalData,
    advice,
    authorization_request,
    financial_request,
    network_request,
    parse,
    reconciliation_request,
    repeat,
    response,
    reversal,
    transaction_request,
)
from .pretty import mask_pan, pretty, summary

__all__ = [
    "DEFAULT", "MESSAGE_TYPES", "DecodeError", "Dialect", "DialectError", "Frame", "Framing", "FramingError",
    "Message", "MessageError", "OriginalData", "ResponseCode", "StreamDecoder", "TerminalCode", "WireError",
    "advice", "authorization_request", "financial_request", "load_dialect", "mask_pan", "match_key",
    "network_request", "parse", "parse_framing", "pretty", "reconciliation_request", "repeat", "resolve_dialect",
    "response", "response_mti", "reversal", "summary", "transaction_request", "validate",
]
