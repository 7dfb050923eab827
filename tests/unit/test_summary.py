"""The plan summary's progress: from the journals and WAVs, or from the tally a generation job
left while nothing has changed since."""

import hashlib

from fishflow import atomic
from fishflow.layout import Layout
from fishflow.planning.plan import Plan
from fishflow.planning.summary import ShardProgress, shard_progress, write_tally
from tests.helpers import make_config, write_wav


def test_progress_reads_the_tally_only_while_journal_and_shard_are_unchanged(tmp_path):
    texts = {"en": [{"id": f"e{i}", "text": f"Sentence {i}."} for i in range(3)]}
    plan = Plan(make_config(tmp_path, texts, voices=("alice",), shard_size=3))
    layout = Layout(plan.out)
    key = ("en", "alice", "00000")
    assert shard_progress(plan)[key] == ShardProgress(3, 0, 0)

    item = plan.shard(*key).items[0]
    data = write_wav(layout.wav("en", "alice", item.id), seconds=0.3).read_bytes()
    journal = atomic.Journal(layout.journal(*key))
    spoken = {
        "id": item.id,
        "lang": "en",
        "voice": "alice",
        "text": item.text,
        "fingerprint": item.fingerprint,
        "backend": "demo",
        "status": "ok",
        "seed": item.seed,
        "attempts": 1,
        "path": item.wav,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    journal.append(spoken)
    failed = {**spoken, "id": "e1", "status": "failed", "reason": "http_error", "path": None}
    journal.append({k: v for k, v in failed.items() if v is not None})
    assert shard_progress(plan)[key] == ShardProgress(3, 1, 1)  # from journal and WAV

    # A tally that says otherwise is believed while it matches the journal and the shard ...
    tally = layout.tally(*key)
    write_tally(tally, plan.shard_fingerprint(*key), journal.path, done=3, failed=0, audio_s=0.9)
    assert shard_progress(plan)[key] == ShardProgress(3, 3, 0, 0.9)
    # ... and not once the journal grew, or the shard changed.
    journal.append({**spoken, "id": "e2", "fingerprint": "other"})
    assert shard_progress(plan)[key] == ShardProgress(3, 1, 1)
    write_tally(tally, "an older shard", journal.path, done=3, failed=0, audio_s=0.9)
    assert shard_progress(plan)[key] == ShardProgress(3, 1, 1)
