from __future__ import annotations

import logging
from typing import Any

import pytest

from edge.errors import ConfigError, DelegateError
from edge.runtime import load_runtime
from edge.runtime.delegates import load_chain, parse_chain


def test_parse_chain() -> None:
    assert parse_chain("edgetpu,cpu") == ("edgetpu", "cpu")
    assert parse_chain("/opt/lib/libfoo.so") == ("/opt/lib/libfoo.so",)
    with pytest.raises(ConfigError, match="unknown delegate 'tpu'"):
        parse_chain("tpu")
    with pytest.raises(ConfigError, match="empty"):
        parse_chain(" , ")


def test_missing_delegate_names_library_reason_and_fix() -> None:
    rt = load_runtime()
    with pytest.raises(DelegateError) as e:
        load_chain(rt, "edgetpu")
    msg = str(e.value)
    assert "libedgetpu.so.1" in msg and "cannot open shared object" in msg
    assert "libedgetpu1-std" in msg
    assert "\n" not in msg


def test_fallback_only_when_asked_and_said(caplog: pytest.LogCaptureFixture) -> None:
    rt = load_runtime()
    with caplog.at_level(logging.WARNING):
        choice = load_chain(rt, "edgetpu,cpu")
    assert choice.name == "cpu" and choice.fell_back_from == ("edgetpu",)
    assert "instead" in caplog.text and "libedgetpu" in caplog.text


def test_a_delegate_that_loads_gets_its_options() -> None:
    seen: dict[str, Any] = {}

    class FakeRuntime:
        name, version = "fake", "0"

        @staticmethod
        def load_delegate(lib: str, opts: dict[str, str]) -> str:
            seen.update(lib=lib, opts=opts)
            return "delegate-object"

    # libc always loads, so the dlopen pre-check passes and the runtime's loader is used
    choice = load_chain(FakeRuntime(), "libc.so.6,cpu", {"device": "usb:0"})  # type: ignore[arg-type]
    assert choice.name == "libc.so.6" and choice.delegates == ("delegate-object",)
    assert seen == {"lib": "libc.so.6", "opts": {"device": "usb:0"}}
