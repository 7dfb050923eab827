"""One generation job: speak a batch of shards with the job's own server replicas.

The job re-checks what its shards' journals say is done (the WAV's hash and audio checks, on
this node, never on the login node), starts the servers only if something is left, registers
and verifies the voice, and sends every missing item over the replica pool, up to
replicas x `server.max_in_flight` at a time. Every finished item (spoken or failed) is appended
to its shard's journal, fsynced, right after its WAV is renamed into place, so a kill at any
instant loses at most the items in flight. A shard that cannot finish fails the job after its
siblings have finished and journaled; the next run speaks only what is missing.

On SIGTERM or SIGINT, or when the Snakemake that started the job is gone, nothing new is sent,
what is in flight is finished and journaled, and the servers are stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from fishflow import atomic
from fishflow.errors import FishflowError, PermanentError, Unreachable
from fishflow.layout import Layout
from fishflow.planning.plan import GENERATION_KEYS, Batch, Item, Shard
from fishflow.planning.summary import write_tally
from fishflow.records import SERVERS_SCHEMA, ItemRecord, ShardRecord, is_done
from fishflow.serving.backends import get_backend
from fishflow.serving.client import StreamedWav, with_retries
from fishflow.serving.replicas import Replicas
from fishflow.speaking import lifeline
from fishflow.speaking.audio import check_wav
from fishflow.speaking.pool import ReplicaPool, Stopped

log = logging.getLogger("fishflow.speak")


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


@dataclass
class ShardWork:
    """A shard's journal, what it already holds and what is left."""

    shard: Shard
    journal: atomic.Journal
    records: dict[str, ItemRecord]
    todo: list[Item]
    error: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.shard.lang}/{self.shard.voice}/{self.shard.name}"


