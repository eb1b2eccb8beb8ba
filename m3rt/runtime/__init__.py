"""The embedded runtime: tokenize -> engine -> head postprocessing (numpy, onnxruntime, tokenizers only)."""

from m3rt.runtime.config import BackendOptions, RuntimeConfig
from m3rt.runtime.m3 import M3Runtime
from m3rt.runtime.outputs import Outputs
from m3rt.runtime.texts import check_pairs, check_texts

__all__ = ["M3Runtime", "RuntimeConfig", "BackendOptions", "Outputs", "check_texts", "check_pairs"]
