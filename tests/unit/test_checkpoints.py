"""The fish-speech checkpoint: required files, provenance hashes, opt-in download, preflight.
Nothing here touches the network: the download itself is replaced."""

import hashlib
import json
import re
import sys
import types
from pathlib import Path

import pytest

from fishflow.errors import ConfigError, FishflowError
from fishflow.planning.config import validate_config
from fishflow.serving import checkpoints
from fishflow.serving.backends import FishSpeechBackend
from fishflow.serving.checkpoints import S1_CHECKPOINT_FILES, check_files, checkpoint_files, provide


def fish_config(tmp_path, **fish) -> dict:
    """The validated server section of a fish-speech config, with its defaults."""
    config = validate_config(
        {
            "output_dir": "out",
            "inputs": {"en": "en.jsonl"},
            "voices": {"v1": {"audio": "v1.wav", "text": "hello"}},
            "server": {
                "backend": "fish-speech",
                "fish_speech": {"checkpoint_dir": str(tmp_path / "ckpt"), **fish},
            },
        }
    )
    return config["server"]


def write_checkpoint(folder, names=(*S1_CHECKPOINT_FILES, "codec.pth")) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {name: f"weights of {name}".encode() * (i + 1) for i, name in enumerate(names)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return contents


def test_the_decoder_defaults_to_codec_pth_in_the_checkpoint(tmp_path):
    fish = fish_config(tmp_path)["fish_speech"]
    assert fish["download"] is False
    assert checkpoint_files(fish) == {
        **{name: tmp_path / "ckpt" / name for name in S1_CHECKPOINT_FILES},
        "decoder": tmp_path / "ckpt" / "codec.pth",
    }
    other = fish_config(tmp_path, decoder_checkpoint=str(tmp_path / "dac" / "model.pth"))
    files = checkpoint_files(other["fish_speech"])
    assert files["decoder"] == tmp_path / "dac" / "model.pth"
    assert files["model.pth"] == tmp_path / "ckpt" / "model.pth"


def test_provenance_records_every_file_with_its_sha256_and_size(tmp_path):
    contents = write_checkpoint(tmp_path / "ckpt")
    output = tmp_path / "out" / "provenance" / "checkpoint.json"
    provide(fish_config(tmp_path)["fish_speech"], output)
    recorded = json.loads(output.read_text())
    assert recorded["checkpoint_dir"] == str((tmp_path / "ckpt").resolve())
    assert recorded["files"] == {
        name.replace("codec.pth", "decoder"): {
            "path": str((tmp_path / "ckpt" / name).resolve()),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, data in contents.items()
    }


def test_missing_files_are_named_with_the_config_key(tmp_path):
    write_checkpoint(tmp_path / "ckpt", names=("config.json", "tokenizer.tiktoken"))
    fish = fish_config(tmp_path)["fish_speech"]
    with pytest.raises(ConfigError) as error:
        check_files(fish)
    message = str(error.value)
    assert "server.fish_speech.checkpoint_dir" in message
    s1_needs = message.split("S1 (OpenAudio S1 / S1-mini) needs ")[1].split(";")[0]
    assert s1_needs == f"model.pth, special_tokens.json, {tmp_path / 'ckpt' / 'codec.pth'}"
    assert "config.json" not in re.split(r"[ ,;]+", message)
    with pytest.raises(ConfigError, match="model.pth"):
        provide(fish, tmp_path / "checkpoint.json")
    assert not (tmp_path / "checkpoint.json").exists()

    write_checkpoint(tmp_path / "ckpt", names=S1_CHECKPOINT_FILES)
    with pytest.raises(ConfigError, match="checkpoint files missing: .*codec.pth$"):
        check_files(fish)


def test_download_only_when_asked_and_the_folder_is_absent(tmp_path, monkeypatch):
    calls = []

    def fake_download(local_dir, repo_id):
        calls.append(local_dir)
        assert repo_id == "fishaudio/openaudio-s1-mini"
        write_checkpoint(local_dir)

    monkeypatch.setattr(checkpoints, "download", fake_download)
    output = tmp_path / "checkpoint.json"
    with pytest.raises(ConfigError, match="not a directory"):
        provide(fish_config(tmp_path)["fish_speech"], output)
    assert calls == []

    provide(fish_config(tmp_path, download=True)["fish_speech"], output)
    assert calls == [tmp_path / "ckpt"]
    assert set(json.loads(output.read_text())["files"]) == {*S1_CHECKPOINT_FILES, "decoder"}

    provide(fish_config(tmp_path, download=True)["fish_speech"], output)
    assert len(calls) == 1  # present now: never downloaded again


def test_download_fetches_s1_mini_and_renames_it_when_complete(tmp_path, monkeypatch):
    calls = []

    def snapshot_download(repo_id, local_dir):
        calls.append((repo_id, local_dir))
        write_checkpoint(Path(local_dir))

    hub = types.SimpleNamespace(snapshot_download=snapshot_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    checkpoints.download(tmp_path / "ckpt", "fishaudio/openaudio-s1-mini")
    assert calls == [("fishaudio/openaudio-s1-mini", str(tmp_path / "ckpt.partial"))]
    assert (tmp_path / "ckpt" / "model.pth").is_file()
    assert not (tmp_path / "ckpt.partial").exists()


def test_download_without_huggingface_hub_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(FishflowError, match="pip install huggingface_hub"):
        checkpoints.download(tmp_path / "ckpt", "fishaudio/s2-pro")
    assert not (tmp_path / "ckpt").exists()


def test_preflight_names_the_missing_environment_and_checkpoint(tmp_path):
    backend = FishSpeechBackend()
    with pytest.raises(ConfigError, match="server.fish_speech.python"):
        backend.preflight(fish_config(tmp_path, python=str(tmp_path / "nope" / "python")))

    python = {"python": sys.executable}
    with pytest.raises(ConfigError, match="server.fish_speech.checkpoint_dir: .* not a directory"):
        backend.preflight(fish_config(tmp_path, **python))
    backend.preflight(fish_config(tmp_path, download=True, **python))  # the rule downloads it

    write_checkpoint(tmp_path / "ckpt", names=S1_CHECKPOINT_FILES)
    with pytest.raises(ConfigError, match="codec.pth"):
        backend.preflight(fish_config(tmp_path, download=True, **python))
    write_checkpoint(tmp_path / "ckpt")
    backend.preflight(fish_config(tmp_path, **python))


def test_s1_model_id_stays_byte_for_byte_what_existing_runs_fingerprinted(tmp_path):
    """Pinned from the formula before S2 support: a different S1 id would re-speak every
    finished S1 run. The sizes hash covers (file name, size) of every loaded file."""
    backend = FishSpeechBackend()
    write_checkpoint(tmp_path / "ckpt")
    assert (
        backend.model_id(fish_config(tmp_path)) == "fish-speech/ckpt/421d11c79678/cuda/bf16/eager"
    )
    flags = {"half": True, "compile": True, "device": "cpu"}
    assert (
        backend.model_id(fish_config(tmp_path, **flags))
        == "fish-speech/ckpt/421d11c79678/cpu/fp16/compile"
    )
    # Not there yet (say, before its download): every size counts as -1.
    absent = fish_config(tmp_path / "absent", download=True)
    assert backend.model_id(absent) == "fish-speech/ckpt/4d1c590845a0/cuda/bf16/eager"
