"""The typed, streaming encode: Encoded (dense, sparse CSR, packed ColBERT) equals the FlagEmbedding-shaped
dict; iter_encode streams any iterable in bounded chunks in input order; engines declare limits the planner
obeys; the runtime closes."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest

from m3rt import M3Runtime
from m3rt.errors import BackendError

WORDS = ["search", "北京", "renard", "ranking", "函数", "the", "BM25", "lobo", "!", "1000", "collection"]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(0, 60, n)]


def assert_same(encoded, ref: dict) -> None:
    np.testing.assert_array_equal(encoded.dense, ref["dense_vecs"])
    assert encoded.sparse.as_dicts() == ref["lexical_weights"]
    for a, b in zip(encoded.colbert.as_list(), ref["colbert_vecs"], strict=True):
        np.testing.assert_array_equal(a, b)


def assert_close(encoded, ref: dict) -> None:
    """Other chunks batch texts with other neighbours: padding changes the float sums (flash path or not)."""
    np.testing.assert_allclose(encoded.dense, ref["dense_vecs"], atol=1e-5)
    for got, want in zip(encoded.sparse.as_dicts(), ref["lexical_weights"], strict=True):
        assert list(got) == list(want)
        np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-5)
    for a, b in zip(encoded.colbert.as_list(), ref["colbert_vecs"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_encoded_matches_the_flag_dict(runtime):
    texts = corpus(37) + ["", "a"]
    ref = runtime.encode(texts, return_sparse=True, return_colbert_vecs=True)
    enc = runtime.encode_native(texts, return_sparse=True, return_colbert_vecs=True)
    assert len(enc) == len(texts) and enc.start == 0
    assert enc.dense.dtype == np.float32 and enc.dense.shape == (len(texts), 64)
    sp = enc.sparse
    assert sp.indptr.dtype == np.int64 and sp.token_ids.dtype == np.int64 and sp.weights.dtype == np.float32
    assert sp.indptr[0] == 0 and sp.indptr[-1] == len(sp.token_ids) == len(sp.weights)
    assert (sp.weights > 0).all()
    cb = enc.colbert
    assert cb.vectors.dtype == np.float32 and cb.offsets[-1] == len(cb.vectors)
    np.testing.assert_array_equal(np.diff(cb.offsets), enc.lengths - 1)
    assert_same(enc, ref)
    assert set(enc.timings) == {"tokenize", "plan", "engine", "heads"} and enc.timings["engine"] > 0


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_iter_encode_streams_a_generator_in_input_order(runtime, chunk_size):
    texts = corpus(50, seed=chunk_size)
    ref = runtime.encode(texts, return_sparse=True, return_colbert_vecs=True)
    chunks = list(runtime.iter_encode((t for t in texts), chunk_size=chunk_size, return_sparse=True,
                                      return_colbert_vecs=True))
    assert [c.start for c in chunks] == list(range(0, 50, chunk_size))
    assert all(len(c) <= chunk_size for c in chunks)
    from m3rt.runtime.encoded import concat

    assert_close(concat(chunks), ref)


def test_iter_encode_holds_a_bounded_window(runtime):
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield f"text number {i}"

    stream = runtime.iter_encode(endless(), chunk_size=16)
    for _ in range(5):
        next(stream)
    stream.close()
    # 5 chunks yielded, the 6th read ahead (tokenised during the 5th's engine run) and at most one more.
    assert next(pulled) <= 7 * 16


def test_iter_encode_errors_name_the_global_index(runtime):
    with pytest.raises(TypeError, match=r"texts\[21\] is int"):
        list(runtime.iter_encode(["ok"] * 21 + [3], chunk_size=8))
    with pytest.raises(TypeError, match="iterable of str"):
        list(runtime.iter_encode("one string"))


def test_progress_callback_and_cut_texts_are_reported(tiny_artifact, caplog):
    calls = []
    rt = M3Runtime(tiny_artifact, progress=lambda done, total: calls.append((done, total)), batch_size=4)
    texts = corpus(10) + ["word " * 300]
    with caplog.at_level(logging.WARNING, logger="m3rt.runtime"):
        enc = rt.encode_native(texts, max_length=32)
    assert calls[-1] == (11, 11) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    full = [len(r) for r in rt.tokenizer.encode(texts, 8192)]
    assert enc.truncated.tolist() == [n > 32 for n in full] and enc.truncated[-1] and not enc.truncated.all()
    assert any(f"{int(enc.truncated.sum())} of 11 texts were cut to max_length=32" in r.getMessage()
               for r in caplog.records)


def test_close_and_context_manager(tiny_artifact):
    with M3Runtime(tiny_artifact) as rt:
        rt.encode("open")
        assert rt.engine.is_open
    assert not rt.engine.is_open
    with pytest.raises(BackendError, match="engine is closed"):
        rt.encode("closed")
    rt.close()  # twice is fine


def test_planner_obeys_a_built_engines_limits(tiny_artifact):
    """The TensorRT budget bug: a native engine built for batch 16 x 4096 tokens got batches planned with a
    constant 16384-token budget and encode(batch_size=256). The limits now come from engine.json."""
    from m3rt.runtime.profiles import limits_from_engine_info, pick, profiles_for

    profiles = profiles_for(8192, 4096, 16)  # what `m3rt build-engine --max-batch-tokens 4096 --batch-size 16` builds
    info = json.loads(json.dumps({"max_batch_tokens": 4096, "batch_size": 16,
                                  "profiles": [p.__dict__ for p in profiles]}))
    limits = limits_from_engine_info(info)
    rt = M3Runtime(tiny_artifact)
    inner = rt.engine
    shapes = []

    class BuiltEngine:  # the CPU engine standing in for a built one: same limits, and each call checked
        name, is_open, preferred_batch_tokens = "built", True, 16384

        @property
        def limits(self):
            return limits

        def run(self, ids, mask, outputs):
            shapes.append(ids.shape)
            pick(list(limits.buckets), *ids.shape)  # raises when no profile covers the batch
            return inner.run(ids, mask, outputs)

    rt.engine = rt.pipeline.engine = BuiltEngine()
    rt.batch_tokens = 16384
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(1, 2000, 120)]
    out = rt.encode(texts, batch_size=256, max_length=8192)
    assert len(out["dense_vecs"]) == 120 and max(b for b, _ in shapes) <= 16
    assert max(b * s for b, s in shapes) <= 4096 or min(b for b, s in shapes if b * s > 4096) == 1


def test_tokenize_then_encode_tokenized_equals_encode_native(runtime):
    """What the server does (tokenize at admission, merge requests, encode later) gives encode_native's outputs."""
    from m3rt.runtime.pipeline import Tokenized

    a = ["What is BGE M3?", "北京是中国的首都。" * 30, ""]
    b = ["Definition of BM25 " * 80, "a"]
    merged = Tokenized.join([runtime.tokenize(a, max_length=64), runtime.tokenize(b, max_length=64)])
    got = runtime.encode_tokenized(merged, return_sparse=True, return_colbert_vecs=True)
    want = runtime.encode_native(a + b, max_length=64, return_sparse=True, return_colbert_vecs=True)
    np.testing.assert_array_equal(got.dense, want.dense)
    np.testing.assert_array_equal(got.sparse.token_ids, want.sparse.token_ids)
    np.testing.assert_array_equal(got.colbert.vectors, want.colbert.vectors)
    assert got.truncated.tolist() == want.truncated.tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="max_length=9000 is above the model's limit"):
        runtime.tokenize(["x"], max_length=9000)
