"""Corpus embedding: input shards (JSONL / Parquet) in, Parquet shards of m3rt's outputs out, resumable by shard;
in-process or on Ray Data (m3rt.ray). `m3rt embed-corpus` runs embed_corpus."""

from m3rt.corpus.job import embed_corpus

__all__ = ["embed_corpus"]
