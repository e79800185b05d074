"""See what the device sees: the live page, the MJPEG overlay stream, the JSON API, health
and Prometheus metrics, served without ever slowing the pipeline (docs/HTTP.md).

    from edge.serve import Server, ServeConfig
    pipeline.add_output(Server(cfg.serve, delegate=cfg.model.delegate))

:class:`Server` loads lazily, so ``edge.config`` can import :mod:`edge.serve.config` without
pulling in OpenCV and ``prometheus_client`` for commands that never serve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.serve.config import ServeConfig, parse_bind
from edge.serve.provider import PipelineStats

if TYPE_CHECKING:
    from edge.serve.server import Server

__all__ = ["PipelineStats", "ServeConfig", "Server", "parse_bind"]


def __getattr__(name: str) -> Any:
    if name == "Server":
        from edge.serve.server import Server

        return Server
    raise AttributeError(f"module 'edge.serve' has no attribute {name!r}")
