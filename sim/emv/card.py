"""The virtual EMV card: a sans-IO contact chip (and stripe) personalised from the card set.

Bytes in, bytes out: :meth:`VirtualCard.execute` takes a C-APDU and returns the
R-APDU; nothing here touches a socket, a thread, a sleep or a clock. The PC/SC bridge,
the terminal kernel and the simulation drive the very same object.

* Files and keys come from :mod:`sim.emv.card_perso` (record layout documented there).
* The life cycle is the table in :mod:`sim.emv.card_state`; a command not allowed in
  the current state answers ``6985`` and changes nothing.
* Card risk management and the CVR are :mod:`sim.emv.card_risk`; cryptograms are
  :mod:`sim.core.crypto` (the issuer verifies them with the same code).
* Faults are :mod:`sim.emv.faults`; a delay is *reported* in :attr:`last_delay_ms`.

T=0 behaviour (EMV Book 1 / ISO 7816-3): a command that has response data but came
without Le is answered ``61xx`` and the data is served by GET RESPONSE
(``00 C0 00 00 xx``). A case 2 command (READ RECORD, GET DATA) with a wrong non-zero
Le is answered ``6Cxx`` (resend with Le = xx). ``Le = 00`` always takes the whole
answer. A case 4 command with a wrong Le gets ``61xx`` rather than ``6Cxx``: resending
a GENERATE AC would run it twice.

Examples
--------
>>> card = VirtualCard.from_label("healthy")
>>> card.power_on().hex().upper()
'3B600000'
>>> card.execute(bytes.fromhex("00A404000E315041592E5359532E444446303100"))[-2:].hex()
'9000'
>>> card.execute(bytes.fromhex("00A404000E315041592E5359532E4444463031"))[-2:].hex()
'611c'
>>> card.execute(bytes.fromhex("00C000001C"))[-2:].hex()
'9000'
"""

from __future__ import annotations

import hmac
import random
from dataclasses import replace
from functools import cached_property, lru_cache
from typing import Any, Callable, Mapping, Sequence

from pyemv import sm as _sm

from . import oda, tlv
from ..core import crypto
from ..core.cards import Card, CardSet, IssuerConfig, load_cards
from .apdu import SW, ApduError, Command, parse_recurring, response
from .card_perso import PPSE_NAME, PSE_NAME, CardImage, personalise
from .card_risk import (
    AcType,
    CardCounters,
    TxnFacts,
    cvr,
    first_ac_decision,
    requested_ac,
    second_ac_decision,
)
from .card_state import COMMANDS, CardStateMachine, Cmd, Event, State
from .errors import CardMuteError, CardNotPoweredError, CardRemovedError, MagstripeError
from .faults import (
    BAD_ATR,
    Effect,
    Fault,
    FaultPlan,
    card_set_faults,
    corrupt_tlv,
    corrupt_track,
    drop_tag,
    parse_faults,
    truncate,
)
from .qr import wallet_qr

__all__ = ["ATR", "VirtualCard"]

ATR = bytes.fromhex("3B600000")
"""The EMV basic ATR for T=0 (EMV Book 1 8.3): direct convention, TB1 = 00, TC1 = 00, no historical bytes."""

_Result = tuple[bytes, int, Event | None]
_DATA_EFFECTS = ("corrupt_tlv", "truncate", "drop_tag")
_NO_FACTS = TxnFacts()
"""What a transaction has learned when it starts: nothing (facts are frozen, so one object serves every start)."""
_TARGETS = {kind: (kind.value, "*") for kind in Cmd}
"""The fault targets a command answers to (GENERATE AC also to its first or second occurrence)."""
_FIRST_AC_TARGETS = (Cmd.GENERATE_AC.value, "GENERATE AC 1", "*")
_SECOND_AC_TARGETS = (Cmd.GENERATE_AC.value, "GENERATE AC 2", "*")


