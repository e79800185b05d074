"""``[mqtt]``: URL parsing, validation messages, where the password comes from (and that it
never shows), topic names, and the package importing without paho-mqtt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.outputs.mqtt_config import (
    MqttConfig,
    Topics,
    parse_url,
    resolve_password,
    topic_level,
)
from edge.validate import from_mapping

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user"),
    [
        ("mqtt://broker.lan", "broker.lan", 1883, False, None),
        ("mqtts://broker.lan", "broker.lan", 8883, True, None),
        ("mqtt://10.0.0.5:1884", "10.0.0.5", 1884, False, None),
        ("mqtts://pi%40home@[fd00::1]:8884/", "fd00::1", 8884, True, "pi@home"),
    ],
)
def test_urls(url: str, host: str, port: int, tls: bool, user: str | None) -> None:
    b = parse_url(url)
    assert (b.host, b.port, b.tls, b.username) == (host, port, tls, user)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("tcp://broker:1883", "expected mqtt://HOST[:PORT] or mqtts://"),
        ("mqtt://user:hunter2@broker", "password_file"),
        ("mqtt://:1883", "no host"),
        ("mqtt://broker:1883/topic", "no path"),
        ("mqtt://broker:99999", "not a URL"),
        ("mqtt://broker:0", "port 0"),
    ],
)
def test_bad_urls_say_what_is_expected(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="mqtt.url") as e:
        MqttConfig(url=url)
    assert says in str(e.value)
    assert "hunter2" not in str(e.value)


def test_defaults_and_a_table_from_a_config_file() -> None:
    cfg = from_mapping(
        MqttConfig,
        {"url": "mqtt://b", "summary_interval_s": 30, "qos_stats": 1, "leave_s": 5},
        where="edge.toml",
    )
    assert cfg.enabled and cfg.prefix == "edge" and cfg.device is None
    assert cfg.summary_interval_s == 30.0 and cfg.leave == 5.0 and cfg.debounce_s == 1.0
    assert MqttConfig(url="mqtt://b").leave == 1.0  # leave_s defaults to debounce_s
    assert not MqttConfig().enabled
    with pytest.raises(ConfigError, match="unknown key mqtt.qos; accepted keys here: .*qos_events"):
        from_mapping(MqttConfig, {"qos": 1}, where="edge.toml", prefix="mqtt.")


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"qos_events": 3}, "mqtt.qos_events = 3 is out of range"),
        ({"summary_interval_s": 0.1}, "mqtt.summary_interval_s"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "mqtt.reconnect_max_s"),
        ({"prefix": "/edge"}, "mqtt.prefix"),
        ({"prefix": "ed+ge"}, "mqtt.prefix"),
        ({"device": "a/b"}, "mqtt.device"),
        ({"tls_ca": "/ca.pem"}, "use mqtts://"),
        ({"url": "mqtts://b", "tls_cert": "/c.pem"}, "given together"),
        ({"username": "u", "password": "p", "password_env": "X"}, "one way only"),
        ({"password_file": "/pw"}, "without a user name"),
        ({"url": "mqtt://u@b", "username": "v"}, "keep one"),
    ],
)
def test_bad_settings_name_the_key(kw: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match="mqtt") as e:
        MqttConfig(**{"url": "mqtt://b", **kw})  # type: ignore[arg-type]
    assert says in str(e.value)


def test_prefix_may_have_levels_and_labels_become_one_level() -> None:
    assert MqttConfig(url="mqtt://b", prefix="site1/edge").prefix == "site1/edge"
    assert topic_level("traffic light") == "traffic_light"
    assert topic_level("a/b+#") == "a_b__"
    t = Topics("edge/pi-1")
    assert (t.status, t.events, t.stats) == ("edge/pi-1/status", "edge/pi-1/events",
                                             "edge/pi-1/stats")  # fmt: skip
    assert t.presence("stop sign") == "edge/pi-1/presence/stop_sign"


def test_the_password_never_shows_in_repr() -> None:
    cfg = MqttConfig(url="mqtt://b", username="cam", password="hunter2")
    assert "hunter2" not in repr(cfg) and "cam" in repr(cfg)
    assert "hunter2" not in repr({"mqtt": cfg})


def test_the_password_from_a_file_or_the_environment(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\nignored\n")
    cfg = MqttConfig(url="mqtt://cam@b", password_file=str(pw))
    assert cfg.user == "cam" and resolve_password(cfg, {}) == "s3cret"
    env = MqttConfig(url="mqtt://b", username="cam", password_env="EDGE_MQTT_PW")
    assert resolve_password(env, {"EDGE_MQTT_PW": "fromenv"}) == "fromenv"
    with pytest.raises(ConfigError, match=r"\$EDGE_MQTT_PW is not set"):
        resolve_password(env, {})
    missing = MqttConfig(url="mqtt://b", username="cam", password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="No such file"):
        resolve_password(missing, {})
    (tmp_path / "empty").write_text("")
    empty = MqttConfig(url="mqtt://b", username="cam", password_file=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="is empty"):
        resolve_password(empty, {})
    assert resolve_password(MqttConfig(url="mqtt://b"), {}) is None


NO_PAHO = """
import sys
sys.modules["paho"] = None  # as if paho-mqtt were not installed
import edge.outputs, edge.outputs.mqtt, edge.pipeline.runner, edge.launch, edge.config
from edge.errors import EdgeError
from edge.outputs.mqtt import MqttConfig, MqttOutput
try:
    MqttOutput(MqttConfig(url="mqtt://127.0.0.1:1"))
except EdgeError as e:
    assert isinstance(e, ImportError)
    print(e)
"""


def test_without_paho_everything_imports_and_mqtt_says_how_to_install_it() -> None:
    r = subprocess.run(
        [sys.executable, "-c", NO_PAHO], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "pip install 'edge-vision[mqtt]'" in lines[0]
    assert "paho-mqtt" in lines[0]
