"""Model heads: parsing a model's raw outputs into detections (the ``postprocess`` stage),
one decoder family per output layout, and choosing one from a model's output shapes.

``build_decoder(outputs, spec, family)`` uses the named family, or when ``family`` is None, the
one family whose ``mismatch`` accepts the outputs. No fit, or more than one, is a
:class:`~edge.errors.ModelInvalid` that lists the shapes found and why each family refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.errors import ModelInvalid
from edge.heads.base import Decoder, DecodeSpec, TensorInfo, describe_outputs


def families() -> dict[str, type[Decoder]]:
    from edge.heads.mediapipe import MediaPipeDecoder
    from edge.heads.ssd import SSDDecoder
    from edge.heads.ssd_raw import SSDRawDecoder
    from edge.heads.yolo import YOLODecoder

    return {d.family: d for d in (MediaPipeDecoder, SSDDecoder, SSDRawDecoder, YOLODecoder)}


def build_decoder(
    outputs: Sequence[TensorInfo], spec: DecodeSpec, family: str | None = None
) -> Decoder:
    fams = families()
    if family is not None:
        cls = fams.get(family)
        if cls is None:
            raise ModelInvalid(f"unknown decoder {family!r}: expected one of {', '.join(fams)}")
        reason = cls.mismatch(outputs, spec)
        if reason is not None:
            fits = [n for n, c in fams.items() if c.mismatch(outputs, spec) is None]
            raise ModelInvalid(
                f"the model's outputs [{describe_outputs(outputs)}] do not fit decoder "
                f"{family!r}: {reason}; families that would fit: {', '.join(fits) or 'none'}"
            )
        return cls(outputs, spec)
    reasons = {n: c.mismatch(outputs, spec) for n, c in fams.items()}
    fits = [n for n, r in reasons.items() if r is None]
    if len(fits) == 1:
        return fams[fits[0]](outputs, spec)
    if not fits:
        why = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        raise ModelInvalid(
            f"no decoder fits the model's outputs [{describe_outputs(outputs)}] ({why}); "
            "choose a family with --decoder (a mediapipe model also needs its anchor options "
            "in a manifest.toml found through --models-dir or model.dir), or use a supported model"
        )
    raise ModelInvalid(
        f"the model's outputs [{describe_outputs(outputs)}] fit several decoders "
        f"({', '.join(fits)}): choose one with --decoder"
    )


__all__ = ["DecodeSpec", "Decoder", "TensorInfo", "build_decoder", "families"]
