"""Fuzzing what a user or a client types: the config loader (TOML text and parsed tables), the
``--source`` spec parser, and the HTTP request head, query parameters and bind address.

The property is the same everywhere: the input is accepted, or refused with the project's
error for it (:class:`ConfigError` naming where, :class:`HttpError` with a 4xx status); never
another exception, which would be a traceback on the user's screen or a dropped connection.
The corpus is small (``max_examples``) so the suite stays fast; hypothesis keeps the failing
examples it finds in ``.hypothesis/``.
"""

from __future__ import annotations

import dataclasses
import math
import string
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from edge.config import Config
from edge.errors import ConfigError
from edge.serve.app import float_param, int_param
from edge.serve.config import parse_bind
from edge.serve.http import MAX_QUERY_FIELDS, HttpError, Request, parse_head
from edge.sources.registry import SourceSpec, parse_spec
from edge.validate import from_mapping

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the config loader ----------------------------------------------------------------------

SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
HINTS = typing.get_type_hints(Config)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def section_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly real section and key names (so validation is reached), sometimes not."""
    raw: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        keys = [f.name for f in dataclasses.fields(HINTS[section])]
        table = draw(
            st.dictionaries(st.sampled_from(keys) | st.text(max_size=10), values, max_size=5)
        )
        raw[section] = table
    if draw(st.booleans()):
        raw[draw(st.text(max_size=10))] = draw(values)
    return raw


@FUZZ
@given(section_tables())
@example({"pipeline": {"budget_ms": float("nan")}})
@example({"source": {"spec": 3, "fps": -1}})
@example({"serve": {"http": "127.0.0.1:" + "9" * 5000}})
@example({"serve": {"http": "127.0.0.1:\u00b2"}})
@example({"serve": {"health_budgets": float("nan")}, "source": {"fps": float("inf")}})
@example({"model": {"threshold": float("nan")}, "mqtt": {"leave_s": float("-inf")}})
def test_config_tables_load_or_name_the_problem(raw: dict[str, Any]) -> None:
    try:
        cfg = from_mapping(Config, raw, where="fuzz.toml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.toml: "), str(e)
        return
    assert isinstance(cfg, Config)
    assert all(math.isfinite(v) for v in floats_in(cfg)), cfg


def floats_in(obj: object) -> list[float]:
    """Every float in a config, however deep (sections, lists, tables)."""
    if isinstance(obj, float):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [v for f in dataclasses.fields(obj) for v in floats_in(getattr(obj, f.name))]
    if isinstance(obj, (list, tuple)):
        return [v for x in obj for v in floats_in(x)]
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in floats_in(x)]
    return []


# -- the CLI's float options ------------------------------------------------------------------

float_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999",
                     "0x10", "1_000", " 30 ", "", "thirty"]),
)  # fmt: skip


@FUZZ
@given(st.sampled_from(["--fps", "--budget-ms"]), float_text, float_text)
def test_run_float_flags_are_finite_and_in_range_or_one_error(
    flag: str, value: str, other: str
) -> None:
    from edge.cli.main import build_parser
    from edge.cli.run import load_config

    second = "--budget-ms" if flag == "--fps" else "--fps"
    try:
        args = build_parser().parse_args(["run", f"{flag}={value}", f"{second}={other}"])
    except SystemExit as e:  # argparse: "invalid float value", one line, exit 2
        assert e.code == 2
        return
    try:
        cfg = load_config(args)
    except ConfigError as e:
        assert str(e).startswith("command line: ") and ("finite" in str(e) or "range" in str(e))
        return
    assert math.isfinite(cfg.source.fps or 1.0) and 0.1 <= (cfg.source.fps or 1.0) <= 1000
    assert math.isfinite(cfg.pipeline.budget_ms or 1.0)


@FUZZ
@given(float_text)
def test_detect_threshold_is_finite_and_in_range_or_one_error(value: str) -> None:
    from edge.cli.detect import model_config
    from edge.cli.main import build_parser

    try:
        args = build_parser().parse_args(["detect", "x.png", f"--threshold={value}"])
    except SystemExit as e:
        assert e.code == 2
        return
    try:
        cfg = model_config(args)
    except ConfigError as e:
        assert "model.threshold" in str(e)
        return
    assert cfg.threshold is not None and 0.0 <= cfg.threshold <= 1.0


toml_text = st.text(alphabet=string.printable, max_size=200) | st.builds(
    lambda sec, key, val: f"[{sec}]\n{key} = {val}\n",
    st.sampled_from(sorted(SECTIONS)),
    st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=16),
    st.sampled_from(["1", "-1", "1e400", "nan", "inf", '"x"', "true", "[1, 2]", "{a = 1}",
                     "1979-05-27", '"""\n"""', "0x10", '"\\u0000"']),
)  # fmt: skip


@FUZZ
@given(toml_text)
def test_config_files_load_or_name_the_problem(tmp_path_factory: pytest.TempPathFactory,
                                               text: str) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text, encoding="utf-8")
    try:
        Config.load(path)
    except ConfigError as e:
        assert str(path) in str(e), str(e)


def test_non_utf8_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[model]\nname = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="cannot be read"):
        Config.load(path)


# -- the source spec parser -----------------------------------------------------------------

spec_text = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b: a + b,
              st.sampled_from(["demo", "demo:", "picamera2:", "gst:", "rtsp://", "http://",
                               "file://", "/dev/video", "v4l2:", "0", "~/", "../", "\x00"]),
              st.text(max_size=30)),
)  # fmt: skip


@FUZZ
@given(spec_text)
@example("demo:cat")
@example("picamera2:-1")
@example("/dev/video\x00")
@example("gst:   ")
def test_source_specs_parse_or_list_the_accepted_forms(spec: str) -> None:
    try:
        parsed = parse_spec(spec)
    except ConfigError as e:
        assert "accepted:" in str(e)
        return
    assert isinstance(parsed, SourceSpec) and parsed.kind in {
        "demo", "picamera2", "gst", "stream", "v4l2", "folder", "video"
    }  # fmt: skip


passwords = st.text(
    alphabet=string.ascii_letters + string.digits + "!$%&()*+,;=:@-._~", min_size=6, max_size=16
).filter(lambda pw: not pw.startswith(("@", ":")))
spec_with_password = st.sampled_from([
    "rtsp://user:{pw}@cam:554/s", "rtsp:/user:{pw}@cam/s", "rtsp//user:{pw}@cam/s",
    "user:{pw}@cam/s", "http://:{pw}@cam/", "ftp://user:{pw}@cam/x",
    "gst:rtspsrc location=rtsp://user:{pw}@cam/s ! decodebin ! appsink",
    "gst:rtspsrc location=rtsp://cam/s user-id=u user-pw={pw} ! appsink",
    'gst:souphttpsrc location=http://cam/x proxy-pw="{pw}" ! appsink',
])  # fmt: skip


@FUZZ
@given(spec_with_password, passwords)
def test_a_password_in_a_spec_is_never_shown(template: str, pw: str) -> None:
    # an unquoted GStreamer property value ends at a space or "!" (gst-launch syntax)
    assume("user-pw={pw}" not in template or "!" not in pw)
    spec = template.format(pw=pw)
    try:
        shown = parse_spec(spec).spec
    except ConfigError as e:
        shown = str(e)
    assert pw not in shown, shown


# -- HTTP -----------------------------------------------------------------------------------

request_heads = st.one_of(
    st.binary(max_size=400),
    st.builds(
        lambda m, path, q, v, hdrs: f"{m} {path}{q} {v}\r\n{hdrs}\r\n".encode("latin-1"),
        st.sampled_from(["GET", "HEAD", "POST", "get", "", "GET GET"]),
        st.text(alphabet=string.printable + "éü", max_size=40),
        st.text(alphabet=string.ascii_letters + "=&%?;+" + string.digits, max_size=80),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/", "http/1.1", ""]),
        st.text(alphabet=string.printable, max_size=80),
    ),
)


@FUZZ
@given(request_heads)
@example(b"GET /?" + b"&".join(b"a%d=1" % i for i in range(MAX_QUERY_FIELDS + 1))
         + b" HTTP/1.1\r\n\r\n")  # fmt: skip
@example(b"GET /api/misses?limit=1&limit=2 HTTP/1.1\r\n\r\n")
@example(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
def test_request_heads_parse_or_get_a_4xx(head: bytes) -> None:
    try:
        req = parse_head(head)
    except HttpError as e:
        assert 400 <= e.status < 600 and e.status != 500, e.status
        return
    assert isinstance(req, Request) and req.path.startswith("/")
    assert req.method in ("GET", "HEAD") and len(req.query) <= MAX_QUERY_FIELDS


@FUZZ
@given(st.text(max_size=40) | st.integers().map(str) | st.floats().map(str))
@example("9" * 5000)
@example("1e999")
@example("-0")
def test_query_numbers_are_in_range_or_400(raw: str) -> None:
    for parse, lo, hi in ((int_param, 1, 1000), (float_param, 0.1, 60.0)):
        try:
            v = parse({"x": raw}, "x", lo, hi)  # type: ignore[operator]
        except HttpError as e:
            assert e.status == 400
            continue
        assert v is not None and lo <= v <= hi


@FUZZ
@given(st.text(max_size=30))
@example("127.0.0.1:²")
def test_bind_addresses_parse_or_name_the_key(value: str) -> None:
    try:
        bind = parse_bind(value)
    except ConfigError as e:
        assert "serve.http" in str(e)
        return
    assert 0 <= bind.port <= 65535
