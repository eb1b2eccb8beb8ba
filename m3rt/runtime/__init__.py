"""The embedded runtime: tokenize -> engine -> head postprocessing (numpy, onnxruntime, tokenizers only)."""

from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.m3 import M3Runtime

__all__ = ["M3Runtime", "RuntimeConfig"]
