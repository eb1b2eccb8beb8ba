"""One encoder for the framework adapters, over an embedded M3Runtime or a remote `m3rt serve`, and the per-text
cache that lets a framework's separate dense and sparse calls share one model pass.

    enc = connect(runtime | artifact_path | "http://host:port")
    enc.encode(texts, query=False) -> Encodings(dense float32 [n, H], sparse [(token ids int64, weights float32)])
    await enc.aencode(texts, query=True)

Embedded: documents through encode_native, queries through encode_queries (the query instruction and
query_max_length, if the runtime has them). Remote: one POST /encode per batch (dense and sparse together), cut
at the server's max_client_batch_size (GET /info); the server has no query route, so a query is encoded as a
passage, with max_length=query_max_length when the adapter is given one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Encodings:
    dense: np.ndarray  # float32 [n, H]
    sparse: list[tuple[np.ndarray, np.ndarray]]  # per text: (token ids int64, weights float32)


class Encoder:
    dim: int

    def encode(self, texts: list[str], *, query: bool) -> Encodings:
        raise NotImplementedError

    async def aencode(self, texts: list[str], *, query: bool) -> Encodings:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self.encode(texts, query=query))

    def close(self) -> None:
        pass


def connect(target, *, batch_size: int | None = None, query_max_length: int | None = None,
            timeout: float = 60.0, headers: dict | None = None) -> Encoder:
    """An encoder for `target`: an M3Runtime, an artifact directory (opened here), or an http(s) URL of a
    running `m3rt serve`."""
    from m3rt.runtime import M3Runtime

    if isinstance(target, Encoder):
        return target
    if isinstance(target, M3Runtime):
        return LocalEncoder(target, batch_size, owned=False)
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        return RemoteEncoder(target, query_max_length=query_max_length, timeout=timeout, headers=headers)
    if isinstance(target, (str, Path)):
        return LocalEncoder(M3Runtime(target), batch_size, owned=True)
    raise TypeError(f"target must be an M3Runtime, an artifact path or an http(s) URL of `m3rt serve`, got "
                    f"{type(target).__name__}")


def _empty(dim: int) -> Encodings:
    return Encodings(np.zeros((0, dim), np.float32), [])


class LocalEncoder(Encoder):
    def __init__(self, runtime, batch_size: int | None = None, owned: bool = False):
        self.runtime, self.batch_size, self._owned = runtime, batch_size, owned
        self.dim = runtime.output_dims["dense"]

    def encode(self, texts: list[str], *, query: bool) -> Encodings:
        from m3rt.runtime import check_texts

        texts = check_texts(texts, "texts")
        if not texts:
            return _empty(self.dim)
        if query:
            out = self.runtime.encode_queries(texts, batch_size=self.batch_size, return_dense=True,
                                              return_sparse=True, return_colbert_vecs=False)
            sparse = [(np.fromiter((int(t) for t in lw), np.int64, len(lw)),
                       np.fromiter(lw.values(), np.float32, len(lw))) for lw in out["lexical_weights"]]
            return Encodings(np.asarray(out["dense_vecs"], np.float32), sparse)
        enc = self.runtime.encode_native(texts, batch_size=self.batch_size, return_dense=True, return_sparse=True,
                                         return_colbert_vecs=False)
        return Encodings(enc.dense, [enc.sparse.row(i) for i in range(len(enc))])

    def close(self) -> None:
        if self._owned:
            self.runtime.close()
            self._owned = False


class RemoteEncoder(Encoder):
    def __init__(self, url: str, *, query_max_length: int | None = None, timeout: float = 60.0,
                 headers: dict | None = None):
        import httpx

        self.url, self.timeout, self.headers = url.rstrip("/"), timeout, dict(headers or {})
        self.query_max_length = query_max_length
        self._client = httpx.Client(base_url=self.url, timeout=timeout, headers=self.headers)
        info = self._checked(self._client.get("/info")).json()
        self.dim = int(info["dims"]["hidden"])
        self.max_batch = int(info.get("max_client_batch_size") or 32)

    @staticmethod
    def _checked(response):
        if response.status_code >= 400:
            try:
                why = response.json().get("error", response.text)
            except ValueError:
                why = response.text
            raise RuntimeError(f"m3rt serve at {response.request.url}: HTTP {response.status_code}: {why}")
        return response

    def _body(self, texts: list[str], query: bool) -> dict:
        body = {"inputs": texts, "return_dense": True, "return_sparse": True, "return_colbert_vecs": False}
        if query and self.query_max_length is not None:
            body["max_length"] = int(self.query_max_length)
        return body

    @staticmethod
    def _decode(js: dict) -> Encodings:
        sparse = [(np.fromiter((int(t) for t in lw), np.int64, len(lw)), np.fromiter(lw.values(), np.float32, len(lw)))
                  for lw in js["lexical_weights"]]
        return Encodings(np.asarray(js["dense_vecs"], np.float32), sparse)

    @staticmethod
    def _merge(parts: list[Encodings]) -> Encodings:
        return Encodings(np.concatenate([p.dense for p in parts]), [r for p in parts for r in p.sparse])

    def _batches(self, texts: list[str]) -> list[list[str]]:
        return [texts[lo:lo + self.max_batch] for lo in range(0, len(texts), self.max_batch)]

    def encode(self, texts: list[str], *, query: bool) -> Encodings:
        from m3rt.runtime import check_texts

        texts = check_texts(texts, "texts")
        if not texts:
            return _empty(self.dim)
        return self._merge([self._decode(self._checked(self._client.post("/encode", json=self._body(b, query))).json())
                            for b in self._batches(texts)])

    async def aencode(self, texts: list[str], *, query: bool) -> Encodings:
        import httpx

        from m3rt.runtime import check_texts

        texts = check_texts(texts, "texts")
        if not texts:
            return _empty(self.dim)
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout, headers=self.headers) as client:
            async def one(batch):
                return self._decode(self._checked(await client.post("/encode", json=self._body(batch, query))).json())

            parts = await asyncio.gather(*(one(b) for b in self._batches(texts)))
        return self._merge(list(parts))

    def close(self) -> None:
        self._client.close()


class SharedEncodings:
    """Frameworks call a dense embedder and then a sparse embedder on the same texts (langchain-qdrant's hybrid
    mode, LlamaIndex's enable_hybrid with other batch sizes, a Haystack dense -> sparse chain): each call here
    encodes dense AND sparse for the texts it lacks and keeps both per text (a bounded LRU), so the other call
    finds them and the model runs once."""

    def __init__(self, encoder: Encoder, size: int = 4096):
        self.encoder, self.size = encoder, size
        self._items: OrderedDict[tuple[str, bool], tuple[np.ndarray, tuple]] = OrderedDict()
        self.model_calls = 0  # encoder calls made: what the cache saves is visible

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _missing(self, texts: Sequence[str], query: bool) -> list[str]:
        from m3rt.runtime import check_texts

        return [t for t in dict.fromkeys(check_texts(texts, "texts")) if (t, query) not in self._items]

    def _keep(self, texts: list[str], query: bool, enc: Encodings) -> None:
        for i, t in enumerate(texts):
            self._items[(t, query)] = (enc.dense[i], enc.sparse[i])

    def _result(self, texts: Sequence[str], query: bool) -> Encodings:
        rows = [self._items[(t, query)] for t in texts]
        for t in texts:
            self._items.move_to_end((t, query))
        while len(self._items) > max(self.size, len(texts)):
            self._items.popitem(last=False)
        if not rows:
            return _empty(self.dim)
        return Encodings(np.stack([r[0] for r in rows]), [r[1] for r in rows])

    def get(self, texts: Sequence[str], *, query: bool) -> Encodings:
        missing = self._missing(texts, query)
        if missing:
            self.model_calls += 1
            self._keep(missing, query, self.encoder.encode(missing, query=query))
        return self._result(texts, query)

    async def aget(self, texts: Sequence[str], *, query: bool) -> Encodings:
        missing = self._missing(texts, query)
        if missing:
            self.model_calls += 1
            self._keep(missing, query, await self.encoder.aencode(missing, query=query))
        return self._result(texts, query)
