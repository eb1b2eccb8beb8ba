"""The artifact's graph against its manifest, as the engine runs it: one call of two tokens at load shows the
widths of the vectors it really gives (artifact.read_manifest has checked what the graph file says: external
data, embedding tables, positions). A mismatch is one line naming both values, never wrong-sized outputs or a
numpy error at the first encode."""

from __future__ import annotations

from m3rt.errors import ArtifactError


def check_graph_against_manifest(manifest, engine, tokenizer) -> None:
    where = manifest.root / "manifest.json"
    dims = manifest.dims
    if dims.vocab is not None and tokenizer.vocab_size > dims.vocab:
        raise ArtifactError(f"{manifest.tokenizer_path}: {tokenizer.vocab_size} tokens, more than the graph's "
                            f"{dims.vocab} embedding rows (dims.vocab in {where})")
    ids, mask = _two_tokens(tokenizer)
    out = engine.run(ids, mask, ("dense_vecs", "colbert_vecs"))
    got = {"hidden": int(out["dense_vecs"].shape[-1]), "colbert": int(out["colbert_vecs"].shape[-1])}
    for name, width in got.items():
        if getattr(dims, name) != width:
            raise ArtifactError(f"{where}: dims.{name} is {getattr(dims, name)} but the graph's "
                                f"{'dense' if name == 'hidden' else 'ColBERT'} vectors are {width} wide")


def _two_tokens(tokenizer):
    from m3rt.runtime.batching import tokenized_batch

    return tokenized_batch(tokenizer, [""], 2)


def verify(artifact):
    """`m3rt verify`: every file re-hashed against the manifest, the graph file's facts (artifact.py) and the
    graph as onnxruntime runs it on the CPU, against the manifest. Returns the Manifest; raises ArtifactError."""
    from m3rt.runtime.m3 import M3Runtime

    with M3Runtime(artifact, backend="cpu", verify_checksums="always", check_cpu_class=False) as rt:
        return rt.manifest
