"""Review marks: the file's format, and what a mark changes in the plan (only its item)."""

import json
import pickle

import pytest

from fishflow.errors import InputError
from fishflow.layout import Layout
from fishflow.planning.plan import Plan, item_seed
from fishflow.review.marks import Mark, add_mark, read_marks, remove_marks
from tests.helpers import make_config, write_jsonl

TEXTS = {
    "en": [{"id": f"e{i}", "text": f"Sentence number {i}."} for i in range(5)],
    "de": [{"id": f"d{i}", "text": f"Satz Nummer {i}."} for i in range(3)],
}


def mark(item_id="e3", seed=None, voice="bob", lang="en", **extra) -> dict:
    seed = item_seed(42, lang, voice, item_id) if seed is None else seed
    return {"lang": lang, "voice": voice, "id": item_id, "seed": seed, "time": "t", **extra}


def fingerprints(plan: Plan) -> tuple[dict, dict, dict]:
    items = {
        (shard.lang, shard.voice, item.id): item.fingerprint
        for key in plan.shard_keys()
        for shard in [plan.shard(*key)]
        for item in shard.items
    }
    shards = {key: plan.shard_fingerprint(*key) for key in plan.shard_keys()}
    batches = {key: plan.batch_fingerprint(*key) for key in plan.batch_keys()}
    return items, shards, batches


def test_a_mark_changes_its_item_shard_and_batch_and_nothing_else(tmp_path):
    config = make_config(tmp_path, TEXTS, shard_size=2, shards_per_job=2)
    items, shards, batches = fingerprints(Plan(config))
    marks = Layout(config["output_dir"]).marks()
    first = item_seed(42, "en", "bob", "e3")
    write_jsonl(marks, [mark("e3", note="buzzes")])
    plan = Plan(config)
    items_after, shards_after, batches_after = fingerprints(plan)
    assert {k for k in items if items[k] != items_after[k]} == {("en", "bob", "e3")}
    assert {k for k in shards if shards[k] != shards_after[k]} == {("en", "bob", "00001")}
    assert {k for k in batches if batches[k] != batches_after[k]} == {("en", "b00001")}

    item = next(i for i in plan.shard("en", "bob", "00001").items if i.id == "e3")
    assert item.rejected_seeds == {first}
    seeds = item.seeds(42)
    assert [next(seeds), next(seeds)] == [item_seed(42, "en", "bob", "e3", n) for n in (1, 2)]
    # The job receives the marks with its shard.
    copy = pickle.loads(pickle.dumps(plan.shard("en", "bob", "00001")))
    assert [i.rejected_seeds for i in copy.items] == [frozenset(), {first}]

    # The same mark twice is one rejected seed; a second seed is a second change.
    write_jsonl(marks, [mark("e3"), mark("e3")])
    assert fingerprints(Plan(config))[0] == items_after
    write_jsonl(marks, [mark("e3"), mark("e3", seed=item_seed(42, "en", "bob", "e3", 1))])
    again = fingerprints(Plan(config))[0]
    assert {k for k in items if again[k] != items_after[k]} == {("en", "bob", "e3")}
    # Without marks (all removed) every fingerprint is the unmarked one again.
    write_jsonl(marks, [])
    assert fingerprints(Plan(config)) == (items, shards, batches)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not a review mark: Expecting property name"),
        (json.dumps(mark(seed=True)), "'seed' must be a non-empty int, got True"),
        (json.dumps(mark(seed=2**31)), "'seed' 2147483648 is outside"),
        (json.dumps({**mark(), "sead": 1}), r"unknown field\(s\) \['sead'\]"),
        (json.dumps(mark(item_id="")), "'id' must be a non-empty str"),
        (json.dumps(mark(note=3)), "'note' must be a string"),
        (json.dumps([1]), "a mark is a JSON object"),
        (json.dumps(mark(voice="carol")), "the plan has no item en/carol/e3"),
        (json.dumps(mark(lang="fr")), "the plan has no item fr/bob/e3"),
        (json.dumps(mark(item_id="e9")), "the plan has no item en/bob/e9"),
    ],
)
def test_a_bad_mark_fails_planning_naming_file_and_line(tmp_path, line, message):
    config = make_config(tmp_path, TEXTS)
    marks = Layout(config["output_dir"]).marks()
    write_jsonl(marks, [mark("e1"), "", line])
    with pytest.raises(InputError, match=message) as caught:
        Plan(config)
    assert (caught.value.path, caught.value.line) == (str(marks), 3)
    assert str(caught.value).startswith(f"{marks}:3: ")


def test_round_robin_marks_name_the_voice_that_speaks_the_item(tmp_path):
    config = make_config(tmp_path, TEXTS, voice_assignment="round_robin")
    marks = Layout(config["output_dir"]).marks()
    write_jsonl(marks, [mark("e1", voice="bob")])
    assert Plan(config).rejected == {("en", "bob"): {"e1": {item_seed(42, "en", "bob", "e1")}}}
    write_jsonl(marks, [mark("e1", voice="alice")])  # e1 is bob's
    with pytest.raises(InputError, match="no item en/alice/e1"):
        Plan(config)


def test_add_and_remove_marks(tmp_path):
    path = tmp_path / "review" / "marks.jsonl"
    assert read_marks(path) == []
    first, second = Mark("en", "a", "x", 1, "t1", "hiss"), Mark("en", "a", "y", 2, "t2")
    add_mark(path, first)
    add_mark(path, second)
    add_mark(path, first)
    assert [m for _, m in read_marks(path)] == [first, second, first]
    assert json.loads(path.read_text().splitlines()[1]) == {
        "lang": "en",
        "voice": "a",
        "id": "y",
        "seed": 2,
        "time": "t2",
    }
    assert remove_marks(path, ("en", "a", "x"), 7) == 0
    assert remove_marks(path, ("en", "a", "x"), 1) == 2
    assert [m for _, m in read_marks(path)] == [second]
