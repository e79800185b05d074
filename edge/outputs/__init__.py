"""Where a run reports besides its own logs: :class:`~edge.pipeline.output.Output` s added to a
pipeline from outside (``pipeline.add_output(out)``).

``mqtt`` (:mod:`edge.outputs.mqtt`): events, summaries and status to an MQTT broker, for a
fleet. paho-mqtt is optional (``pip install 'edge-vision[mqtt]'``); nothing here imports it
until an output is built, so this package imports without it.

    from edge.outputs.mqtt import MqttConfig, MqttOutput
"""

from edge.outputs.mqtt_config import MqttConfig

__all__ = ["MqttConfig"]
