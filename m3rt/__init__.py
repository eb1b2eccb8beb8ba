"""m3rt: a fast, faithful inference runtime for BGE-M3 (dense, sparse and ColBERT heads).

`from m3rt import M3Runtime` needs only numpy, onnxruntime and tokenizers; exporting needs the `export` extra.
"""

from m3rt.errors import ArtifactError, BackendError, ExportValidationError, M3RTError, SourceError
from m3rt.runtime import M3Runtime, RuntimeConfig
from m3rt.version import __version__

__all__ = [
    "M3Runtime", "RuntimeConfig", "M3RTError", "ArtifactError", "SourceError", "ExportValidationError",
    "BackendError", "__version__",
]
