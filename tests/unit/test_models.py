from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from edge import models
from edge.errors import ChecksumMismatch, FetchError, ModelNotFound

MANIFEST = """
[wheels.w]
package = "pkg"
version = "1"
filename = "pkg-1-py3-none-any.whl"
platform = "any"
python_version = "3.11"
sha256 = "00"

[models.tiny]
file = "tiny.tflite"
sha256 = "{sha}"
wheel = "w"
path = "pkg/tiny.tflite"
input = {{ width = 8, height = 8 }}
labels = ["thing"]
[models.tiny.decoder]
family = "mediapipe"
strides = [8]
"""


def make(tmp_path: Path, payload: bytes, manifest_sha: str) -> tuple[Path, Path]:
    d = tmp_path / "models"
    d.mkdir()
    (d / "manifest.toml").write_text(MANIFEST.format(sha=manifest_sha))
    whl = tmp_path / "pkg-1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/tiny.tflite", payload)
        z.writestr("pkg/other.bin", b"not extracted")
    return d, whl


def test_fetch_from_wheel_extracts_only_named_file_and_verifies(tmp_path: Path) -> None:
    payload = b"\x00\x00\x00\x00TFL3" + b"x" * 100
    d, whl = make(tmp_path, payload, hashlib.sha256(payload).hexdigest())
    (p,) = models.fetch(["tiny"], models_dir=d, from_wheel=whl)
    assert p == d / "tiny.tflite" and p.read_bytes() == payload
    # readable by the service user when root fetched it (the virtual Pi's acceptance found
    # 0600 weights that edge-vision.service could not open)
    assert p.stat().st_mode & 0o777 == 0o644
    assert not (d / "other.bin").exists()
    assert [(s.name, st) for s, st in models.status(d)] == [("tiny", "ok")]
    spec, path = models.resolve("tiny", d)
    assert spec.labels == ("thing",) and path == p
    # idempotent: a correct file is kept without touching the wheel (and made readable, if an
    # older version left it 0600)
    whl.unlink()
    p.chmod(0o600)
    assert models.fetch(["tiny"], models_dir=d) == [p]
    assert p.stat().st_mode & 0o777 == 0o644


def test_checksum_mismatch_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    d, whl = make(tmp_path, b"tampered", "ab" * 32)
    with pytest.raises(ChecksumMismatch, match="expected sha256 abab"):
        models.fetch(["tiny"], models_dir=d, from_wheel=whl)
    assert not (d / "tiny.tflite").exists()
    assert [st for _, st in models.status(d)] == ["missing"]


def test_unknown_and_unfetched_models(tmp_path: Path) -> None:
    d, _ = make(tmp_path, b"", "00")
    with pytest.raises(ModelNotFound, match="known models are tiny"):
        models.resolve("tinny", d)
    with pytest.raises(ModelNotFound, match="edge models fetch tiny"):
        models.resolve("tiny", d)
    with pytest.raises(FetchError, match="no such file"):
        models.fetch(["tiny"], models_dir=d, from_wheel=tmp_path / "nope.whl")


def test_real_manifest_names_the_four_mediapipe_models() -> None:
    man = models.load_manifest()
    assert {"face", "face-full", "person", "hand"} <= set(man.models)
    for spec in man.models.values():
        assert spec.wheel == "mediapipe" and spec.sha256 and len(spec.sha256) == 64
        assert spec.license == "Apache-2.0" and spec.family == "mediapipe"
    assert man.wheels["mediapipe"].version == "0.10.14"
