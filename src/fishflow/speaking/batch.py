"""Generate one shard: resume from the journal, call /v1/tts, validate, write atomically.

Items go to the job's server replicas concurrently (as many in flight as the replicas have
slots), so checking, writing and hashing one item overlap with generating the next. Every
finished item (spoken or permanently failed) is appended to the shard's journal, fsynced, right
after its WAV is renamed into place, so a kill at any instant loses at most the items in flight.
An item is skipped only when its journal record carries the same fingerprint and its WAV on disk
still has the recorded hash. On SIGTERM no new request is sent; those in flight are finished.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from fishflow import atomic, layout
from fishflow.errors import FishflowError, PermanentError, ServerError, Unreachable
from fishflow.planning.plan import GENERATION_KEYS, Item, Shard, item_seed
from fishflow.planning.voices import sha256_file
from fishflow.serving.backends import get_backend
from fishflow.serving.client import with_retries
from fishflow.serving.endpoint import wait_for_endpoint
from fishflow.speaking.audio import check_wav
from fishflow.speaking.dispatch import ReplicaPool

log = logging.getLogger("fishflow.speaking.batch")
ENDPOINT_GRACE_S = 60  # consumers may start before their server's launcher


def is_done(record: dict | None, item: Item, out: Path) -> bool:
    """Spoken with this exact fingerprint, and its WAV is still the one written."""
    # Failed items are tried again whenever their shard runs again.
    if not record or record["status"] != "ok" or record.get("fingerprint") != item.fingerprint:
        return False
    wav = out / item.wav
    return (
        wav.is_file()
        and wav.stat().st_size == record["bytes"]
        and sha256_file(wav) == record["sha256"]
    )


def tts_payload(item: Item, seed: int, params: dict) -> dict:
    # `language` is a hint for the demo server; the real server ignores unknown fields.
    return {
        "text": item.text,
        "reference_id": item.voice,
        "seed": seed,
        "format": "wav",
        "streaming": False,
        "use_memory_cache": "on",
        "language": item.lang,
        **params,
    }


class ShardGenerator:
    def __init__(self, shard: Shard, out: Path, config: dict):
        self.shard = shard
        self.out = Path(out)
        self.config = config
        self.backend_id = get_backend(config["server"]).model_id(config["server"])
        self.params = {key: config["generation"][key] for key in GENERATION_KEYS}
        journal_path = self.out / layout.progress_relpath(shard.lang, shard.voice, shard.name)
        self.journal = atomic.Journal(journal_path)
        self.previous = {record["id"]: record for record in self.journal.read()}
        self.todo = {
            item.id
            for item in shard.items
            if not is_done(self.previous.get(item.id), item, self.out)
        }
        self.stopping = threading.Event()
        self.pool: ReplicaPool | None = None

    def connect(self, endpoint: Path) -> None:
        """Wait for this job's servers and check they hold the planned voice."""
        server = self.config["server"]
        info = wait_for_endpoint(endpoint, server["startup_timeout_s"] + ENDPOINT_GRACE_S)
        log.info(
            "using servers on %s (launcher pid %s, Slurm job %s): %d replica(s), %s ready",
            info["host"],
            info["pid"],
            info.get("slurm_job_id"),
            len(info["replicas"]),
            ", ".join(r["url"] for r in info["replicas"] if r["state"] == "ready"),
        )
        served = info.get("voices", {}).get(self.shard.voice)
        if served != self.shard.voice_sha256:
            raise ServerError(
                f"voice {self.shard.voice!r} is not verified on the servers on {info['host']} "
                f"(server: {served}, plan: {self.shard.voice_sha256}); refusing to generate in "
                "a default voice"
            )
        self.pool = ReplicaPool(endpoint, info, server, self.stopping)

    def _tts(self, payload: dict) -> bytes:
        with self.pool.slot() as client:
            try:
                return client.tts(payload)
            except Unreachable:
                self.pool.unreachable_at(client.url)  # the retry goes to another replica
                raise

    def _request(self, item: Item, seed: int) -> tuple[bytes, int]:
        server = self.config["server"]
        return with_retries(
            lambda: self._tts(tts_payload(item, seed, self.params)),
            server["retries"],
            server["backoff_s"],
            lambda n, exc: log.warning("%s: attempt %d failed, retrying: %s", item.id, n, exc),
        )

    def speak(self, item: Item) -> dict:
        """Generate one item: retry transient errors, and audio that fails validation."""
        limits = self.config["validation"]
        record = {
            "id": item.id,
            "lang": item.lang,
            "voice": item.voice,
            "text": item.text,
            "fingerprint": item.fingerprint,
            "backend": self.backend_id,
        }
        attempts = 0
        started = time.monotonic()
        base_seed = self.config["generation"]["seed"]
        for validation_try in range(limits["retries"] + 1):
            seed = item_seed(base_seed, item.lang, item.voice, item.id, validation_try)
            try:
                data, used = self._request(item, seed)
            except PermanentError as exc:
                return {
                    **record,
                    "status": "failed",
                    "reason": "http_error",
                    "last_error": str(exc),
                    "attempts": attempts + 1,
                    "seed": seed,
                }
            attempts += used
            check = check_wav(data, item.text, limits)
            if check.ok:
                atomic.write_bytes(self.out / item.wav, data)
                return {
                    **record,
                    "status": "ok",
                    "path": item.wav,
                    "seed": seed,
                    "duration_s": check.duration_s,
                    "sample_rate": check.sample_rate,
                    "bytes": check.bytes,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "attempts": attempts,
                    "parameters": self.params,
                    "generation_s": round(time.monotonic() - started, 4),
                }
            log.warning("%s: audio failed validation (%s: %s)", item.id, check.reason, check.detail)
        return {
            **record,
            "status": "failed",
            "reason": f"validation:{check.reason}",
            "last_error": check.detail,
            "attempts": attempts,
            "seed": seed,
        }

    def run(self) -> list[dict]:
        """Generate what is missing; return one record per item, in shard order."""
        total = len(self.shard.items)
        records = {
            item.id: self.previous[item.id] for item in self.shard.items if item.id not in self.todo
        }
        log.info(
            "shard %s/%s/%s: %d items, %d already done, %d to generate",
            self.shard.lang,
            self.shard.voice,
            self.shard.name,
            total,
            total - len(self.todo),
            len(self.todo),
        )
        pending = iter(item for item in self.shard.items if item.id in self.todo)
        running, error = {}, None
        width = self.pool.width if self.pool else 1
        with ThreadPoolExecutor(width, "tts") as executor:
            while True:
                # A bounded window: on SIGTERM or an error, only what is in flight remains.
                while len(running) < width and not self.stopping.is_set():
                    item = next(pending, None)
                    if item is None:
                        break
                    running[executor.submit(self.speak, item)] = item
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    try:
                        record = future.result()
                    except FishflowError as exc:
                        error = error or exc
                        self.stopping.set()
                        continue
                    self.journal.append(record)
                    records[item.id] = record
                    outcome = record.get("reason") or f"{record['duration_s']} s audio"
                    log.info(
                        "[%d/%d] %s %s (%s)",
                        len(records),
                        total,
                        item.id,
                        record["status"],
                        outcome,
                    )
        if len(records) < total:
            reason = error or "the job was stopped (SIGTERM)"
            raise FishflowError(f"{reason} ({total - len(records)} of {total} items not generated)")
        return [records[item.id] for item in self.shard.items]