class VirtualCard:
    """A chip card that answers APDUs, swipes, and breaks as its faults say.

    Parameters
    ----------
    card : Card
        The card from the card set (PAN, keys, EMV personalisation).
    issuer : IssuerConfig
        Its issuer (master key for cryptograms, scheme, country).
    faults : sequence of Fault or dict
        Extra faults on top of those the card set's ``faults`` field implies.
    seed : int
        Seeds the card's RNG (probability triggers, truncation points, ICC dynamic numbers).
    counters : CardCounters, optional
        Restore non-volatile state (ATC, offline count, PIN tries...) saved from
        :attr:`counters`; a fresh card starts at ATC 0 with its full PIN try limit.
    icc_key_label : str, optional
        Name the ICC RSA key pair is derived from (default: from the PAN and PSN). Cards
        cloned from one card-set entry may share their template's key pair, so an estate
        of thousands of cardholders does not generate thousands of RSA keys; each clone
        still has its own ICC certificate binding its own PAN.
    """

    def __init__(
        self,
        card: Card,
        issuer: IssuerConfig,
        *,
        faults: Sequence[Fault | Mapping[str, Any]] = (),
        seed: int = 0,
        counters: CardCounters | None = None,
        icc_key_label: str | None = None,
    ) -> None:
        self._card = card
        self._icc_key_label = icc_key_label
        self._issuer = issuer
        self._plan = FaultPlan(card_set_faults(card) + parse_faults(faults), random.Random(seed))
        self._idn_rng = random.Random(f"possim ICC dynamic number|{card.pan}|{card.psn}|{seed}")
        self._machine = CardStateMachine()
        self._counters = counters if counters is not None else CardCounters(pin_tries_left=card.pin_try_limit)
        self._facts = _NO_FACTS
        self._arqc: bytes | None = None
        self._directory: bytes | None = None
        self._pending = b""
        self.last_delay_ms = 0
        """Delay (ms) the last power_on / execute / swipe asked its driver to wait before delivering the answer."""
        self._handlers: dict[Cmd, Callable[[Command], _Result]] = {
            Cmd.SELECT: self._select,
            Cmd.READ_RECORD: self._read_record,
            Cmd.GET_PROCESSING_OPTIONS: self._get_processing_options,
            Cmd.GET_DATA: self._get_data,
            Cmd.VERIFY: self._verify,
            Cmd.INTERNAL_AUTHENTICATE: self._internal_authenticate,
            Cmd.GENERATE_AC: self._generate_ac,
        }

    @classmethod
    def from_label(cls, label: str, cards: CardSet | None = None, **kw: Any) -> "VirtualCard":
        """The card ``label`` of ``cards`` (default: the shipped card set), with its issuer."""
        cards = cards if cards is not None else _default_cards()
        card = cards.card(label)
        return cls(card, cards.issuer(card.issuer), **kw)

    def __repr__(self) -> str:
        return f"VirtualCard({self._card.label!r}, pan={self._card.masked_pan!r}, state={self.state.name})"

    # Public state ---------------------------------------------------------------------------

    @property
    def card(self) -> Card:
        return self._card

    @property
    def issuer(self) -> IssuerConfig:
        return self._issuer

    @property
    def state(self) -> State:
        """Current life-cycle state (see :mod:`sim.emv.card_state`)."""
        return self._machine.state

    @property
    def atc(self) -> int:
        """Application transaction counter (9F36)."""
        return self._counters.atc

    @property
    def pin_tries_left(self) -> int:
        """PIN try counter (9F17)."""
        return self._counters.pin_tries_left

    @property
    def counters(self) -> CardCounters:
        """Snapshot of the non-volatile counters (pass back as ``counters=`` to restore)."""
        return self._counters

    @property
    def faults(self) -> tuple[Fault, ...]:
        """Every fault this card plays: card-set implied ones first, then the given ones."""
        return tuple(self._plan.faults)

    def personalise(self) -> "VirtualCard":
        """Work out now what the card otherwise works out at its first use (its chip image,
        its files, its ICC master key): as issuance does, before the card sees a terminal.

        A card is the same card either way; an estate built with its cards personalised
        holds as much memory at its first transaction as at its last. Returns the card.
        """
        if self._card.emv is not None:
            self._sfis  # noqa: B018 - cached, with the image it is built from
            self._icc_mk  # noqa: B018
        return self

    @cached_property
    def image(self) -> CardImage:
        """The personalised chip contents (records, DOLs, keys)."""
        return personalise(self._card, self._issuer, self._icc_key_label)

    @cached_property
    def _sfis(self) -> frozenset[int]:
        """The short files the application's records are in (others answer 6A82)."""
        return frozenset(sfi for sfi, _ in self.image.records)

    @cached_property
    def _icc_mk(self) -> bytes:
        return crypto.icc_master_key(self._issuer, self._card)

    # Physical events ------------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """Insert / reset: the ATR. Also re-inserts a removed card and resets a mute one.

        Raises
        ------
        CardMuteError
            No chip (stripe-only card) or a ``mute`` fault on ``ATR``.
        CardRemovedError
            A ``remove`` fault on ``ATR``.
        """
        self.last_delay_ms = 0
        if self._card.emv is None:
            raise CardMuteError(f"card {self._card.label!r} has no chip: no ATR")
        effects = self._plan.fire(("ATR",))
        self.last_delay_ms = _delay_ms(effects)
        kinds = {e.kind for e in effects}
        if "remove" in kinds:
            self._reset_volatile()
            self._advance(Event.REMOVE)
            raise CardRemovedError("card removed during power-on")
        if "mute" in kinds:
            self._reset_volatile()
            self._advance(Event.GO_MUTE)
            raise CardMuteError("chip does not answer the reset (no ATR)")
        self._reset_volatile()
        self._advance(Event.POWER_ON)
        return BAD_ATR if "bad_atr" in kinds else ATR

    def remove(self) -> None:
        """Pull the card out of the reader; later commands raise :class:`CardRemovedError` until power_on."""
        self._reset_volatile()
        self._advance(Event.REMOVE)

    def swipe(self) -> str:
        """Read the magnetic stripe: track 2 as ``PAN 'D' YYMM service-code discretionary``.

        Raises
        ------
        MagstripeError
            A ``track_unreadable`` fault (or the card set's ``magstripe_unreadable``).
        """
        effects = self._plan.fire(("SWIPE",))
        self.last_delay_ms = _delay_ms(effects)
        kinds = {e.kind for e in effects}
        if "track_unreadable" in kinds:
            raise MagstripeError(f"stripe of card {self._card.masked_pan} is unreadable")
        track = self._card.track2("D")
        if "track_corrupt" in kinds:
            track = corrupt_track(track, self._plan.rng)
        return track

    def qr_code(self) -> str:
        """The consumer-presented QR code a wallet holding this card shows (OFF-09, :mod:`sim.emv.qr`)."""
        return wallet_qr(pan=self._card.pan, expiry=self._card.expiry, psn=self._card.psn, aid=self._issuer.aid,
                         label=self._issuer.scheme.upper())

    # APDU exchange ----------------------------------------------------------------------------------

    def execute(self, apdu: bytes) -> bytes:
        """Process one C-APDU; returns the R-APDU (response data, SW1, SW2), never empty.

        Raises
        ------
        CardRemovedError
            The card is out of the reader, or a ``remove`` fault fires (after the command ran).
        CardMuteError
            The chip is mute (a ``mute`` fault fired now or earlier; power_on resets it).
        CardNotPoweredError
            No power_on yet.
        """
        self.last_delay_ms = 0
        state = self._machine.state
        if state is State.REMOVED:
            raise CardRemovedError("card is not in the reader")
        if state is State.MUTE:
            raise CardMuteError("chip is mute until reset")
        if state is State.POWERED_OFF:
            raise CardNotPoweredError("card is not powered: call power_on() first")
        try:
            cmd = parse_recurring(apdu)
        except ApduError:
            return response(b"", SW.WRONG_LENGTH)
        entry = COMMANDS.get(cmd.ins)
        if cmd.cla not in (0x00, 0x80) or (entry is not None and entry[0] != cmd.cla):
            return response(b"", SW.CLA_NOT_SUPPORTED)
        if entry is None:
            return response(b"", SW.INS_NOT_SUPPORTED)
        kind = entry[1]
        if not self._plan.faults:  # most cards: no fault to count, fire or apply
            if kind is Cmd.GET_RESPONSE:
                return response(*self._get_response(cmd))
            self._pending = b""
            return self._deliver(cmd, *self._dispatch(kind, cmd))
        effects = self._plan.fire(self._targets(kind))
        self.last_delay_ms = _delay_ms(effects)
        kinds = {e.kind for e in effects}
        if "pin_blocked" in kinds:
            self._counters = replace(self._counters, pin_tries_left=0)
        if "mute" in kinds:
            self._reset_volatile()
            self._advance(Event.GO_MUTE)
            raise CardMuteError(f"chip went mute during {kind.value}")
        forced = next((e for e in effects if e.kind == "status_word"), None)
        if forced is not None:
            if kind is not Cmd.GET_RESPONSE:
                self._pending = b""
            data, sw, direct = b"", forced.status_word, True
        elif kind is Cmd.GET_RESPONSE:
            data, sw = self._get_response(cmd)
            direct = True
        else:
            self._pending = b""
            data, sw = self._dispatch(kind, cmd)
            direct = False
        if data and effects:
            data = self._apply_data_effects(data, effects)
        if "remove" in kinds:
            self._reset_volatile()
            self._advance(Event.REMOVE)
            raise CardRemovedError(f"card removed during {kind.value}")
        return response(data, sw) if direct else self._deliver(cmd, data, sw)

    def _targets(self, kind: Cmd) -> tuple[str, ...]:
        if kind is Cmd.GENERATE_AC:
            return _SECOND_AC_TARGETS if self._machine.state is State.ONLINE else _FIRST_AC_TARGETS
        return _TARGETS[kind]

    def _apply_data_effects(self, data: bytes, effects: list[Effect]) -> bytes:
        for effect in effects:
            if effect.kind == "drop_tag":
                data = drop_tag(data, str(effect.arg))
            elif effect.kind == "corrupt_tlv":
                data = corrupt_tlv(data)
            elif effect.kind == "truncate":
                data = truncate(data, self._plan.rng)
        return data

    def _dispatch(self, kind: Cmd, cmd: Command) -> tuple[bytes, int]:
        if not self._machine.allowed(kind):
            return b"", SW.CONDITIONS_NOT_SATISFIED
        data, sw, event = self._handlers[kind](cmd)
        if event is not None:
            self._advance(event)
        return data, sw

    def _deliver(self, cmd: Command, data: bytes, sw: int) -> bytes:
        """T=0 delivery of response data: 61xx / 6Cxx / the data itself, by Le."""
        if not data:
            return response(b"", sw)
        if cmd.le is None or (cmd.case == 4 and cmd.le not in (256, len(data))):
            self._pending = data
            return response(b"", 0x6100 | (len(data) & 0xFF))
        if cmd.le in (256, len(data)):
            return response(data, sw)
        return response(b"", 0x6C00 | (len(data) & 0xFF))

    def _get_response(self, cmd: Command) -> tuple[bytes, int]:
        if cmd.p1 or cmd.p2:
            return b"", SW.WRONG_P1P2
        if cmd.data:
            return b"", SW.WRONG_LENGTH
        if not self._pending:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        le = cmd.le or 256
        size = len(self._pending)
        if le < size:
            chunk, self._pending = self._pending[:le], self._pending[le:]
            return chunk, 0x6100 | (len(self._pending) & 0xFF)
        if le != 256 and le != size:
            return b"", 0x6C00 | (size & 0xFF)
        chunk, self._pending = self._pending, b""
        return chunk, SW.OK

    # State helpers ---------------------------------------------------------------------------------

    def _advance(self, event: Event) -> None:
        if self._machine.state is State.ONLINE and event is not Event.TRANSACTION_DONE:
            self._counters = replace(self._counters, online_incomplete=True)
        self._machine.advance(event)

    def _reset_volatile(self) -> None:
        """What a reset or removal wipes: pending response, selection, the transaction's facts."""
        self._pending = b""
        self._directory = None
        self._new_transaction()

    def _new_transaction(self) -> None:
        self._facts = _NO_FACTS
        self._arqc = None

    # Command handlers (each returns data, SW, event) -------------------------------------------------

    def _select(self, cmd: Command) -> _Result:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x02):
            return b"", SW.WRONG_P1P2, None
        name = cmd.data
        if not name:
            return b"", SW.WRONG_LENGTH, None
        image = self.image
        if name in (PSE_NAME, PPSE_NAME):
            if cmd.p2 == 0x02:
                return b"", SW.NOT_FOUND, None
            self._directory = name
            self._new_transaction()
            return (image.fci_pse if name == PSE_NAME else image.fci_ppse), SW.OK, Event.DIRECTORY_SELECTED
        if 5 <= len(name) <= 16 and image.aid.startswith(name) and cmd.p2 == 0x00:
            self._directory = None
            self._new_transaction()
            return image.fci_adf, SW.OK, Event.APPLICATION_SELECTED
        return b"", SW.NOT_FOUND, None

    def _read_record(self, cmd: Command) -> _Result:
        if cmd.data:
            return b"", SW.WRONG_LENGTH, None
        number, sfi = cmd.p1, cmd.p2 >> 3
        if cmd.p2 & 0x07 != 0x04 or number == 0 or sfi == 0:
            return b"", SW.WRONG_P1P2, None
        if self._machine.state is State.DIRECTORY:
            if self._directory != PSE_NAME or sfi != 1:
                return b"", SW.NOT_FOUND, None
            record = self.image.pse_records.get(number)
        else:
            records = self.image.records
            if sfi not in self._sfis:
                return b"", SW.NOT_FOUND, None
            record = records.get((sfi, number))
        if record is None:
            return b"", SW.RECORD_NOT_FOUND, None
        return record, SW.OK, None

    def _get_processing_options(self, cmd: Command) -> _Result:
        if cmd.p1 or cmd.p2:
            return b"", SW.WRONG_P1P2, None
        if not cmd.data:
            return b"", SW.WRONG_LENGTH, None
        try:
            decoded = tlv.decode_view(cmd.data)
        except tlv.TlvError:
            return b"", SW.WRONG_DATA, None
        value = decoded.get("83")
        if list(decoded) != ["83"] or not isinstance(value, bytes):
            return b"", SW.WRONG_DATA, None
        image = self.image
        if len(value) != image.pdol.size:
            return b"", SW.WRONG_LENGTH, None
        # The ATC counts transactions started, as issuers' card specifications have it: it goes
        # up here, so a transaction abandoned after GPO still uses a number (Book 3 10.6.3).
        if self._counters.atc >= 0xFFFF:
            return b"", SW.CONDITIONS_NOT_SATISFIED, None
        self._counters = replace(self._counters, atc=self._counters.atc + 1)
        return _gpo_answer(image.gpo_format, image.aip, image.afl), SW.OK, Event.PROCESSING_STARTED

    def _get_data(self, cmd: Command) -> _Result:
        if cmd.data:
            return b"", SW.WRONG_LENGTH, None
        counters = self._counters
        tag = cmd.p1p2
        if tag == 0x9F36:
            value = counters.atc.to_bytes(2, "big")
        elif tag == 0x9F13:
            value = counters.last_online_atc.to_bytes(2, "big")
        elif tag == 0x9F17:
            value = bytes((counters.pin_tries_left,))
        else:
            return b"", SW.DATA_NOT_FOUND, None
        return tlv.encode_primitive(f"{tag:04X}", value), SW.OK, None

    def _verify(self, cmd: Command) -> _Result:
        if cmd.p1 != 0x00:
            return b"", SW.WRONG_P1P2, None
        if cmd.p2 == 0x88:
            return b"", SW.FUNCTION_NOT_SUPPORTED, None
        if cmd.p2 != 0x80:
            return b"", SW.WRONG_P1P2, None
        tries = self._counters.pin_tries_left
        if tries == 0:
            return b"", SW.AUTH_METHOD_BLOCKED, None
        if not cmd.data:
            return b"", 0x63C0 | min(tries, 0x0F), None
        if len(cmd.data) != 8:
            return b"", SW.WRONG_LENGTH, None
        if not _plaintext_pin_block(cmd.data):
            return b"", SW.WRONG_DATA, None
        expected = _sm.format_iso9564_2_pin_block(self._card.pin)
        if hmac.compare_digest(bytes(cmd.data), expected):
            self._counters = replace(self._counters, pin_tries_left=self._card.pin_try_limit)
            self._facts = replace(self._facts, offline_pin_performed=True, offline_pin_failed=False)
            return b"", SW.OK, None
        tries -= 1
        self._counters = replace(self._counters, pin_tries_left=tries)
        self._facts = replace(self._facts, offline_pin_performed=True, offline_pin_failed=True)
        return b"", 0x63C0 | min(tries, 0x0F), None

    def _internal_authenticate(self, cmd: Command) -> _Result:
        if cmd.p1 or cmd.p2:
            return b"", SW.WRONG_P1P2, None
        if not cmd.data:
            return b"", SW.WRONG_LENGTH, None
        image = self.image
        idn = self._idn_rng.randbytes(8)
        sdad = oda.sign_dynamic_data(image.icc_key, bytes((len(idn),)) + idn, cmd.data)
        self._facts = replace(self._facts, dda_performed=True)
        if image.auth_format == 1:
            return tlv.encode({"80": sdad}), SW.OK, None
        return tlv.encode({"77": {"9F4B": sdad}}), SW.OK, None

    def _generate_ac(self, cmd: Command) -> _Result:
        requested = requested_ac(cmd.p1)
        if requested is None or cmd.p2 != 0x00:
            return b"", SW.WRONG_P1P2, None
        if self._machine.state is State.ONLINE:
            return self._second_generate_ac(requested, cmd)
        return self._first_generate_ac(requested, cmd)

    def _first_generate_ac(self, requested: AcType, cmd: Command) -> _Result:
        emv = self._card.emv
        assert emv is not None
        image = self.image
        if len(cmd.data) != image.cdol1.size:
            return b"", SW.WRONG_LENGTH, None
        decision, noted = first_ac_decision(requested, self._counters, emv.lcol, emv.ucol)
        self._facts = replace(
            self._facts, first_ac=decision, lcol_exceeded=noted.lcol_exceeded, ucol_exceeded=noted.ucol_exceeded
        )
        data, cryptogram = self._cryptogram(decision, image.cdol1.split(cmd.data))
        if decision is AcType.TC:
            self._counters = replace(self._counters, offline_count=self._counters.offline_count + 1)
        if decision is AcType.ARQC:
            self._arqc = cryptogram
            return data, SW.OK, Event.ARQC_RETURNED
        return data, SW.OK, Event.TRANSACTION_DONE

    def _second_generate_ac(self, requested: AcType, cmd: Command) -> _Result:
        emv = self._card.emv
        assert emv is not None and self._arqc is not None
        image = self.image
        if requested is AcType.ARQC:
            return b"", SW.WRONG_P1P2, None
        if len(cmd.data) != image.cdol2.size:
            return b"", SW.WRONG_LENGTH, None
        values = image.cdol2.split(cmd.data)
        tag_91 = values["91"]
        if tag_91 == bytes(len(tag_91)):
            arpc_ok, arpc_rc = None, None
        else:
            arpc_ok, arpc_rc = crypto.verify_arpc(self._icc_mk, self._arqc, tag_91), tag_91[8:]
        decision, self._facts, self._counters = second_ac_decision(
            requested, values["8A"], arpc_ok, arpc_rc, self._counters, emv.ucol, self._facts
        )
        data, _ = self._cryptogram(decision, values)
        self._arqc = None
        return data, SW.OK, Event.TRANSACTION_DONE

    def _cryptogram(self, decision: AcType, terminal_data: Mapping[str, bytes]) -> tuple[bytes, bytes]:
        """Format 2 GENERATE AC response (77: 9F27, 9F36, 9F26, 9F10) and the cryptogram itself."""
        emv = self._card.emv
        assert emv is not None
        atc = self._counters.atc.to_bytes(2, "big")
        iad = crypto.issuer_application_data(emv.cvn, cvr(emv.cvn, self._counters, self._facts), emv.dki)
        icc = {tag: terminal_data[tag] for tag, _ in crypto.AC_TAGS if tag in terminal_data}
        icc.update({"82": self.image.aip, "9F36": atc, "9F10": iad})
        cryptogram = crypto.generate_ac(self._icc_mk, emv.cvn, icc)
        data = tlv.encode({"77": {"9F27": bytes((decision,)), "9F36": atc, "9F26": cryptogram, "9F10": iad}})
        return data, cryptogram


