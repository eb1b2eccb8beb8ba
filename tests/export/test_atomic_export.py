"""Exports never lose what was there: staged beside OUT, swapped in after every check, under a lock; killed
runs (real signals to a real `m3rt export` process) leave the previous artifact as it was."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from forking import default_sigint

from m3rt.artifact import sha256_file
from m3rt.errors import ExportBusyError, SourceError


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones included) with its hash."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


@pytest.fixture
def previous(tiny_artifact, tmp_path) -> Path:
    """An artifact already in place, which a failed or killed export must leave exactly as it is."""
    return Path(shutil.copytree(tiny_artifact, tmp_path / "work" / "artifact"))


def broken_source(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with layer 1's tensors deleted from the checkpoint."""
    from safetensors.torch import load_file, save_file

    src = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    state = load_file(src / "model.safetensors")
    save_file({k: v for k, v in state.items() if ".layer.1." not in k}, src / "model.safetensors",
              metadata={"format": "pt"})
    return src


def test_failed_export_leaves_the_previous_artifact(tiny_model_dir, previous, tmp_path):
    from m3rt.export import export

    before = snapshot(previous)
    with pytest.raises(SourceError, match="no such directory"):
        export(tmp_path / "typo", previous, overwrite=True)  # a typo in the source
    with pytest.raises(SourceError, match=r"model.safetensors: does not match .*encoder\.layer\.1\.\*"):
        export(broken_source(tiny_model_dir, tmp_path), previous, overwrite=True)
    assert snapshot(previous) == before
    assert leftovers(previous) == []


def test_overwrite_swaps_in_a_new_artifact(tiny_model_dir, previous):
    from m3rt.export import export

    created = __import__("json").loads((previous / "manifest.json").read_text())["created"]
    time.sleep(1.1)  # "created" has a resolution of seconds
    export(tiny_model_dir, previous, overwrite=True)
    assert __import__("json").loads((previous / "manifest.json").read_text())["created"] != created
    assert leftovers(previous) == []
    assert oct(previous.stat().st_mode & 0o777) != oct(0o700)  # not the staging folder's private mode


def test_overwrite_replaces_only_an_m3rt_artifact(tiny_model_dir, tiny_artifact, tmp_path, monkeypatch):
    from m3rt.export import export

    # The working directory, even one holding a manifest.json (a web project), is never a target.
    project = tmp_path / "project"
    project.mkdir()
    (project / "manifest.json").write_text('{"name": "my web app"}')
    (project / "index.html").write_text("<html>")
    monkeypatch.chdir(project)
    for target in (".", project, project.parent):
        with pytest.raises(FileExistsError, match="working directory"):
            export(tiny_model_dir, target, overwrite=True)
    assert sorted(p.name for p in project.iterdir()) == ["index.html", "manifest.json"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileExistsError, match="not an m3rt artifact"):
        export(tiny_model_dir, project, overwrite=True)
    assert (project / "index.html").read_text() == "<html>"
    # A folder holding the source.
    with pytest.raises(FileExistsError, match="source"):
        export(tiny_model_dir, tiny_model_dir.parent, overwrite=True)
    # An artifact with a file its manifest does not list (someone's notes) is not replaced.
    art = Path(shutil.copytree(tiny_artifact, tmp_path / "noted"))
    (art / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt: not listed"):
        export(tiny_model_dir, art, overwrite=True)
    assert (art / "notes.txt").read_text() == "mine"
    # A file, not a folder.
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        export(tiny_model_dir, tmp_path / "file", overwrite=True)


def test_a_second_export_of_the_same_out_fails_clearly(tiny_model_dir, tmp_path):
    from m3rt.export import export
    from m3rt.locking import exclusive_lock

    out = tmp_path / "artifact"
    with exclusive_lock(out, "another m3rt export"):  # another export holds it (flock conflicts between open files)
        with pytest.raises(ExportBusyError, match=rf"another m3rt export \(pid {os.getpid()}: "):
            export(tiny_model_dir, out)
    assert not out.exists()
    export(tiny_model_dir, out)  # free again
    assert leftovers(out) == []


def test_interrupted_swap_is_restored_by_the_next_export(tiny_model_dir, previous):
    """A crash between the swap's two renames leaves the previous artifact aside: the next run puts it back."""
    from m3rt.export import export

    before = snapshot(previous)
    aside = previous.parent / f".{previous.name}.m3rt-old-4242-abc"
    aside.mkdir()
    previous.rename(aside / "artifact")
    staging = previous.parent / f".{previous.name}.m3rt-staging-4242-def"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"half written")
    with pytest.raises(FileExistsError, match="not empty"):  # restored, so no longer a new folder
        export(tiny_model_dir, previous)
    assert snapshot(previous) == before
    assert leftovers(previous) == []


def _wait_for(pattern_dir: Path, glob: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(pattern_dir.glob(glob)):
            return
        if proc.poll() is not None:
            pytest.fail(f"export ended (rc {proc.returncode}) before {glob} appeared: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"{glob} did not appear within {timeout} s")


@pytest.mark.parametrize("sig, stage", [
    (signal.SIGINT, "staging"),                         # while loading the model
    (signal.SIGTERM, "scratch-*/fp32/model.onnx"),    # between the fp32 graph and the int8 one
    (signal.SIGKILL, "scratch-*/fp32/model.onnx"),    # no cleanup possible: the next export cleans
])
def test_killed_export_leaves_the_previous_artifact(tiny_model_dir, previous, tmp_path, sig, stage):
    before = snapshot(previous)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "m3rt.cli", "export", str(tiny_model_dir), "--out", str(previous), "--overwrite",
         "--precision", "int8", "--no-enforce-fidelity"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    _wait_for(previous.parent, f".{previous.name}.m3rt-{stage}*", proc)
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    stderr = proc.stderr.read()
    assert snapshot(previous) == before, stderr
    assert not [p for p in tmpdir.iterdir() if p.name.startswith("m3rt-")]
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
        assert leftovers(previous)  # the staging files of the killed run, cleaned below
        from m3rt.export import export

        export(tiny_model_dir, previous, overwrite=True)
        assert snapshot(previous) != before
    else:
        assert rc == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], stderr
        assert "Traceback" not in stderr
    assert leftovers(previous) == []
