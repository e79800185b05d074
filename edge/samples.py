"""Real sample footage for the demo source, tests and benchmarks.

The clips come from Debian's ``opencv-doc`` package (``examples/data``): ``vtest.avi``
(pedestrians, 768x576), ``Megamind.avi`` (a face, 720x528) and more. ``scripts/demo`` and
``scripts/test`` fetch it once with ``apt-get download`` (a user-level download, no install)
and unpack it with ``dpkg -x`` into the cache; nothing is committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge.errors import SourceError

PACKAGE = "opencv-doc"
DATA_SUBDIR = Path("usr/share/doc/opencv-doc/examples/data")
#: clips the project uses, and what they show
CLIPS = {"vtest.avi": "pedestrians", "Megamind.avi": "a face"}


def cache_dir() -> Path:
    """``$EDGE_CACHE`` (set by the scripts), else ``<repo>/.cache`` beside the package."""
    env = os.environ.get("EDGE_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".cache"


def samples_dir() -> Path:
    return cache_dir() / "samples"


def sample_path(name: str) -> Path:
    """Path of a sample file; :class:`SourceError` with the fix when it has not been fetched."""
    p = samples_dir() / name
    if not p.is_file():
        raise SourceError(
            f"sample {name} is not in {samples_dir()}: run `edge samples fetch` "
            f"(scripts/demo and scripts/test do this), which needs apt-get and dpkg"
        )
    return p


def fetch(dest: Path | None = None) -> Path:
    """Download ``opencv-doc`` with ``apt-get download`` and copy its sample data into ``dest``.

    Idempotent: returns at once when every clip in :data:`CLIPS` is already there.
    """
    dest = dest or samples_dir()
    if all((dest / c).is_file() for c in CLIPS):
        return dest
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise SourceError(f"fetching samples needs {tool}, which is not on PATH")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-samples-") as tmp:
        r = subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True
        )
        if r.returncode != 0:
            raise SourceError(
                f"apt-get download {PACKAGE} failed: {r.stderr.strip().splitlines()[-1:]}; "
                "run `apt-get update` first"
            )
        (deb,) = Path(tmp).glob(f"{PACKAGE}_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        src = Path(tmp) / "x" / DATA_SUBDIR
        for f in src.iterdir():
            if f.suffix.lower() in (".avi", ".jpg", ".png", ".mp4") and f.is_file():
                shutil.copy2(f, dest / f.name)
    return dest
