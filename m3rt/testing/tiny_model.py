"""A tiny BGE-M3-shaped TEST model, built deterministically on the spot (no download).

Same layout as BAAI/bge-m3: an XLM-RoBERTa backbone (random weights), `colbert_linear.pt` (stored fp16 as
upstream), `sparse_linear.pt`, and an XLM-R style SentencePiece-unigram `tokenizer.json` trained here on a
small multilingual corpus, with `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3 and XLM-R's `<s> $A </s>` template.
Its outputs are meaningless: it exists to exercise the exporter, the runtime and parity with FlagEmbedding.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from pathlib import Path

# A few sentences per script, enough for the unigram trainer to find subwords in each.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is BGE M3? It is an embedding model supporting dense, sparse and multi-vector retrieval.",
    "Definition of BM25: a ranking function used by search engines to estimate relevance.",
    "Large language models are trained on large amounts of text to predict the next token.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。 北京是中国的首都。",
    "素早い茶色の狐が怠け者の犬を飛び越える。 東京は日本の首都です。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
    "Nhanh chóng con cáo nâu nhảy qua con chó lười.",
    "Search engines rank documents by relevance; retrieval augmented generation needs good embeddings.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024, symbols ! ? , . ; : ( ) [ ] { } @ # % & * + - = / \\ ' \"",
]

TINY_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=8194,  # 8192 usable tokens, as bge-m3
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    # Larger than transformers' 0.02 so the heads give varied, non-degenerate outputs.
    initializer_range=0.2,
)

# The real BAAI/bge-m3 shape (random weights): for large-model export tests and benchmarks.
BGE_M3_SHAPE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    vocab_size=250002, initializer_range=0.02,
)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def _unigram_pieces(texts: list[str], size: int) -> list[tuple[str, float]]:
    """Train unigram pieces by counting: every character, plus the most useful frequent substrings of
    words (with the `▁` word marker), scored by log frequency. Deterministic, unlike the `tokenizers`
    trainer, which picks rare pieces differently from run to run."""
    counts: Counter[str] = Counter()
    for text in texts:
        for word in unicodedata.normalize("NFKC", text).split():
            word = "▁" + word
            for i in range(len(word)):
                for j in range(i + 1, min(i + 8, len(word)) + 1):
                    counts[word[i:j]] += 1
    chars = sorted(p for p in counts if len(p) == 1)
    multi = sorted((p for p in counts if len(p) > 1 and counts[p] >= 2), key=lambda p: (-counts[p] * len(p), p))
    chosen = chars + multi[: max(0, size - len(chars))]
    total = sum(counts[p] for p in chosen)
    return sorted(((p, math.log(counts[p] / total)) for p in chosen), key=lambda ps: (-ps[1], ps[0]))


def build_tokenizer(vocab_size: int = 600):
    """An XLM-R style unigram tokenizer trained on CORPUS: specials at ids 0-3, `<mask>` last."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(t, 0.0) for t in SPECIAL_TOKENS] + _unigram_pieces(CORPUS, vocab_size - len(SPECIAL_TOKENS) - 1)
    tok = Tokenizer(Unigram(vocab, unk_id=SPECIAL_TOKENS.index("<unk>")))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.add_special_tokens(SPECIAL_TOKENS + ["<mask>"])
    # XLM-R's post-processor: without it no <s>/</s> are added and everything downstream is off by one.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"special token {t} must have id {i}"
    return tok


def calibrate_sparse(model, tok, sparse, texts) -> None:
    """Scale and shift the random sparse head so that, over `texts`, about 40% of the tokens get a
    positive weight, typically 0.1-0.5 like bge-m3's. An uncalibrated random head often gives
    every token weight 0 after the relu, and then the sparse outputs test nothing."""
    import torch

    pad = model.config.pad_token_id
    rows = [torch.tensor(e.ids) for e in tok.encode_batch(texts)]
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)
    mask = (ids != pad).long()
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()]
    raw = hidden @ sparse.weight[0]
    scale = 0.25 / raw.std()
    sparse.weight.mul_(scale)
    sparse.bias.fill_(-float(torch.quantile(raw * scale, 0.6)))


def write_random_heads(model, tok, out: Path) -> None:
    """colbert_linear.pt (random) and sparse_linear.pt (random, calibrated on CORPUS) for `model`, in `out`;
    draws from torch's current random state."""
    import torch

    hidden = model.config.hidden_size
    colbert = torch.nn.Linear(hidden, hidden)
    sparse = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        colbert.weight.normal_(0.0, hidden ** -0.5)
        colbert.bias.normal_(0.0, 0.1)
        sparse.weight.normal_(0.0, 1.0)
        sparse.bias.zero_()
        calibrate_sparse(model, tok, sparse, CORPUS)
    # Upstream ships colbert_linear.pt in fp16; loading upcasts it exactly.
    torch.save({k: v.half() for k, v in colbert.state_dict().items()}, out / "colbert_linear.pt")
    torch.save(sparse.state_dict(), out / "sparse_linear.pt")


def build_tiny_model(out: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny BGE-M3-shaped test model directory to `out` and return its path."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 8192,
         "clean_up_tokenization_spaces": True, **specials}, indent=2))

    cfg = XLMRobertaConfig(**{"vocab_size": tok.get_vocab_size(), **TINY_CONFIG, **config_overrides})
    torch.manual_seed(seed)
    model = XLMRobertaModel(cfg).eval()
    with torch.no_grad():
        # Wide word embeddings: token identity then outweighs the shared position/type components,
        # so texts (and tokens) get clearly different vectors (mean dense cosine ~0.5, not ~0.8).
        model.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
        model.embeddings.word_embeddings.weight[cfg.pad_token_id].zero_()
    model.save_pretrained(out, safe_serialization=True)
    write_random_heads(model, tok, out)
    (out / "README.md").write_text(
        "# TEST MODEL: tiny BGE-M3-shaped model with RANDOM weights, built by m3rt for tests and demos.\n"
        "Its embeddings are meaningless.\n"
    )
    return out
