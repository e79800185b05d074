"""The ssd decoder on hand-built TFLite_Detection_PostProcess outputs in each exporter's layout."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edge.errors import ConfigError, ModelInvalid
from edge.heads.base import DecodeSpec, TensorInfo
from edge.heads.ssd import SSDDecoder

W, H, N = 320, 240, 10
LABELS = ("person", "bicycle", "car")

# three real detections (ymin, xmin, ymax, xmax normalised), class, score, in the op's order
ROWS = [
    ((0.1, 0.2, 0.5, 0.6), 2, 0.9),
    ((-0.1, 0.9, 0.5, 1.2), 0, 0.8),  # sticks out top and right: clipped
    ((0.5, 0.5, 0.75, 0.75), 1, 0.3),  # below the 0.5 threshold
]
# what they must become: x1, y1, x2, y2 in input pixels (320 x 240)
WANT_BOXES = [[64, 24, 192, 120], [288, 0, 320, 120]]
WANT_SCORES = [0.9, 0.8]
WANT_CLASSES = [2, 0]


def tensors_by_role(rows=ROWS, count=None):
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 1, (1, N, 4)).astype(np.float32)  # garbage past `count`
    classes = rng.integers(0, 3, (1, N)).astype(np.float32)
    scores = np.full((1, N), 0.99, np.float32)  # high, so a decoder ignoring count would show
    for i, (b, c, s) in enumerate(rows):
        boxes[0, i], classes[0, i], scores[0, i] = b, c, s
    n = len(rows) if count is None else count
    return {"boxes": boxes, "classes": classes, "scores": scores, "count": np.array([n], "f4")}


TF1 = [  # export_tflite_ssd_graph.py: boxes, classes, scores, count
    ("boxes", "TFLite_Detection_PostProcess", 0),
    ("classes", "TFLite_Detection_PostProcess:1", 0),
    ("scores", "TFLite_Detection_PostProcess:2", 0),
    ("count", "TFLite_Detection_PostProcess:3", 0),
]
TF2 = [  # TF2 / Model Maker: scores, boxes, count, classes
    ("scores", "StatefulPartitionedCall:1", 0),
    ("boxes", "StatefulPartitionedCall:3", 0),
    ("count", "StatefulPartitionedCall:0", 0),
    ("classes", "StatefulPartitionedCall:2", 0),
]


def model(layout, by_role):
    """(TensorInfo list, tensors in that order) for a layout of (role, name, tensor index)."""
    infos = [
        TensorInfo(name, by_role[role].shape, "float32", index) for role, name, index in layout
    ]
    return infos, [by_role[role] for role, _, _ in layout]


def spec(**params):
    return DecodeSpec(W, H, params, LABELS, score_threshold=0.5, iou_threshold=0.5)


def check(dets, boxes=WANT_BOXES, scores=WANT_SCORES, classes=WANT_CLASSES):
    assert dets.boxes.dtype == np.float32 and dets.scores.dtype == np.float32
    assert dets.class_ids.dtype == np.int32 and dets.keypoints is None
    np.testing.assert_allclose(dets.boxes, np.array(boxes, np.float32).reshape(-1, 4), atol=1e-4)
    np.testing.assert_allclose(dets.scores, scores, atol=1e-6)
    assert dets.class_ids.tolist() == classes
    assert tuple(dets.labels) == LABELS


LAYOUTS = {
    "tf1": TF1,
    "tf2": TF2,
    "tf2-shuffled": [TF2[3], TF2[0], TF2[2], TF2[1]],
    # unknown names: the op's ports get ascending tensor indices (boxes, classes, scores, count)
    "index-tf1": [(r, f"out{i}", 600 + i) for i, (r, _, _) in enumerate(TF1)],
    "index-tf2": [
        ("scores", "a", 602),
        ("boxes", "b", 600),
        ("count", "c", 603),
        ("classes", "d", 601),
    ],
    # unknown names, no index: pycoral's rule (count last = TF1 order, else TF2 order)
    "order-tf1": [(r, f"out{i}", 0) for i, (r, _, _) in enumerate(TF1)],
    "order-tf2": [(r, f"out{i}", 0) for i, (r, _, _) in enumerate(TF2)],
    "words": [
        ("count", "num_detections", 0),
        ("scores", "detection_scores", 0),
        ("boxes", "detection_boxes", 0),
        ("classes", "detection_classes", 0),
    ],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_decodes_every_known_layout(layout: str) -> None:
    infos, tensors = model(LAYOUTS[layout], tensors_by_role())
    assert SSDDecoder.mismatch(infos, spec()) is None
    check(SSDDecoder(infos, spec()).decode(tensors))


def test_count_limits_rows_and_empty_result() -> None:
    infos, tensors = model(TF1, tensors_by_role(count=1))
    check(SSDDecoder(infos, spec()).decode(tensors), WANT_BOXES[:1], [0.9], [2])
    infos, tensors = model(TF1, tensors_by_role(count=0))
    dets = SSDDecoder(infos, spec()).decode(tensors)
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)
    # a count larger than N (corrupt) is capped at N rather than indexing past the end
    infos, tensors = model(TF1, tensors_by_role(count=50))
    assert len(SSDDecoder(infos, spec()).decode(tensors)) == N - 1  # all but the 0.3 row


def test_label_offset_and_max_detections() -> None:
    infos, tensors = model(TF2, tensors_by_role())
    check(SSDDecoder(infos, spec(label_offset=1)).decode(tensors), classes=[3, 1])
    capped = DecodeSpec(W, H, {}, LABELS, score_threshold=0.5, max_detections=1)
    check(SSDDecoder(infos, capped).decode(tensors), WANT_BOXES[:1], [0.9], [2])
    with pytest.raises(ConfigError, match="label_offset"):
        SSDDecoder(infos, spec(label_offset="1"))


def swapped():
    """Unknown names in TF1 order, but this exporter put scores before classes."""
    by_role = tensors_by_role()
    layout = [("boxes", "o0", 0), ("scores", "o1", 0), ("classes", "o2", 0), ("count", "o3", 0)]
    return model(layout, by_role)


def test_override_settles_the_order() -> None:
    infos, tensors = swapped()
    # guessing (TF1 order) reads class ids as scores: caught, and the message says what to set
    with pytest.raises(ModelInvalid, match="swapped.*outputs = "):
        SSDDecoder(infos, spec()).decode(tensors)
    names = {"boxes": "o0", "scores": "o1", "classes": "o2", "count": "o3"}
    assert SSDDecoder.mismatch(infos, spec(outputs=names)) is None
    check(SSDDecoder(infos, spec(outputs=names)).decode(tensors))


@pytest.mark.parametrize(
    ("outputs", "match"),
    [
        ({"boxes": "o0", "scores": "o1"}, "exactly the keys"),
        ("o0,o1,o2,o3", "exactly the keys"),
        ({"boxes": "o0", "scores": "o1", "classes": "zz", "count": "o3"}, "'zz'.*use one of"),
        ({"boxes": "o0", "scores": "o1", "classes": "o1", "count": "o3"}, "twice"),
        ({"boxes": "o1", "scores": "o0", "classes": "o2", "count": "o3"}, "wrong shape"),
    ],
)
def test_bad_override(outputs, match: str) -> None:
    infos, _ = swapped()
    reason = SSDDecoder.mismatch(infos, spec(outputs=outputs))
    assert reason is not None and reason  # a reason, not an exception, during detection
    with pytest.raises(ConfigError, match=match):
        SSDDecoder(infos, spec(outputs=outputs))


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        ([(1, 896, 16), (1, 896, 1)], "4 outputs"),  # MediaPipe BlazeFace
        ([(1, 84, 8400)], "4 outputs"),  # YOLO
        ([(1, 10, 4), (1, 10, 4), (1, 10), (1,)], "one \\(1,N,4\\) boxes"),
        ([(1, 10, 4), (1, 10), (1, 10), (1, 10)], "one \\(1,N,4\\) boxes"),
        ([(1, 10, 4), (1, 10), (1, 12), (1,)], "classes and scores of shape \\(1,10\\)"),
        ([(1, 10, 5), (1, 10), (1, 10), (1,)], "boxes"),
    ],
)
def test_mismatch_reasons(shapes, match: str) -> None:
    infos = [TensorInfo(f"t{i}", s, "float32", i) for i, s in enumerate(shapes)]
    reason = SSDDecoder.mismatch(infos, spec())
    assert reason is not None
    assert re.search(match, reason), reason
    with pytest.raises(ModelInvalid):
        SSDDecoder(infos, spec())
