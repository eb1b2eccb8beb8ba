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


def test_runtime_never_imports_the_exporter():
    """The runtime's modules import the artifact format, the errors, the kernels and themselves: never the
    exporter, the benchmarks or the command line (read from their source). The one exception, m3rt.pretrained, is imported inside M3Runtime.from_pretrained only (exporting is its job)."""
    import ast
    from pathlib import Path

    import m3rt

    package = Path(m3rt.__file__).parent
    allowed = ("m3rt.artifact", "m3rt.onnx_file", "m3rt.errors", "m3rt.runtime", "m3rt.kernels", "m3rt.pretrained",
               "m3rt.version", "m3rt.options")
    files = [*sorted((package / "runtime").glob("*.py")), package / "artifact.py",
             *sorted((package / "kernels").glob("*.py"))]
    offending = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:  # from m3rt import x: the module m3rt.x
                names = [f"m3rt.{a.name}" for a in node.names] if node.module == "m3rt" else [node.module or ""]
            else:
                names = []
            for name in names:
                if (name == "m3rt" or name.startswith("m3rt.")) and not name.startswith(allowed):
                    offending.append(f"{path.relative_to(package)}: {name}")
    assert offending == []
