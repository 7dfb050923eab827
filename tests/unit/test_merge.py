import json

from fishflow import atomic
from fishflow.merging.merge import merge_language, summarize
from fishflow.records import METADATA_FIELDS


def ok(i, voice):
    return {
        "status": "ok",
        "id": f"i{i}",
        "lang": "en",
        "voice": voice,
        "text": "t",
        "path": f"audio/en/{voice}/i{i}.wav",
        "duration_s": 1.5,
        "sample_rate": 44100,
        "bytes": 1000,
        "sha256": "ab",
        "seed": 1,
        "parameters": {},
        "generation_s": 0.1,
        "attempts": 1,
        "backend": "demo",
        "fingerprint": "f",
    }


def failed(i, voice, reason="http_error"):
    return {
        "status": "failed",
        "id": f"i{i}",
        "lang": "en",
        "voice": voice,
        "text": "t",
        "reason": reason,
        "last_error": "boom",
        "attempts": 3,
        "seed": 5,
        "backend": "demo",
        "fingerprint": "f",
    }


def shard(voice, name, *items):
    return {"lang": "en", "voice": voice, "shard": name, "fingerprint": "s", "items": list(items)}


def test_manifests_keep_plan_order_and_split_failures(tmp_path):
    batch_a = tmp_path / "a.jsonl"
    batch_b = tmp_path / "b.jsonl"
    atomic.write_jsonl(batch_a, [shard("v1", "00000", ok(0, "v1"), failed(1, "v1"))])
    atomic.write_jsonl(batch_b, [shard("v2", "00000", ok(2, "v2"))])
    merge_language([batch_a, batch_b], tmp_path / "metadata_en.jsonl", tmp_path / "failed_en.jsonl")
    metadata = atomic.read_jsonl(tmp_path / "metadata_en.jsonl")
    assert [r["id"] for r in metadata] == ["i0", "i2"]
    assert "fingerprint" not in metadata[0] and metadata[0]["sha256"] == "ab"
    # The released manifest fields, each line's keys sorted as before.
    assert list(metadata[0]) == sorted(METADATA_FIELDS)
    assert atomic.read_jsonl(tmp_path / "failed_en.jsonl") == [
        {
            "id": "i1",
            "lang": "en",
            "voice": "v1",
            "text": "t",
            "reason": "http_error",
            "last_error": "boom",
            "attempts": 3,
            "scores": None,  # the judge was off
            "takes": None,
        }
    ]
    summary = summarize([tmp_path / "metadata_en.jsonl"], [tmp_path / "failed_en.jsonl"])
    assert summary["total"] == {"ok": 2, "failed": 1}
    assert summary["languages"]["en"]["v1"] == {
        "ok": 1,
        "failed": 1,
        "audio_s": 1.5,
        "failures": {"http_error": 1},
    }
    json.dumps(summary)
