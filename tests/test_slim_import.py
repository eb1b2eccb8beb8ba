"""The runtime stays slim: importing m3rt and encoding pulls in no torch, transformers or triton."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_needs_no_heavy_imports(tiny_artifact):
    code = (
        "import sys, m3rt\n"
        f"rt = m3rt.M3Runtime({str(tiny_artifact)!r})\n"
        "out = rt.encode(['hello', 'world'], return_sparse=True, return_colbert_vecs=True)\n"
        "rt.compute_score([('hello', 'world')])\n"
        "rt.rerank('hello', ['world', 'hello'])\n"
        "print(' '.join(m for m in ('torch', 'transformers', 'triton', 'tensorrt', 'onnx') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
