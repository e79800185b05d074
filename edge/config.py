"""Configuration: frozen dataclasses, loaded from TOML with ``tomllib`` and validated at load.

Every flag of ``edge run`` has a key here. Unknown keys, wrong types and out-of-range values are
:class:`~edge.errors.ConfigError` naming the file, the key and what is accepted. Flags override
the file (``Config.merged``). Config is passed down; no module reads the environment.

Adding a setting: add a field (with a default) to the section's dataclass, and, when it has a
range or a fixed set of values, a check in that dataclass's ``__post_init__`` through
:func:`check_range` / :func:`check_choice`.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Jetson's Python 3.10
    import tomli as tomllib

from edge.errors import ConfigError

T = TypeVar("T")


def check_range(key: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{key} = {value!r} is out of range: expected {lo_s} .. {hi_s}")


def check_choice(key: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{key} = {value!r} is not accepted: expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "face"  # a manifest name or a path to a .tflite
    decoder: str | None = None  # family; detected from the outputs when None
    labels: str | None = None  # a labels file, one name per line
    threshold: float | None = None  # score threshold; the manifest's when None
    iou: float | None = None  # NMS IoU threshold; the manifest's when None
    max_detections: int = 100
    delegate: str = "cpu"  # e.g. "cpu", "edgetpu,cpu", "/path/libfoo.so"
    delegate_options: dict[str, str] = field(default_factory=dict)  # to the first non-cpu one
    threads: int = 1
    dir: str | None = None  # where fetched models live; models/ beside the manifest when None

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_range("model.threshold", self.threshold, 0.0, 1.0)
        if self.iou is not None:
            check_range("model.iou", self.iou, 0.0, 1.0)
        check_range("model.max_detections", self.max_detections, 1, 10_000)
        check_range("model.threads", self.threads, 1, 64)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)

    @classmethod
    def load(cls, path: str | Path | None) -> Config:
        if path is None:
            return cls()
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist: pass an existing --config") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
        return from_mapping(cls, raw, where=str(p))

    def merged(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with ``{"section.key": value}`` overrides applied (None values ignored)."""
        raw = dataclasses.asdict(self)
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            raw.setdefault(section, {})[key] = value
        return from_mapping(type(self), raw, where="command line")


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(
        tp, "a table" if dataclasses.is_dataclass(tp) else getattr(tp, "__name__", str(tp))
    )


def _coerce(key: str, tp: Any, value: Any, where: str) -> Any:
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
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: [{key}] must be a table, got {value!r}")
        return from_mapping(tp, value, where=where, prefix=f"{key}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true/false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if tp in (str, float) and not isinstance(value, tp):
        raise ConfigError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")
    return value


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
