"""Errors m3rt raises on purpose: each names the problem (and the file, where there is one)."""


class M3RTError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ArtifactError(M3RTError):
    """An artifact directory is missing a file, has a bad manifest, or fails its checksums."""


class SourceError(M3RTError):
    """An export source is missing, incomplete, or cannot be fetched."""


class ExportValidationError(M3RTError):
    """The exported graph disagrees with the PyTorch model beyond tolerance."""


class BackendError(M3RTError):
    """A named backend cannot start (a missing package, provider or device)."""


class BusyError(M3RTError):
    """Another job holds the lock on the same output (m3rt/locking.py)."""


class ExportBusyError(BusyError):
    """Another export holds the lock on the same output directory."""
