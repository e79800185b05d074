"""systemd/config.example.toml documents every section and every key of the config schema,
and every value it shows loads through the real loader (Config.load)."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from edge.config import Config

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "config.example.toml"
SETTING = re.compile(r"^#?(?:   or: )?([a-z_]+) = ")
COMMENTED = re.compile(r"(?m)^#([a-z_]+ = )")
ALTERNATIVE = re.compile(r"^#   or: ([a-z_]+ = .*)$")
SECTION = re.compile(r"^\[([a-z_]+)\]\s*$")


def schema() -> dict[str, set[str]]:
    """{section: {key, ...}} from the Config dataclasses themselves."""
    hints = typing.get_type_hints(Config)
    return {
        f.name: {g.name for g in dataclasses.fields(hints[f.name])}
        for f in dataclasses.fields(Config)
    }


def documented(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    section = None
    for line in text.splitlines():
        m = SECTION.match(line)
        if m:
            section = m.group(1)
            out.setdefault(section, set())
            continue
        m = SETTING.match(line)
        if m:
            assert section is not None, f"a setting before any section: {line!r}"
            out[section].add(m.group(1))
    return out


def test_the_example_loads_as_shipped() -> None:
    cfg = Config.load(EXAMPLE)
    assert cfg.source.spec  # scripts/install-service rewrites this line per platform
    assert re.search(r"(?m)^spec = ", EXAMPLE.read_text())
    assert not cfg.serve.http and not cfg.mqtt.enabled  # off until the operator says


def test_every_section_and_key_of_the_schema_is_in_the_example() -> None:
    """Fails when a key is added to a config dataclass without a line in the example."""
    want, got = schema(), documented(EXAMPLE.read_text())
    assert set(got) == set(want), "sections: add a real [section] line for each"
    missing = {s: sorted(want[s] - got[s]) for s in want if want[s] - got[s]}
    unknown = {s: sorted(got[s] - want[s]) for s in got if got[s] - want.get(s, set())}
    assert not missing, f"keys not documented in {EXAMPLE.name}: {missing}"
    assert not unknown, f"keys in {EXAMPLE.name} that the schema does not have: {unknown}"


def test_every_value_shown_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    full = COMMENTED.sub(r"\1", text)
    p = tmp_path / "all.toml"
    p.write_text(full)
    cfg = Config.load(p)  # every #key = value, set at once, is accepted
    assert cfg.serve.http and cfg.mqtt.enabled and cfg.model.delegate_options
    lines = full.splitlines()
    alternatives = [i for i, line in enumerate(lines) if ALTERNATIVE.match(line)]
    assert alternatives
    for i in alternatives:  # each "or:" in place of the setting it is an alternative to
        j = max(k for k in range(i) if re.match(r"^[a-z_]+ = ", lines[k]))
        variant = [*lines[:j], ALTERNATIVE.match(lines[i]).group(1), *lines[j + 1 :]]  # type: ignore[union-attr]
        p.write_text("\n".join(variant) + "\n")
        Config.load(p)
