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
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from fishflow import atomic
from fishflow.errors import FishflowError, PermanentError, Unreachable
from fishflow.judging.judge import Judge, Take
from fishflow.judging.models import judge_models
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


@dataclass(frozen=True)
class Failure:
    """An item that could not be spoken: an HTTP error, or audio failing its checks."""

    seed: int
    attempts: int
    reason: str
    detail: str | None

    def record(self, common: dict) -> ItemRecord:
        return ItemRecord(
            **common,
            status="failed",
            seed=self.seed,
            attempts=self.attempts,
            reason=self.reason,
            last_error=self.detail,
        )


class Takes:
    """An item's takes for the judge, spoken on demand: first the one an earlier run left on
    disk (when the judge's settings changed since), then new ones with the item's next seeds.
    Ends at the first take that cannot be had (`failure`)."""

    def __init__(self, job: BatchJob, item: Item, spoken: ItemRecord | None):
        self.job, self.item, self.spoken = job, item, spoken
        self.failure: Failure | None = None
        self.attempts = spoken.attempts if spoken else 0
        self.seconds = (spoken.generation_s or 0.0) if spoken else 0.0

    def __iter__(self) -> Iterator[Take]:
        seeds = self.item.seeds(self.job.base_seed)
        if self.spoken is not None:
            data = (self.job.layout.out / self.spoken.path).read_bytes()
            check = check_wav(data, self.item.text, self.job.limits)
            yield Take(
                self.spoken.seed,
                data,
                check,
                on_disk=True,
                ttfb_s=self.spoken.ttfb_s,
                ttfa_s=self.spoken.ttfa_s,
            )
            # Regenerations go on from the seed after the one kept (seeds are tried in order).
            seeds = _after(seeds, self.spoken.seed)
        while True:
            outcome = self.job.take(self.item, seeds)
            if isinstance(outcome, Failure):
                self.failure = outcome
                return
            self.attempts += outcome.attempts
            self.seconds += outcome.seconds
            yield outcome


def _after(seeds: Iterator[int], seed: int, horizon: int = 1000) -> Iterator[int]:
    """`seeds` from the one after `seed`; all of them if `seed` is not among the first
    `horizon` (a record from before the seeds' order changed)."""
    ahead = [next(seeds) for _ in range(horizon)]
    if seed in ahead:
        ahead = ahead[ahead.index(seed) + 1 :]
    yield from (s for s in ahead if s != seed)
    yield from seeds


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
        self.quality = config["quality"]
        self.judge_models = judge_models(self.quality, [batch.lang])
        self.judge_id = self.judge_models.fingerprints[batch.lang] if self.judge_models else None
        self.judge: Judge | None = None  # loaded once, when something is left to speak
        # Items spoken before, whose WAV is judged again (the judge's settings changed).
        self.spoken: dict[str, ItemRecord] = {}
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
            check = self._checker(item.text)
            if is_done(record, item.fingerprint, self.layout.out, check, self.judge_id):
                records[item.id] = record
                continue
            todo.append(item)
            if self.judge_id is not None and is_done(
                record, item.fingerprint, self.layout.out, check
            ):
                self.spoken[item.id] = record  # its audio stays unless it fails a gate
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

    def take(self, item: Item, seeds: Iterator[int]) -> Take | Failure:
        """One take: the item's next seeds until its audio passes the checks (up to
        validation.retries new seeds), transient errors retried."""
        attempts, started = 0, time.monotonic()
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
                return Failure(seed, attempts + 1, "http_error", str(exc))
            attempts += used
            check = check_wav(data, item.text, self.limits)
            if check.ok:
                timing = (streamed.ttfb_s, streamed.ttfa_s) if streamed else (None, None)
                seconds = round(time.monotonic() - started, 4)
                return Take(seed, data, check, attempts, seconds, False, *timing)
            log.warning("%s: audio failed its checks (%s: %s)", item.id, check.reason, check.detail)
        return Failure(seed, attempts, f"validation:{check.reason}", check.detail)

    def speak(self, item: Item) -> ItemRecord:
        """Generate one item: retry transient errors and audio that fails the checks; with the
        judge, speak takes until one passes its gates and keep the best (judging.judge)."""
        common = {
            "id": item.id,
            "lang": item.lang,
            "voice": item.voice,
            "text": item.text,
            "fingerprint": item.fingerprint,
            "backend": self.backend_id,
        }
        if self.judge is None:
            outcome = self.take(item, item.seeds(self.base_seed))
            if isinstance(outcome, Failure):
                return outcome.record(common)
            return self._keep(item, outcome, common, outcome.attempts, outcome.seconds, {})
        takes = Takes(self, item, self.spoken.get(item.id))
        verdict = self.judge.best_of(item.text, item.voice, takes)
        if verdict is None:  # not one take passed the audio checks
            return takes.failure.record(common)
        judged = {"scores": verdict.scores, "takes": verdict.takes, "judge": self.judge_id}
        if verdict.gate is not None and not self.quality["keep_failed"]:
            log.warning("%s: no take passed its gates (%s)", item.id, verdict.detail)
            if item.id in self.spoken:  # spoken before, failed by today's judge: not a result
                self.layout.wav(item.lang, item.voice, item.id).unlink(missing_ok=True)
            return ItemRecord(
                **common,
                status="failed",
                seed=verdict.take.seed,
                attempts=takes.attempts,
                reason=f"quality:{verdict.gate}",
                last_error=f"{verdict.detail} (best of {verdict.takes} takes)",
                **judged,
            )
        return self._keep(item, verdict.take, common, takes.attempts, takes.seconds, judged)

    def _keep(
        self, item: Item, take: Take, common: dict, attempts: int, seconds: float, judged: dict
    ) -> ItemRecord:
        """The take written as the item's WAV (unless it is there already) and its record;
        `attempts` and `seconds`: the requests and speaking time of every take of the item."""
        if not take.on_disk:
            self.partial.mkdir(parents=True, exist_ok=True)
            wav = self.layout.wav(item.lang, item.voice, item.id)
            atomic.write_bytes(wav, take.data, tmp_dir=self.partial)
        return ItemRecord(
            **common,
            status="ok",
            seed=take.seed,
            attempts=attempts,
            path=item.wav,
            duration_s=take.check.duration_s,
            sample_rate=take.check.sample_rate,
            bytes=take.check.bytes,
            sha256=hashlib.sha256(take.data).hexdigest(),
            parameters=self.params,
            generation_s=round(seconds, 4),
            ttfb_s=take.ttfb_s,
            ttfa_s=take.ttfa_s,
            **judged,
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
        atomic.write_json(running, self._job_record())
        try:
            if left:
                # The judge loads while the servers start (their model load takes longer).
                with ThreadPoolExecutor(1, "judge") as loader:
                    judge = loader.submit(self._load_judge) if self.judge_models else None
                    servers = self._start_servers()
                    self.judge = judge.result() if judge else None
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

    def _load_judge(self) -> Judge:
        return Judge(self.quality, self.judge_models, self.batch.lang, self.batch.references)

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

    def _job_record(self) -> dict:
        """Where and when this job runs: the running record, and the start of the servers record."""
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
                **self._job_record(),
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
