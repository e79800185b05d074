"""Validation for config dataclasses: types, ranges and choices, checked at load.

Kept apart from :mod:`edge.config` so that each stage's own settings module can use it
without importing the root config (which imports every stage's settings).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from edge.errors import ConfigError

T = TypeVar("T")


def check_range(key: str, value: float, lo: float | None, hi: float | None) -> None:
    """Every number from a user goes through here: finite (NaN passes ``<``/``>`` checks, and
    an infinity is never a sensible timeout or rate) and within ``lo .. hi``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number in {_bounds(lo, hi)}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} = {value!r} is out of range: expected {_bounds(lo, hi)}")


def _bounds(lo: float | None, hi: float | None) -> str:
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{lo_s} .. {hi_s}"


def check_choice(key: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        accepted = ", ".join(choices)
        raise ConfigError(f"{key} = {value!r} is not accepted: expected one of {accepted}")


def _type_name(tp: Any) -> str:
    """What a user must write, in TOML's words ("a number"), never a Python type name; an
    optional key is named by its type alone (leaving it out is how one says "unset")."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(dict.fromkeys(names))
    if origin is dict:
        return "a table of key = value"
    if origin in (tuple, list):
        return "a list"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(
        tp, "a table" if dataclasses.is_dataclass(tp) else "a value of another kind"
    )


def _coerce(key: str, tp: Any, value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value) and _takes_float(tp):
        # NaN passes every `<` and `>` range check; inf is no timeout, rate or size
        raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, a, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a table of key = value, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin in (tuple, list):
        (elem,) = typing.get_args(tp)[:1]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", elem, v, where) for i, v in enumerate(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: [{key}] must be a table, got {value!r}")
        return from_mapping(tp, value, where=where, prefix=f"{key}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**63:  # float(10**400) overflows; nothing here needs such a value
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true/false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if tp in (str, float) and not isinstance(value, tp):
        raise ConfigError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")
    return value


def _takes_float(tp: Any) -> bool:
    return tp is float or float in typing.get_args(tp)


def from_mapping(cls: type[T], raw: Mapping[str, Any], *, where: str, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a mapping, rejecting unknown keys and bad types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            accepted = ", ".join(sorted(fields))
            raise ConfigError(
                f"{where}: unknown key {prefix}{key!s}; accepted keys here: {accepted}"
            )
        kwargs[key] = _coerce(f"{prefix}{key}", hints[key], value, where)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
