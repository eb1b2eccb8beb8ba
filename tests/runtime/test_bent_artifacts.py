"""Artifacts that cannot be bent: a manifest re-hashed over lies about the graph is caught at load and by
`m3rt verify` (one line naming both values), and fetching an artifact over HTTP reads only its own files, no
more bytes than its manifest says."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from m3rt import ArtifactError, M3Runtime
from m3rt.artifact import fetch_artifact, write_manifest


def bend(root: Path, **changes) -> None:
    """Edit the manifest and re-hash it, as someone who means it would."""
    data = json.loads((root / "manifest.json").read_text())
    for key, value in changes.items():
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    write_manifest(root, {k: v for k, v in data.items() if k not in ("files", "sizes")})


def verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3rt.cli", "verify", str(root)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("key, value, message", [
    ("dims.colbert", 7, r"dims.colbert is 7 but the graph's ColBERT vectors are 64 wide"),
    ("dims.hidden", 1024, r"dims.hidden is 1024 but the graph's embeddings are 64 wide"),
    ("dims.vocab", 250002, r"dims.vocab is 250002 but the graph's word embeddings have 560 rows"),
    ("max_length", 1_000_000_000, r"max_length is 1000000000 but the graph's 8194 position embeddings hold 8192"),
    ("max_length", 8193, r"max_length is 8193 but the graph's 8194 position embeddings hold 8192 tokens"),
])
def test_manifest_dims_and_limits_are_checked_against_the_graph(artifact_copy, key, value, message):
    bend(artifact_copy, **{key: value})
    with pytest.raises(ArtifactError, match=message):
        M3Runtime(artifact_copy)
    res = verify(artifact_copy)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert [line for line in res.stderr.splitlines() if line.startswith("m3rt: error")] and \
        "m3rt: error:" in res.stderr and value.__str__() in res.stderr


def test_a_tokenizer_larger_than_the_graphs_vocabulary_is_refused(artifact_copy):
    bend(artifact_copy, **{"dims.vocab": 560})  # as exported: passes
    M3Runtime(artifact_copy).close()
    tok = json.loads((artifact_copy / "tokenizer.json").read_text())
    tok["added_tokens"] = tok.get("added_tokens", []) + [
        {"id": 560 + i, "content": f"<extra{i}>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for i in range(3)]
    (artifact_copy / "tokenizer.json").write_text(json.dumps(tok))
    bend(artifact_copy)
    with pytest.raises(ArtifactError, match=r"tokenizer.json: 563 tokens, more than the graph's 560 embedding rows"):
        M3Runtime(artifact_copy)


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    (" " * (17 << 20), "bytes, not a manifest"),
])
def test_a_hostile_manifest_is_one_error(artifact_copy, content, message):
    (artifact_copy / "manifest.json").write_text(content)
    with pytest.raises(ArtifactError, match=message):
        M3Runtime(artifact_copy)


def test_verify_passes_an_intact_artifact(artifact_copy):
    res = verify(artifact_copy)
    assert res.returncode == 0 and "the graph agrees with it" in res.stdout, res.stderr


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on loopback: (its path, its URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **kw: _Quiet(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_reads_only_the_artifacts_own_files(served, tiny_artifact, tmp_path):
    root, url = served
    art = Path(shutil.copytree(tiny_artifact, root / "art"))
    (root / "secret.txt").write_text("outside the artifact")
    data = json.loads((art / "manifest.json").read_text())
    data["files"]["%2e%2e/secret.txt"] = "0" * 64  # URL syntax in a file name: must stay a name
    (art / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"%252e%252e/secret.txt: cannot be fetched \(HTTP Error 404"):
        fetch_artifact(f"{url}/art", cache=tmp_path / "cache")
    assert fetch_artifact(f"{url}/{Path(shutil.copytree(tiny_artifact, root / 'ok')).name}",
                          cache=tmp_path / "cache").joinpath("manifest.json").is_file()


def test_fetch_stops_at_the_size_the_manifest_gives(served, tiny_artifact, tmp_path):
    root, url = served
    art = Path(shutil.copytree(tiny_artifact, root / "art"))
    bend(art)  # records sizes
    data = json.loads((art / "manifest.json").read_text())
    (art / "tokenizer_config.json").write_bytes(b"x" * 5_000_000)  # the server now sends far more than listed
    (art / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"tokenizer_config.json: more than the \d+ bytes manifest.json allows"):
        fetch_artifact(f"{url}/art", cache=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "fetched").glob("*/tokenizer_config.json"))
