"""edge-vision: real-time detection on small devices, with every frame held to a deadline."""

__version__ = "0.1.0"
