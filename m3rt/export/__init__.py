"""`m3rt export`: a BGE-M3 model directory -> a validated ONNX artifact (needs the `export` extra)."""

from m3rt.export.exporter import export

__all__ = ["export"]
