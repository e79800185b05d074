"""Parity with MediaPipe's own face detector (mediapipe==0.10.14, solutions.face_detection).

MediaPipe cannot share the test venv (it needs numpy<2 and protobuf<5), so scripts/test builds
.venv-ref and scripts/mediapipe_ref.py runs it there on the same image files. Our boxes must
agree with MediaPipe's to IoU >= 0.99 per face, with the same count, on every 10th frame of
Megamind.avi (27 frames, most with two faces, one of them small and near the threshold) and a
photo. MediaPipe leaves a box that reaches past the frame's edge unclipped; ours are clipped to
the frame (a box is drawn and published in frame pixels), so the reference is clipped the same
way before comparing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli.detect import read_image
from edge.config import ModelConfig
from edge.detector import load_detector
from tests.conftest import video_frames

ROOT = Path(__file__).resolve().parents[2]
REF_PY = ROOT / ".venv-ref" / "bin" / "python"

pytestmark = pytest.mark.usefixtures("models_ready")


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip(box: list[float], w: int, h: int) -> list[float]:
    return [min(max(box[0], 0.0), w), min(max(box[1], 0.0), h),
            min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)]  # fmt: skip


@pytest.fixture(scope="module")
def megamind_every_10th(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("megamind10")
    paths = []
    for i, f in enumerate(video_frames(samples_dir / "Megamind.avi", every=10, limit=1000)):
        p = d / f"megamind_{i * 10:04d}.png"
        cv2.imwrite(str(p), f)
        paths.append(p)
    return paths


def reference(model: str, images: list[Path]) -> list[dict]:
    if not REF_PY.exists():
        # skipped only where scripts/setup found no Python MediaPipe 0.10.14 supports (it says
        # which in .venv-ref.unavailable, e.g. a 3.13-only Debian 13); anywhere else a missing
        # reference is a failure. test_parity_stored.py checks our boxes on every platform.
        unavailable = ROOT / ".venv-ref.unavailable"
        if unavailable.is_file():
            pytest.skip(unavailable.read_text().strip())
        pytest.fail("no .venv-ref (the MediaPipe reference): run scripts/test, which builds it")
    req = {"model": model, "images": [str(p) for p in images], "threshold": 0.5}
    r = subprocess.run([str(REF_PY), str(ROOT / "scripts/mediapipe_ref.py")],
                       input=json.dumps(req), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)["results"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", ["face", "face-full"])
def test_boxes_match_mediapipe(
    model: str, astronaut: Path, megamind_every_10th: list[Path]
) -> None:
    images = [astronaut, *megamind_every_10th]
    assert len(images) >= 25
    ref = reference(model, images)
    # the manifest's thresholds are MediaPipe's graph options: 0.5 (short range) and 0.6 (full
    # range, whose graph keeps 0.6 for its candidates whatever min_detection_confidence says)
    det = load_detector(ModelConfig(name=model))
    faces = 0
    for rec in ref:
        ours = det.detect(read_image(rec["source"]))
        theirs = rec["detections"]
        assert len(ours) == len(theirs), rec["source"]
        # match by best IoU (order can differ on ties)
        for t in theirs:
            box = clip(t["box"], rec["width"], rec["height"])
            best = max(iou(b, box) for b in ours.boxes.tolist())
            assert best >= 0.99, (rec["source"], best)
            faces += 1
        if len(ours):
            top = int(np.argmax(ours.scores))
            ref_top = max(theirs, key=lambda t: t["score"])
            # the same input tensor to the bit gives the same scores to float rounding (5e-7
            # here); a resampling one level off on some pixels moved them by up to 0.01
            assert abs(float(ours.scores[top]) - ref_top["score"]) < 1e-3
    assert faces >= len(images) - 3  # every frame but the title cards has a face
