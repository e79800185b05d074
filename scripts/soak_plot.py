"""The soak benchmark's plot: stacked panels drawn with OpenCV (matplotlib is not in the venv).

``plot(panels, xs, path, title)``: ``xs`` are the sample times in minutes; each panel is
``(label, [(ys, BGR colour), ...])``, one line per series; NaN values are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Colour = tuple[int, int, int]
Series = tuple[Sequence[float], Colour]
Panel = tuple[str, Sequence[Series]]

BLUE, RED, GREEN, GREY = (200, 80, 0), (0, 0, 200), (0, 120, 0), (120, 120, 120)
_W, _PH, _PAD = 720, 120, 44
_FONT, _BLACK = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)


def plot(panels: Sequence[Panel], xs: Sequence[float], path: Path, title: str) -> None:
    img = np.full((_PAD + 10 + len(panels) * (_PH + _PAD), _W, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 18), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
    for i, (label, series) in enumerate(panels):
        _panel(img, _PAD + 10 + i * (_PH + _PAD), xs, series, label)
    cv2.imwrite(str(path), img)


def _panel(
    img: npt.NDArray[np.uint8], top: int, xs: Sequence[float], series: Sequence[Series], label: str
) -> None:
    left, right = 60, _W - 15
    vals = [v for ys, _ in series for v in ys if np.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    x0, x1 = (xs[0], xs[-1]) if len(xs) > 1 and xs[-1] > xs[0] else (0.0, 1.0)
    cv2.rectangle(img, (left, top), (right, top + _PH), (180, 180, 180), 1)
    cv2.putText(img, label, (left, top - 6), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, f"{hi:.4g}", (2, top + 12), _FONT, 0.38, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, f"{lo:.4g}", (2, top + _PH), _FONT, 0.38, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, f"{x1:.3g} min", (right - 50, top + _PH + 14), _FONT, 0.38, _BLACK, 1)

    def pt(x: float, y: float) -> tuple[int, int]:
        return (
            left + round((x - x0) / (x1 - x0) * (right - left)),
            top + _PH - round((y - lo) / (hi - lo) * _PH),
        )

    for ys, colour in series:
        pts = [pt(x, y) for x, y in zip(xs, ys, strict=True) if np.isfinite(y)]
        for a, b in zip(pts, pts[1:], strict=False):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
