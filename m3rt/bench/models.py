"""The benchmarked model and its artifacts, built once and cached under a work directory.

Layout of a work directory: model/ (for a preset), artifact-fp32/, artifact-int8/. A model is complete
when its marker file exists, an artifact when its manifest.json does (the exporter writes it last).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from m3rt.artifact import MANIFEST

log = logging.getLogger("m3rt.bench")

PRESETS = ("tiny", "bge-m3-random", "bge-m3-w6")
MODEL_DONE = ".model-complete"


def default_work_dir(preset: str | None, model: str | Path | None) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3rt" / "bench"
    if model is None:
        return root / preset
    # One cache per model directory: the resolved path, hashed, tells two "bge-m3" folders apart.
    resolved = Path(model).expanduser().resolve()
    return root / f"model-{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def prepare_model(preset: str | None, model: str | Path | None, work_dir: Path) -> Path:
    """The model directory: `model` itself (checked), or the preset built under work_dir (reused if there)."""
    from m3rt.export.source import check_source_files

    if model is not None:
        root = Path(model).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{model}: no such model directory")
        check_source_files(root)
        return root
    root = work_dir / "model"
    if (work_dir / MODEL_DONE).is_file():
        log.info("model: reusing %s", root)
        return root
    from m3rt.testing.tiny_model import BGE_M3_SHAPE, build_tiny_model

    # bge-m3-w6: bge-m3's width (hidden 1024, vocab 250002) at 6 of its 24 layers, for side-by-side runs of many
    # engines that 24 layers would not fit in memory together.
    shape = {"bge-m3-random": BGE_M3_SHAPE, "bge-m3-w6": {**BGE_M3_SHAPE, "num_hidden_layers": 6}}.get(preset, {})
    log.info("model: building the %s TEST model (random weights) in %s", preset, root)
    build_tiny_model(root, **shape)
    (work_dir / MODEL_DONE).write_text(preset + "\n")
    return root


def prepare_artifact(model_dir: Path, work_dir: Path, precision: str, random_weights: bool = False) -> Path:
    """work_dir/artifact-<precision>, exported from model_dir unless a complete one of that model is there.

    A preset has random weights, on which int8 fidelity says little (its sparse ranking is near-uniform):
    its thresholds are recorded in the manifest, not enforced. A real model's are enforced."""
    out = work_dir / f"artifact-{precision}"
    manifest = out / MANIFEST
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        if data.get("source") == str(model_dir) and data.get("precision") == precision:
            log.info("artifact %s: reusing %s", precision, out)
            return out
        log.info("artifact %s: %s holds another model or precision; exporting again", precision, out)
    if out.exists():
        # Our own cache folder, left half-written by an interrupted export or holding a stale artifact.
        shutil.rmtree(out)
    from m3rt.export import export

    log.info("artifact %s: exporting %s to %s", precision, model_dir, out)
    return export(str(model_dir), out, precision=precision, enforce_fidelity=not random_weights)
