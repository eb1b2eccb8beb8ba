"""A graph whose external weights live outside the artifact (a `..` path, an absolute path, a link) is refused
at load, by `m3rt info` and by `m3rt verify`, even with the manifest re-hashed over it: every weight the runtime
reads is a hashed file of the artifact, whatever the onnxruntime version would allow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from m3rt import ArtifactError, M3Runtime
from m3rt.artifact import write_manifest


def with_external_weights(artifact: Path, location: str, data_file: Path) -> None:
    """Rewrite the artifact's graph with its weights in `data_file`, referenced as `location`, and re-hash the
    manifest."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(artifact / "model.onnx"))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save_model(model, str(artifact / "model.onnx"))  # writes weights.bin beside it
    shutil.move(artifact / "weights.bin", data_file)
    model = onnx.load(str(artifact / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(artifact / "model.onnx"))
    data = json.loads((artifact / "manifest.json").read_text())
    write_manifest(artifact, {k: v for k, v in data.items() if k not in ("files", "sizes")})


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3rt.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("where", ["parent", "absolute", "deeper"])
def test_external_data_outside_the_artifact_is_refused(artifact_copy, tmp_path, where):
    outside = tmp_path / "outside" / "weights.bin"
    outside.parent.mkdir()
    location = {"parent": "../outside/weights.bin", "absolute": str(outside),
                "deeper": "sub/../../outside/weights.bin"}[where]
    with_external_weights(artifact_copy, location, outside)
    with pytest.raises(ArtifactError, match=r"model.onnx: external data location .* is not a file of the "
                                            r"artifact listed in manifest.json"):
        M3Runtime(artifact_copy)
    for command in ("info", "verify"):
        res = cli(command, artifact_copy)
        assert res.returncode == 1 and "external data location" in res.stderr and "Traceback" not in res.stderr


def test_external_data_inside_the_artifact_loads(artifact_copy, runtime):
    with_external_weights(artifact_copy, "weights.bin", artifact_copy / "weights.bin")
    data = json.loads((artifact_copy / "manifest.json").read_text())
    write_manifest(artifact_copy, {k: v for k, v in data.items() if k not in ("files", "sizes")})
    rt = M3Runtime(artifact_copy)
    assert (rt.encode(["hello"])["dense_vecs"] == runtime.encode(["hello"])["dense_vecs"]).all()


def test_a_linked_data_file_is_refused(artifact_copy, tmp_path):
    outside = tmp_path / "weights.bin"
    with_external_weights(artifact_copy, "weights.bin", outside)
    os.symlink(outside, artifact_copy / "weights.bin")
    with pytest.raises(ArtifactError, match=r"weights.bin: a symbolic link inside the artifact"):
        M3Runtime(artifact_copy)
