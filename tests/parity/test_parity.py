"""Parity with FlagEmbedding's BGEM3FlagModel (use_fp16=False) on the tiny model: every output and score."""

from __future__ import annotations

import numpy as np
import pytest

from encoding_checks import TOL, assert_same_encoding

TEXTS = [
    "What is BGE M3?",
    "",  # encodes as <s></s>
    "hello hello hello hello world world",  # repeated tokens: lexical weight keeps the max
    "北京是中国的首都。东京是日本的首都。",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "a",
    " ".join(["Large language models are trained on large amounts of text."] * 40),  # truncated
    "Der schnelle braune Fuchs springt über den faulen Hund. " * 3,
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다. 素早い茶色の狐",
]


ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)


@pytest.mark.parametrize("batch_size, max_length", [(256, 512), (3, 512), (4, 24), (1, 8192)])
def test_encode_all_outputs(runtime, flag_model, batch_size, max_length):
    ours = runtime.encode(TEXTS, batch_size=batch_size, max_length=max_length, **ALL)
    ref = flag_model.encode(TEXTS, batch_size=batch_size, max_length=max_length, **ALL)
    assert_same_encoding(ours, ref)


def test_truncation_matches_upstream(runtime, flag_model):
    ours = runtime.encode(TEXTS[-3], max_length=16, return_colbert_vecs=True)
    assert ours["colbert_vecs"].shape[0] == 15  # 16 tokens with <s> and </s>, CLS dropped
    assert_same_encoding(ours, flag_model.encode(TEXTS[-3], max_length=16, return_colbert_vecs=True), single=True)


@pytest.mark.parametrize("flags", [
    dict(return_dense=True, return_sparse=False, return_colbert_vecs=False),
    dict(return_dense=False, return_sparse=True, return_colbert_vecs=False),
    dict(return_dense=False, return_sparse=False, return_colbert_vecs=True),
])
def test_only_requested_outputs(runtime, flag_model, flags):
    assert_same_encoding(runtime.encode(TEXTS, **flags), flag_model.encode(TEXTS, **flags))


def test_defaults_and_single_string(runtime, flag_model):
    ours, ref = runtime.encode("hello world"), flag_model.encode("hello world")
    assert ours["dense_vecs"].shape == ref["dense_vecs"].shape == (64,)
    assert_same_encoding(ours, ref, single=True)
    assert_same_encoding(runtime.encode("", **ALL), flag_model.encode("", **ALL), single=True)


def test_encode_queries_and_corpus(runtime, flag_model):
    assert_same_encoding(runtime.encode_queries(TEXTS, **ALL), flag_model.encode_queries(TEXTS, **ALL))
    assert_same_encoding(runtime.encode_corpus(TEXTS, **ALL), flag_model.encode_corpus(TEXTS, **ALL))


def test_query_instruction(tiny_artifact, tiny_model_dir):
    from FlagEmbedding import BGEM3FlagModel

    from m3rt import M3Runtime

    kw = dict(query_instruction_for_retrieval="Represent: ", query_instruction_format="{}{}")
    rt = M3Runtime(tiny_artifact, **kw)
    ref = BGEM3FlagModel(str(tiny_model_dir), use_fp16=False, devices="cpu", **kw)
    assert_same_encoding(rt.encode_queries(TEXTS[:4], **ALL), ref.encode_queries(TEXTS[:4], **ALL))


@pytest.mark.parametrize("batch_size", [256, 2])
@pytest.mark.parametrize("weights", [None, [0.4, 0.2, 0.4]])
def test_compute_score_every_key(runtime, flag_model, batch_size, weights):
    pairs = [(TEXTS[i], TEXTS[j]) for i, j in [(0, 2), (3, 4), (1, 7), (6, 8), (5, 5), (9, 0), (2, 1)]]
    ours = runtime.compute_score(pairs, batch_size=batch_size, weights_for_different_modes=weights)
    ref = flag_model.compute_score(pairs, batch_size=batch_size, weights_for_different_modes=weights)
    assert set(ours) == set(ref) == {"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}
    for key in ref:
        np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=TOL, err_msg=key)


def test_compute_score_one_pair(runtime, flag_model):
    ours, ref = runtime.compute_score(("hello", "hello world")), flag_model.compute_score(("hello", "hello world"))
    for key in ref:
        assert isinstance(ours[key], float)
        assert abs(ours[key] - ref[key]) <= TOL, key


def test_colbert_and_lexical_scores(runtime, flag_model):
    enc = flag_model.encode(TEXTS, **ALL)
    for i, j in [(0, 2), (3, 3), (1, 7), (6, 4)]:
        q, p = enc["colbert_vecs"][i], enc["colbert_vecs"][j]
        assert abs(float(runtime.colbert_score(q, p)) - float(flag_model.colbert_score(q, p))) <= TOL
        a, b = enc["lexical_weights"][i], enc["lexical_weights"][j]
        assert abs(runtime.compute_lexical_matching_score(a, b) - flag_model.compute_lexical_matching_score(a, b)) <= TOL
    lex = enc["lexical_weights"]
    np.testing.assert_allclose(runtime.compute_lexical_matching_score(lex[:4], lex),
                               flag_model.compute_lexical_matching_score(lex[:4], lex), atol=TOL)


def test_convert_id_to_token(runtime, flag_model):
    lex = flag_model.encode(TEXTS, return_sparse=True)["lexical_weights"]
    assert runtime.convert_id_to_token(lex) == flag_model.convert_id_to_token(lex)
    assert runtime.convert_id_to_token(lex[3]) == flag_model.convert_id_to_token(lex[3])
    assert runtime.convert_id_to_token([lex[3]]) == flag_model.convert_id_to_token([lex[3]])  # upstream unwraps


def test_every_token_decodes_like_transformers(runtime, tiny_model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    for i in range(hf.vocab_size):
        assert runtime.tokenizer.decode_one(i) == hf.decode([i]), i
