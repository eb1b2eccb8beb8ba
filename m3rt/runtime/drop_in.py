"""BGEM3FlagModel's constructor arguments that are not RuntimeConfig fields: what each means on an m3rt
artifact, so that `M3Runtime(path, use_fp16=True, devices="cuda:0", ...)` — the first line of most
FlagEmbedding code — works, and what cannot hold says so instead of being ignored.

- use_fp16 / use_bf16: upstream computes in half precision on GPUs and falls back to fp32 on the CPU. Here the
  artifact's precision decides: on a GPU backend True requires an fp16 artifact; on the CPU it is ignored
  (logged at debug level), as upstream ignores it there.
- devices: None: backend "auto"; "cpu": the CPU backend; "cuda", "cuda:N" or N: a GPU backend on device N;
  a list of one of these as that one; several devices: an error (one runtime per device).
- normalize_embeddings: True is what the artifact's graph computes; False is an error (the graph outputs
  unit vectors only).
- pooling_method: "cls" (bge-m3's); another is an error.
- colbert_dim: -1 or the artifact's ColBERT width; another is an error.
- truncate_dim: a RuntimeConfig field (dense and ColBERT vectors cut to it and re-normalised, as upstream).
- trust_remote_code, cache_dir, convert_to_numpy (True), and any other keyword upstream forwards to
  transformers: accepted and ignored, since an artifact holds no code and no hub files (cache_dir is used by
  M3Runtime.from_pretrained).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("m3rt.runtime")

UPSTREAM_ONLY = ("use_fp16", "use_bf16", "devices", "normalize_embeddings", "pooling_method", "colbert_dim",
                 "trust_remote_code", "cache_dir", "convert_to_numpy")


@dataclass(frozen=True)
class DropIn:
    half: bool | None = None  # use_fp16 or use_bf16 as given; None: not given
    normalize: bool = True
    pooling: str = "cls"
    colbert_dim: int = -1


def split(options: dict) -> tuple[dict, DropIn]:
    """(options for RuntimeConfig, the upstream-only ones); `devices` becomes backend / device_id."""
    from m3rt.runtime.backends import is_gpu_backend

    options = dict(options)
    upstream = {k: options.pop(k) for k in list(options) if k in UPSTREAM_ONLY}
    if "devices" in upstream and upstream["devices"] is not None:
        backend, device_id = _devices(upstream["devices"])
        given = options.get("backend")
        if given not in (None, "auto") and (backend == "cpu") != (not is_gpu_backend(given)):
            raise ValueError(f"devices={upstream['devices']!r} and backend={given!r} disagree")
        if given in (None, "auto"):
            options["backend"] = backend
        if device_id is not None:
            options["device_id"] = device_id
    if upstream.get("convert_to_numpy") is False:
        raise ValueError("convert_to_numpy=False: m3rt returns numpy arrays only (no torch tensors)")
    half = None
    if upstream.get("use_fp16") is not None or upstream.get("use_bf16") is not None:
        half = bool(upstream.get("use_fp16")) or bool(upstream.get("use_bf16"))
    return options, DropIn(half=half, normalize=upstream.get("normalize_embeddings", True) is not False,
                           pooling=upstream.get("pooling_method", "cls") or "cls",
                           colbert_dim=-1 if upstream.get("colbert_dim") is None else upstream["colbert_dim"])


def check(drop_in: DropIn, manifest, engine) -> None:
    """After the engine is chosen: refuse what this artifact cannot give, log what is ignored."""
    if not drop_in.normalize:
        raise ValueError("normalize_embeddings=False: this artifact's graph outputs L2-normalised dense and "
                         "ColBERT vectors only (as bge-m3 is used); m3rt cannot return unnormalised ones")
    if drop_in.pooling != "cls":
        raise ValueError(f"pooling_method={drop_in.pooling!r}: bge-m3 pools the CLS token, and the artifact's graph "
                         "computes that; no other pooling is available")
    if drop_in.colbert_dim not in (-1, manifest.dims.colbert):
        raise ValueError(f"colbert_dim={drop_in.colbert_dim}: the artifact's ColBERT head has "
                         f"{manifest.dims.colbert} dimensions (use truncate_dim to cut vectors)")
    if drop_in.half is None:
        return
    if not engine.on_gpu:
        log.debug("use_fp16 / use_bf16 ignored on the CPU (as upstream); the %s artifact runs as exported",
                  manifest.precision)
    elif drop_in.half and manifest.precision != "fp16":
        raise ValueError(f"use_fp16=True on the GPU backend {engine.name} needs an artifact exported with "
                         f"--precision fp16; this one is {manifest.precision}")


def _devices(devices) -> tuple[str, int | None]:
    if isinstance(devices, (list, tuple)):
        if len(devices) != 1:
            raise ValueError(f"devices={devices!r}: an M3Runtime runs on one device; create one per device "
                             "(or serve replicas, one per device)")
        devices = devices[0]
    if isinstance(devices, bool):
        raise ValueError(f"devices={devices!r} is not a device")
    if isinstance(devices, int):
        return "auto-gpu", devices
    text = str(devices).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "auto-gpu", 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return "auto-gpu", int(text[5:])
    raise ValueError(f"devices={devices!r}: expected 'cpu', 'cuda', 'cuda:N' or a device number")
