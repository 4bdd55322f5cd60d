"""The rules overlay: scripted misbehaviour of the live host, from a TOML file or the admin endpoint.

A rule matches requests and says what the server does instead of (or on top of) the
core's plain answer. The first rule that matches, and whose count window is open,
acts; the others are left alone. Rules sit in the driver: the core never knows.

File format (``--rules FILE``, reloaded when the file changes or on the admin
``reload`` command)::

    [[rules]]
    name = "issuer slow for big sales"   # optional, shown in the journal
    mti = ["0200", "0100"]               # string or list; 4 digits
    pan_prefix = "476173"                # string or list of digit prefixes (PAN or BIN)
    amount_min = 10000                   # DE4, minor units, inclusive
    amount_max = 50000
    terminal_id = "TERM0001"             # string or list (DE41, exact)
    processing_code = "00"               # string or list of DE3 prefixes (00 goods, 20 refund)
    count_from = 2                       # act on the 2nd..5th matching request only
    count_to = 5
    action = "delay"                     # respond | delay | drop | close | malformed
    delay_ms = 3000                      # any action may wait first; "delay" then answers normally
    code = "91"                          # respond: the DE39 to send
    core = true                          # does the core see the request? (default true)

Actions:

``respond``
    Answer with DE39 = ``code``: the core's answer with DE39 replaced (the core booked
    what it decided: the terminal is told otherwise), or with ``core = false`` a plain
    answer the driver builds (nothing booked).
``delay``
    Answer normally after ``delay_ms`` (an async sleep in the driver; other requests on
    the connection go on).
``drop``
    No answer. With ``core = true`` the core processed it: a lost response (the
    terminal should reverse); with ``core = false``, a lost request.
``close``
    Close the connection instead of answering (after the core, unless ``core = false``).
``malformed``
    Answer with garbage bytes of the answer's length, in a valid frame.

Every match of a rule's conditions counts, whether or not its window is open. Counts
start again when the rules are reloaded. Rules added through the admin endpoint come
after the file's and survive a reload of the file; ``clear`` removes all until the
file changes or is reloaded.

Errors name the file, the rule's index (from 1) and name, the key and what is allowed.

Examples
--------
>>> rules = parse_rules([{"mti": "0200", "action": "respond", "code": "05", "count_from": 2}], "demo")
>>> engine = RuleEngine(rules)
>>> sale = {"t": "0200", "2": "4761739001010010", "4": "000000001000", "3": "000000", "41": "T1"}
>>> engine.match(sale) is None, engine.match(sale).code
(True, '05')
>>> parse_rules([{"action": "explode"}], "rules.toml")
Traceback (most recent call last):
...
sim.live.rules.RuleError: rules.toml: rule #1: key 'action' is 'explode'; allowed: respond, delay, drop, close, malformed
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..validation import read_table_file

ACTIONS = ("respond", "delay", "drop", "close", "malformed")
KEYS = (
    "name", "mti", "pan_prefix", "amount_min", "amount_max", "terminal_id", "processing_code",
    "count_from", "count_to", "action", "delay_ms", "code", "core",
)
MAX_DELAY_MS = 600_000


class RuleError(ValueError):
    """A rule (or rules file) is invalid; the message names file, rule, key and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """One validated rule; see the module notes for the meaning of each attribute."""

    index: int
    name: str
    action: str
    mti: tuple[str, ...] = ()
    pan_prefix: tuple[str, ...] = ()
    amount_min: int | None = None
    amount_max: int | None = None
    terminal_id: tuple[str, ...] = ()
    processing_code: tuple[str, ...] = ()
    count_from: int = 1
    count_to: int | None = None
    delay_ms: int = 0
    code: str | None = None
    core: bool = True
    source: str = "file"

    def conditions_hold(self, fields: Mapping[str, str]) -> bool:
        """True when ``fields`` (a decoded request) meets every condition of this rule."""
        if self.mti and fields.get("t") not in self.mti:
            return False
        if self.terminal_id and fields.get("41") not in self.terminal_id:
            return False
        if self.processing_code:
            code = fields.get("3", "")
            if not any(code.startswith(p) for p in self.processing_code):
                return False
        if self.pan_prefix:
            pan = fields.get("2") or fields.get("35", "").replace("=", "D").split("D", 1)[0]
            if not any(pan.startswith(p) for p in self.pan_prefix):
                return False
        if self.amount_min is not None or self.amount_max is not None:
            raw = fields.get("4", "")
            if not (raw.isascii() and raw.isdigit()):
                return False
            amount = int(raw)
            if self.amount_min is not None and amount < self.amount_min:
                return False
            if self.amount_max is not None and amount > self.amount_max:
                return False
        return True

    def in_window(self, count: int) -> bool:
        """True when the ``count``-th match (from 1) is one this rule acts on."""
        return count >= self.count_from and (self.count_to is None or count <= self.count_to)

    def to_dict(self) -> dict[str, Any]:
        """The rule as data (for the admin endpoint), empty conditions left out."""
        out = {k: v for k, v in asdict(self).items() if v not in ((), None)}
        for key in ("mti", "pan_prefix", "terminal_id", "processing_code"):
            if key in out:
                out[key] = list(out[key])
        return out


