"""One interpreter wrapper: load, allocate, write the input in place, read outputs without copies.

Per frame the caller does::

    view = interp.input_view()   # the interpreter's own input buffer, (H, W, C)
    ... write into view ...
    del view                     # LiteRT refuses to invoke while a view into its buffers lives
    interp.invoke()
    outs = interp.outputs()      # float32; valid until the next invoke, do not keep them

Quantized models: the input's scale and zero point are exposed (``input_quant``) so the
preprocessor can fold normalisation and quantisation into one affine step; quantized outputs are
dequantized into buffers allocated once here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ModelInvalid, ModelNotFound
from edge.heads.base import TensorInfo
from edge.runtime.delegates import DelegateChoice, load_chain
from edge.runtime.loader import Runtime, load_runtime
from edge.runtime.quiet import runtime_noise_filtered

log = logging.getLogger(__name__)

TFLITE_MAGIC = b"TFL3"  # flatbuffer file identifier at byte offset 4


@dataclass(frozen=True)
class InputInfo:
    height: int
    width: int
    channels: int
    dtype: np.dtype[Any]
    scale: float  # 0.0 when not quantized
    zero_point: int


def check_model_file(path: Path) -> None:
    """Refuse a missing, empty, truncated or non-TFLite file with a message that says which."""
    if not path.is_file():
        raise ModelNotFound(
            f"model file {path} does not exist: check the path, or fetch it "
            "with `edge models fetch`"
        )
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    if size < 8 or head[4:8] != TFLITE_MAGIC:
        raise ModelInvalid(
            f"{path} is not a TFLite model (no 'TFL3' identifier in its header, {size} bytes): "
            "give a .tflite file"
        )


class Interpreter:
    """A loaded, allocated interpreter with a fixed input and preallocated output buffers."""

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int = 1,
        delegate: str = "cpu",
        delegate_options: Mapping[str, str] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.path = Path(path)
        check_model_file(self.path)
        self.runtime = runtime or load_runtime()
        self.delegate: DelegateChoice = load_chain(self.runtime, delegate, delegate_options)
        try:
            with runtime_noise_filtered():  # LiteRT's "INFO: Created ... XNNPACK delegate"
                self._it = self.runtime.Interpreter(
                    model_path=str(self.path),
                    num_threads=threads,
                    experimental_delegates=list(self.delegate.delegates) or None,
                )
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            reason = " ".join(str(e).split())[:300]
            raise ModelInvalid(
                f"{self.path} could not be loaded by {self.runtime.name}: {reason}; the file may "
                "be truncated or need ops this runtime lacks (re-fetch it: `edge models fetch`)"
            ) from None
        self.input = self._input_info()
        self.outputs_info = self._output_infos()
        self._in_idx = self._it.get_input_details()[0]["index"]
        self._in_fn = self._it.tensor(self._in_idx)
        self._out_fns = [self._it.tensor(t.index) for t in self.outputs_info]
        self._deq = [self._dequant_plan(d) for d in self._it.get_output_details()]
        self._all_float = all(p is None for p in self._deq)

    def _input_info(self) -> InputInfo:
        details = self._it.get_input_details()
        if len(details) != 1:
            raise ModelInvalid(
                f"{self.path} has {len(details)} inputs; edge-vision needs a model with one "
                "image input"
            )
        d = details[0]
        shape = tuple(int(s) for s in d["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
            raise ModelInvalid(
                f"{self.path} input shape {list(shape)} is not an NHWC image (1, H, W, 1|3)"
            )
        scale, zp = d.get("quantization", (0.0, 0))
        return InputInfo(shape[1], shape[2], shape[3], np.dtype(d["dtype"]), float(scale), int(zp))

    def _output_infos(self) -> list[TensorInfo]:
        return [
            TensorInfo(
                str(d["name"]),
                tuple(int(s) for s in d["shape"]),
                np.dtype(d["dtype"]).name,
                int(d["index"]),
            )
            for d in self._it.get_output_details()
        ]

    @staticmethod
    def _dequant_plan(d: Mapping[str, Any]) -> tuple[float, int, npt.NDArray[np.float32]] | None:
        if np.dtype(d["dtype"]) == np.float32:
            return None
        scale, zp = d.get("quantization", (0.0, 0))
        buf = np.empty(tuple(d["shape"]), np.float32)
        return (float(scale) or 1.0, int(zp), buf)

    def input_view(self) -> npt.NDArray[Any]:
        """The interpreter's input buffer as (H, W, C). Delete it before :meth:`invoke`."""
        view: npt.NDArray[Any] = self._in_fn()[0]
        return view

    def invoke(self) -> None:
        self._it.invoke()

    def outputs(self) -> list[npt.NDArray[np.float32]]:
        """Float32 outputs in interpreter order: views for float models, dequantized buffers for
        quantized ones. Valid until the next invoke; do not keep references."""
        if self._all_float:
            return [fn() for fn in self._out_fns]
        outs: list[npt.NDArray[np.float32]] = []
        for fn, plan in zip(self._out_fns, self._deq, strict=True):
            raw = fn()
            if plan is None:
                outs.append(raw)
                continue
            scale, zp, buf = plan
            np.subtract(raw, zp, out=buf, dtype=np.float32, casting="unsafe")
            buf *= scale
            outs.append(buf)
        return outs
