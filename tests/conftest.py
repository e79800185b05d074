"""Shared fixtures: real models from the manifest, real images and real footage.

scripts/test fetches models and samples before pytest runs; a test that needs them and finds
them missing fails with the command that fixes it (it does not skip).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("EDGE_CACHE", str(ROOT / ".cache"))


@pytest.fixture(scope="session", autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every run in the suite (in process or a CLI subprocess) keeps its state, the default
    miss log, in a temporary directory: never the user's ~/.local/state, never the cwd.
    A test that wants systemd's $STATE_DIRECTORY sets it in the child's environment."""
    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "STATE_DIRECTORY")}
    state_home = tmp_path_factory.mktemp("xdg-state")
    os.environ["XDG_STATE_HOME"] = str(state_home)
    os.environ.pop("STATE_DIRECTORY", None)
    try:
        yield state_home / "edge-vision"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    from edge.samples import samples_dir as sd

    d = sd()
    if not (d / "vtest.avi").is_file():
        pytest.fail(f"sample footage missing in {d}: run scripts/test (or `edge samples fetch`)")
    return d


@pytest.fixture(scope="session")
def models_ready() -> None:
    from edge.models import status

    missing = [s.name for s, st in status() if st != "ok"]
    if missing:
        pytest.fail(f"models not fetched: {missing}; run scripts/test (or `edge models fetch`)")


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data

    p = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(p), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return p


def video_frames(path: Path, every: int, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray] = []
    i = 0
    while len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append(f)
        i += 1
    cap.release()
    return out


@pytest.fixture(scope="session")
def megamind_pngs(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("megamind")
    paths = []
    for i, f in enumerate(video_frames(samples_dir / "Megamind.avi", every=40, limit=7)):
        p = d / f"megamind_{i:02d}.png"
        cv2.imwrite(str(p), f)
        paths.append(p)
    return paths


#: the core subset (marker ``pi_core``) that also runs on the virtual Raspberry Pi, aarch64 and
#: Python 3.13 (scripts/virtual-pi acceptance, step 5; docs/VIRTUAL_PI.md): the decoders and
#: NMS, preprocessing, parity with MediaPipe's stored outputs, a real run on footage (in
#: process and through `edge run`), and the bad-input cases. Node id prefixes; a prefix that
#: matches no test in a collected file, or names a file that is gone, is an error, so the
#: subset cannot shrink quietly when tests move.
PI_CORE = (
    "tests/unit/test_decoder_mediapipe.py",
    "tests/unit/test_decoder_ssd.py",
    "tests/unit/test_decoder_yolo.py",
    "tests/unit/test_nms.py",
    "tests/unit/test_preprocess.py",
    "tests/integration/test_parity_stored.py::test_boxes_match_stored_mediapipe_outputs",
    "tests/pipeline/test_real_run.py",
    "tests/pipeline/test_cli.py::test_run_prints_a_summary_and_the_log_agrees",
    "tests/integration/test_detect_cli.py::test_every_bad_input_gets_one_clear_line_and_exit_2",
    "tests/integration/test_detect_cli.py::test_a_bad_image_among_good_ones",
    "tests/reliability/test_bad_frames.py",
    "tests/reliability/test_bad_config.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # with node ids on the command line a file is collected only in part: nothing to check
    whole_files = not any("::" in str(a) for a in config.args)
    files = {item.nodeid.split("::", 1)[0] for item in items} if whole_files else set()
    for prefix in PI_CORE:
        path = prefix.split("::", 1)[0]
        if not (ROOT / path).is_file():
            raise pytest.UsageError(f"PI_CORE in tests/conftest.py names {path}, which is gone")
        if path in files and not any(i.nodeid.startswith(prefix) for i in items):
            raise pytest.UsageError(f"PI_CORE in tests/conftest.py: no test matches {prefix}")
    for item in items:
        if item.nodeid.startswith(PI_CORE):
            item.add_marker(pytest.mark.pi_core)
