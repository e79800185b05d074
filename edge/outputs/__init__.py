"""Where a run reports besides its own logs: outputs that attach to a pipeline from outside.

``mqtt`` (:mod:`edge.outputs.mqtt`): events, summaries and status to an MQTT broker, for a
fleet. paho-mqtt is optional (``pip install 'edge-vision[mqtt]'``); nothing here imports it
until an output is built, so this package imports without it.

    from edge.outputs.mqtt import MqttConfig, MqttOutput
    from edge.outputs.tap import MissTap
"""

from edge.outputs.mqtt_config import MqttConfig
from edge.outputs.tap import MissTap

__all__ = ["MissTap", "MqttConfig"]
