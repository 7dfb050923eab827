"""S1 and S2 checkpoints: detection from the files, what each needs, model id, languages,
plan summary, provenance and download. Fake checkpoint folders of small files: what is under
test is the layout, not the weights."""

import json
import sys

import pytest

from fishflow.errors import ConfigError
from fishflow.planning.config import validate_config
from fishflow.planning.plan import Plan
from fishflow.planning.summary import summary_text
from fishflow.report.provenance import provenance
from fishflow.serving import checkpoints
from fishflow.serving.backends import S1_LANGUAGES, S2_LANGUAGES, FishSpeechBackend
from fishflow.serving.checkpoints import (
    S1_CHECKPOINT_FILES,
    check_files,
    checkpoint_files,
    detect_generation,
    provide,
)
from tests.helpers import make_config
from tests.unit.test_checkpoints import fish_config, write_checkpoint

S2_COMMON = ("config.json", "tokenizer.json", "tokenizer_config.json", "codec.pth")
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def write_sharded_s2(folder, shards=SHARDS) -> None:
    write_checkpoint(folder, names=(*S2_COMMON, *shards))
    weight_map = {f"layers.{i}.weight": SHARDS[i % len(SHARDS)] for i in range(4)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize("weights", ["model.safetensors", "model.pth"])
def test_an_s2_folder_with_single_weights_is_s2(tmp_path, weights):
    write_checkpoint(tmp_path / "ckpt", names=(*S2_COMMON, weights))
    fish = fish_config(tmp_path)["fish_speech"]
    assert detect_generation(fish) == "S2"
    check_files(fish)
    assert set(checkpoint_files(fish)) == {*S2_COMMON[:3], weights, "decoder"}


def test_a_sharded_s2_folder_needs_every_shard_its_index_names(tmp_path):
    folder = tmp_path / "ckpt"
    write_sharded_s2(folder)
    fish = fish_config(tmp_path)["fish_speech"]
    assert detect_generation(fish) == "S2"
    assert set(checkpoint_files(fish)) == {
        *S2_COMMON[:3],
        "model.safetensors.index.json",
        *SHARDS,
        "decoder",
    }
    (folder / SHARDS[1]).unlink()
    assert detect_generation(fish) is None
    with pytest.raises(ConfigError) as error:
        check_files(fish)
    s2_needs = str(error.value).split("S2 (Fish Audio S2) needs ")[1].split(". ")[0]
    assert s2_needs == SHARDS[1]


def test_a_broken_shard_index_is_named(tmp_path):
    write_checkpoint(tmp_path / "ckpt", names=(*S2_COMMON, "model.safetensors.index.json"))
    with pytest.raises(ConfigError, match="model.safetensors.index.json is no safetensors index"):
        detect_generation(fish_config(tmp_path)["fish_speech"])


def test_a_folder_of_neither_generation_says_what_each_still_needs(tmp_path):
    write_checkpoint(tmp_path / "ckpt", names=("config.json", "tokenizer.json", "codec.pth"))
    with pytest.raises(ConfigError) as error:
        FishSpeechBackend().preflight(fish_config(tmp_path, python=sys.executable))
    message = str(error.value)
    assert message.startswith("config key server.fish_speech.checkpoint_dir: ")
    s1 = "S1 (OpenAudio S1 / S1-mini) needs model.pth, tokenizer.tiktoken, special_tokens.json;"
    assert s1 in message
    assert "S2 (Fish Audio S2) needs tokenizer_config.json, model.safetensors.index.json." in (
        message
    )
    assert "model.safetensors or model.pth" in message


def test_a_folder_with_both_layouts_stays_s1_with_its_id(tmp_path):
    """S1 wins: a folder that planned as S1 before S2 support must keep its id."""
    write_checkpoint(tmp_path / "ckpt")
    server = fish_config(tmp_path)
    s1_id = FishSpeechBackend().model_id(server)
    write_checkpoint(tmp_path / "ckpt", names=("tokenizer.json", "tokenizer_config.json"))
    assert detect_generation(server["fish_speech"]) == "S1"
    assert FishSpeechBackend().model_id(server) == s1_id


def test_s2_model_id_differs_from_s1_and_follows_the_files(tmp_path):
    backend = FishSpeechBackend()
    write_checkpoint(tmp_path / "s1" / "ckpt")
    write_checkpoint(tmp_path / "s2" / "ckpt", names=(*S2_COMMON, "model.pth"))
    s1_id = backend.model_id(fish_config(tmp_path / "s1"))
    s2_id = backend.model_id(fish_config(tmp_path / "s2"))
    assert s1_id.startswith("fish-speech/ckpt/") and s2_id.startswith("fish-speech-s2/ckpt/")
    assert s2_id.endswith("/cuda/bf16/eager")
    (tmp_path / "s2" / "ckpt" / "model.pth").write_bytes(b"other weights")
    assert backend.model_id(fish_config(tmp_path / "s2")) != s2_id


def test_an_absent_folder_takes_the_generation_of_the_repo_to_download(tmp_path):
    backend = FishSpeechBackend()
    s2 = fish_config(tmp_path, download=True, download_repo="fishaudio/s2-pro")
    assert backend.generation(s2) == "S2 (Fish Audio S2)"
    assert backend.model_id(s2).startswith("fish-speech-s2/")
    assert backend.languages(s2) == S2_LANGUAGES
    s1 = fish_config(tmp_path, download=True)
    assert backend.generation(s1) == "S1 (OpenAudio S1 / S1-mini)"
    assert backend.languages(s1) == S1_LANGUAGES
    with pytest.raises(ConfigError, match="download_repo"):
        fish_config(tmp_path, download_repo="someone/else")


def test_the_s2_download_fetches_s2_pro_and_records_its_generation(tmp_path, monkeypatch):
    calls = []

    def fake_download(local_dir, repo_id):
        calls.append(repo_id)
        write_sharded_s2(local_dir)

    monkeypatch.setattr(checkpoints, "download", fake_download)
    fish = fish_config(tmp_path, download=True, download_repo="fishaudio/s2-pro")["fish_speech"]
    output = tmp_path / "out" / "provenance" / "checkpoint.json"
    provide(fish, output)
    assert calls == ["fishaudio/s2-pro"]
    recorded = json.loads(output.read_text())
    assert (recorded["generation"], recorded["generation_title"]) == ("S2", "Fish Audio S2")
    assert set(recorded["files"]) >= {*SHARDS, "model.safetensors.index.json", "decoder"}


def fish_plan_config(tmp_path, texts: dict) -> dict:
    fish = {"python": sys.executable, "checkpoint_dir": str(tmp_path / "ckpt")}
    return make_config(tmp_path, texts, server={"backend": "fish-speech", "fish_speech": fish})


def test_planning_takes_languages_summary_and_provenance_from_the_detected_model(tmp_path):
    swedish = {"sv": [{"id": "s1", "text": "Hej hej."}]}
    write_checkpoint(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match=r"\['sv'\] not supported .* model S1 \(OpenAudio"):
        Plan(fish_plan_config(tmp_path, swedish))

    for name in S1_CHECKPOINT_FILES:
        (tmp_path / "ckpt" / name).unlink()
    write_sharded_s2(tmp_path / "ckpt")
    plan = Plan(fish_plan_config(tmp_path, swedish))
    first_line = summary_text(plan).splitlines()[0]
    assert first_line.endswith(f"backend fish-speech, model S2 (Fish Audio S2) ({plan.model_id})")
    assert plan.model_id.startswith("fish-speech-s2/ckpt/")

    record = tmp_path / "out" / "provenance" / "checkpoint.json"
    provide(plan.config["server"]["fish_speech"], record)
    recorded = provenance(plan.config, [], json.loads(record.read_text()), judge=[])
    assert recorded["model_generation"] == "S2 (Fish Audio S2)"


def test_the_demo_has_no_model_generation(tmp_path):
    plan = Plan(make_config(tmp_path, {"en": [{"id": "a", "text": "Hello."}]}))
    assert plan.generation is None
    assert "model" not in summary_text(plan).splitlines()[0].split("backend demo")[1][:8]
    assert provenance(plan.config, [], None, judge=[])["model_generation"] is None


def test_the_schema_default_downloads_s1_mini():
    config = validate_config(
        {"output_dir": "o", "inputs": {"en": "e"}, "voices": {"v": {"audio": "a", "text": "t"}}}
    )
    assert config["server"]["fish_speech"]["download_repo"] == "fishaudio/openaudio-s1-mini"
