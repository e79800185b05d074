"""The state directory: systemd's, else XDG's, else ~/.local/state; never the cwd."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.state import default_miss_log, ensure_state_dir, state_dir


def test_systemd_state_directory_wins_and_its_first_entry_is_ours() -> None:
    env = {"STATE_DIRECTORY": "/var/lib/edge-vision:/var/lib/x", "XDG_STATE_HOME": "/s"}
    assert state_dir(env) == Path("/var/lib/edge-vision")


def test_xdg_state_home_then_home() -> None:
    assert state_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/edge-vision")
    assert state_dir({"HOME": "/h"}) == Path("/h/.local/state/edge-vision")
    # the XDG specification: a relative XDG_STATE_HOME is invalid and ignored
    assert state_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/state/edge-vision")
    assert default_miss_log({"HOME": "/h"}) == Path("/h/.local/state/edge-vision/misses.jsonl")


def test_never_the_current_directory() -> None:
    for env in ({"HOME": "/h"}, {"XDG_STATE_HOME": "/s"}, {"STATE_DIRECTORY": "/v"}):
        assert state_dir(env).is_absolute()
    with pytest.raises(ConfigError, match="--miss-log"):
        state_dir({"HOME": "relative"})


def test_created_private(tmp_path: Path) -> None:
    d = ensure_state_dir({"XDG_STATE_HOME": str(tmp_path / "state")})
    assert d == tmp_path / "state" / "edge-vision" and d.is_dir()
    assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0


def test_the_suite_never_writes_into_the_real_home(private_state_dir: Path) -> None:
    assert state_dir(os.environ) == private_state_dir
    assert not str(private_state_dir).startswith(str(Path.home() / ".local"))


def test_a_state_directory_that_cannot_be_made_is_said_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge.cli.run import announce_state
    from edge.config import Config

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level("INFO", logger="edge.cli.run"):
        announce_state(Config(), {"XDG_STATE_HOME": str(blocker)})  # returns, does not raise
    (rec,) = caplog.records
    assert rec.levelname == "WARNING" and "cannot be created" in rec.getMessage()
    assert "--miss-log" in rec.getMessage()
    caplog.clear()
    with caplog.at_level("INFO", logger="edge.cli.run"):
        announce_state(Config(), {"XDG_STATE_HOME": str(tmp_path / "ok")})
    assert caplog.records[0].getMessage().startswith(f"state directory: {tmp_path}/ok/edge-vision")
