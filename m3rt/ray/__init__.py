"""m3rt on Ray (the `ray` extra), its public face: corpus embedding on Ray Data (`embed_dataset`, the runner of
m3rt/corpus/ray_data.py) and `m3rt serve` replicated on Ray Serve (`deploy`, m3rt/serve/ray_serve.py). Ray is
imported by those modules only, when called."""

from m3rt.corpus.ray_data import embed_dataset
from m3rt.serve.ray_serve import deploy

__all__ = ["embed_dataset", "deploy"]
