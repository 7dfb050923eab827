import hashlib
import json
import pickle

import pytest

from fishflow.errors import ConfigError, InputError
from fishflow.planning.plan import Plan, item_seed
from tests.helpers import make_config, write_wav

TEXTS = {
    "en": [{"id": f"e{i}", "text": f"Sentence number {i}."} for i in range(5)],
    "de": [{"id": f"d{i}", "text": f"Satz Nummer {i}."} for i in range(3)],
}


def test_all_assignment_shards_every_text_in_every_voice(tmp_path):
    plan = Plan(make_config(tmp_path, TEXTS, shard_size=2))
    keys = plan.shard_keys()
    assert ("en", "alice", "00000") in keys and ("en", "bob", "00002") in keys
    assert len(keys) == 2 * (3 + 2)
    assert plan.item_count() == 2 * (5 + 3)
    shard = plan.shard("en", "bob", "00002")
    assert [item.id for item in shard.items] == ["e4"]
    assert shard.items[0].wav == "audio/en/bob/e4.wav"


def test_round_robin_and_row_assignment(tmp_path):
    plan = Plan(make_config(tmp_path, TEXTS, voice_assignment="round_robin"))
    assert plan.assignment[("en", "alice")] == [0, 2, 4]
    assert plan.assignment[("en", "bob")] == [1, 3]
    rows = {
        "en": [{"id": "a", "text": "x", "voice": "bob"}, {"id": "b", "text": "y", "voice": "alice"}]
    }
    plan = Plan(make_config(tmp_path / "row", rows, voice_assignment="row"))
    assert plan.assignment == {("en", "bob"): [0], ("en", "alice"): [1]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "text": "x"}, "has no 'voice'"),
        ({"id": "a", "text": "x", "voice": "carol"}, "unknown voice 'carol'"),
    ],
)
def test_row_assignment_errors_name_the_line(tmp_path, row, message):
    config = make_config(
        tmp_path, {"en": [{"id": "z", "text": "ok", "voice": "bob"}, row]}, voice_assignment="row"
    )
    with pytest.raises(InputError, match=message) as caught:
        Plan(config)
    assert caught.value.line == 2


def test_unsupported_language_fails_planning(tmp_path):
    with pytest.raises(
        ConfigError, match=r"language\(s\) \['ko'\] not supported by backend 'demo'"
    ):
        Plan(make_config(tmp_path, {"ko": [{"text": "안녕하세요"}]}))


def test_reference_audio_problems_fail_planning(tmp_path):
    config = make_config(tmp_path, TEXTS)
    write_wav(tmp_path / "short.wav", seconds=0.3)
    config["voices"]["alice"]["audio"] = str(tmp_path / "short.wav")
    with pytest.raises(InputError, match="too short"):
        Plan(config)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really audio")
    config["voices"]["alice"]["audio"] = str(tmp_path / "bad.wav")
    with pytest.raises(InputError, match="not readable audio"):
        Plan(config)
    config["voices"]["alice"]["audio"] = str(tmp_path / "missing.wav")
    with pytest.raises(InputError, match="does not exist"):
        Plan(config)


def test_fingerprints_change_exactly_with_what_changes_the_audio(tmp_path):
    config = make_config(tmp_path, TEXTS, shard_size=2)
    before = Plan(config)
    fps = {key: before.shard_fingerprint(*key) for key in before.shard_keys()}
    write_wav(tmp_path / "voices" / "bob.wav", freq=333)
    after = Plan(config)
    changed = {key for key in fps if after.shard_fingerprint(*key) != fps[key]}
    assert changed == {key for key in fps if key[1] == "bob"}
    config["generation"]["temperature"] = 0.5
    assert all(Plan(config).shard_fingerprint(*key) != fps[key] for key in fps)


def test_appending_rows_changes_only_the_last_shard(tmp_path):
    before = Plan(make_config(tmp_path, TEXTS, shard_size=2))
    more = {**TEXTS, "en": TEXTS["en"] + [{"id": "e5", "text": "One more."}]}
    after = Plan(make_config(tmp_path, more, shard_size=2))
    en_alice = [key for key in before.shard_keys() if key[:2] == ("en", "alice")]
    same = [before.shard_fingerprint(*k) == after.shard_fingerprint(*k) for k in en_alice]
    assert same == [True, True, False]
    assert len(after.shard_keys()) == len(before.shard_keys())


