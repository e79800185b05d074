from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import Config, ModelConfig
from edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_and_a_valid_file(tmp_path: Path) -> None:
    assert Config.load(None).model == ModelConfig()
    c = Config.load(write(tmp_path, '[model]\nname = "person"\nthreads = 2\nthreshold = 1\n'))
    assert c.model.name == "person" and c.model.threads == 2 and c.model.threshold == 1.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[model]\nnmae = 'x'\n", "unknown key model.nmae"),
        ("[modle]\n", "unknown key modle"),
        ("[model]\nthreads = 'two'\n", "model.threads must be an integer"),
        ("[model]\nthreads = true\n", "model.threads must be an integer"),
        ("[model]\nthreshold = 1.5\n", "out of range"),
        ("[model]\nthreads = 0\n", "model.threads"),
        ("[pipeline]\nopencv_threads = -1\n", "pipeline.opencv_threads"),
        ("model = 3\n", "must be a table"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_mistakes_name_the_key_and_the_file(tmp_path: Path, text: str, needle: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=needle) as e:
        Config.load(p)
    assert str(p) in str(e.value)


def test_missing_file_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "nope.toml")
    c = Config.load(write(tmp_path, "[model]\nthreads = 2\n")).merged(
        {"model.threads": 3, "model.name": None}
    )
    assert c.model.threads == 3 and c.model.name == "face"
    with pytest.raises(ConfigError, match="command line"):
        Config().merged({"model.threads": -1})
