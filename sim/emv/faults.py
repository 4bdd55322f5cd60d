"""Declarative, seeded card faults: what breaks, when, and how.

A fault is three words: a **target** (which command, or the ATR, or the swipe), an
**effect** (what goes wrong) and a **trigger** (when). Scenarios write them as plain
tables, e.g. in TOML::

    [[faults]]
    target = "READ RECORD"
    effect = "drop_tag(5A)"        # or: effect = "drop_tag", tag = "5A"
    trigger = "every_n(2)"         # or: trigger = "every_n", n = 2

Randomness (``probability`` triggers, where to cut a truncated response, which digit
of a corrupted track changes) comes from one ``random.Random(seed)`` per card, so a
seeded run breaks the same way every time.

Targets
-------
``SELECT``, ``READ RECORD``, ``GET PROCESSING OPTIONS`` (``GPO``), ``GET DATA``,
``VERIFY``, ``GENERATE AC`` (both), ``GENERATE AC 1`` / ``GENERATE AC 2`` (first or
second only), ``INTERNAL AUTHENTICATE``, ``GET RESPONSE``, ``*`` (every command),
``ATR`` (power-on) and ``SWIPE`` (the stripe). Case, ``_`` and ``-`` do not matter.

Effects
-------
==================  ===========================  =====================================
effect              targets                      what the card does
==================  ===========================  =====================================
mute                ATR, commands                no ATR / no answer; stays mute until reset
bad_atr             ATR                          an ATR with an invalid TS byte
status_word(XXXX)   commands                     answers SW XXXX, command not executed
corrupt_tlv         commands                     outer template length points past the end
truncate            commands                     response data cut short (SW stays 9000)
drop_tag(TAG)       commands                     TAG removed from the response template
delay(MS)           any                          answer unchanged, ``last_delay_ms`` = MS
remove              ATR, commands                card pulled out (after the command ran)
pin_blocked         commands                     PIN try counter set to 0 first
track_unreadable    SWIPE                        :class:`MagstripeError`
track_corrupt       SWIPE                        one PAN digit changed (Luhn fails)
==================  ===========================  =====================================

Triggers: ``always`` · ``once`` (first match only) · ``every_n(N)`` (the Nth, 2Nth...
match) · ``probability(P)`` (each match with probability P, 0 < P <= 1).

Examples
--------
>>> Fault("read_record", "drop_tag(5a)", "every_n(2)")
Fault(target='READ RECORD', effect=Effect(kind='drop_tag', arg='5A'), trigger=Trigger(kind='every_n', n=2, p=None))
>>> parse_fault({"target": "ATR", "effect": "melt"})
Traceback (most recent call last):
...
sim.emv.faults.FaultSpecError: fault: key 'effect': value 'melt' is not an effect; allowed: mute, bad_atr, status_word(XXXX), corrupt_tlv, truncate, drop_tag(TAG), delay(MS), remove, pin_blocked, track_unreadable, track_corrupt
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from . import tlv
from ..core.cards import Card

__all__ = [
    "APDU_TARGETS",
    "BAD_ATR",
    "EFFECTS",
    "Effect",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "TARGETS",
    "TRIGGERS",
    "Trigger",
    "card_set_faults",
    "corrupt_tlv",
    "corrupt_track",
    "drop_tag",
    "parse_fault",
    "parse_faults",
    "truncate",
]

APDU_TARGETS: tuple[str, ...] = (
    "SELECT",
    "READ RECORD",
    "GET PROCESSING OPTIONS",
    "GET DATA",
    "VERIFY",
    "GENERATE AC",
    "GENERATE AC 1",
    "GENERATE AC 2",
    "INTERNAL AUTHENTICATE",
    "GET RESPONSE",
    "*",
)
TARGETS: tuple[str, ...] = APDU_TARGETS + ("ATR", "SWIPE")
_ALIASES = {"GPO": "GET PROCESSING OPTIONS", "ALL": "*", "POWER ON": "ATR", "MAGSTRIPE": "SWIPE"}

_ANY = frozenset(TARGETS)
_COMMANDS = frozenset(APDU_TARGETS)
EFFECTS: dict[str, tuple[str | None, frozenset[str]]] = {
    # effect: (argument name, targets it applies to)
    "mute": (None, _COMMANDS | {"ATR"}),
    "bad_atr": (None, frozenset({"ATR"})),
    "status_word": ("sw", _COMMANDS),
    "corrupt_tlv": (None, _COMMANDS),
    "truncate": (None, _COMMANDS),
    "drop_tag": ("tag", _COMMANDS),
    "delay": ("ms", _ANY),
    "remove": (None, _COMMANDS | {"ATR"}),
    "pin_blocked": (None, _COMMANDS),
    "track_unreadable": (None, frozenset({"SWIPE"})),
    "track_corrupt": (None, frozenset({"SWIPE"})),
}
_ARG_HINT = {"sw": "XXXX", "tag": "TAG", "ms": "MS"}
TRIGGERS: dict[str, str | None] = {"always": None, "once": None, "every_n": "n", "probability": "p"}

BAD_ATR = bytes.fromhex("5A0F00")
"""What a ``bad_atr`` card answers at power-on: TS ``5A`` is neither direct (3B) nor inverse (3F) convention."""

_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


class FaultSpecError(ValueError):
    """A fault specification is wrong; the message names the key, the value and what is allowed."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _allowed_effects() -> str:
    return ", ".join(f"{name}({_ARG_HINT[arg]})" if arg else name for name, (arg, _) in EFFECTS.items())


