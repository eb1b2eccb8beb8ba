"""A missing or corrupt artifact is an error naming the file at fault."""

from __future__ import annotations

import json

import pytest

from m3rt import ArtifactError, M3Runtime


def test_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="artifact directory not found"):
        M3Runtime(tmp_path / "nowhere")


def test_missing_manifest(artifact_copy):
    (artifact_copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json: missing"):
        M3Runtime(artifact_copy)


@pytest.mark.parametrize("content, message", [
    ("{not json", "corrupt manifest"),
    ("[1, 2]", "expected a JSON object"),
    ('{"format_version": 1}', "missing keys"),
])
def test_bad_manifest(artifact_copy, content, message):
    (artifact_copy / "manifest.json").write_text(content)
    with pytest.raises(ArtifactError, match=message) as info:
        M3Runtime(artifact_copy)
    assert "manifest.json" in str(info.value)


@pytest.mark.parametrize("key, value, message", [
    ("tokenizer", "tokenizer.json", "'tokenizer' must be an object"),
    ("dims", {"hidden": "64"}, "'dims' must give integer"),
    ("special_ids", {}, "'special_ids' must give an integer 'pad'"),
    ("max_length", 1, "'max_length' must be an integer >= 2"),
    ("files", {"model.onnx": "x"}, "must list the graph and the tokenizer"),
    ("files", {"model.onnx": "x", "tokenizer.json": "y", "../etc/passwd": "z"}, "only name files inside"),
])
def test_malformed_manifest_fields(artifact_copy, key, value, message):
    path = artifact_copy / "manifest.json"
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=message):
        M3Runtime(artifact_copy)


def test_unsupported_format_version(artifact_copy):
    path = artifact_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="format_version 99"):
        M3Runtime(artifact_copy)


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json"])
def test_absent_file(artifact_copy, name):
    (artifact_copy / name).unlink()
    with pytest.raises(ArtifactError, match=f"{name}: missing"):
        M3Runtime(artifact_copy)


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json", "tokenizer_config.json"])
def test_checksum_mismatch(artifact_copy, name):
    path = artifact_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{name}: sha256 mismatch"):
        M3Runtime(artifact_copy)
    try:  # opting out skips the hash; a damaged file then loads, or fails naming itself
        M3Runtime(artifact_copy, verify_checksums=False)
    except ArtifactError as e:
        assert name in str(e)