class BatchJob:
    def __init__(self, batch: Batch, config: dict):
        self.batch = batch
        self.config = config
        self.layout = Layout(config["output_dir"])
        self.server = config["server"]
        self.limits = config["validation"]
        self.base_seed = config["generation"]["seed"]
        self.params = {key: config["generation"][key] for key in GENERATION_KEYS}
        self.backend_id = get_backend(self.server).model_id(self.server)
        self.stopping = threading.Event()
        self.stop_reason = "the job was stopped"
        self.pool: ReplicaPool | None = None
        self.started_at = time.time()
        self.partial = self.layout.partial_wavs(batch.lang, batch.name)
        shutil.rmtree(self.partial, ignore_errors=True)  # left by a killed job of this batch
        self.shards = [self._resume(shard) for shard in batch.shards]

    # -- resume ----------------------------------------------------------------------------------

    def _resume(self, shard: Shard) -> ShardWork:
        journal = atomic.Journal(self.layout.journal(shard.lang, shard.voice, shard.name))
        previous = {r["id"]: ItemRecord.from_dict(r) for r in journal.read()}
        records, todo = {}, []
        for item in shard.items:
            record = previous.get(item.id)
            if is_done(record, item.fingerprint, self.layout.out, self._checker(item.text)):
                records[item.id] = record
            else:
                todo.append(item)
        return ShardWork(shard, journal, records, todo)

    def _checker(self, text: str):
        """Audio checks of a finished item's WAV, under today's limits."""
        return lambda data: check_wav(data, text, self.limits).ok

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stopping.set()

    # -- speaking one item ---------------------------------------------------------------------

    def _tts(self, payload: dict) -> tuple[bytes, StreamedWav | None]:
        """The WAV, and with server.streaming its streamed answer's timings."""
        with self.pool.slot() as client:
            try:
                if self.server["streaming"]:
                    streamed = client.tts_streamed(payload)
                    return streamed.wav, streamed
                return client.tts(payload), None
            except Unreachable:
                self.pool.unreachable_at(client.url)  # the retry goes to another replica
                raise

    def speak(self, item: Item) -> ItemRecord:
        """Generate one item: retry transient errors, and audio that fails the checks."""
        common = {
            "id": item.id,
            "lang": item.lang,
            "voice": item.voice,
            "text": item.text,
            "fingerprint": item.fingerprint,
            "backend": self.backend_id,
        }
        attempts = 0
        started = time.monotonic()
        seeds = item.seeds(self.base_seed)
        for _ in range(self.limits["retries"] + 1):
            seed = next(seeds)
            try:
                (data, streamed), used = with_retries(
                    lambda seed=seed: self._tts(tts_payload(item, seed, self.params)),
                    self.server["retries"],
                    self.server["backoff_s"],
                    lambda n, exc: log.warning(
                        "%s: attempt %d failed, retrying: %s", item.id, n, exc
                    ),
                )
            except PermanentError as exc:
                return ItemRecord(
                    **common,
                    status="failed",
                    seed=seed,
                    attempts=attempts + 1,
                    reason="http_error",
                    last_error=str(exc),
                )
            attempts += used
            check = check_wav(data, item.text, self.limits)
            if check.ok:
                self.partial.mkdir(parents=True, exist_ok=True)
                wav = self.layout.wav(item.lang, item.voice, item.id)
                atomic.write_bytes(wav, data, tmp_dir=self.partial)
                return ItemRecord(
                    **common,
                    status="ok",
                    seed=seed,
                    attempts=attempts,
                    path=item.wav,
                    duration_s=check.duration_s,
                    sample_rate=check.sample_rate,
                    bytes=check.bytes,
                    sha256=hashlib.sha256(data).hexdigest(),
                    parameters=self.params,
                    generation_s=round(time.monotonic() - started, 4),
                    ttfb_s=streamed.ttfb_s if streamed else None,
                    ttfa_s=streamed.ttfa_s if streamed else None,
                )
            log.warning("%s: audio failed its checks (%s: %s)", item.id, check.reason, check.detail)
        return ItemRecord(
            **common,
            status="failed",
            seed=seed,
            attempts=attempts,
            reason=f"validation:{check.reason}",
            last_error=check.detail,
        )

    # -- speaking the batch ------------------------------------------------------------------------

    def speak_all(self) -> None:
        """Every missing item of every shard, in order, over the pool; a shard whose item
        cannot be spoken gets no new requests, the others go on."""
        pending = iter([(work, item) for work in self.shards for item in work.todo])
        running = {}
        with ThreadPoolExecutor(self.pool.width, "tts") as executor:
            while True:
                # A bounded window: once stopping, only what is in flight remains.
                while len(running) < self.pool.width and not self.stopping.is_set():
                    work, item = next(pending, (None, None))
                    if work is None:
                        break
                    if work.error is None:
                        running[executor.submit(self.speak, item)] = (work, item)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    work, item = running.pop(future)
                    try:
                        record = future.result()
                    except Stopped:
                        continue
                    except FishflowError as exc:
                        # One line: a failure of the servers is told once, with its log.
                        work.error = work.error or f"{item.id}: {str(exc).splitlines()[0]}"
                        continue
                    # When it finished: the rate `fishflow status` shows.
                    record = replace(record, finished_at=round(time.time(), 3))
                    work.journal.append(record.as_dict())
                    work.records[item.id] = record
                    outcome = record.reason or f"{record.duration_s} s audio"
                    log.info("%s %s %s (%s)", work.tag, item.id, record.status, outcome)

    def shard_error(self, work: ShardWork) -> str | None:
        total = len(work.shard.items)
        missing = total - len(work.records)
        if missing:
            why = work.error or (self.stop_reason if self.stopping.is_set() else "not sent")
            return f"{why} ({missing} of {total} items not spoken)"
        failed = [r for r in work.records.values() if not r.ok]
        if len(failed) > self.limits["max_failed_fraction"] * total:
            return (
                f"{len(failed)} of {total} items failed (> validation.max_failed_fraction); "
                f"first: {failed[0].id}: {failed[0].last_error}"
            )
        return None

    def run(self, batch_record: Path, servers_record: Path) -> None:
        left = sum(len(work.todo) for work in self.shards)
        total = sum(len(work.shard.items) for work in self.shards)
        log.info(
            "batch %s/%s: %d shard(s), %d items, %d done, %d to speak",
            self.batch.lang,
            self.batch.name,
            len(self.shards),
            total,
            total - left,
            left,
        )
        servers, failure = None, None
        running = self.layout.running_record(self.batch.lang, self.batch.name)
        atomic.write_json(running, self._running_record())
        try:
            if left:
                servers = self._start_servers()
                self.speak_all()
        except FishflowError as exc:
            failure = str(exc)  # the servers failed to start: no item was sent
        finally:
            if servers is not None:
                servers.stop()
            self._write_servers_record(servers_record, servers)
            self._write_tallies()
            running.unlink(missing_ok=True)
        if failure is None and servers is not None and servers.failed():
            failure = servers.failure()  # every replica died while speaking
        errors = [(work, self.shard_error(work)) for work in self.shards]
        errors = [(work, error) for work, error in errors if error]
        if failure or errors:
            lines = [f"  shard {work.tag}: {error}" for work, error in errors]
            raise FishflowError(
                f"batch {self.batch.lang}/{self.batch.name}: {len(errors)} of {len(self.shards)} "
                "shard(s) did not complete; the next run speaks only their missing items"
                + "".join(f"\n{line}" for line in lines)
                + (f"\n{failure}" if failure else "")
            )
        shards = [
            ShardRecord(
                work.shard.lang,
                work.shard.voice,
                work.shard.name,
                work.shard.fingerprint,
                [work.records[item.id] for item in work.shard.items],
            )
            for work in self.shards
        ]
        atomic.write_jsonl(batch_record, [shard.as_dict() for shard in shards])
        shutil.rmtree(self.partial, ignore_errors=True)

    def _write_tallies(self) -> None:
        """Each shard's items done and failed, as checked and spoken here: the plan summary
        reads these instead of every journal and WAV (planning.summary.shard_progress)."""
        for work in self.shards:
            shard = work.shard
            write_tally(
                self.layout.tally(shard.lang, shard.voice, shard.name),
                shard.fingerprint,
                work.journal.path,
                done=sum(record.ok for record in work.records.values()),
                failed=sum(not record.ok for record in work.records.values()),
                audio_s=sum(record.duration_s or 0.0 for record in work.records.values()),
            )

    def _start_servers(self) -> Replicas:
        b = self.batch
        home = self.layout.server_home(b.lang, b.name, socket.gethostname(), os.getpid())
        servers = Replicas(
            self.server,
            list(b.references),
            home,
            lambda tag: self.layout.replica_log(b.lang, b.name, tag),
        )
        servers.start()
        try:
            servers.wait_ready()
        except FishflowError:
            servers.stop()
            raise
        self.pool = ReplicaPool(servers, self.server, self.stopping)
        return servers

    def _running_record(self) -> dict:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ""
        return {
            "lang": self.batch.lang,
            "batch": self.batch.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "started_at": self.started_at,
            # The GPUs this job holds (Slurm sets CUDA_VISIBLE_DEVICES; a CPU run has none).
            "gpus": len([gpu for gpu in visible.split(",") if gpu.strip()]),
        }

    def _write_servers_record(self, path: Path, servers: Replicas | None) -> None:
        spoken = sum(1 for work in self.shards for item in work.todo if item.id in work.records)
        atomic.write_json(
            path,
            {
                "schema": SERVERS_SCHEMA,
                "lang": self.batch.lang,
                "batch": self.batch.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "started_at": self.started_at,
                "finished_at": time.time(),
                "items_spoken": spoken,
                # None: no server ran (nothing was left to speak, or they failed to start).
                "servers": servers.record() if servers is not None else None,
            },
        )


def speak_batch(batch: Batch, config: dict, batch_record: Path, servers_record: Path) -> None:
    """The `speak` rule's body."""
    job = BatchJob(batch, config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: job.stop(f"the job got {signal.Signals(number).name}"))
    done = threading.Event()
    lifeline.watch(job.stop, done)
    try:
        job.run(batch_record, servers_record)
    finally:
        done.set()