def _fail(where: str, key: str, value: Any, why: str) -> FaultSpecError:
    return FaultSpecError(f"{where}: key {key!r}: value {value!r} {why}", key=key)


def _target(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "target", value, f"is not text; allowed: {', '.join(TARGETS)}")
    name = " ".join(value.replace("_", " ").replace("-", " ").upper().split())
    name = _ALIASES.get(name, name)
    if name not in TARGETS:
        raise _fail(where, "target", value, f"is not a target; allowed: {', '.join(TARGETS)}")
    return name


def _effect_arg(kind: str, raw: Any, where: str) -> int | str | None:
    arg_name = EFFECTS[kind][0]
    if arg_name is None:
        if raw not in (None, ""):
            raise _fail(where, "effect", f"{kind}({raw})", f"takes no argument; write {kind!r}")
        return None
    if raw is None or raw == "":
        raise _fail(where, arg_name, raw, f"is missing: {kind} needs {kind}({_ARG_HINT[arg_name]})")
    text = str(raw).strip()
    if arg_name == "sw":
        if not re.fullmatch(r"[0-9A-Fa-f]{4}", text) or text.upper() == "0000":
            raise _fail(where, "sw", raw, "is not a status word (4 hex digits, e.g. 6A82)")
        return text.upper()
    if arg_name == "tag":
        if not re.fullmatch(r"(?:[0-9A-Fa-f]{2}){1,3}", text):
            raise _fail(where, "tag", raw, "is not a tag (2 to 6 hex digits, e.g. 5A or 9F26)")
        return text.upper()
    if isinstance(raw, bool) or not (isinstance(raw, int) or text.isdigit()):
        raise _fail(where, "ms", raw, "is not a whole number of milliseconds")
    return int(text)


@dataclass(frozen=True, slots=True)
class Effect:
    """What goes wrong; ``arg`` is the status word (hex), tag (hex) or delay (ms) when the effect takes one."""

    kind: str
    arg: int | str | None = None

    @classmethod
    def parse(cls, text: str, *, where: str = "fault", arg: Any = None) -> "Effect":
        """Read ``"drop_tag(5A)"``, ``"delay(250)"``, ``"mute"``; ``arg`` supplies the argument separately."""
        match = _CALL.match(text) if isinstance(text, str) else None
        if match is None or match.group(1).lower() not in EFFECTS:
            raise _fail(where, "effect", text, f"is not an effect; allowed: {_allowed_effects()}")
        kind, inline = match.group(1).lower(), match.group(2)
        if inline not in (None, "") and arg not in (None, ""):
            raise _fail(where, "effect", text, f"gives its argument twice (inline and as {EFFECTS[kind][0]!r})")
        return cls(kind, _effect_arg(kind, inline if inline not in (None, "") else arg, where))

    @property
    def status_word(self) -> int:
        """The status word of a ``status_word`` effect, as an int."""
        return int(str(self.arg), 16)

    def __str__(self) -> str:
        return f"{self.kind}({self.arg})" if self.arg is not None else self.kind


