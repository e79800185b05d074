"""The real-time pipeline: capture thread, latest-frame handoff, worker, degradation, GC
discipline, and the runner that wires them to the deadline watchdog.

    from edge.outputs.records import MissLogOutput
    from edge.pipeline.runner import Pipeline, Settings
    summary = Pipeline(source, detector, Settings(), [MissLogOutput(miss_log)]).run()

``edge.launch.run(cfg, spec, environ=os.environ)`` does the same from a config, with the
real model, source, miss log, systemd notifier, outputs and signal handling: assembly lives
there, so this package imports neither the viewer (:mod:`edge.serve`) nor the outputs
(:mod:`edge.outputs`).

This package's ``__init__`` imports nothing: :mod:`edge.config` imports
:mod:`edge.pipeline.settings`.
"""
