"""Hostile input and careless neighbours (issue 18), through the real ``edge`` command where
that is what a user sees: numbers that are not finite, a miss log that is someone else's file
or another process's log, an unwritable or empty miss-log path, a config nested too deeply,
Ctrl-C before the run has started, images that are empty or would take gigabytes, and
passwords inside ``gst:`` pipelines.

Every case is one line on stderr that names the problem and the fix, no traceback, and the
exit status a script can act on (2 for a mistake, 130 for Ctrl-C); or, for a bad frame, a
counted and skipped frame and a run that goes on. (The loader and the spec parser are
fuzzed in ``test_fuzz.py``; the miss log's own cases are in ``tests/unit/test_misslog.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

EDGE = [sys.executable, "-m", "edge.cli.main"]
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120.0


def edge(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGE, *argv], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO, env=env
    )


def one_error_line(done: subprocess.CompletedProcess[str], needle: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [x for x in done.stderr.splitlines() if "error" in x.lower()]
    assert len(errors) == 1 and needle in errors[0], done.stderr
    return errors[0]


@pytest.fixture
def one_image(tmp_path: Path) -> Path:
    """A folder with one small real image (a gradient), as a source."""
    folder = tmp_path / "frames"
    folder.mkdir()
    img = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    cv2.imwrite(str(folder / "0001.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    return folder


# -- 2: numbers that are not finite -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--budget-ms", "nan", "pipeline.budget_ms must be a finite number, got nan"),
        ("--fps", "nan", "source.fps must be a finite number, got nan"),
        ("--fps", "inf", "source.fps must be a finite number, got inf"),
        ("--budget-ms", "-inf", "pipeline.budget_ms must be a finite number, got -inf"),
    ],
)
def test_a_flag_that_is_not_a_finite_number_is_one_line(
    one_image: Path, flag: str, value: str, needle: str
) -> None:
    done = edge("run", "--source", str(one_image), "--frames", "1", f"{flag}={value}")
    line = one_error_line(done, needle)
    assert "command line" in line and "XNNPACK" not in done.stderr  # refused before the model


def test_detect_threshold_nan_is_refused_not_silently_empty(one_image: Path) -> None:
    done = edge("detect", str(one_image / "0001.png"), "--threshold", "nan")
    one_error_line(done, "model.threshold must be a finite number in 0 .. 1, got nan")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[serve]\nhealth_budgets = nan\n", "serve.health_budgets must be a finite number"),
        ("[serve]\nclient_timeout_s = nan\n", "serve.client_timeout_s must be a finite number"),
        ("[serve]\nstream_fps = inf\n", "serve.stream_fps must be a finite number"),
        ("[watchdog]\nstuck_ms = -inf\n", "watchdog.stuck_ms must be a finite number"),
        ("[source]\nstall_timeout_s = 1e400\n", "source.stall_timeout_s must be a finite number"),
    ],
)
def test_a_config_number_that_is_not_finite_is_one_line(
    tmp_path: Path, one_image: Path, text: str, needle: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    done = edge("run", "--config", str(cfg), "--source", str(one_image), "--frames", "1")
    assert str(cfg) in one_error_line(done, needle)


def test_a_config_nested_too_deeply_is_one_line(tmp_path: Path, one_image: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nname = " + "[" * 2000 + "]" * 2000 + "\n")
    done = edge("run", "--config", str(cfg), "--source", str(one_image))
    assert str(cfg) in one_error_line(done, "nests arrays or tables too deeply")


# -- 3, 8: the miss log is ours, and one process's ---------------------------------------------


def test_run_refuses_a_miss_log_that_is_someone_elses_file(tmp_path: Path, one_image: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n" * 1000)
    link = tmp_path / "link.jsonl"
    link.symlink_to(notes)
    for target, needle in ((notes, "is not a miss log"), (link, "is a symbolic link")):
        done = edge("run", "--source", str(one_image), "--frames", "3", "--miss-log", str(target))
        one_error_line(done, needle)
    assert notes.read_text() == "my notes\n" * 1000


HOLDER = textwrap.dedent(
    """
    import sys
    from edge.watchdog.misslog import MissLog
    log = MissLog(sys.argv[1])
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    log.close()
    """
)


def test_a_second_process_on_one_miss_log_is_refused(tmp_path: Path, one_image: Path) -> None:
    path = tmp_path / "misses.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        done = edge("run", "--source", str(one_image), "--frames", "2", "--miss-log", str(path))
        one_error_line(done, f"is in use by another process (pid {holder.pid}")
    finally:
        holder.communicate("", timeout=TIMEOUT_S)
    # the lock goes with the process that held it: the next run writes its records
    done = edge("run", "--source", str(one_image), "--frames", "2", "--miss-log", str(path))
    assert done.returncode == 0, done.stderr
    assert '"type":"run"' in path.read_text()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        ("file-as-dir", "a part of its path is a file, not a directory): give another path"),
        ("empty", "watchdog.miss_log is empty: give a file path, or - for stdout"),
    ],
)
def test_an_unusable_miss_log_path_is_an_error_not_exit_0(
    tmp_path: Path, one_image: Path, make: str, needle: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    path = "" if make == "empty" else str(blocker / "misses.jsonl")
    done = edge("run", "--source", str(one_image), "--frames", "2", "--miss-log", path)
    line = one_error_line(done, needle)
    assert "free space" not in line


# -- SIGINT before the run has started ----------------------------------------------------------

INTERRUPT_AT_IMPORT = textwrap.dedent(
    """
    # sitecustomize for the test: Ctrl-C arrives while `{module}` is being imported
    import os, signal, sys

    class _Interrupt:
        def find_spec(self, name, path=None, target=None):
            if name == "{module}":
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, _Interrupt())
    """
)


@pytest.mark.parametrize("module", ["cv2", "ai_edge_litert"])  # parsing; the model loading
def test_ctrl_c_while_starting_is_quiet(tmp_path: Path, one_image: Path, module: str) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INTERRUPT_AT_IMPORT.format(module=module))
    env = {**os.environ, "PYTHONPATH": f"{hook}:{REPO}"}
    done = edge("run", "--source", str(one_image), "--frames", "2", env=env)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr


# -- 4, 5: images that are empty, endless or would take gigabytes -------------------------------


def uniform_png(path: Path, width: int, height: int) -> Path:
    """A real, valid PNG of one colour (1-bit grey): 30000 x 30000 is under 200 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + the row's bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


