"""M3Runtime.from_pretrained exports a model directory once into a cache and loads it from there."""

from __future__ import annotations

import numpy as np
import pytest

from m3rt import M3Runtime


def test_model_directories_and_hub_ids_point_at_from_pretrained(tiny_model_dir):
    from m3rt import ArtifactError

    with pytest.raises(ArtifactError, match=r"a model directory, not an m3rt artifact; .*from_pretrained"):
        M3Runtime(tiny_model_dir)
    with pytest.raises(ArtifactError, match=r"M3Runtime.from_pretrained\('BAAI/bge-m3'\)"):
        M3Runtime("BAAI/bge-m3")


def test_from_pretrained_exports_once_and_reuses(tiny_model_dir, tmp_path, runtime):
    import shutil

    cache = tmp_path / "cache"
    rt = M3Runtime.from_pretrained(tiny_model_dir, cache_dir=cache, batch_size=8)
    assert rt.config.batch_size == 8
    np.testing.assert_array_equal(rt.encode(["hello"])["dense_vecs"], runtime.encode(["hello"])["dense_vecs"])
    artifact = rt.manifest.root
    created = (artifact / "manifest.json").stat().st_mtime_ns
    again = M3Runtime.from_pretrained(tiny_model_dir, cache_dir=cache)
    assert again.manifest.root == artifact and (artifact / "manifest.json").stat().st_mtime_ns == created
    # Another precision, or a changed source, is another artifact.
    assert M3Runtime.from_pretrained(tiny_model_dir, cache_dir=cache, precision="fp16").manifest.precision == "fp16"
    src = shutil.copytree(tiny_model_dir, tmp_path / "edited")
    (src / "README.md").write_text("edited")
    assert M3Runtime.from_pretrained(src, cache_dir=cache).manifest.root != artifact
    assert len(list((cache / "artifacts").iterdir())) == 3
