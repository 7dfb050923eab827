"""The records, each defined once: the item record's forms, and "is this item done"."""

import hashlib

from fishflow.records import FAILED_FIELDS, METADATA_FIELDS, ItemRecord, ShardRecord, is_done
from tests.helpers import write_wav


def spoken(tmp_path, **changes) -> ItemRecord:
    wav = write_wav(tmp_path / "audio" / "en" / "v" / "a.wav", seconds=0.5)
    data = wav.read_bytes()
    fields = {
        "id": "a",
        "lang": "en",
        "voice": "v",
        "text": "Hi.",
        "fingerprint": "f1",
        "backend": "demo",
        "status": "ok",
        "seed": 7,
        "attempts": 1,
        "path": "audio/en/v/a.wav",
        "duration_s": 0.5,
        "sample_rate": 22050,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "parameters": {"temperature": 0.8},
        "generation_s": 0.1,
    }
    return ItemRecord(**{**fields, **changes})


def test_journal_form_round_trips_and_manifest_rows_keep_their_fields(tmp_path):
    record = spoken(tmp_path)
    data = record.as_dict()
    assert "reason" not in data and ItemRecord.from_dict(data) == record
    assert list(record.manifest_row()) == list(METADATA_FIELDS)
    failed = ItemRecord(
        "b", "en", "v", "Hm.", "f2", "demo", "failed", 3, 2, reason="http_error", last_error="500"
    )
    assert "path" not in failed.as_dict()
    assert list(failed.manifest_row()) == list(FAILED_FIELDS)
    shard = ShardRecord("en", "v", "00000", "s", [record, failed])
    assert ShardRecord.from_dict(shard.as_dict()) == shard


def test_is_done_asks_for_the_fingerprint_and_the_wav_as_written(tmp_path):
    record = spoken(tmp_path)
    assert is_done(record, "f1", tmp_path)
    assert is_done(record, "f1", tmp_path, check=lambda data: True)
    assert not is_done(record, "f1", tmp_path, check=lambda data: False)  # today's checks fail
    assert not is_done(record, "other", tmp_path)  # something that shapes the audio changed
    assert not is_done(None, "f1", tmp_path)
    failed = ItemRecord("a", "en", "v", "Hi.", "f1", "demo", "failed", 7, 3, reason="x")
    assert not is_done(failed, "f1", tmp_path)  # failed items are tried again
    wav = tmp_path / record.path
    wav.write_bytes(wav.read_bytes()[:-2] + b"\x01\x02")  # same size, other content
    assert is_done(record, "f1", tmp_path)  # a stat is all the plan summary pays for
    assert not is_done(record, "f1", tmp_path, check=lambda data: True)
    wav.unlink()
    assert not is_done(record, "f1", tmp_path)
