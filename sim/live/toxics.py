"""Toxics of the chaos proxy: what each does to a stream, validated from plain data.

The names and attributes are Toxiproxy's, so QA people can reuse what they know:

=============  ======================================  =====================================
type           attributes (defaults)                   effect on the stream it sits on
=============  ======================================  =====================================
``latency``    ``latency_ms`` (0), ``jitter_ms`` (0)   every chunk leaves ``latency`` ± a
                                                       uniform ``jitter`` after it arrived
``bandwidth``  ``rate_kbps`` (KB/s, required)          chunks leave no faster than the rate
``timeout``    ``timeout_ms`` (0)                      data is swallowed; the connection is
                                                       closed after ``timeout_ms`` (never when
                                                       0: a blackhole)
``reset_peer`` ``timeout_ms`` (0)                      the connection is reset (TCP RST) after
                                                       ``timeout_ms`` of this toxic being active
``slicer``     ``average_size`` (16),                  chunks are cut into slices of
               ``size_variation`` (0), ``delay_us``    ``average_size`` ± ``size_variation``
               (0)                                     bytes, ``delay_us`` apart
``limit_data`` ``bytes`` (required)                    the connection is closed once that many
                                                       bytes have passed
=============  ======================================  =====================================

Every toxic has a ``name`` (unique; default its type and stream), a ``stream``
(``upstream``: client to server; ``downstream``: server to client) and a ``toxicity``
(probability 0..1, default 1) that it applies to a given connection, drawn once per
connection and toxic from the proxy's seed, so a seeded run picks the same
connections every time. Toxics apply in the order they were added.

Examples
--------
>>> t = parse_toxic({"type": "latency", "latency_ms": 200, "jitter_ms": 50, "stream": "downstream"}, "demo", 1)
>>> t.name, t.attributes["latency_ms"], t.toxicity
('latency_downstream', 200, 1.0)
>>> parse_toxic({"type": "slicer", "average_size": 0}, "demo", 1)
Traceback (most recent call last):
...
sim.live.toxics.ToxicError: demo: toxic #1 (slicer_downstream): key 'average_size' is 0; allowed: an integer 1..65536
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..validation import read_table_file

STREAMS = ("upstream", "downstream")

# type -> {attribute: (default or None when required, low, high)}
TYPES: dict[str, dict[str, tuple[int | None, int, int]]] = {
    "latency": {"latency_ms": (0, 0, 600_000), "jitter_ms": (0, 0, 600_000)},
    "bandwidth": {"rate_kbps": (None, 1, 10_000_000)},
    "timeout": {"timeout_ms": (0, 0, 3_600_000)},
    "reset_peer": {"timeout_ms": (0, 0, 3_600_000)},
    "slicer": {"average_size": (16, 1, 65536), "size_variation": (0, 0, 65536), "delay_us": (0, 0, 10_000_000)},
    "limit_data": {"bytes": (None, 0, 1 << 40)},
}
_COMMON = ("name", "type", "stream", "toxicity")


class ToxicError(ValueError):
    """A toxic (or toxics file) is invalid; the message names the source, toxic, key and what is allowed."""


@dataclass(frozen=True)
class Toxic:
    """One validated toxic; see the module notes."""

    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As data (the admin endpoint's answer, and what :func:`parse_toxic` reads back)."""
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                **dict(self.attributes)}


def parse_toxic(raw: Any, source: str, index: int) -> Toxic:
    """Validate one toxic table (``source`` is the file name or ``admin``, ``index`` its position from 1)."""
    where = f"{source}: toxic #{index}"
    if not isinstance(raw, Mapping):
        raise ToxicError(f"{where}: must be a table of keys, got {raw!r}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise ToxicError(f"{where}: key 'type' is {kind!r}; allowed: {', '.join(TYPES)}")
    stream = raw.get("stream", "downstream")
    if stream not in STREAMS:
        raise ToxicError(f"{where}: key 'stream' is {stream!r}; allowed: {', '.join(STREAMS)}")
    name = raw.get("name", f"{kind}_{stream}")
    if not isinstance(name, str) or not name:
        raise ToxicError(f"{where}: key 'name' is {name!r}; allowed: a non-empty string")
    where = f"{where} ({name})"
    allowed = TYPES[kind]
    unknown = sorted(set(raw) - set(_COMMON) - set(allowed))
    if unknown:
        raise ToxicError(f"{where}: unknown key {unknown[0]!r}; allowed for {kind}: {', '.join(_COMMON + tuple(allowed))}")
    toxicity = raw.get("toxicity", 1.0)
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)) or not 0 <= toxicity <= 1:
        raise ToxicError(f"{where}: key 'toxicity' is {toxicity!r}; allowed: a number 0..1 (probability per connection)")
    attributes: dict[str, int] = {}
    for key, (default, low, high) in allowed.items():
        value = raw.get(key, default)
        if value is None:
            raise ToxicError(f"{where}: toxic {kind} needs key {key!r} (an integer {low}..{high})")
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ToxicError(f"{where}: key {key!r} is {value!r}; allowed: an integer {low}..{high}")
        attributes[key] = value
    return Toxic(name, kind, stream, float(toxicity), attributes)


def updated(toxic: Toxic, changes: Mapping[str, Any], source: str = "admin") -> Toxic:
    """``toxic`` with some keys changed (type and name stay), validated again."""
    if "type" in changes and changes["type"] != toxic.type:
        raise ToxicError(f"{source}: toxic {toxic.name}: 'type' cannot change; remove it and add another")
    return parse_toxic({**toxic.to_dict(), **dict(changes), "name": toxic.name}, source, 1)


def load_toxics(path: str | Path) -> tuple[Toxic, ...]:
    """Read ``[[toxics]]`` tables from a TOML file; errors as :class:`ToxicError`."""
    raw = read_table_file(path, "toxics", ToxicError)
    if not isinstance(raw, list):
        raise ToxicError(f"{path}: 'toxics' must be an array of tables ([[toxics]])")
    toxics = tuple(parse_toxic(item, str(path), i + 1) for i, item in enumerate(raw))
    check_names(toxics, str(path))
    return toxics


def check_names(toxics: tuple[Toxic, ...], source: str) -> None:
    """Refuse two toxics with one name (they are addressed by name at runtime)."""
    seen: set[str] = set()
    for toxic in toxics:
        if toxic.name in seen:
            raise ToxicError(f"{source}: two toxics are named {toxic.name!r}; give one a 'name'")
        seen.add(toxic.name)