def test_a_batch_is_the_same_shard_numbers_in_every_voice_of_a_language(tmp_path):
    rows = {"en": [{"id": f"e{i}", "text": f"Sentence {i}."} for i in range(9)]}
    plan = Plan(make_config(tmp_path, rows, shard_size=2, shards_per_job=4))
    assert plan.batch_span == 2  # 4 shards per job over 2 voices
    assert plan.batch_keys() == [("en", "b00000"), ("en", "b00001"), ("en", "b00002")]
    assert plan.batch_shards("en", "b00001") == [
        ("alice", "00002"),
        ("alice", "00003"),
        ("bob", "00002"),
        ("bob", "00003"),
    ]
    assert plan.batch_shards("en", "b00002") == [("alice", "00004"), ("bob", "00004")]
    assert plan.batch_of("00003") == "b00001"
    batch = plan.batch("en", "b00001")
    assert [(shard.voice, shard.name) for shard in batch.shards] == plan.batch_shards(
        "en", "b00001"
    )
    assert [ref["id"] for ref in batch.references] == ["alice", "bob"]
    for shard in batch.shards:
        assert shard.fingerprint == plan.shard_fingerprint("en", shard.voice, shard.name)


def test_appending_rows_reruns_at_most_the_last_batch_of_each_language_and_voice(tmp_path):
    rows = [{"id": f"e{i}", "text": f"Sentence {i}."} for i in range(9)]
    settings = {"shard_size": 2, "shards_per_job": 4, "voice_assignment": "row"}
    # Row assignment: alice has 5 rows (3 shards), bob 4 (2 shards, the last one full).
    assigned = [{**row, "voice": "alice" if i % 2 == 0 else "bob"} for i, row in enumerate(rows)]
    before = Plan(make_config(tmp_path, {"en": assigned}, **settings))
    extra = [{"id": "e9", "text": "Sentence 9.", "voice": "bob"}]
    after = Plan(make_config(tmp_path, {"en": assigned + extra}, **settings))
    changed = {
        key
        for key in before.batch_keys()
        if before.batch_fingerprint(*key) != after.batch_fingerprint(*key)
    }
    # bob's new row opens his shard 00002, in batch b00001 beside alice's last shard.
    assert changed == {("en", "b00001")}
    assert after.batch_keys() == before.batch_keys()
    more = assigned + [{"id": f"x{i}", "text": "More.", "voice": "alice"} for i in range(5)]
    grown = Plan(make_config(tmp_path, {"en": more}, **settings))
    changed = {
        key
        for key in before.batch_keys()
        if before.batch_fingerprint(*key) != grown.batch_fingerprint(*key)
    }
    # alice's last shard fills up, two more follow: 00003 in b00001, 00004 opens b00002.
    assert changed == {("en", "b00001")}
    assert set(grown.batch_keys()) - set(before.batch_keys()) == {("en", "b00002")}


def test_item_seeds_are_deterministic_and_distinct():
    assert item_seed(42, "en", "a", "x") == item_seed(42, "en", "a", "x")
    seeds = {item_seed(42, "en", v, i, attempt) for v in "ab" for i in "xyz" for attempt in (0, 1)}
    assert len(seeds) == 12
    assert all(0 <= seed < 2**31 for seed in seeds)


def _reference_digest(*parts) -> str:
    """The fingerprint formula as first released: every existing output depends on it."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def test_fingerprints_keep_their_released_bytes(tmp_path):
    texts = ['Say "hi"\\ now', "naïve café — 日本語 😀", "tab\there\u2028and \x01", "</b>'"]
    rows = {"en": [{"id": f"i-{n}", "text": text} for n, text in enumerate(texts)]}
    plan = Plan(make_config(tmp_path, rows, shard_size=3))
    for lang, voice, name in plan.shard_keys():
        common = plan._common(lang, voice)
        shard = plan.shard(lang, voice, name)
        pairs = [(item.id, item.text) for item in shard.items]
        assert plan.shard_fingerprint(lang, voice, name) == _reference_digest(common, pairs)
        for item in shard.items:
            assert item.fingerprint == _reference_digest(common, item.id, item.text)
            assert item.seed == item_seed(42, lang, voice, item.id)


def test_shard_items_are_made_on_first_use_and_pickle_as_a_recipe(tmp_path):
    plan = Plan(make_config(tmp_path, TEXTS, shard_size=2))
    shard = plan.shard("en", "alice", "00001")
    assert len(shard.items) == 2 and shard.items._items is None
    copy = pickle.loads(pickle.dumps(shard))
    assert copy == shard and copy.items == tuple(shard.items)
    assert [item.id for item in copy.items] == ["e2", "e3"]
