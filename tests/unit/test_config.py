import pytest
import yaml

from fishflow.errors import ConfigError
from fishflow.planning.config import load_config, merged, validate_config
from tests.helpers import REPO


def minimal():
    return {
        "output_dir": "out",
        "inputs": {"en": "en.jsonl"},
        "voices": {"v1": {"audio": "v1.wav", "text": "hello"}},
    }


def test_defaults_are_filled_in():
    config = validate_config(minimal())
    assert config["shard_size"] == 500
    assert config["voice_assignment"] == "all"
    assert config["generation"]["max_new_tokens"] == 1024
    assert config["server"]["backend"] == "demo"
    assert config["server"]["demo"]["engine"] == "espeak"
    assert config["validation"]["retries"] == 2


def test_the_demo_config_is_valid():
    config = load_config(REPO / "config" / "config.yaml")
    assert config["server"]["backend"] == "demo"


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"generation": {"max_new_tokens": 0}}, "generation.max_new_tokens"),
        ({"generation": {"max_new_tokens": -5}}, "generation.max_new_tokens"),
        ({"generation": {"top_p": 1.5}}, "generation.top_p"),
        ({"generation": {"temperature": 0}}, "generation.temperature"),
        ({"shard_size": 0}, "shard_size"),
        ({"voice_assignment": "random"}, "voice_assignment"),
        ({"server": {"backend": "nope"}}, "server.backend"),
        ({"inputs": {}}, "inputs"),
        ({"inputs": {"EN": "x.jsonl"}}, "inputs"),
        ({"voices": {"a/b": {"audio": "x.wav", "text": "t"}}}, "voices"),
        ({"voices": {"v1": {"audio": "x.wav"}}}, "voices.v1"),
        ({"voices": {"v1": {"audio": "x.wav", "text": "  "}}}, "voices.v1.text"),
        ({"sharding": 3}, "<top level>"),
    ],
)
def test_errors_name_the_key(patch, key):
    config = minimal()
    config.update(patch)
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    assert f"config key {key}:" in str(caught.value)


def test_unknown_key_is_listed_with_allowed_keys():
    config = minimal()
    config["generation"] = {"max_tokens": 5}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['max_tokens'\]"):
        validate_config(config)


def test_load_config_rejects_non_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(["a"]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_config_files_merge_key_by_key_without_touching_the_first():
    base = {"server": {"backend": "demo", "demo": {"engine": "tone"}}, "shard_size": 4}
    update = {"server": {"demo": {"latency_s": 1}}, "shard_size": 8}
    assert merged(base, update) == {
        "server": {"backend": "demo", "demo": {"engine": "tone", "latency_s": 1}},
        "shard_size": 8,
    }
    assert base == {"server": {"backend": "demo", "demo": {"engine": "tone"}}, "shard_size": 4}