def test_unreadable_graph_and_tokenizer_name_the_file(artifact_copy):
    graph = (artifact_copy / "model.onnx").read_bytes()
    (artifact_copy / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ArtifactError, match="model.onnx: not a readable ONNX graph"):
        M3Runtime(artifact_copy, verify_checksums=False)
    (artifact_copy / "model.onnx").write_bytes(graph[:len(graph) // 2])  # cut short: the protobuf ends mid-field
    with pytest.raises(ArtifactError, match="model.onnx: not a readable ONNX graph"):
        M3Runtime(artifact_copy, verify_checksums=False)
    (artifact_copy / "model.onnx").write_bytes(graph)
    (artifact_copy / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match="tokenizer.json: cannot be loaded as a tokenizer"):
        M3Runtime(artifact_copy, verify_checksums=False)


def test_symlink_inside_the_artifact_is_refused(artifact_copy, tmp_path):
    """A link could make the runtime read, and the checksum probe, a file outside the artifact."""
    outside = tmp_path / "outside.json"
    (artifact_copy / "tokenizer.json").rename(outside)
    (artifact_copy / "tokenizer.json").symlink_to(outside)
    with pytest.raises(ArtifactError, match="tokenizer.json: a symbolic link inside the artifact"):
        M3Runtime(artifact_copy)


def test_unlisted_file_is_refused(artifact_copy):
    """An unlisted model.onnx.data would be read by the graph without ever being verified."""
    (artifact_copy / "model.onnx.data").write_bytes(b"\0" * 64)
    with pytest.raises(ArtifactError, match="model.onnx.data: not listed in manifest.json"):
        M3Runtime(artifact_copy)
    (artifact_copy / "model.onnx.data").unlink()
    (artifact_copy / "trt-cache").mkdir()  # onnxruntime-TensorRT's engine cache: rebuilt on demand, not listed
    (artifact_copy / "trt-cache" / "engine.bin").write_bytes(b"x")
    M3Runtime(artifact_copy)


def test_file_changed_under_a_live_runtime_is_caught(artifact_copy):
    rt = M3Runtime(artifact_copy)
    rt.encode("before")
    graph = artifact_copy / "model.onnx"
    graph.write_bytes(graph.read_bytes())  # rewritten in place, as `cp` does: same bytes, new mtime
    import os

    st = graph.stat()
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(ArtifactError, match="model.onnx changed on disk since this runtime loaded it"):
        rt.encode("after")
    M3Runtime(artifact_copy).encode("after")  # loading again is the way out


@pytest.mark.parametrize("key, value", [("source", None), ("versions", None), ("validation", None),
                                        ("opset", "17"), ("precision", None)])
def test_null_manifest_fields_are_one_clear_error(artifact_copy, key, value, capsys):
    from m3rt.cli import main

    path = artifact_copy / "manifest.json"
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"bad manifest, '{key}' must be"):
        M3Runtime(artifact_copy)
    assert main(["info", str(artifact_copy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("m3rt: error: ") and err.count("\n") == 1


def test_info_tolerates_null_report_values(artifact_copy, capsys):
    from m3rt.cli import main

    path = artifact_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["validation"]["outputs"]["dense_vecs"]["max_abs_err"] = None
    data["export_cpu"] = None
    data["dims"]["vocab"] = None
    path.write_text(json.dumps(data))
    assert main(["info", str(artifact_copy), "--no-verify"]) == 0
    assert "dense_vecs: max abs err ?" in capsys.readouterr().out


def test_verify_rehashes_on_demand(artifact_copy, capsys):
    from m3rt.cli import main

    assert main(["verify", str(artifact_copy)]) == 0
    assert "files match" in capsys.readouterr().out
    tok = artifact_copy / "tokenizer.json"
    tok.write_text(tok.read_text().replace("<unk>", "<UNK>", 1))
    assert main(["verify", str(artifact_copy)]) == 1
    assert "tokenizer.json: sha256 mismatch" in capsys.readouterr().err


def test_verified_once_record_skips_rehashing_until_a_file_changes(artifact_copy, monkeypatch):
    """Cold start: a file hashed in full once is trusted while its size, mtime, ctime and inode hold; a
    rewrite (even one that restores the mtime) is hashed again and caught."""
    import os

    from m3rt import artifact

    monkeypatch.setattr(artifact.VerifiedRecord, "RACY_SECONDS", 0.0)
    M3Runtime(artifact_copy)  # hashes everything, records it
    hashed = []
    real = artifact.sha256_file
    monkeypatch.setattr(artifact, "sha256_file", lambda p, *a: hashed.append(p.name) or real(p, *a))
    M3Runtime(artifact_copy)
    assert hashed == ["manifest.json"]  # the record's key only
    graph = artifact_copy / "model.onnx"
    st = graph.stat()
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime tells
    with pytest.raises(ArtifactError, match="model.onnx: sha256 mismatch"):
        M3Runtime(artifact_copy)
    with pytest.raises(ArtifactError, match="model.onnx: sha256 mismatch"):
        M3Runtime(artifact_copy, verify_checksums="always")


def test_recently_written_files_are_not_vouched_for(artifact_copy, monkeypatch):
    """A file written within the clock's resolution of its check could change without a new stamp."""
    from m3rt import artifact

    M3Runtime(artifact_copy)  # the copy's files were just written (ctime now): nothing recorded
    hashed = []
    real = artifact.sha256_file
    monkeypatch.setattr(artifact, "sha256_file", lambda p, *a: hashed.append(p.name) or real(p, *a))
    M3Runtime(artifact_copy)
    assert "model.onnx" in hashed and "tokenizer.json" in hashed
    with pytest.raises(ValueError, match="verify_checksums must be"):
        M3Runtime(artifact_copy, verify_checksums="sometimes")
