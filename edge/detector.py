"""A model ready to run on frames: runtime + preprocessor + decoder, with the stages apart.

The pipeline times each stage separately (decode, preprocess, infer, postprocess), so the
detector exposes them one by one; :meth:`Detector.detect` runs all three for one image.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from edge.config import ModelConfig
from edge.decode import FrameDecoder
from edge.errors import ModelInvalid
from edge.frame import Detections, Frame, Image
from edge.heads import DecodeSpec, build_decoder
from edge.models import ModelSpec, read_labels, resolve
from edge.preprocess import Preprocessor, Transform, model_image
from edge.preprocess_tf import MODE as STRETCH_TF
from edge.preprocess_tf import StretchTFPreprocessor
from edge.runtime.interpreter import Interpreter

log = logging.getLogger(__name__)


class Detector:
    def __init__(self, spec: ModelSpec, interpreter: Interpreter, cfg: ModelConfig) -> None:
        self.spec, self.interpreter, self.cfg = spec, interpreter, cfg
        self.name = spec.name
        inp = interpreter.input
        self.input_w, self.input_h = inp.width, inp.height
        if spec.input_w and (spec.input_w, spec.input_h) != (inp.width, inp.height):
            raise ModelInvalid(
                f"model {spec.name}: manifest says input {spec.input_w}x{spec.input_h}, the file "
                f"has {inp.width}x{inp.height}; the manifest entry is wrong"
            )
        labels = read_labels(cfg.labels) if cfg.labels else spec.labels
        self.labels = labels
        decode_spec = DecodeSpec(
            input_w=inp.width,
            input_h=inp.height,
            params=spec.decoder_params,
            labels=labels,
            score_threshold=cfg.threshold if cfg.threshold is not None else spec.threshold,
            iou_threshold=cfg.iou if cfg.iou is not None else spec.iou,
            max_detections=cfg.max_detections,
            nms=spec.nms_kind,
        )
        self.decoder = build_decoder(
            interpreter.outputs_info, decode_spec, cfg.decoder or spec.family
        )
        quant = (inp.scale, inp.zero_point) if inp.dtype != np.float32 else (0.0, 0)
        # TensorFlow's own resize for the graphs that resize with it (edge/preprocess_tf.py)
        make = StretchTFPreprocessor if spec.resize == STRETCH_TF else Preprocessor
        self.pre: Preprocessor | StretchTFPreprocessor = make(
            inp.width,
            inp.height,
            inp.channels,
            inp.dtype,
            spec.normalization if inp.dtype == np.float32 or quant[0] else "raw",
            spec.resize,
            rgb=spec.color == "rgb",
            quant=quant,
        )
        self._decoder = FrameDecoder(inp.width, inp.height)
        self._scaled: tuple[Transform, float, Transform] | None = None

    @property
    def family(self) -> str:
        return self.decoder.family

    # -- stages -------------------------------------------------------------------------------
    def decode(self, frame: Frame) -> tuple[Image, float]:
        """The decode stage (:meth:`edge.decode.FrameDecoder.decode`)."""
        return self._decoder.decode(frame)

    def preprocess(self, image: Image) -> Transform:
        image = model_image(image)  # gray, BGRA, float ... converted; ImageError before the view
        view = self.interpreter.input_view()
        try:
            return self.pre.warp_into(image, view, keep_pad=True)  # only we write the input
        finally:
            del view  # the interpreter refuses to invoke while a view into it lives

    def infer(self) -> None:
        self.interpreter.invoke()

    def postprocess(self, t: Transform, reduction: float = 1) -> Detections:
        if reduction != 1:
            s = self._scaled  # the same transform object every frame: identity, no __eq__
            if s is None or s[0] is not t or s[1] != reduction:
                s = self._scaled = (t, reduction, t.scaled(1.0 / reduction))
            t = s[2]
        outs = self.interpreter.outputs()
        try:
            return self.decoder.decode_mapped(outs, t)
        finally:
            del outs  # views into the interpreter: none may outlive this call

    def detect(self, image: Image, times: dict[str, int] | None = None) -> Detections:
        clock = time.perf_counter_ns
        t0 = clock()
        t = self.preprocess(image)
        t1 = clock()
        self.infer()
        t2 = clock()
        det = self.postprocess(t)
        t3 = clock()
        if times is not None:
            times["preprocess"], times["infer"], times["postprocess"] = t1 - t0, t2 - t1, t3 - t2
        return det

    def bare_invoke_ns(self) -> int:
        t0 = time.perf_counter_ns()
        self.interpreter.invoke()
        return time.perf_counter_ns() - t0


def load_detector(cfg: ModelConfig) -> Detector:
    spec, path = resolve(cfg.name, cfg.dir)
    interpreter = Interpreter(
        path,
        threads=cfg.threads,
        delegate=cfg.delegate,
        delegate_options=dict(cfg.delegate_options),
    )
    return Detector(spec, interpreter, cfg)
