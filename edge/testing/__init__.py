"""Test doubles, shipped beside the real parts as a public seam (as httpx ships
``MockTransport``): other code and other projects' tests can use them too.

* :class:`FakeClock` (:mod:`edge.testing.clock`): a clock that moves only when told to;
* :class:`RecordingNotifier` (:mod:`edge.testing.notify`): systemd's notifier, recording;
* :mod:`edge.testing.pipeline`: a detector whose stages take fake time (or hang until
  released), a source fed by the test, a record sink that can be waited on, a clock that
  wakes listeners: the pipeline's tests run the real pipeline with them;
* :mod:`edge.testing.picamera2`: a stand-in for the ``picamera2`` module, faithful to its API
  for everything the adapter touches (put it in ``sys.modules["picamera2"]``).

Nothing here is imported by the package at run time except :class:`FakeClock`, which the
paced sources recognise so that tests move their time by hand.
"""

from edge.testing.clock import FakeClock
from edge.testing.notify import RecordingNotifier

__all__ = ["FakeClock", "RecordingNotifier"]