@dataclass(frozen=True, slots=True)
class Trigger:
    """When a fault fires, counted over the commands (or power-ons, swipes) its target matches."""

    kind: str = "always"
    n: int | None = None
    p: float | None = None

    @classmethod
    def parse(cls, text: str, *, where: str = "fault", n: Any = None, p: Any = None) -> "Trigger":
        """Read ``"always"``, ``"once"``, ``"every_n(3)"``, ``"probability(0.2)"``."""
        allowed = "always, once, every_n(N), probability(P)"
        match = _CALL.match(text) if isinstance(text, str) else None
        if match is None or match.group(1).lower() not in TRIGGERS:
            raise _fail(where, "trigger", text, f"is not a trigger; allowed: {allowed}")
        kind, inline = match.group(1).lower(), match.group(2)
        arg_name = TRIGGERS[kind]
        given = n if arg_name == "n" else p if arg_name == "p" else None
        if arg_name is None:
            if inline not in (None, ""):
                raise _fail(where, "trigger", text, f"takes no argument; write {kind!r}")
            return cls(kind)
        if inline not in (None, "") and given is not None:
            raise _fail(where, "trigger", text, f"gives its argument twice (inline and as {arg_name!r})")
        raw = inline if inline not in (None, "") else given
        if raw is None:
            raise _fail(where, arg_name, raw, f"is missing: {kind} needs {kind}({arg_name.upper()})")
        if arg_name == "n":
            text_n = str(raw).strip()
            if isinstance(raw, bool) or not text_n.isdigit() or int(text_n) < 1:
                raise _fail(where, "n", raw, "must be a whole number >= 1")
            return cls(kind, n=int(text_n))
        try:
            value = float(raw) if not isinstance(raw, bool) else float("nan")
        except (TypeError, ValueError):
            value = float("nan")
        if not 0.0 < value <= 1.0:
            raise _fail(where, "p", raw, "must be a probability in (0, 1]")
        return cls(kind, p=value)

    def __str__(self) -> str:
        if self.kind == "every_n":
            return f"every_n({self.n})"
        if self.kind == "probability":
            return f"probability({self.p})"
        return self.kind


