"""What the "no decoder fits" error tells a user to do names only options that exist."""

from __future__ import annotations

import pytest

from edge.cli.main import build_parser
from edge.errors import ModelInvalid
from edge.heads import DecodeSpec, TensorInfo, build_decoder

#: MediaPipe-shaped outputs (boxes and scores per anchor) with no anchor options given
OUTPUTS = [TensorInfo("boxes", (1, 896, 16), "float32", 0),
           TensorInfo("scores", (1, 896, 1), "float32", 1)]  # fmt: skip


@pytest.mark.parametrize("family", [None, "mediapipe"])
def test_the_no_decoder_message_names_real_options(family: str | None) -> None:
    with pytest.raises(ModelInvalid) as e:
        build_decoder(OUTPUTS, DecodeSpec(128, 128, {}), family)
    msg = str(e.value)
    assert "--decoder-param" not in msg and "manifest.toml" in msg and "--models-dir" in msg
    detect = build_parser()._subparsers._group_actions[0].choices["detect"]  # type: ignore[union-attr]
    flags = {s for a in detect._actions for s in a.option_strings}
    for word in msg.replace(")", " ").replace(",", " ").split():
        if word.startswith("--"):
            assert word in flags, f"{word} is not a flag of edge detect"
