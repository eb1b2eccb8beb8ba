"""Shared fixtures: the tiny BGE-M3-shaped TEST model, its artifact, a runtime, and FlagEmbedding's model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Without a GPU the Triton kernels run in Triton's interpreter. The variable must be set before anything
# imports triton (torch.onnx does, in the export tests), so it is set here, first of all.
if not Path("/dev/nvidia0").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from m3rt.export.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_artifact(tiny_model_dir, tmp_path_factory) -> Path:
    from m3rt.export import export

    return export(tiny_model_dir, tmp_path_factory.mktemp("tiny") / "artifact")


@pytest.fixture(scope="session")
def runtime(tiny_artifact):
    from m3rt import M3Runtime

    return M3Runtime(tiny_artifact)


@pytest.fixture(scope="session")
def flag_model(tiny_model_dir):
    """FlagEmbedding's reference BGEM3FlagModel in fp32 on the CPU."""
    flag = pytest.importorskip("FlagEmbedding", reason="FlagEmbedding (the reference) is not installed")
    return flag.BGEM3FlagModel(str(tiny_model_dir), use_fp16=False, devices="cpu")


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A throwaway copy of the artifact, for tests that damage it."""
    return Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