def _strings(where: str, key: str, value: Any, *, digits: tuple[int, int] | None = None) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise RuleError(f"{where}: key {key!r} is {value!r}; allowed: a string or a non-empty list of strings")
    if digits is not None:
        low, high = digits
        for item in items:
            if not (item.isascii() and item.isdigit() and low <= len(item) <= high):
                size = f"{low}" if low == high else f"{low} to {high}"
                raise RuleError(f"{where}: key {key!r} has {item!r}; allowed: {size} digits")
    return tuple(items)


def _int(where: str, key: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise RuleError(f"{where}: key {key!r} is {value!r}; allowed: an integer {span}")
    return value


def parse_rule(raw: Any, index: int, source: str, origin: str = "file") -> Rule:
    """Validate one rule table; ``index`` is its position from 1, ``source`` the file name or ``admin``."""
    where = f"{source}: rule #{index}"
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: must be a table of keys, got {raw!r}")
    name = raw.get("name", f"rule-{index}")
    if not isinstance(name, str) or not name:
        raise RuleError(f"{where}: key 'name' is {name!r}; allowed: a non-empty string")
    where = f"{where} ({name})" if "name" in raw else where
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise RuleError(f"{where}: key 'action' is {action!r}; allowed: {', '.join(ACTIONS)}")
    fields: dict[str, Any] = {"index": index, "name": name, "action": action, "source": origin}
    if "mti" in raw:
        fields["mti"] = _strings(where, "mti", raw["mti"], digits=(4, 4))
    if "pan_prefix" in raw:
        fields["pan_prefix"] = _strings(where, "pan_prefix", raw["pan_prefix"], digits=(1, 19))
    if "terminal_id" in raw:
        fields["terminal_id"] = _strings(where, "terminal_id", raw["terminal_id"])
    if "processing_code" in raw:
        fields["processing_code"] = _strings(where, "processing_code", raw["processing_code"], digits=(1, 6))
    for key in ("amount_min", "amount_max"):
        if key in raw:
            fields[key] = _int(where, key, raw[key], 0)
    if "amount_min" in fields and "amount_max" in fields and fields["amount_min"] > fields["amount_max"]:
        raise RuleError(f"{where}: amount_min {fields['amount_min']} is above amount_max {fields['amount_max']}")
    if "count_from" in raw:
        fields["count_from"] = _int(where, "count_from", raw["count_from"], 1)
    if "count_to" in raw:
        fields["count_to"] = _int(where, "count_to", raw["count_to"], fields.get("count_from", 1))
    if "delay_ms" in raw:
        fields["delay_ms"] = _int(where, "delay_ms", raw["delay_ms"], 0, MAX_DELAY_MS)
    if action == "delay" and fields.get("delay_ms", 0) == 0:
        raise RuleError(f"{where}: action 'delay' needs key 'delay_ms' (an integer 1..{MAX_DELAY_MS})")
    if "code" in raw:
        code = raw["code"]
        if action != "respond":
            raise RuleError(f"{where}: key 'code' applies to action 'respond' only (this rule's action is {action!r})")
        if not (isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalnum()):
            raise RuleError(f"{where}: key 'code' is {code!r}; allowed: a 2-character DE39 value such as \"05\" or \"91\"")
        fields["code"] = code.upper()
    elif action == "respond":
        raise RuleError(f"{where}: action 'respond' needs key 'code' (a 2-character DE39 value)")
    if "core" in raw:
        if not isinstance(raw["core"], bool):
            raise RuleError(f"{where}: key 'core' is {raw['core']!r}; allowed: true or false")
        fields["core"] = raw["core"]
    return Rule(**fields)


def parse_rules(raw: Sequence[Any], source: str, origin: str = "file", start: int = 1) -> tuple[Rule, ...]:
    """Validate a list of rule tables."""
    if not isinstance(raw, (list, tuple)):
        raise RuleError(f"{source}: 'rules' must be an array of tables ([[rules]]), got {type(raw).__name__}")
    return tuple(parse_rule(item, start + i, source, origin) for i, item in enumerate(raw))


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Read and validate a rules file.

    Raises
    ------
    RuleError
        Missing or unreadable file, TOML errors, unknown top-level keys, bad rules.
    """
    return parse_rules(read_table_file(path, "rules", RuleError), str(path))


class RuleEngine:
    """The rules in force and their match counters; reloads its file when it changes.

    Parameters
    ----------
    rules : sequence of Rule
        Initial rules (from a file or tests).
    path : Path, optional
        The rules file, re-read by :meth:`reload` and :meth:`check_file`.
    """

    def __init__(self, rules: Sequence[Rule] = (), path: Path | None = None) -> None:
        self.path = path
        self._file_rules: tuple[Rule, ...] = tuple(rules)
        self._extra: tuple[Rule, ...] = ()
        self._rules: tuple[Rule, ...] = self._file_rules
        self._counts: dict[int, int] = {}
        self._stamp: tuple[int, int] | None = self._file_stamp()

    @classmethod
    def from_file(cls, path: str | Path) -> "RuleEngine":
        """An engine with the rules of ``path`` (errors raised as :class:`RuleError`)."""
        return cls(load_rules(path), Path(path))

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Rules in force, in matching order."""
        return self._rules

    def counts(self) -> dict[str, int]:
        """Matches counted so far, by rule name."""
        return {r.name: self._counts.get(i, 0) for i, r in enumerate(self._rules)}

    def match(self, fields: Mapping[str, str]) -> Rule | None:
        """The rule that acts on this request, or ``None``; counts the matches on the way."""
        for i, rule in enumerate(self._rules):
            if rule.conditions_hold(fields):
                count = self._counts.get(i, 0) + 1
                self._counts[i] = count
                if rule.in_window(count):
                    return rule
        return None

    def _set(self) -> None:
        self._rules = self._file_rules + self._extra
        self._counts = {}

    def add(self, raw: Mapping[str, Any]) -> Rule:
        """Validate and append one rule (admin ``add``); counters start again."""
        rule = parse_rule(raw, len(self._rules) + 1, "admin", origin="admin")
        self._extra = self._extra + (rule,)
        self._set()
        return rule

    def clear(self) -> None:
        """Remove every rule (file and admin) until the file is reloaded."""
        self._file_rules = ()
        self._extra = ()
        self._set()

    def reload(self) -> tuple[Rule, ...]:
        """Re-read the file (when there is one); on error the rules in force stay and RuleError is raised."""
        if self.path is not None:
            rules = load_rules(self.path)
            self._stamp = self._file_stamp()
            extra = tuple(
                Rule(**{**asdict(r), "index": len(rules) + i + 1}) for i, r in enumerate(self._extra)
            )
            self._file_rules, self._extra = rules, extra
        self._set()
        return self._rules

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def file_changed(self) -> bool:
        """True when the file's modification time or size differ from the last load."""
        return self.path is not None and self._file_stamp() != self._stamp

    def check_file(self) -> bool:
        """Reload when the file changed; True if it did. Errors propagate (old rules stay)."""
        if not self.file_changed():
            return False
        stamp = self._file_stamp()
        try:
            self.reload()
        finally:
            self._stamp = stamp  # a broken file is reported once, not at every check
        return True
