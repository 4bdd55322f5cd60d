"""One wording for validation errors in possim's TOML inputs (hardware profiles, scenarios).

Someone editing a profile or a scenario by hand needs three things from an error: the file,
the dotted key (``faults.0.kind``) and what is allowed there. pydantic knows all three but
words them for programmers; :func:`first_error` turns its first error into that sentence,
listing the keys a table may hold when an unknown key was given, and the values a literal
may take when an unknown value was given.

Examples
--------
>>> from pydantic import BaseModel, ConfigDict, ValidationError
>>> from typing import Literal
>>> class Link(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     kind: Literal["ethernet", "3g"]
>>> class Profile(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     link: Link
>>> try:
...     Profile.model_validate({"link": {"kind": "dialup"}})
... except ValidationError as exc:
...     print(first_error("p.toml", exc, Profile, "profile"))
("p.toml: key 'link.kind': value 'dialup'; allowed: 'ethernet' or '3g'", 'link.kind')
>>> try:
...     Profile.model_validate({"link": {"kind": "3g", "speed": 1}})
... except ValidationError as exc:
...     print(first_error("p.toml", exc, Profile, "profile")[0])
p.toml: key 'link.speed' is not a profile key; allowed here: kind
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

__all__ = ["allowed_keys", "first_error", "read_table_file"]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Link``, ``Link | None``, ``tuple[Link, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the table at ``loc`` may hold, walking ``model``'s fields (list indexes skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = current.model_fields if current is not None else {}
        if part not in fields:
            return []
        current = _model_in(fields[part].annotation)
        if current is None:
            return []
    return list(current.model_fields) if current is not None else []


def first_error(source: str, exc: ValidationError, model: type[BaseModel], noun: str) -> tuple[str, str]:
    """``(message, dotted key)`` for the first error of ``exc``, raised validating ``model`` from ``source``.

    ``noun`` names the kind of file (``"profile"``, ``"scenario"``) in "is not a ... key".
    """
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    if first["type"] == "missing":
        return f"{source}: key {key!r} is missing", key
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(allowed_keys(model, loc[:-1]))
        return f"{source}: key {key!r} is not a {noun} key; allowed here: {allowed}", key
    if first["type"] == "literal_error":
        return f"{source}: key {key!r}: value {first.get('input')!r}; allowed: {first['ctx']['expected']}", key
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: key {key!r}: value {first.get('input')!r}: {message}", key


def read_table_file(path: str | Path, key: str, error: Callable[[str], Exception]) -> list[Any]:
    """The ``[[key]]`` tables of a TOML file holding nothing else (rules, toxics).

    ``error`` builds the exception to raise with a message naming the file: unreadable,
    not TOML, or a top-level key other than ``key``.

    >>> read_table_file("/nonexistent/rules.toml", "rules", ValueError)
    Traceback (most recent call last):
    ...
    ValueError: /nonexistent/rules.toml: cannot read rules file: No such file or directory
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read {key} file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {key})
    if unknown:
        raise error(f"{path}: unknown top-level key {unknown[0]!r}; allowed: {key} (as [[{key}]] tables)")
    return data.get(key, [])