PEAK_RSS = textwrap.dedent(
    """
    import resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    sys.stdout.write(done.stdout)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)  # KiB
    sys.exit(done.returncode)
    """
)


def test_detect_checks_the_size_before_decoding(tmp_path: Path) -> None:
    big = uniform_png(tmp_path / "big.png", 30000, 30000)  # 2.7 GB as BGR
    assert big.stat().st_size < 1_000_000
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *EDGE, "detect", str(big)],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO,
    )  # fmt: skip
    *stderr, peak_kib = done.stderr.splitlines()
    done.stderr = "\n".join(stderr)
    one_error_line(done, "30000x30000 (900.0 megapixels) is over the limit of 40 megapixels")
    assert int(peak_kib) < 1024 * 1024, f"peak {int(peak_kib) // 1024} MiB"  # the model, no image


def test_detect_decodes_a_large_jpeg_reduced_in_the_files_pixels(tmp_path: Path) -> None:
    img = np.full((6000, 8000, 3), 90, np.uint8)  # 48 MP: over the 40 MP limit
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 50])
    done = edge("detect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    assert (rec["width"], rec["height"]) == (8000, 6000) and rec["detections"] == []


def test_a_folder_of_bad_files_is_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    img = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    cv2.imwrite(str(folder / "01-good.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    (folder / "02-empty.png").write_bytes(b"")
    (folder / "03-zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(folder / "04-pipe.png")
    uniform_png(folder / "05-huge.png", 30000, 30000)
    cv2.imwrite(str(folder / "06-good.jpg"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    done = edge("run", "--source", str(folder), "--no-pace", "--json",
                "--miss-log", str(tmp_path / "m.jsonl"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["source_stats"]["corrupt_frames"] == 4, summary
    assert summary["frames"]["processed"] == 2, summary
    # one line per kind of problem a second: unreadable files (empty, device, pipe), too big
    for needle in ("02-empty.png: the file is empty", "05-huge.png: 30000x30000"):
        assert needle in done.stderr, done.stderr


def test_an_empty_image_as_the_source_is_a_corrupt_frame(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    done = edge("run", "--source", str(empty), "--json", "--miss-log", str(tmp_path / "m.jsonl"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["source_stats"]["corrupt_frames"] == 1


# -- 7: passwords inside gst: pipelines and mistyped URLs ---------------------------------------

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    "spec",
    [
        f"gst:rtspsrc location=rtsp://admin:{SECRET}@127.0.0.1:9/s ! decodebin ! appsink",
        f"gst:rtspsrc location=rtsp://127.0.0.1:9/s user-id=admin user-pw={SECRET} ! appsink",
        f"rtsp:/admin:{SECRET}@127.0.0.1:9/s",  # one slash short
        f"rtsp//admin:{SECRET}@127.0.0.1:9/s",  # no colon
        f"admin:{SECRET}@127.0.0.1:9/s",  # no scheme
        f"ftp://admin:{SECRET}@127.0.0.1/s",  # a scheme we do not read
    ],
)
def test_a_password_in_a_spec_is_never_echoed(tmp_path: Path, spec: str) -> None:
    done = edge("run", "--source", spec, "--frames", "1", "--miss-log", str(tmp_path / "m"))
    assert done.returncode == 2, done.stderr  # no GStreamer in pip's OpenCV; the rest: no source
    assert SECRET not in done.stderr + done.stdout, done.stderr
    assert "***" in done.stderr, done.stderr


def test_the_name_of_a_gst_source_is_redacted_where_every_output_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name a source carries (``source.name``, each frame's ``source``) is what the
    journal, miss records, /api/stats, /metrics and MQTT show. pip's OpenCV has no GStreamer,
    so the pipeline is played by a real MJPEG server through FFmpeg; the name is the spec's."""
    from edge.sources import SourceOptions, open_source, opencv_live
    from tests.reliability.outage_rig import StallingMjpegServer, jpeg_parts

    camera = StallingMjpegServer(jpeg_parts(5), fps=30.0)
    opts = SourceOptions(open_timeout_s=5.0, stall_timeout_s=5.0)
    monkeypatch.setattr(
        opencv_live, "gst_spec", lambda p: opencv_live.stream_spec(camera.url, opts)
    )
    spec = f"gst:rtspsrc location=rtsp://admin:{SECRET}@cam/s user-pw={SECRET} ! appsink"
    src = open_source(spec, opts)
    try:
        frame = src.read(5.0)
        assert frame is not None
        assert SECRET not in src.name and SECRET not in frame.source
        assert src.name == "gst:rtspsrc location=rtsp://admin:***@cam/s user-pw=*** ! appsink"
    finally:
        src.close()
        camera.stop()
