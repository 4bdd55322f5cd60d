"""The host: acquirer, scheme stand-in and issuers wired together from config data.

This is the one object every driver runs (the SimPy world, the live TCP host, the
BDD steps, the in-process host of ``possim terminal``): sans-IO, fed a message or
bytes and the current time, returning the answer.

Configuration is plain data (desmod style), every key optional::

    {
        "acquirer": {"require_sign_on": False, "outages": [...]},     # see Acquirer
        "standin": {"limits": {"EUR": 5000, "USD": 5000}},            # see StandIn
        "settlement": {"cutoff": "23:00"},                             # see Settlement
        "issuer": {"duplicate_window_s": 900, "pin_try_limit": 3,      # every issuer
                   "keep_decisions": 10000, "keep_postings": 10000,    # (default: keep all)
                   "retain_s": 86400},                                 # see Host.prune
        "mac": {"keys": {"TERM0001": "<32 hex>"},                      # see MacKeys; default:
                "default_key": "<32 hex>"},                            # the TEST ONLY MAC key
        "prune": {"every_s": 60, "unsettled": False},                  # see Host.handle
    }

MAC-ing dialects (SEC-01): given a dialect with a ``mac_field`` (``receive`` always has
one; ``handle`` takes it as a keyword), the host verifies the request's MAC with the key
of its terminal (DE41) before anything else. A missing, malformed or wrong MAC is
answered 63, logged in the acquirer's decisions as a security violation, and goes no
further: no issuer, stand-in or batch sees it. Every answer on such a dialect carries
the host's MAC under the same key. In-process drivers that exchange messages without
encoding them (the SimPy world) pass no dialect: there are no bytes to authenticate.

Examples
--------
>>> from datetime import datetime
>>> from sim.iso8583.message import network_request
>>> host = Host()
>>> echo = network_request("301", stan=1, transmitted="1122103000", terminal_id="TERM0001")
>>> host.handle(echo, datetime(2026, 11, 22, 10, 30)).response_code
'00'
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.errors import WireError
from ..iso8583.mac import MacKeys, MacResult, sign, verify
from ..iso8583.message import Message, parse
from .acquirer import Acquirer
from .cards import CardSet, load_cards
from .history import BookedEffect, effects_from, posting_effect
from .issuer import Issuer
from .settlement import Settlement, UploadResult
from .standin import StandIn

DEFAULT_STANDIN_LIMITS = {"EUR": 5000, "USD": 5000, "JPY": 5000, "KWD": 5000}
"""Stand-in approves below 50.00 EUR/USD, 5000 JPY, 5.000 KWD unless configured."""

_SECTIONS = ("acquirer", "standin", "settlement", "issuer", "mac", "prune")
_ISSUER_KEYS = {"duplicate_window_s": "duplicate_window", "pin_try_limit": "pin_try_limit",
               "keep_decisions": "keep_decisions", "keep_postings": "keep_postings", "keep_answers": "keep_answers",
               "retain_s": "retain"}


def _prune_settings(section: Mapping[str, Any] | None) -> tuple[timedelta | None, bool]:
    """The ``prune`` section: ``every_s`` as a timedelta, and ``unsettled``; ValueError naming what is allowed."""
    section = dict(section or {})
    unknown = set(section) - {"every_s", "unsettled"}
    if unknown:
        raise ValueError(f"host config [prune] has unknown keys {sorted(unknown)}; allowed: every_s, unsettled")
    unsettled = section.get("unsettled", False)
    if not isinstance(unsettled, bool):
        raise ValueError(f"host config [prune] unsettled is {unsettled!r}; allowed: true or false")
    every = section.get("every_s")
    if every is None:
        return None, unsettled
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
        raise ValueError(f"host config [prune] every_s is {every!r}; allowed: seconds > 0")
    return timedelta(seconds=every), unsettled


class Host:
    """Acquirer + stand-in + settlement + one :class:`Issuer` per issuer of the card set.

    Parameters
    ----------
    config : mapping, optional
        Sections ``acquirer``, ``standin``, ``settlement``, ``issuer``, ``mac`` (see the module doc).
    cards : CardSet, optional
        The card set; default the shipped one (the virtual cards use the same).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, cards: CardSet | None = None) -> None:
        config = dict(config or {})
        unknown = set(config) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"host config has unknown sections {sorted(unknown)}; allowed: {', '.join(_SECTIONS)}")
        self.cards = cards if cards is not None else load_cards()
        options: dict[str, Any] = {}
        for key, value in dict(config.get("issuer", {})).items():
            if key not in _ISSUER_KEYS:
                raise ValueError(f"host config [issuer] has unknown key {key!r}; allowed: {', '.join(_ISSUER_KEYS)}")
            timed = key in ("duplicate_window_s", "retain_s") and value is not None
            options[_ISSUER_KEYS[key]] = timedelta(seconds=value) if timed else value
        self.issuers: dict[str, Issuer] = {
            cfg.id: Issuer.from_card_set(self.cards, cfg.id, **options) for cfg in self.cards.issuers
        }
        standin = dict(config.get("standin", {}))
        standin.setdefault("limits", DEFAULT_STANDIN_LIMITS)
        self.acquirer = Acquirer(
            self.issuers.values(),
            config.get("acquirer"),
            standin=StandIn(standin),
            settlement=Settlement(config.get("settlement")),
        )
        self.mac_keys = MacKeys.from_config(config.get("mac"))
        """Terminal MAC keys by DE41 (default: the TEST ONLY key of :mod:`sim.iso8583.mac`)."""
        self.prune_every, self._prune_unsettled = _prune_settings(config.get("prune"))
        """Prune at most this often, on message time (``None``: only when a driver calls :meth:`prune`)."""
        self._next_prune: datetime | None = None

    @property
    def settlement(self) -> Settlement:
        """The acquirer's batches and reconciliation."""
        return self.acquirer.settlement

    @property
    def standin(self) -> StandIn:
        """The scheme stand-in processor and its advice queue."""
        return self.acquirer.standin

    def handle(self, msg: Message, now: datetime, dialect: Dialect | None = None, *, raw: bytes | None = None) -> Message:
        """Answer one request (format problems are answered 30, never raised).

        With a ``dialect`` that MACs, the request's MAC is checked first (63 when it does
        not verify, nothing booked) and the answer comes back signed; see the module doc.
        ``raw``, the frame ``msg`` was decoded from, makes the check cover those exact
        bytes (drivers that decoded a frame themselves should pass it).

        With ``prune.every_s`` configured, the first message at least that long after the
        last prune runs :meth:`prune` at its ``now`` before it is answered (with
        ``unsettled`` as the section says: ``true`` folds open batches' entries older than
        settlement's ``retain_s`` too, for terminals that never settle). Pruning is
        then a function of the messages and their times alone, so a driver that replays
        stored messages with their times (the live host's replay log) prunes at the same
        points and ends in the same state.
        """
        every = self.prune_every
        if every is not None:
            due = self._next_prune
            if due is None:
                self._next_prune = now + every
            elif now >= due:
                self.prune(now, unsettled=self._prune_unsettled)
                self._next_prune = now + every
        if dialect is None or dialect.mac_field is None:
            return self.acquirer.handle(msg, now)
        key = self.mac_keys.key_for(msg.fields.get("41"))
        check = verify(msg, dialect, key, raw=raw)
        if check is MacResult.VALID:
            answer = self.acquirer.handle(msg, now)
        else:
            reason = f"security violation: {check.value} (DE{dialect.mac_field}, {dialect.name})"
            answer = self.acquirer.refuse(msg, now, "63", reason)
        if key is None:
            return answer
        try:
            return sign(answer, dialect, key)
        except WireError:
            return answer  # it will not encode either; the driver drops it as for any such answer

    def receive(self, raw: bytes, now: datetime, dialect: Dialect = DEFAULT) -> bytes | None:
        """Answer one frame's bytes with bytes.

        A message that decodes but breaks the catalogue is answered 30 (by the
        acquirer); bytes that do not decode at all cannot be answered (no MTI, no
        trace number to echo), so this returns None and the driver drops the frame.
        """
        try:
            fields = dialect.decode(raw)
        except WireError:
            return None
        answer = self.handle(Message(fields), now, dialect, raw=raw)
        try:
            return answer.encode(dialect)
        except WireError:
            return None

    def receive_message(self, raw: bytes, now: datetime, dialect: Dialect = DEFAULT) -> Message:
        """Like :meth:`receive` for callers holding messages: strict parse, then answer."""
        return self.handle(parse(raw, dialect), now, dialect, raw=raw)

    def batch_upload(self, terminal_id: str, messages: list[Message], now: datetime) -> UploadResult:
        """Accept a terminal's batch upload after a 0510 95 (SET-01), in process, all at once.

        Over the wire the same happens one 0320 at a time, then a 0500 960000
        (:mod:`sim.core.acquirer`). Settlement adds the transactions it was missing and closes the batch; the
        advices among them are then forwarded to their issuers, which book each once
        (an issuer that already booked one answers 00 and books nothing).
        """
        return self.acquirer.batch_upload(terminal_id, messages, now)

    def set_issuer_available(self, issuer_id: str, up: bool, now: datetime) -> None:
        """Take an issuer down (stand-in answers for it) or bring it back (queued advices flow)."""
        self.acquirer.set_available(issuer_id, up, now)

    def issuer_for(self, pan: str) -> Issuer:
        """The issuer holding ``pan``'s account; KeyError naming the masked PAN if none."""
        for issuer in self.issuers.values():
            if issuer.card(pan) is not None:
                return issuer
        raise KeyError(f"no issuer holds an account for {pan[:6]}...{pan[-4:]}")

    def balance(self, pan: str) -> int:
        """The account balance of ``pan`` in minor units of its currency."""
        return self.issuer_for(pan).balance(pan)

    def available(self, pan: str) -> int:
        """Balance minus holds."""
        return self.issuer_for(pan).available(pan)

    def prune(self, now: datetime, *, before: datetime | None = None, unsettled: bool = False) -> int:
        """Forget host state only a window needs: a long-running driver calls this on a timer.

        Each part keeps what a later message may still name for as long as its window says
        (``retain_s`` of ``issuer``, ``acquirer`` and ``settlement``; see
        :meth:`Issuer.prune`, :meth:`Acquirer.prune`, :meth:`Settlement.prune`), or
        everything received before ``before`` when given (the SimPy world passes the time
        of the oldest transaction still owed anywhere, with ``unsettled=True``). Money
        already booked stays in the balances and the batch totals. Returns the originals
        and routes forgotten.
        """
        gone = sum(issuer.prune(now, before=before) for issuer in self.issuers.values())
        return gone + self.acquirer.prune(now, before=before, unsettled=unsettled)

    def booked_effects(self) -> list[BookedEffect]:
        """Every posting of every issuer's ledger, as the history checker reads them."""
        effects: list[BookedEffect] = []
        for issuer in self.issuers.values():
            effects.extend(effects_from(issuer.ledger.entries(), posting_effect))
        return effects
