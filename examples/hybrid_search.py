"""Hybrid search with m3rt and Milvus Lite: index a small multilingual corpus (dense + sparse), search it with
RRF and with weighted fusion, and rerank the candidates by ColBERT MaxSim.

    pip install -e '.[milvus]'
    python examples/hybrid_search.py                       # the checked-in tiny TEST artifact (random weights:
                                                           # it runs, its rankings mean nothing)
    python examples/hybrid_search.py bge-m3-int8 --db corpus.db    # your artifact (m3rt export ...)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from m3rt import M3Runtime
from m3rt.integrations.milvus import HybridCollection

ROOT = Path(__file__).resolve().parents[1]
CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    "Der Eiffelturm ist ein Turm aus Schmiedeeisen auf dem Marsfeld in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in sugar.",
    "La fotosíntesis convierte la energía de la luz en energía química.",
    "光合作用是植物把光能转化为化学能的过程。",
    "The central bank raised interest rates and the stock market fell sharply.",
    "Der Aktienmarkt fiel nach der Zinsentscheidung der Zentralbank stark.",
    "Tokyo is the capital city of Japan and its largest metropolis.",
    "La cuisine française est célèbre pour ses fromages et ses vins.",
    "Python is a programming language that emphasises code readability.",
]
QUERIES = ["Wie hoch ist der Eiffelturm?", "how do plants turn light into energy", "capital of Japan"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", nargs="?", default=str(ROOT / "tests" / "data" / "tiny-artifact"))
    ap.add_argument("--db", help="the Milvus Lite file (default: a temporary one) or a Milvus server's URI")
    ap.add_argument("--collection", default="m3rt_example")
    args = ap.parse_args()
    db = args.db or str(Path(tempfile.mkdtemp(prefix="m3rt-milvus-")) / "example.db")

    with M3Runtime(args.artifact) as rt, HybridCollection.create(db, args.collection, rt, overwrite=True) as col:
        t = time.perf_counter()
        n = col.insert(iter(CORPUS))  # any iterable: streamed through iter_encode, upserted chunk by chunk
        print(f"indexed {n} texts into {db}:{args.collection} in {time.perf_counter() - t:.2f} s")
        for ranker in ("rrf", "weighted"):
            t = time.perf_counter()
            results = col.search(QUERIES, limit=3, candidates=8, ranker=ranker, weights=(0.6, 0.4))
            print(f"\n{ranker} fusion, then ColBERT MaxSim rerank ({(time.perf_counter() - t) * 1e3:.0f} ms "
                  f"for {len(QUERIES)} queries)")
            for query, hits in zip(QUERIES, results):
                print(f"  {query}")
                for h in hits:
                    print(f"    {h.id:3d}  colbert {h.colbert_score:.3f}  {ranker} {h.hybrid_score:.4f}  {h.text[:60]}")


if __name__ == "__main__":
    main()
