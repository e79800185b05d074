"""Where a run reports: :class:`~edge.pipeline.output.Output` s added to a pipeline from
outside (``Pipeline(..., outputs)`` or ``pipeline.add_output(out)``).

``records`` (:mod:`edge.outputs.records`): the miss log (miss and run records).
``systemd`` (:mod:`edge.outputs.systemd`): READY, WATCHDOG, STATUS and STOPPING to systemd.
``mqtt`` (:mod:`edge.outputs.mqtt`): events, summaries and status to an MQTT broker, for a
fleet. paho-mqtt is optional (``pip install 'edge-vision[mqtt]'``); nothing here imports it
until an output is built, so this package imports without it.

    from edge.outputs.mqtt import MqttConfig, MqttOutput
"""

from edge.outputs.mqtt_config import MqttConfig

__all__ = ["MqttConfig"]
