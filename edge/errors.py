"""The edge-vision exception tree, documented in one place.

Every error a user can cause is an :class:`EdgeError`. Where a builtin fits, the error
subclasses it too, so callers can catch it naturally (``except FileNotFoundError``).
Messages say what was expected, what was found, and what to do.

EdgeError
├── ConfigError (ValueError)          bad config file, flag or source spec
├── ModelError                        a model cannot be used
│   ├── ModelNotFound (FileNotFoundError)   unknown name or missing file
│   ├── ModelInvalid (ValueError)           truncated / not TFLite / wrong family
│   └── ChecksumMismatch (ValueError)       sha256 of a fetched file differs from the manifest
├── FetchError (OSError)              downloading or unpacking a model wheel failed
├── DelegateError (OSError)           a delegate library could not be loaded
├── RuntimeMissing (ImportError)      no LiteRT / TFLite runtime installed
├── ImageError (ValueError)           an input image cannot be read or decoded
├── SourceError (OSError)             a capture source cannot be opened or has failed
│   └── SourceNotFound (FileNotFoundError)  a video file that is not there (deleted, moved)
└── MissLogError (OSError)            the miss log cannot be opened, is not ours, or is in use
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error edge-vision raises on purpose."""

    #: exit code the CLI uses for this kind of error
    exit_code: int = 2


class ConfigError(EdgeError, ValueError):
    """A config file, flag or spec is invalid; the message names the key and accepted values."""


class ModelError(EdgeError):
    """A model cannot be used."""


class ModelNotFound(ModelError, FileNotFoundError):
    """An unknown model name, or a model file that does not exist."""


class ModelInvalid(ModelError, ValueError):
    """A model file that is truncated, not TFLite, or whose outputs fit no decoder."""


class ChecksumMismatch(ModelError, ValueError):
    """A fetched model's sha256 differs from the manifest."""


class FetchError(EdgeError, OSError):
    """Downloading or unpacking a model wheel failed."""


class DelegateError(EdgeError, OSError):
    """A delegate library could not be loaded."""


class RuntimeMissing(EdgeError, ImportError):
    """None of ai_edge_litert, tflite_runtime, tensorflow.lite is importable."""


class ImageError(EdgeError, ValueError):
    """An input image is missing, empty, truncated or not an image."""


class SourceError(EdgeError, OSError):
    """A capture source cannot be opened, or has failed for good."""


class SourceNotFound(SourceError, FileNotFoundError):
    """A video file that does not exist (never there, or deleted or moved since)."""


class MissLogError(EdgeError, OSError):
    """The miss log cannot be opened at start, is another file (not a miss log, a symbolic
    link), or is locked by another process."""
