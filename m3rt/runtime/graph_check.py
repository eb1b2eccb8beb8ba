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
    graph as a CPU engine runs it, against the manifest. Returns the Manifest; raises ArtifactError."""
    from m3rt.artifact import read_manifest
    from m3rt.runtime import cpu
    from m3rt.runtime.m3 import M3Runtime
    from m3rt.runtime.backends import why_not
    from m3rt.runtime.cpu_choice import cpu_order

    order = cpu_order(read_manifest(artifact, verify="off").precision, cpu.detect().cls)
    backend = next((name for name in order if why_not(name) is None), order[0])  # its reason, if none can run
    with M3Runtime(artifact, backend=backend, verify_checksums="always", check_cpu_class=False) as rt:
        return rt.manifest
