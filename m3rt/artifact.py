"""The artifact directory: file names, the manifest, and checksum verification.

Shared by the exporter (which writes it) and the runtime (which checks it before loading anything),
so both agree on one format. Only the standard library and numpy-free code here: the runtime imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3rt.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH = "model.onnx"
# All weights in ONE external file when the graph is over protobuf's 2 GB limit.
EXTERNAL_DATA = "model.onnx.data"
# int8-static artifacts hold an OpenVINO model instead (calibrated by NNCF): its graph and its weights.
IR_GRAPH = "model.xml"
IR_WEIGHTS = "model.bin"
TOKENIZER = "tokenizer.json"
# int8 artifacts: a probe batch (ids, mask) and the fp32 graph's outputs on it, so that a machine of another CPU
# class can check at load that int8 still meets its thresholds there (runtime/cpu_check.py).
PROBE = "probe.npz"
# A TensorRT engine built into an artifact by `m3rt build-engine`: the plan, what it was built for (TensorRT
# version, GPU, limits, profiles), and the timing cache reused by the next build.
ENGINE = "model.plan"
ENGINE_INFO = "engine.json"
TIMING_CACHE = "timing.cache"
# Folders inside an artifact that hold caches rebuilt on demand (onnxruntime-TensorRT's engines), not listed.
CACHE_DIRS = ("trt-cache",)

# fp32: the traced graph. int8: its backbone matrix products quantised for the CPU by onnxruntime, the
# activations at run time (export/quantize.py). int8-static: quantised with activation ranges calibrated on text
# (NNCF; an OpenVINO model, export/static_int8.py). bf16: the fp32 graph, computed in bf16 by OpenVINO where the
# CPU has bf16. fp16: its backbone in half precision for GPUs (export/half.py). All but fp32 are checked against
# the fp32 graph (runtime/fidelity.py), as the runtime runs them.
PRECISIONS = ("fp32", "int8", "int8-static", "bf16", "fp16")
# Precisions whose numbers depend on the CPU class they run on: re-checked at load on another class.
CPU_DEPENDENT = ("int8", "int8-static", "bf16")
# Precisions that need the standard attention spelling (OpenVINO runs them).
NEEDS_STANDARD_ATTENTION = ("int8-static", "bf16")

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("dense_vecs", "sparse_weights", "colbert_vecs")

ATTENTION_KINDS = ("fused", "standard")

REQUIRED_KEYS = (
    "format_version", "source", "model_type", "precision", "opset", "graph", "dims",
    "special_ids", "sparse_skip_ids", "max_length", "tokenizer", "versions", "validation", "files",
)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Dims:
    hidden: int
    colbert: int
    vocab: int | None = None
    layers: int | None = None
    heads: int | None = None


def new_manifest(*, source: str, model_type: str, precision: str, opset: int, attention: str, external: bool,
                 dims: Dims, special_ids: dict[str, int], sparse_skip_ids: list[int], max_length: int,
                 clean_up_tokenization_spaces: bool, versions: dict[str, str], export_cpu: dict | None,
                 validation: dict) -> dict[str, Any]:
    """The manifest of a new artifact (the exporter's only way to write one): file names and fixed fields
    from this module, the rest from the arguments. write_manifest adds the checksums."""
    from datetime import datetime, timezone

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention {attention!r} is not one of {ATTENTION_KINDS}")
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "model_type": model_type,
        "precision": precision,
        "opset": opset,
        "attention": attention,
        "graph": IR_GRAPH if precision == "int8-static" else GRAPH,
        "external_data": IR_WEIGHTS if precision == "int8-static" else EXTERNAL_DATA if external else None,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "dims": dict(dims.__dict__),
        "special_ids": dict(special_ids),
        "sparse_skip_ids": list(sparse_skip_ids),
        "max_length": max_length,
        "tokenizer": {"file": TOKENIZER, "clean_up_tokenization_spaces": bool(clean_up_tokenization_spaces)},
        "versions": dict(versions),
        # The CPU class the fidelity checks ran on: int8 can give other numbers on another class.
        "export_cpu": export_cpu,
        "validation": validation,
    }


def with_tensorrt_engine(manifest: "Manifest", info: dict) -> dict[str, Any]:
    """The manifest data of `manifest` with a built TensorRT engine (ENGINE, ENGINE_INFO) recorded."""
    data = {k: v for k, v in manifest.data.items() if k != "files"}
    data["tensorrt"] = {"engine": ENGINE, "info": ENGINE_INFO, "version": info["tensorrt"], "gpu": info["gpu"]}
    return data


@dataclass(frozen=True)
class Manifest:
    """What the runtime needs to know about an artifact, read from manifest.json."""

    root: Path
    data: dict[str, Any]
    # (size, mtime_ns, inode) of every listed file when it was read: a file replaced or rewritten under a
    # live runtime (the weights are memory-mapped) is caught by `changed_files` before it is used again.
    stamps: dict[str, tuple[int, int, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def graph_files(self) -> list[str]:
        """The files onnxruntime reads (memory-maps) while running: the graph and its external data."""
        return [n for n in (self.data["graph"], self.data.get("external_data")) if n]

    def changed_files(self, names=None) -> list[str]:
        """Listed files (all, or `names`) whose size, mtime, ctime or inode differ from when the manifest was
        read."""
        changed = []
        for name in self.stamps if names is None else names:
            try:
                now = _stamp(os.path.join(self.root, name))
            except OSError:
                now = None
            if now != self.stamps.get(name):
                changed.append(name)
        return changed

    @property
    def source(self) -> str:
        """What was exported: a model directory or a hub id, as given to `m3rt export`."""
        return str(self.data["source"])

    @property
    def model_type(self) -> str:
        return str(self.data["model_type"])

    @property
    def opset(self) -> int:
        return int(self.data["opset"])

    @property
    def graph(self) -> str:
        return str(self.data["graph"])

    @property
    def external_data(self) -> str | None:
        return self.data.get("external_data")

    @property
    def graph_format(self) -> str:
        """"onnx", or "openvino" (an OpenVINO model: int8-static)."""
        return "openvino" if self.graph.endswith(".xml") else "onnx"

    @property
    def graph_sha256(self) -> str:
        """The graph's checksum: what the numbers an artifact gives depend on."""
        return str(self.data["files"][self.data["graph"]])

    @property
    def special_ids(self) -> dict[str, int]:
        """Special tokens by role (cls, eos, pad, unk, ...) -> id."""
        return {str(k): int(v) for k, v in self.data["special_ids"].items()}

    @property
    def validation(self) -> dict:
        """The export's validation report (against PyTorch; int8 / fp16 fidelity against fp32)."""
        return dict(self.data["validation"])

    @property
    def export_cpu(self) -> dict | None:
        cpu = self.data.get("export_cpu")
        return dict(cpu) if isinstance(cpu, dict) else None

    @property
    def created(self) -> str | None:
        return self.data.get("created")

    @property
    def versions(self) -> dict[str, str]:
        return dict(self.data["versions"])

    @property
    def graph_path(self) -> Path:
        return self.root / self.data["graph"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.data["tokenizer"]["file"]

    @property
    def hidden_size(self) -> int:
        return int(self.data["dims"]["hidden"])

    @property
    def max_length(self) -> int:
        return int(self.data["max_length"])

    @property
    def pad_id(self) -> int:
        return int(self.data["special_ids"]["pad"])

    @property
    def sparse_skip_ids(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.data["sparse_skip_ids"])

    @property
    def precision(self) -> str:
        return str(self.data["precision"])

    @property
    def probe_path(self) -> Path | None:
        return self.root / PROBE if PROBE in self.data["files"] else None

    @property
    def fidelity_enforced(self) -> bool:
        """Whether the export held this graph to its fidelity thresholds (not for random-weight TEST models)."""
        return bool(self.data.get("validation", {}).get(self.precision, {}).get("enforced", True))

    @property
    def export_cpu_class(self) -> str | None:
        return (self.export_cpu or {}).get("class")

    @property
    def attention(self) -> str:
        return str(self.data.get("attention", "fused"))

    @property
    def dims(self) -> Dims:
        d = self.data["dims"]
        return Dims(**{k: d.get(k) for k in ("hidden", "colbert", "vocab", "layers", "heads")})

    @property
    def clean_up_tokenization_spaces(self) -> bool:
        return bool(self.data["tokenizer"].get("clean_up_tokenization_spaces", False))

    @property
    def files(self) -> dict[str, str]:
        return dict(self.data["files"])


def write_manifest(root: Path, data: dict[str, Any]) -> Path:
    """Hash every file in `root` (but the manifest) into data["files"] and write manifest.json."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    data = dict(data)
    data["files"] = {p.relative_to(root).as_posix(): sha256_file(p) for p in files}
    # Sizes: a download stops at them (fetch_artifact), and a truncated file is caught without hashing it.
    data["sizes"] = {p.relative_to(root).as_posix(): p.stat().st_size for p in files}
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"manifest is missing keys {missing}")
    path = root / MANIFEST
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


VERIFY_MODES = ("always", "once", "off")


def read_manifest(root: str | Path, verify: bool | str = True) -> Manifest:
    """Read and check an artifact directory; every failure names the file at fault.

    verify: "always" (or True) hashes every file; "once" skips the files a record of an earlier full
    verification on this machine vouches for (same size, mtime, ctime, inode; see VerifiedRecord);
    "off" (or False) checks only that the listed files exist."""
    mode = {True: "always", False: "off"}.get(verify, verify) if isinstance(verify, bool) else verify
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)} (or a bool), got {verify!r}")
    root = Path(root)
    if not root.is_dir():
        hint = (f"; to export a hub model and load it, use M3Runtime.from_pretrained({str(root)!r})"
                if "/" in str(root) and not root.exists() and not str(root).startswith((".", "/", "~")) else "")
        raise ArtifactError(f"artifact directory not found: {root}{hint}")
    path = root / MANIFEST
    if not path.is_file():
        if (root / "config.json").is_file():
            raise ArtifactError(f"{root}: a model directory, not an m3rt artifact; export it with `m3rt export "
                                f"{root} --out ARTIFACT`, or load it with M3Runtime.from_pretrained({str(root)!r})")
        raise ArtifactError(f"{path}: missing (not an m3rt artifact? create one with `m3rt export`)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: {path.stat().st_size} bytes, not a manifest (at most {MAX_MANIFEST_BYTES})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: corrupt manifest, not valid JSON ({e})") from None
    except RecursionError:
        raise ArtifactError(f"{path}: corrupt manifest, JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: corrupt manifest, expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ArtifactError(f"{path}: bad manifest, missing keys {missing}")
    if data["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {data['format_version']!r} is not supported by this m3rt "
            f"(expects {FORMAT_VERSION}); re-export the model with `m3rt export`"
        )
    problem = _structure_problem(data)
    if problem:
        raise ArtifactError(f"{path}: bad manifest, {problem}")
    files = data["files"]
    _check_contents(root, files)
    record = VerifiedRecord(root, path) if mode == "once" else None
    stamps = {}
    for name, expected in files.items():
        file = root / name
        if not file.is_file():
            raise ArtifactError(f"{file}: missing (listed in {MANIFEST})")
        stamps[name] = _stamp(file)
        if mode != "off" and name in data.get("sizes", {}) and stamps[name][0] != data["sizes"][name]:
            raise ArtifactError(f"{file}: {stamps[name][0]} bytes, {MANIFEST} says {data['sizes'][name]} (cut short "
                                "or modified)")
        if mode == "off" or (record is not None and record.vouches(name, expected, stamps[name])):
            continue
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: sha256 mismatch with {MANIFEST} (file corrupt or modified)")
        if record is not None:
            record.add(name, expected, stamps[name])
    if record is not None:
        record.save()
    _check_graph(root, data)  # once every file is there and (unless verify="off") matches its checksum
    return Manifest(root=root, data=data, stamps=stamps)


def _stamp(path: Path) -> tuple[int, ...]:
    """What changes when a file's bytes can have changed: size, mtime, ctime (which no utime can set back),
    inode and device."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def cache_dir() -> Path:
    """m3rt's per-user cache: $M3RT_CACHE_DIR, else $XDG_CACHE_HOME/m3rt, else ~/.cache/m3rt."""
    if os.environ.get("M3RT_CACHE_DIR"):
        return Path(os.environ["M3RT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3rt"


class VerifiedRecord:
    """Which files of one artifact were hashed in full on this machine, and their stamps then, so that a
    later load hashes only what changed since (hashing was most of a cold start: bench/results/design-notes.md). Kept in
    cache_dir()/verified/, keyed by the artifact's path and manifest digest.
    A file modified within RACY_SECONDS of its check is never vouched for: a write in the same clock tick
    would leave its stamp unchanged (git's "racily clean" rule)."""

    RACY_SECONDS = 2.0

    def __init__(self, root: Path, manifest_path: Path):
        digest = hashlib.sha256(f"{root.resolve()}\0{sha256_file(manifest_path)}".encode()).hexdigest()
        self.path = cache_dir() / "verified" / f"{digest[:32]}.json"
        try:
            self.entries = json.loads(self.path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def vouches(self, name: str, digest: str, stamp: tuple[int, ...]) -> bool:
        return self.entries.get(name) == [digest, *stamp]

    def add(self, name: str, digest: str, stamp: tuple[int, ...]) -> None:
        import time

        newest = max(stamp[1], stamp[2]) / 1e9
        if time.time() - newest > self.RACY_SECONDS:
            self.entries[name] = [digest, *stamp]
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:  # a cache: a read-only home only costs the next load its hashing
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError:
            pass


def _check_contents(root: Path, files: dict[str, str]) -> None:
    """Regular files only, each listed: a symbolic link could point the runtime (and the checksum) at a file
    outside the artifact, and an unlisted file (say a model.onnx.data the graph reads) would go unverified."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise ArtifactError(f"{path}: a symbolic link inside the artifact; artifacts hold regular files only")
            if name in dirnames:
                continue
            if rel != MANIFEST and rel not in files and rel.split("/")[0] not in CACHE_DIRS:
                raise ArtifactError(f"{path}: not listed in {MANIFEST}; an artifact holds only the files its manifest "
                                    "lists (remove it, or re-export)")
        dirnames[:] = [d for d in dirnames if here != root or d not in CACHE_DIRS]


def _check_graph(root: Path, data: dict[str, Any]) -> None:
    """What the graph file itself says, against the manifest: its external data stays inside the artifact (a
    location that leaves it would run weights nobody hashed, whatever the onnxruntime version), its embedding
    tables have the manifest's vocabulary and width, and its positions cover max_length. One line naming both
    values where they differ."""
    from m3rt.onnx_file import NotOnnx, read_graph_facts

    graph = root / data["graph"]
    if graph.suffix == ".xml":
        # An OpenVINO model reads its weights from the .bin of its own name, by offset: no path to check; the
        # engine's two-token call at load checks the widths.
        weights = graph.with_suffix(".bin").name
        if data.get("external_data") != weights or weights not in data["files"]:
            raise ArtifactError(f"{graph}: an OpenVINO model needs its weights {weights} listed in {MANIFEST}")
        return
    try:
        facts = read_graph_facts(graph)
    except (NotOnnx, OSError, IndexError, UnicodeError) as e:
        raise ArtifactError(f"{graph}: not a readable ONNX graph ({e})") from None
    inside = root.resolve()
    for location in facts.external_locations:
        target = (root / location).resolve() if location else None
        if (not location or Path(location).is_absolute() or ".." in Path(location).parts or target is None
                or inside not in target.parents or Path(location).as_posix() not in data["files"]):
            raise ArtifactError(f"{graph}: external data location {location!r} is not a file of the artifact listed "
                                f"in {MANIFEST}; refusing to read weights from outside it")
    dims, where = data["dims"], f"{root / MANIFEST}"
    word = facts.word_embeddings
    if word is not None:
        rows, width = word
        if dims.get("vocab") is not None and dims["vocab"] != rows:
            raise ArtifactError(f"{where}: dims.vocab is {dims['vocab']} but the graph's word embeddings have {rows} rows")
        if dims["hidden"] != width:
            raise ArtifactError(f"{where}: dims.hidden is {dims['hidden']} but the graph's embeddings are {width} wide")
    positions = facts.position_rows
    if positions is not None:
        # RoBERTa's positions start after the pad id: N position rows hold N - pad - 1 tokens.
        roberta = data["model_type"] in ("xlm-roberta", "roberta")
        usable = positions - int(data["special_ids"]["pad"]) - 1 if roberta else positions
        if data["max_length"] > usable:
            raise ArtifactError(f"{where}: max_length is {data['max_length']} but the graph's {positions} position "
                                f"embeddings hold {usable} tokens")


def _structure_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the manifest's shape, or None: the runtime indexes these without further checks."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(data["graph"], str):
        return "'graph' must be a file name"
    if not isinstance(data["tokenizer"], dict) or not isinstance(data["tokenizer"].get("file"), str):
        return "'tokenizer' must be an object with a 'file' name"
    dims = data["dims"]
    if not isinstance(dims, dict) or not all(is_int(dims.get(k)) for k in ("hidden", "colbert")):
        return "'dims' must give integer 'hidden' and 'colbert'"
    if not isinstance(data["special_ids"], dict) or not is_int(data["special_ids"].get("pad")):
        return "'special_ids' must give an integer 'pad'"
    if not isinstance(data["sparse_skip_ids"], list) or not all(is_int(i) for i in data["sparse_skip_ids"]):
        return "'sparse_skip_ids' must be a list of integers"
    ids = [*data["sparse_skip_ids"], *(v for v in data["special_ids"].values())]
    if not all(is_int(i) and 0 <= i < 1 << 31 for i in ids):
        return "'special_ids' and 'sparse_skip_ids' must be token ids (integers from 0 below 2**31)"
    if not is_int(data["max_length"]) or data["max_length"] < 2:
        return "'max_length' must be an integer >= 2"
    files = data["files"]
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return "'files' must map file names to sha256 digests"
    if data["graph"] not in files or data["tokenizer"]["file"] not in files:
        return "'files' must list the graph and the tokenizer"
    if any(Path(name).is_absolute() or ".." in Path(name).parts for name in files):
        return "'files' may only name files inside the artifact"
    sizes = data.get("sizes", {})
    if not isinstance(sizes, dict) or not all(is_int(v) and v >= 0 for v in sizes.values()) or set(sizes) - set(files):
        return "'sizes' must map listed files to their sizes in bytes"
    for key in ("source", "model_type", "precision"):
        if not isinstance(data[key], str):
            return f"{key!r} must be a string"
    if not is_int(data["opset"]):
        return "'opset' must be an integer"
    if not isinstance(data["versions"], dict):
        return "'versions' must be an object"
    validation = data["validation"]
    if not isinstance(validation, dict) or not isinstance(validation.get("outputs", {}), dict):
        return "'validation' must be an object"
    return None


def is_url(artifact) -> bool:
    return isinstance(artifact, str) and artifact.startswith(("http://", "https://"))


def resolve_artifact(artifact: str | Path) -> Path:
    """An artifact given as a local path (a shared filesystem's, on a cluster) as is; an http(s) URL fetched
    once into this machine's cache (fetch_artifact)."""
    return fetch_artifact(artifact) if is_url(artifact) else Path(artifact)


# A file fetched from a manifest without sizes (written before they were recorded) stops here.
MAX_FETCH_BYTES = 32 << 30
MAX_MANIFEST_BYTES = 16 << 20


# A download slower than this on average, once `timeout` seconds have passed, is given up: a server that sends a
# byte a second would otherwise hold the job for ever (each read returns within the socket timeout).
MIN_FETCH_BYTES_PER_S = 64 << 10


def _copy_at_most(src, dst, limit: int, timeout: float = 60.0, url: str = "") -> int:
    """Copy until EOF or just past `limit` bytes; the bytes read (limit + 1 when there was more)."""
    import time

    done, started = 0, time.monotonic()
    while done <= limit:
        block = src.read(min(1 << 20, limit + 1 - done))
        if not block:
            break
        dst.write(block)
        done += len(block)
        elapsed = time.monotonic() - started
        if elapsed > timeout and done / elapsed < MIN_FETCH_BYTES_PER_S:
            raise ArtifactError(f"{url}: {done} bytes in {elapsed:.0f} s, slower than {MIN_FETCH_BYTES_PER_S >> 10} "
                                "KiB/s: given up")
    return done


def fetch_artifact(url: str, cache: str | Path | None = None, timeout: float = 60.0) -> Path:
    """An artifact served over HTTP(S) as a directory (URL/manifest.json, URL/<each file it lists>), fetched once
    into <cache>/fetched/<manifest digest> and verified against the manifest's checksums; later calls (other
    processes on the node included) find it there. A partial download never takes the final name."""
    import shutil
    import tempfile
    import urllib.parse
    import urllib.request

    base = url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/{MANIFEST}", timeout=timeout) as r:
            raw = r.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise ArtifactError(f"{base}/{MANIFEST}: cannot be fetched ({e})") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{base}/{MANIFEST}: over {MAX_MANIFEST_BYTES} bytes, not a manifest")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ArtifactError(f"{base}/{MANIFEST}: not JSON") from None
    missing = [k for k in REQUIRED_KEYS if k not in data] if isinstance(data, dict) else []
    if not isinstance(data, dict):
        problem = "not a JSON object"
    else:
        problem = f"missing keys {missing}" if missing else _structure_problem(data)
    if problem:
        raise ArtifactError(f"{base}/{MANIFEST}: {problem}")
    root = Path(cache) if cache is not None else cache_dir()
    final = root / "fetched" / hashlib.sha256(raw).hexdigest()[:24]
    if (final / MANIFEST).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetching-", dir=final.parent))
    sizes = data.get("sizes", {})
    try:
        for name, digest in data["files"].items():
            target = staging / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise ArtifactError(f"{base}/{MANIFEST}: file name {name!r} leaves the artifact")
            target.parent.mkdir(parents=True, exist_ok=True)
            url = f"{base}/{urllib.parse.quote(name)}"  # a name is a path in the artifact, never URL syntax
            limit = sizes.get(name, MAX_FETCH_BYTES)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r, open(target, "wb") as f:
                    got = _copy_at_most(r, f, limit, timeout, url)
            except OSError as e:
                raise ArtifactError(f"{url}: cannot be fetched ({e})") from None
            if got > limit:
                raise ArtifactError(f"{url}: more than the {limit} bytes {MANIFEST} allows; stopped")
            if sha256_file(target) != digest:
                raise ArtifactError(f"{url}: sha256 mismatch with {MANIFEST} (changed or cut short)")
        (staging / MANIFEST).write_bytes(raw)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / MANIFEST).is_file():  # not another process's finished copy: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
