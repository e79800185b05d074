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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Jetson's Python 3.10
    import tomli as tomllib

from edge.errors import ConfigError
from edge.outputs.mqtt_config import MqttConfig
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.serve.config import ServeConfig
from edge.sources.base import SourceOptions
from edge.validate import check_choice, check_range, from_mapping
from edge.watchdog.settings import WatchdogConfig

__all__ = ["Config", "ModelConfig", "check_choice", "check_range", "from_mapping", "tomllib"]


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
class SourceConfig(SourceOptions):
    """``[source]``: how to open the source (see :class:`edge.sources.base.SourceOptions`)."""

    spec: str | None = None  # "demo", "0", "/dev/video0", "picamera2", "rtsp://...", a file ...


@dataclass(frozen=True)
class Config:
    """The whole config file: one section per stage. Flags override it (``merged``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    @classmethod
    def load(cls, path: str | Path | None) -> Config:
        if path is None:
            return cls()
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist: give an existing file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
        except RecursionError:  # tomllib parses nested arrays and tables recursively
            raise ConfigError(
                f"config file {p} nests arrays or tables too deeply for a config: "
                "expected at most a few levels"
            ) from None
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