@dataclass(frozen=True)
class Fault:
    """One declared fault: ``Fault(target, effect, trigger="always")``.

    ``effect`` and ``trigger`` may be given as text (``"status_word(6A82)"``,
    ``"every_n(3)"``) and are parsed; an effect that makes no sense for the target
    (``bad_atr`` on ``READ RECORD``) is refused.
    """

    target: str
    effect: Effect | str
    trigger: Trigger | str = "always"

    def __post_init__(self) -> None:
        target = _target(self.target, "fault")
        effect = self.effect if isinstance(self.effect, Effect) else Effect.parse(self.effect)
        trigger = self.trigger if isinstance(self.trigger, Trigger) else Trigger.parse(self.trigger)
        if effect.kind not in EFFECTS:
            raise _fail("fault", "effect", effect.kind, f"is not an effect; allowed: {_allowed_effects()}")
        if target not in EFFECTS[effect.kind][1]:
            fits = ", ".join(t for t in TARGETS if t in EFFECTS[effect.kind][1])
            raise _fail("fault", "target", self.target, f"cannot have effect {effect.kind}; that effect applies to: {fits}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "effect", effect)
        object.__setattr__(self, "trigger", trigger)

    def __str__(self) -> str:
        return f"{self.target}: {self.effect} @ {self.trigger}"


_KEYS = ("target", "effect", "trigger", "sw", "tag", "ms", "n", "p")


def parse_fault(spec: Mapping[str, Any] | Fault, *, where: str = "fault") -> Fault:
    """A :class:`Fault` from a plain table (dict or TOML table); a :class:`Fault` passes through.

    Keys: ``target``, ``effect`` (required), ``trigger`` (default ``always``), and the
    arguments as separate keys if not written inline: ``sw``, ``tag``, ``ms``, ``n``, ``p``.

    Raises
    ------
    FaultSpecError
        Unknown or missing key, unknown target/effect/trigger, bad argument; the
        message names the key, the value and the allowed values.
    """
    if isinstance(spec, Fault):
        return spec
    if not isinstance(spec, Mapping):
        raise FaultSpecError(f"{where}: must be a table with keys {', '.join(_KEYS)}; got {type(spec).__name__}")
    unknown = [k for k in spec if k not in _KEYS]
    if unknown:
        raise _fail(where, str(unknown[0]), spec[unknown[0]], f"is under an unknown key; allowed keys: {', '.join(_KEYS)}")
    for required in ("target", "effect"):
        if required not in spec:
            raise FaultSpecError(f"{where}: key {required!r} is missing", key=required)
    target = _target(spec["target"], where)
    effect_text = spec["effect"]
    named = _CALL.match(effect_text) if isinstance(effect_text, str) else None
    kind = named.group(1).lower() if named else None
    arg_keys = [k for k in ("sw", "tag", "ms") if k in spec]
    if kind in EFFECTS:
        stray = [k for k in arg_keys if k != EFFECTS[kind][0]]
        if stray:
            raise _fail(where, stray[0], spec[stray[0]], f"does not belong to effect {kind}")
    effect = Effect.parse(effect_text, where=where, arg=spec[arg_keys[0]] if arg_keys else None)
    trigger = Trigger.parse(spec.get("trigger", "always"), where=where, n=spec.get("n"), p=spec.get("p"))
    stray = [k for k in ("n", "p") if k in spec and k != TRIGGERS[trigger.kind]]
    if stray:
        raise _fail(where, stray[0], spec[stray[0]], f"does not belong to trigger {trigger.kind}")
    try:
        return Fault(target, effect, trigger)
    except FaultSpecError as exc:
        raise FaultSpecError(str(exc).replace("fault:", f"{where}:", 1), key=exc.key) from None


def parse_faults(specs: Iterable[Mapping[str, Any] | Fault]) -> tuple[Fault, ...]:
    """Parse a list of fault tables; errors say which one (``fault #2``)."""
    return tuple(parse_fault(spec, where=f"fault #{i}") for i, spec in enumerate(specs, start=1))


def card_set_faults(card: Card) -> tuple[Fault, ...]:
    """The faults a card of the card set carries through its ``faults`` field.

    ``chip_mute`` -> no ATR; ``chip_bad_tlv`` -> every READ RECORD malformed;
    ``magstripe_unreadable`` -> swipes fail. ``swipe_first`` is an instruction to the
    scenario (swipe this chip card first), not a card defect, so it adds nothing.
    """
    implied = {
        "chip_mute": Fault("ATR", "mute"),
        "chip_bad_tlv": Fault("READ RECORD", "corrupt_tlv"),
        "magstripe_unreadable": Fault("SWIPE", "track_unreadable"),
    }
    return tuple(implied[name] for name in card.faults if name in implied)


@dataclass
class FaultPlan:
    """The faults of one card with their match counters and the card's seeded RNG.

    Mutable on purpose: triggers count matches. Owned by one card, never shared.
    """

    faults: Sequence[Fault]
    rng: random.Random
    _counts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.faults = tuple(self.faults)
        self._counts = [0] * len(self.faults)

    def fire(self, names: Iterable[str]) -> list[Effect]:
        """Count a match for every fault whose target is in ``names``; return the effects that fire, in order.

        ``names`` are the targets the event answers to, e.g. ``("GENERATE AC",
        "GENERATE AC 1", "*")`` for a first GENERATE AC.
        """
        wanted = set(names)
        fired: list[Effect] = []
        for i, fault in enumerate(self.faults):
            if fault.target not in wanted:
                continue
            self._counts[i] += 1
            trigger, count = fault.trigger, self._counts[i]
            assert isinstance(trigger, Trigger) and isinstance(fault.effect, Effect)
            if trigger.kind == "always":
                hit = True
            elif trigger.kind == "once":
                hit = count == 1
            elif trigger.kind == "every_n":
                hit = count % (trigger.n or 1) == 0
            else:
                hit = self.rng.random() < (trigger.p or 0.0)
            if hit:
                fired.append(fault.effect)
        return fired


# Effect transforms (pure, applied by the card) ---------------------------------------------------


def corrupt_tlv(data: bytes) -> bytes:
    """The same response with its outer template length pointing past the end (a malformed TLV).

    Only the first object's length is replaced, by ``81 FF`` (or ``82 FFFF``), so every
    BER-TLV decoder fails with "length past the end". Data that does not decode is
    returned with one dangling tag byte appended.
    """
    try:
        decoded = tlv.decode(data)
    except tlv.TlvError:
        return bytes(data) + b"\x9f"
    if not decoded:
        return bytes(data) + b"\x9f"
    tag, value = next(iter(decoded.items()))
    tag_bytes = bytes.fromhex(tag)
    value_bytes = tlv.encode(value) if isinstance(value, dict) else bytes(value)
    bad_length = b"\x81\xff" if len(value_bytes) < 0xFF else b"\x82\xff\xff"
    return tag_bytes + bad_length + value_bytes


def truncate(data: bytes, rng: random.Random) -> bytes:
    """The response cut at a seeded position (at least one byte shorter, at least one byte kept when possible)."""
    if len(data) < 2:
        return b""
    return bytes(data[: rng.randrange(1, len(data))])


def _without(objects: dict[str, Any], tag: str) -> dict[str, Any]:
    return {k: (_without(v, tag) if isinstance(v, dict) else v) for k, v in objects.items() if k != tag}


def drop_tag(data: bytes, tag: str) -> bytes:
    """The response with every ``tag`` object removed, at any depth; data that does not decode is unchanged."""
    try:
        decoded = tlv.decode(data)
    except tlv.TlvError:
        return bytes(data)
    return tlv.encode(_without(decoded, tag.upper()))


def corrupt_track(track: str, rng: random.Random) -> str:
    """Track 2 with one PAN digit changed: a single wrong digit always breaks the Luhn check."""
    pan, sep, rest = track.partition("D")
    if not pan:
        return track
    pos = rng.randrange(len(pan))
    digit = (int(pan[pos]) + rng.randrange(1, 10)) % 10
    return pan[:pos] + str(digit) + pan[pos + 1:] + sep + rest
