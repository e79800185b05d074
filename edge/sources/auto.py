"""``--source auto``: the first camera found, else the built-in ``demo`` clip.

Resolved by the runner after the model (and its delegate) has loaded: a run that cannot start
says why before anything probes a camera, and a camera is held only by a run that will use it.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)

AUTO = "auto"


def find_camera() -> str:
    """``auto``: a libcamera camera through picamera2, else a V4L2 device that delivers a frame,
    else the built-in ``demo`` source (said in the log, so nobody wonders where the video is)."""
    if importlib.util.find_spec("picamera2") is not None:
        try:
            from picamera2 import Picamera2

            if Picamera2.global_camera_info():
                log.info("source auto: using the camera module (picamera2)")
                return "picamera2"
        except Exception as e:  # noqa: BLE001 - any libcamera trouble means "no camera here"
            log.info("source auto: picamera2 present but unusable (%s)", e)
    for dev in sorted(Path("/dev").glob("video[0-9]*")):
        import cv2

        cap = cv2.VideoCapture(str(dev), cv2.CAP_V4L2)
        try:
            if cap.isOpened() and cap.read()[0]:
                log.info("source auto: using %s", dev)
                return str(dev)
        finally:
            cap.release()
    log.warning("source auto: no camera found; using the built-in demo clip (--source demo)")
    return "demo"
