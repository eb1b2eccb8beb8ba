"""No export from an incomplete or inconsistent model: each problem is one clear error naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from m3rt.cli import main
from m3rt.errors import SourceError


@pytest.fixture
def src(tiny_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def export(src, out):
    from m3rt.export import export as run

    return run(src, out)


def test_missing_tensors_are_refused(src, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(src / "model.safetensors")
    save_file({k: v for k, v in state.items() if ".layer.1." not in k}, src / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(SourceError, match=r"model.safetensors: does not match .*16 tensor\(s\) missing from the "
                                          r"checkpoint: encoder\.layer\.1\.\* \(16\)"):
        export(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layers, message", [(3, r"missing from the checkpoint: encoder\.layer\.2\.\*"),
                                             (1, r"not used by the model: encoder\.layer\.1\.\*")])
def test_config_disagreeing_with_the_checkpoint_is_refused(src, tmp_path, layers, message):
    edit_json(src / "config.json", num_hidden_layers=layers)
    with pytest.raises(SourceError, match=message):
        export(src, tmp_path / "out")


@pytest.mark.parametrize("changes, message", [
    (dict(num_attention_heads=0), "num_attention_heads must be a positive integer, got 0"),
    (dict(num_attention_heads=3), "hidden_size 64 is not a multiple of num_attention_heads 3"),
    (dict(vocab_size=1), "pad_token_id 1 is not a token id below vocab_size 1"),
    (dict(hidden_act="nope"), "unknown hidden_act 'nope'"),
    (dict(hidden_size="64"), "hidden_size must be a positive integer, got '64'"),
    (dict(intermediate_size=100), r"model.safetensors: cannot be loaded with .*config.json \(.*size mismatch"),
])
def test_hostile_config_values_are_one_clear_error(src, tmp_path, changes, message, capsys):
    edit_json(src / "config.json", **changes)
    with pytest.raises(SourceError, match=message):
        export(src, tmp_path / "out")
    assert main(["export", str(src), "--out", str(tmp_path / "cli")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("m3rt: error: ") and "config.json" in errors[0]


def test_weights_changed_after_loading_are_caught_independently(tiny_model_dir):
    """The loaded backbone is compared with the checkpoint read by safetensors itself."""
    import torch

    from m3rt.export.torch_model import check_weights_match, load_backbone

    model = load_backbone(tiny_model_dir)
    check_weights_match(model, tiny_model_dir / "model.safetensors")  # intact: passes
    with torch.no_grad():
        model.encoder.layer[1].output.dense.weight[0, 0] += 1e-3
    with pytest.raises(SourceError, match=r"loaded with other values than stored: encoder\.layer\.1\.output"):
        check_weights_match(model, tiny_model_dir / "model.safetensors")


def test_tokenizer_larger_than_the_embedding_table_is_refused(src, tmp_path):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    tok.add_tokens([AddedToken(f"newword{i}") for i in range(vocab - tok.get_vocab_size() + 5)])
    tok.save(str(src / "tokenizer.json"))
    with pytest.raises(SourceError, match=rf"tokenizer.json: {vocab + 5} tokens, more than the {vocab} rows"):
        export(src, tmp_path / "out")


@pytest.mark.parametrize("value", [1, 8, 0, -3, "512", 2.5])
def test_absurd_model_max_length_is_refused(src, tmp_path, value):
    edit_json(src / "tokenizer_config.json", model_max_length=value)
    with pytest.raises(SourceError, match=r"tokenizer_config.json: model_max_length .* is not a usable token limit"):
        export(src, tmp_path / "out")


def test_short_model_max_length_sets_the_runtime_defaults(src, tmp_path):
    from m3rt import M3Runtime

    edit_json(src / "tokenizer_config.json", model_max_length=16)
    rt = M3Runtime(export(src, tmp_path / "out"))  # FlagEmbedding's default 512 would be above the limit
    assert rt.manifest.max_length == rt.passage_max_length == rt.query_max_length == 16
    out = rt.encode(["word " * 100], return_colbert_vecs=True)
    assert out["colbert_vecs"][0].shape[0] == 15  # 16 tokens, less <s>
    with pytest.raises(ValueError, match="above the model's limit of 16"):
        M3Runtime(tmp_path / "out", passage_max_length=17)


@pytest.mark.parametrize("content, message", [
    (b"", "colbert_linear.pt: empty file"),
    (b"not a pickle at all" * 10, r"colbert_linear.pt: not a readable PyTorch state dict"),
])
def test_bad_head_files_are_one_line_naming_the_file(src, tmp_path, content, message, capsys):
    (src / "colbert_linear.pt").write_bytes(content)
    with pytest.raises(SourceError, match=message):
        export(src, tmp_path / "out")
    assert main(["export", str(src), "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "colbert_linear.pt" in errors[0] and "weights_only=False" not in err
    assert "Traceback" not in err