@lru_cache(maxsize=64)
def _gpo_answer(gpo_format: int, aip: bytes, afl: bytes) -> bytes:
    """The GET PROCESSING OPTIONS answer, remembered: AIP and AFL never change, and every card of
    a card-set entry (a whole estate of clones) has the same ones."""
    if gpo_format == 1:
        return tlv.encode({"80": aip + afl})
    return tlv.encode({"77": {"82": aip, "94": afl}})


def _delay_ms(effects: list[Effect]) -> int:
    """Total delay the fired ``delay`` effects ask the driver to wait, in milliseconds."""
    return sum(int(str(e.arg)) for e in effects if e.kind == "delay")


def _plaintext_pin_block(block: bytes) -> bool:
    """True for an ISO 9564 format 2 block (what VERIFY P2 = 80 carries): 2N, N digits, F fill."""
    text = bytes(block).hex().upper()
    length = int(text[1], 16)
    return (
        text[0] == "2"
        and 4 <= length <= 12
        and text[2:2 + length].isdigit()
        and text[2 + length:] == "F" * (14 - length)
    )


_CARDS: CardSet | None = None


def _default_cards() -> CardSet:
    """The shipped card set, loaded once per process (it is immutable)."""
    global _CARDS
    if _CARDS is None:
        _CARDS = load_cards()
    return _CARDS