def generate_shard(shard: Shard, out: Path, config: dict, endpoint: Path, output: Path) -> None:
    """The `generate` rule's body: always writes its output, complete or not.

    Snakemake fails a whole group job when one member fails (stopping the shared server and
    deleting the siblings' outputs), so a shard that cannot finish is recorded as incomplete
    instead; the `validate` rule then fails for that shard alone.
    """
    generator = ShardGenerator(shard, out, config)
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (terminated.set(), generator.stopping.set()))
    try:
        if generator.todo:
            generator.connect(endpoint)
        records = generator.run()
        error = _too_many_failures(records, config["validation"]["max_failed_fraction"])
    except FishflowError as exc:
        if terminated.is_set():
            # The job is being cancelled: no output, so the next run picks the shard up at once
            # (an incomplete record would cost that run a failed `validate` first).
            raise
        records, error = None, str(exc)
    if error:
        log.error("shard %s/%s/%s did not complete: %s", shard.lang, shard.voice, shard.name, error)
    atomic.write_json(output, {"complete": error is None, "error": error, "records": records or []})


def _too_many_failures(records: list[dict], max_fraction: float) -> str | None:
    failed = [record for record in records if record["status"] == "failed"]
    if len(failed) <= max_fraction * len(records):
        return None
    first = failed[0]
    return (
        f"{len(failed)} of {len(records)} items failed (> validation.max_failed_fraction); "
        f"first: {first['id']}: {first['last_error']}"
    )
