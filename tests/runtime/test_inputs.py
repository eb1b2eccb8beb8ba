"""Bad input gets a clear error; edge inputs (empty list, empty string) give the right empty results."""

from __future__ import annotations

import numpy as np
import pytest

from m3rt import M3Runtime


def test_empty_list(runtime):
    out = runtime.encode([], return_dense=True, return_sparse=True, return_colbert_vecs=True)
    assert out["dense_vecs"].shape == (0, 64) and out["lexical_weights"] == [] and out["colbert_vecs"] == []
    assert runtime.encode([])["lexical_weights"] is None
    assert runtime.compute_score([]) == {k: [] for k in ("colbert", "sparse", "dense", "sparse+dense",
                                                         "colbert+sparse+dense")}
    assert runtime.rerank("q", []) == []


def test_empty_string_is_cls_eos(runtime):
    out = runtime.encode("", return_sparse=True, return_colbert_vecs=True)
    assert out["colbert_vecs"].shape == (1, 64)  # <s></s>: CLS dropped, </s> kept
    assert out["lexical_weights"] == {}  # only specials
    np.testing.assert_allclose(np.linalg.norm(out["dense_vecs"]), 1, atol=1e-6)


@pytest.mark.parametrize("bad, index", [(["ok", 3], 1), ([None], 0), (["a", "b", b"bytes"], 2)])
def test_non_string_item_names_its_index(runtime, bad, index):
    with pytest.raises(TypeError, match=rf"sentences\[{index}\]"):
        runtime.encode(bad)


def test_non_list_input(runtime):
    with pytest.raises(TypeError, match="str or a list of str"):
        runtime.encode(42)
    with pytest.raises(TypeError, match=r"sentence_pairs\[1\]"):
        runtime.compute_score([("a", "b"), ("a",)])
    with pytest.raises(TypeError, match=r"queries\[0\]"):
        M3Runtime(runtime.manifest.root, query_instruction_for_retrieval="x: ").encode_queries([1])


def test_long_text_truncated(runtime):
    text = "word " * 5000
    out = runtime.encode(text, max_length=100, return_colbert_vecs=True)
    assert out["colbert_vecs"].shape == (99, 64)


def test_full_model_length(runtime):
    out = runtime.encode("word " * 9000, max_length=8192, return_colbert_vecs=True)
    assert out["colbert_vecs"].shape == (8191, 64)


@pytest.mark.parametrize("max_length", [8193, 100_000])
def test_max_length_above_model_limit(runtime, tiny_artifact, max_length):
    with pytest.raises(ValueError, match="above the model's limit of 8192"):
        runtime.encode("hi", max_length=max_length)
    with pytest.raises(ValueError, match="passage_max_length"):
        M3Runtime(tiny_artifact, passage_max_length=max_length)


@pytest.mark.parametrize("max_length", [1, 0, -5, 2.5, "10"])
def test_max_length_invalid(runtime, max_length):
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        runtime.encode("hi", max_length=max_length)


def test_other_bad_arguments(runtime, tiny_artifact):
    with pytest.raises(ValueError, match="nothing to return"):
        runtime.encode("hi", return_dense=False)
    with pytest.raises(ValueError, match="batch_size"):
        runtime.encode("hi", batch_size=-1)
    with pytest.raises(ValueError, match="weights_for_different_modes needs 3"):
        runtime.compute_score(("a", "b"), weights_for_different_modes=[1, 1])
    with pytest.raises(TypeError, match="unknown runtime option"):
        M3Runtime(tiny_artifact, batch_sise=3)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        M3Runtime(tiny_artifact, max_batch_tokens=0)
    with pytest.raises(ValueError, match="lexical weights"):
        runtime.compute_lexical_matching_score({"1": 0.5}, [{"1": 0.5}])
    with pytest.raises(ValueError, match="2-D"):
        runtime.colbert_score(np.zeros(3), np.zeros((2, 3)))


def test_unknown_backend(tiny_artifact):
    from m3rt import BackendError

    with pytest.raises(BackendError, match="unknown backend 'tensorrt-9'"):
        M3Runtime(tiny_artifact, backend="tensorrt-9")
    assert M3Runtime(tiny_artifact, backend="cpu").engine.name == "onnxruntime-cpu"


def test_input_order_restored_with_tiny_budget(tiny_artifact, runtime):
    """Sorting by length and a token budget of one text per batch must not change any result."""
    texts = ["a b c d e f g", "", "hello", "北京是中国的首都", "x " * 50, "hello"]
    small = M3Runtime(tiny_artifact, max_batch_tokens=1, batch_size=1)
    a = small.encode(texts, return_sparse=True, return_colbert_vecs=True)
    b = runtime.encode(texts, return_sparse=True, return_colbert_vecs=True)
    np.testing.assert_allclose(a["dense_vecs"], b["dense_vecs"], atol=1e-6)
    for x, y in zip(a["colbert_vecs"], b["colbert_vecs"]):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert [list(d) for d in a["lexical_weights"]] == [list(d) for d in b["lexical_weights"]]
    np.testing.assert_array_equal(a["dense_vecs"][2], a["dense_vecs"][5])  # same text, same vector


def test_lone_surrogate_names_the_text(runtime):
    with pytest.raises(ValueError, match=r"text 1 is not valid Unicode: '\\ud800' at character 2"):
        runtime.encode(["fine", "ab\ud800cd"])


def test_integer_arguments_take_numpy_integers_and_refuse_bools(runtime):
    ref = runtime.encode(["hello world"], max_length=512, batch_size=4)["dense_vecs"]
    out = runtime.encode(["hello world"], max_length=np.int64(512), batch_size=np.int32(4))["dense_vecs"]
    np.testing.assert_array_equal(out, ref)
    assert len(runtime.rerank("hello", ["a", "b", "c"], top_k=np.int64(2))) == 2
    for name in ("batch_size", "max_length"):
        with pytest.raises(ValueError, match=f"{name} must be an integer"):
            runtime.encode("hi", **{name: True})


def test_backend_options_and_onnxruntime_pass_through(tiny_artifact):
    from m3rt import BackendError
    from m3rt.runtime.config import BackendOptions, RuntimeConfig

    cfg = RuntimeConfig().with_overrides(batch_size=8, intra_op_threads=1)
    assert cfg.batch_size == 8 and cfg.backend_options == BackendOptions(intra_op_threads=1)
    rt = M3Runtime(tiny_artifact, intra_op_threads=1, session_options={"inter_op_num_threads": 1},
                   session_config={"session.intra_op.allow_spinning": "0"})
    assert rt.engine.session.get_session_options().inter_op_num_threads == 1
    assert rt.engine.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(rt.encode("hi")["dense_vecs"], M3Runtime(tiny_artifact).encode("hi")["dense_vecs"],
                               atol=1e-6)
    with pytest.raises(ValueError, match="SessionOptions has no setting 'no_such_setting'"):
        M3Runtime(tiny_artifact, session_options={"no_such_setting": 1})
    with pytest.raises(ValueError, match="session_options: graph_optimization_level='fast' refused"):
        M3Runtime(tiny_artifact, session_options={"graph_optimization_level": "fast"})
    # A provider list whose first provider cannot start is an error, never a silent CPU fallback.
    with pytest.raises(BackendError, match="has no OpenVINOExecutionProvider here"):
        M3Runtime(tiny_artifact, providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"])
