"""A newcomer's first hour (issue 17), through the real CLI in subprocesses: what the user sees
on stderr and stdout, where files go, and that the help says what the commands do."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE = [sys.executable, "-m", "edge.cli.main"]


def edge(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def private_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment with its own state home (and PYTHONPATH for a cwd elsewhere)."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    env.pop("STATE_DIRECTORY", None)
    return env


# -- the CLI's words ---------------------------------------------------------------------------


def test_no_litert_info_line_on_stderr(astronaut: Path, models_ready: None) -> None:
    r = edge("detect", str(astronaut), "--model", "face")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" is gone
    assert "face" in r.stdout
    r = edge("-vv", "detect", str(astronaut), "--model", "face")  # kept for -vv, as a log line
    assert "DEBUG edge.runtime.quiet: runtime: INFO: Created TensorFlow Lite XNNPACK" in r.stderr


def test_a_mistyped_model_is_refused_before_any_camera_is_probed(tmp_path: Path) -> None:
    r = edge("run", "--model", "persn", env=private_env(tmp_path))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [r.stderr.strip()]  # one line, and nothing about cameras
    assert r.stderr.startswith("edge run: error: ") and "'persn'" in r.stderr
    assert "camera" not in r.stderr
    assert not (tmp_path / "state").exists()  # nothing written for a run that never started


def test_a_mistyped_flag_shows_the_subcommands_usage() -> None:
    r = edge("run", "--modle", "face")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: edge run ")
    assert "--model NAME|PATH" in r.stderr  # run's flags, not the top-level usage
    assert r.stderr.splitlines()[-1] == (
        "edge run: error: unrecognized arguments: --modle face (did you mean --model?)"
    )
    r = edge("models", "fetch", "--form", "x.whl")
    assert r.stderr.startswith("usage: edge models fetch ") and "did you mean --from?" in r.stderr


def test_models_fetch_of_an_unknown_name_speaks_of_fetching(tmp_path: Path) -> None:
    r = edge("models", "fetch", "facee", "--dir", str(ROOT / "models"))
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert "no model 'facee' in the manifest: did you mean face?" in line
    assert ".tflite" not in line  # a path means nothing to fetch


def test_a_missing_camera_gives_our_line_not_opencvs(tmp_path: Path, models_ready: None) -> None:
    dev = next(f"/dev/video{n}" for n in range(63, 0, -1) if not Path(f"/dev/video{n}").exists())
    r = edge("run", "--source", dev, "--frames", "1", env=private_env(tmp_path))
    assert r.returncode == 2
    assert "[ WARN" not in r.stderr and "global cap" not in r.stderr, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("edge run: error: ") and dev in last


def test_config_type_errors_name_toml_types_not_pythons(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nfps = "thirty"\n')
    r = edge("run", "--config", str(cfg), env=private_env(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"edge run: error: {cfg}: source.fps must be a number, got 'thirty'"
    )


def test_every_config_key_refuses_a_wrong_type_in_toml_words() -> None:
    import dataclasses
    import typing

    from edge.config import Config
    from edge.errors import ConfigError

    python_words = re.compile(r"\b(NoneType|str|int|float|bool|dict|tuple|Mapping)\b|<class")
    hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        for key in dataclasses.fields(hints[section.name]):
            with pytest.raises(ConfigError) as e:
                Config().merged({f"{section.name}.{key.name}": [1]})
            assert not python_words.search(str(e.value)), str(e.value)


def test_doctor_groups_the_optional_accelerators(tmp_path: Path) -> None:
    env = {**private_env(tmp_path), "COLUMNS": "60"}
    r = edge("doctor", env=env)
    lines = r.stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("state "))
    block = lines[lines.index("delegates") + 1 : end]
    text = " ".join(line.strip() for line in block)
    assert "optional accelerators: none found" in text
    assert text.count("hint:") == 1 and "libedgetpu1-std" in text
    assert all(len(line) <= 60 for line in block), block
    assert not any(line.lstrip().startswith("edgetpu") for line in block)
    state = tmp_path / "state" / "edge-vision"
    assert f"state     {state} (miss log not written yet)" in lines
    r = edge("-v", "doctor", env=env)  # -v: each one's reason
    reasons = [line.strip() for line in r.stdout.splitlines()]
    assert any(line.startswith("edgetpu  delegate 'edgetpu' could not") for line in reasons)


def test_help_texts_match_behaviour() -> None:
    detect = edge("detect", "--help").stdout
    assert "table" in detect and "--json" in detect
    bench = edge("bench", "--help").stdout
    assert re.search(r"usage: edge bench .*\n?.* --source SPEC --model", bench)  # required
    source_help = bench[bench.index("--source SPEC ") :].split("--model")[0]
    assert "auto" not in source_help and "default" not in source_help
    run = " ".join(edge("run", "--help").stdout.split())
    assert "demo:person" in run and "(default: face)" in run
    top = " ".join(edge("--help").stdout.split())
    assert re.search(r"-v, --verbose\s+\S", top)  # -v has a help text


# -- --delegate-option --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "bench"])
def test_delegate_option_is_accepted_and_reaches_the_delegate_loader(
    command: str, tmp_path: Path
) -> None:
    # run: no --source, so `auto`: the delegate is refused before any camera is probed
    source = ["--source", "demo"] if command == "bench" else []
    r = edge(command, *source, "--model", "face", "--frames", "1",
             "--delegate", "edgetpu", "--delegate-option", "device=usb:0",
             env=private_env(tmp_path))  # fmt: skip
    assert "unrecognized arguments" not in r.stderr
    assert r.returncode == 2 and "delegate 'edgetpu' could not be loaded" in r.stderr
    assert "camera" not in r.stderr

    from edge.cli.main import build_parser
    from edge.cli.run import load_config
    from edge.runtime.delegates import load_chain

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[model]\ndelegate_options = { device = "pci:0", x = "1" }\n')
    args = build_parser().parse_args([command, "--source", "demo", "--model", "face",
                                      "--config", str(cfg_file), "--delegate", "libc.so.6",
                                      "--delegate-option", "device=usb:0",
                                      "--delegate-option", "cache=/tmp/c"])  # fmt: skip
    cfg = load_config(args)
    assert cfg.model.delegate_options == {"device": "usb:0", "x": "1", "cache": "/tmp/c"}
    seen: list[dict[str, str]] = []

    class Runtime:  # LiteRT's load_delegate(library, options) signature
        name, version = "litert", "0"

        @staticmethod
        def load_delegate(library: str, options: dict[str, str]) -> object:
            seen.append(dict(options))
            return object()

    load_chain(Runtime(), cfg.model.delegate, cfg.model.delegate_options)  # type: ignore[arg-type]
    assert seen == [{"device": "usb:0", "x": "1", "cache": "/tmp/c"}]
    bad = build_parser().parse_args([command, "--source", "demo", "--model", "face",
                                     "--delegate-option", "usb"])  # fmt: skip
    with pytest.raises(Exception, match="expected KEY=VALUE"):
        load_config(bad)


# -- where files go -----------------------------------------------------------------------------


def test_run_writes_into_the_state_directory_and_misses_reads_it_back(
    tmp_path: Path, models_ready: None
) -> None:
    env = private_env(tmp_path)
    work = tmp_path / "somewhere"
    work.mkdir()
    r = edge("run", "--source", "demo", "--frames", "10", "--no-pace", env=env, cwd=work)
    assert r.returncode == 0, r.stderr
    state = tmp_path / "state" / "edge-vision"
    log = state / "misses.jsonl"
    assert f"state directory: {state} (miss log {log})" in r.stderr.splitlines()[0]
    assert log.is_file() and list(work.iterdir()) == []  # nothing in the cwd
    assert (state.stat().st_mode & 0o077) == 0
    # `edge misses` with no argument (stdin not a pipe) reads that log
    r = edge("misses", "--json", env=env, cwd=work)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["inputs"] == [str(log)] and report["frames"]["captured"] == 10
    # no log there yet: one line saying where it looked and what to do
    r = edge("misses", env={**env, "XDG_STATE_HOME": str(tmp_path / "empty")})
    assert r.returncode == 2
    assert r.stderr.strip().startswith(f"edge misses: no miss log at {tmp_path}/empty/")
    assert "--journal" in r.stderr and len(r.stderr.splitlines()) == 1


def test_misses_of_a_file_with_no_record_is_an_error() -> None:
    r = edge("misses", str(ROOT / "README.md"))
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"edge misses: {ROOT / 'README.md'}: not a miss log (")


def test_misses_journal_reads_the_service_unit(tmp_path: Path) -> None:
    remote = shutil.which("systemd-journal-remote") or "/lib/systemd/systemd-journal-remote"
    journalctl = shutil.which("journalctl")
    if not Path(remote).exists() or journalctl is None:
        pytest.fail("needs journalctl and systemd-journal-remote (apt: systemd-journal-remote)")
    from edge.watchdog.misslog import JOURNAL_PREFIX

    miss = {"type": "miss", "ts": "2024-05-01T12:00:00.000+00:00", "frame": 7, "source": "demo",
            "cause": "infer", "budget_ms": 33.3, "latency_ms": 40.0, "over_ms": 6.7,
            "stages": {"infer": 30.0}, "consecutive": 1, "action": "none", "schema": 1}  # fmt: skip
    entries = []
    for i, (unit, msg) in enumerate(
        [
            ("edge-vision.service", JOURNAL_PREFIX + json.dumps(miss)),
            ("other.service", JOURNAL_PREFIX + json.dumps({**miss, "frame": 8})),
        ]  # fmt: skip
    ):
        entries.append(
            f"__REALTIME_TIMESTAMP={1714564800000000 + i}\n__MONOTONIC_TIMESTAMP={1000 + i}\n"
            f"_BOOT_ID=0123456789abcdef0123456789abcdef\n_SYSTEMD_UNIT={unit}\n"
            f"MESSAGE={msg}\n\n"
        )
    journal = tmp_path / "edge.journal"
    subprocess.run([remote, "-o", str(journal), "-"], input="".join(entries).encode(),
                   check=True, timeout=30, capture_output=True)  # fmt: skip
    # journalctl itself, reading this journal file instead of the system's
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "journalctl"
    wrapper.write_text(f'#!/bin/sh\nexec {journalctl} --file {journal} "$@"\n')
    wrapper.chmod(0o755)
    env = {**private_env(tmp_path), "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = edge("misses", "--journal", "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["misses"] == 1 and report["worst"][0]["frame"] == 7  # only edge-vision's
    r = edge("misses", "--journal", "--unit", "other", "--json", env=env)
    assert json.loads(r.stdout)["worst"][0]["frame"] == 8


# -- scripts/demo -------------------------------------------------------------------------------


def test_demo_banner_names_the_port_actually_used(tmp_path: Path, models_ready: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**private_env(tmp_path), "EDGE_DEMO_HTTP": "127.0.0.1:1"}  # overridden by --http
    r = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--source", "demo", "--frames", "5",
         "--http", f"127.0.0.1:{port}"],  # fmt: skip
        capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"==> open http://127.0.0.1:{port}/ in a browser" in r.stdout
    assert ":8080" not in r.stdout and "127.0.0.1:1 " not in r.stdout
    assert f"serving the live view on http://127.0.0.1:{port}/" in r.stderr
    assert (tmp_path / "state" / "edge-vision" / "misses.jsonl").is_file()  # not artifacts/
