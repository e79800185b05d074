"""Drawing detections on a frame: boxes, labels with scores, keypoints, and a small HUD.

Drawing happens on a copy the caller owns; nothing here runs on the worker's critical path
when nobody is watching (the server calls it only for viewers, at a capped rate).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge.frame import Detections, Image

#: BGR colours by class id (cycled); stale boxes are drawn grey and dashed-looking (thin)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255),
    (80, 220, 60),
    (255, 120, 40),
    (200, 60, 220),
    (40, 40, 230),
    (230, 220, 40),
)
STALE = (160, 160, 160)


def draw(
    image: Image,
    det: Detections,
    *,
    stale_age_ms: float | None = None,
    hud: Sequence[str] = (),
    missed: bool = False,
) -> Image:
    """Draw ``det`` on ``image`` in place and return it.

    ``stale_age_ms`` marks the boxes as reused from an older frame (drawn grey with their age);
    ``missed`` frames get a red border; ``hud`` lines are written top-left.
    """
    h, w = image.shape[:2]
    # at least 2 px: JPEG halves colour resolution (4:2:0), so a 1 px line loses its colour
    thick = max(2, round(min(h, w) / 240))
    boxes = np.round(det.boxes).astype(np.int32)
    for i in range(len(det)):
        color = STALE if stale_age_ms is not None else PALETTE[int(det.class_ids[i]) % len(PALETTE)]
        x1, y1, x2, y2 = boxes[i].tolist()
        cv2.rectangle(image, (x1, y1), (x2, y2), color, 1 if stale_age_ms is not None else thick)
        text = f"{det.label(i)} {det.scores[i]:.2f}"
        if stale_age_ms is not None:
            text += f" stale {stale_age_ms:.0f}ms"
        _label(image, text, x1, y1, color)
        if det.keypoints is not None:
            for x, y in np.round(det.keypoints[i]).astype(np.int32).tolist():
                cv2.circle(image, (x, y), thick + 1, color, -1)
    if missed:
        cv2.rectangle(image, (0, 0), (w - 1, h - 1), (0, 0, 255), max(2, thick * 2))
    for n, line in enumerate(hud):
        _label(image, line, 4, 4 + (n + 1) * 18, (255, 255, 255), bg=(0, 0, 0))
    return image


def _label(
    image: Image,
    text: str,
    x: int,
    y: int,
    color: tuple[int, int, int],
    bg: tuple[int, int, int] | None = None,
) -> None:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    y = max(th + base, y)
    cv2.rectangle(image, (x, y - th - base), (x + tw + 2, y), bg or color, -1)
    cv2.putText(
        image,
        text,
        (x + 1, y - base),
        font,
        scale,
        (0, 0, 0) if bg is None else color,
        1,
        cv2.LINE_AA,
    )
