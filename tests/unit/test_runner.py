"""The interpreter wrapper's own logic, through the same code path as LiteRT: quantized input
and output handling with a stand-in interpreter that follows LiteRT's Python API
(``get_input_details``, ``tensor(i)`` returning a view factory, ``invoke``), since no quantized
detector ships in a package we can fetch here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.errors import ModelInvalid, ModelNotFound
from edge.runtime.interpreter import Interpreter
from edge.runtime.loader import Runtime


class QuantInterpreter:
    """uint8 input (scale 1/128, zero point 128) and an int8 output (scale 0.5, zp -3)."""

    def __init__(self, model_path: str, num_threads: int, experimental_delegates: Any) -> None:
        self.threads = num_threads
        self.buffers = {
            0: np.zeros((1, 4, 6, 3), np.uint8),
            7: np.zeros((1, 5, 2), np.int8),
        }
        self.invokes = 0

    def allocate_tensors(self) -> None: ...

    def get_input_details(self) -> list[dict[str, Any]]:
        return [{"name": "in", "index": 0, "shape": np.array([1, 4, 6, 3]), "dtype": np.uint8,
                 "quantization": (1 / 128, 128)}]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [{"name": "out", "index": 7, "shape": np.array([1, 5, 2]), "dtype": np.int8,
                 "quantization": (0.5, -3)}]

    def tensor(self, i: int) -> Any:
        return lambda: self.buffers[i]

    def invoke(self) -> None:
        # the "model": output = input's first 10 values, wrapped into int8
        self.invokes += 1
        self.buffers[7][:] = self.buffers[0].reshape(-1)[:10].reshape(1, 5, 2).astype(np.int8)


def fake_model(tmp_path: Path) -> Path:
    p = tmp_path / "q.tflite"
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    return p


def runtime() -> Runtime:
    return Runtime("fake", "0", QuantInterpreter, lambda lib, opts: None)


def test_quantized_outputs_are_dequantized_into_preallocated_buffers(tmp_path: Path) -> None:
    r = Interpreter(fake_model(tmp_path), threads=3, runtime=runtime())
    assert r.input.dtype == np.uint8 and r.input.scale == pytest.approx(1 / 128)
    assert r.input.zero_point == 128 and (r.input.height, r.input.width) == (4, 6)
    view = r.input_view()
    assert view.shape == (4, 6, 3)
    view[:] = np.arange(72, dtype=np.uint8).reshape(4, 6, 3)
    del view
    r.invoke()
    (out,) = r.outputs()
    assert out.dtype == np.float32 and out.shape == (1, 5, 2)
    np.testing.assert_allclose(out.reshape(-1), (np.arange(10) - (-3)) * 0.5)
    first = out
    del out
    r.invoke()
    (again,) = r.outputs()
    assert again is first  # the same buffer every frame: no allocation per frame


def test_refuses_missing_and_non_tflite_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        Interpreter(tmp_path / "none.tflite", runtime=runtime())
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"GIF89a....")
    with pytest.raises(ModelInvalid, match="not a TFLite model"):
        Interpreter(bad, runtime=runtime())
