"""See what the device sees: the live page, the MJPEG overlay stream, the JSON API, health
and Prometheus metrics, served without ever slowing the pipeline (docs/HTTP.md).

    from edge.serve import Server, ServeConfig, attach
"""

from edge.serve.attach import MissTee, attach
from edge.serve.config import ServeConfig, parse_bind
from edge.serve.provider import PipelineStats, StatsFn
from edge.serve.server import Server

__all__ = ["MissTee", "PipelineStats", "ServeConfig", "Server", "StatsFn", "attach", "parse_bind"]
