"""`edge detect` end to end: the real console script, real models, real images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("models_ready")

ROOT = Path(__file__).resolve().parents[2]
EDGE = [sys.executable, "-m", "edge.cli.main"]


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=120)


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_face_on_astronaut(astronaut: Path, tmp_path: Path) -> None:
    r = edge("detect", str(astronaut), "--model", "face", "--json", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (rec,) = records(r.stdout)
    assert (rec["width"], rec["height"]) == (512, 512)
    (face,) = rec["detections"]
    assert face["label"] == "face" and face["score"] > 0.8
    x1, y1, x2, y2 = face["box"]
    # her face is in the upper middle of the photo, about 95 px wide
    assert 150 < x1 < x2 < 300 and 60 < y1 < y2 < 200 and 70 < x2 - x1 < 130
    assert len(face["keypoints"]) == 6
    assert set(rec["timings_ms"]) == {"decode", "preprocess", "infer", "postprocess"}
    annotated = cv2.imread(str(tmp_path / "astronaut.jpg"))
    original = cv2.imread(str(astronaut))
    assert annotated is not None and annotated.shape == original.shape
    # the drawn box changed pixels on its edge, not far away from it
    edge_px = annotated[int(y1) : int(y2), int(x1)].astype(int)
    far = annotated[450:500, 20].astype(int)
    assert np.abs(edge_px - original[int(y1) : int(y2), int(x1)].astype(int)).max() > 60
    assert np.abs(far - original[450:500, 20].astype(int)).max() < 10


def test_faces_on_real_footage_and_none_on_photos_without_faces(
    megamind_pngs: list[Path], samples_dir: Path
) -> None:
    r = edge("detect", *map(str, megamind_pngs), "--json")
    assert r.returncode == 0, r.stderr
    recs = records(r.stdout)
    with_face = [rec for rec in recs if rec["detections"]]
    assert len(with_face) >= len(recs) - 1  # the first frame of the clip is a title card
    no_faces = [samples_dir / n for n in ("fruits.jpg", "building.jpg", "pic1.png")]
    r = edge("detect", *map(str, no_faces), "--json")
    assert r.returncode == 0, r.stderr
    assert [len(rec["detections"]) for rec in records(r.stdout)] == [0, 0, 0]


def test_person_and_human_table(samples_dir: Path, tmp_path: Path) -> None:
    cap = cv2.VideoCapture(str(samples_dir / "vtest.avi"))
    ok, frame = cap.read()
    assert ok
    p = tmp_path / "street.png"
    cv2.imwrite(str(p), frame)
    r = edge("detect", str(p), "--model", "person", "--threshold", "0.3")
    assert r.returncode == 0, r.stderr
    assert "person" in r.stdout and "street.png" in r.stdout


def test_unusual_but_valid_images_are_converted(astronaut: Path, tmp_path: Path) -> None:
    img = cv2.imread(str(astronaut))
    cases = {
        "gray.png": cv2.cvtColor(img, cv2.COLOR_BGR2GRAY),
        "rgba.png": cv2.cvtColor(img, cv2.COLOR_BGR2BGRA),
        "deep.png": img.astype(np.uint16) * 257,
        "dot.png": img[:1, :1],
    }
    for name, data in cases.items():
        cv2.imwrite(str(tmp_path / name), data)
    r = edge("detect", *(str(tmp_path / n) for n in cases), "--json")
    assert r.returncode == 0, r.stderr
    counts = {Path(rec["source"]).name: len(rec["detections"]) for rec in records(r.stdout)}
    assert counts["rgba.png"] == 1 and counts["deep.png"] == 1 and counts["dot.png"] == 0
    assert counts["gray.png"] == 1


def bad_inputs(tmp_path: Path, astronaut: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    data = Path(astronaut).read_bytes()
    ok, jpg = cv2.imencode(".jpg", cv2.imread(str(astronaut)))
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(jpg.tobytes()[: len(jpg) // 2])
    junk_model = tmp_path / "junk.tflite"
    junk_model.write_bytes(b"definitely not a flatbuffer")
    cut_model = tmp_path / "cut.tflite"
    real = (ROOT / "models/face_detection_short_range.tflite").read_bytes()
    cut_model.write_bytes(real[: len(real) // 3])
    img = str(astronaut)
    assert data
    return {
        "missing": ([str(tmp_path / "nope.jpg")], "no such file"),
        "empty": ([str(empty)], "is empty"),
        "not an image": ([str(text)], "not an image"),
        "truncated": ([str(trunc)], "truncated JPEG"),
        "unknown model": ([img, "--model", "faces"], "known models are face"),
        "missing model file": ([img, "--model", str(tmp_path / "x.tflite")], "does not exist"),
        "not tflite": ([img, "--model", str(junk_model)], "not a TFLite model"),
        "truncated model": ([img, "--model", str(cut_model)], "could not be loaded"),
        "wrong family": ([img, "--decoder", "ssd"], "do not fit decoder 'ssd'"),
        "delegate missing": ([img, "--delegate", "edgetpu"], "libedgetpu.so.1"),
    }


def test_every_bad_input_gets_one_clear_line_and_exit_2(astronaut: Path, tmp_path: Path) -> None:
    for case, (args, needle) in bad_inputs(tmp_path, astronaut).items():
        r = edge("detect", *args)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("edge detect: error:")]
        assert r.returncode == 2, (case, r.stderr)
        assert len(lines) == 1 and needle in lines[0], (case, r.stderr)
        assert "Traceback" not in r.stderr, case


def test_a_bad_image_among_good_ones(astronaut: Path, tmp_path: Path) -> None:
    r = edge("detect", str(astronaut), str(tmp_path / "gone.jpg"), str(astronaut), "--json")
    assert r.returncode == 1
    assert len(records(r.stdout)) == 2
    assert "gone.jpg: no such file" in r.stderr


def test_checksum_mismatch_via_cli(tmp_path: Path) -> None:
    import shutil
    import zipfile

    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(ROOT / "models/manifest.toml", d / "manifest.toml")
    whl = tmp_path / "fake.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("mediapipe/modules/face_detection/face_detection_short_range.tflite", b"evil")
    r = edge("models", "fetch", "face", "--dir", str(d), "--from", str(whl))
    assert r.returncode == 2 and "checksum mismatch for model face" in r.stderr
