"""Every path under the output folder, in one place: rules, jobs, merging, the report and
`fishflow status` all take their paths from here.

Methods accept Snakemake wildcards as arguments (`layout.batch_record("{lang}", "{batch}")`),
so the rules' patterns and the code's paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARD_DIGITS = 5


def shard_name(index: int) -> str:
    return f"{index:0{SHARD_DIGITS}d}"


def shard_index(name: str) -> int:
    return int(name)


def batch_name(index: int) -> str:
    return f"b{index:0{SHARD_DIGITS}d}"


def wav_relpath(lang: str, voice: str, item_id: str) -> str:
    """A WAV's path relative to the output folder, as the manifests name it."""
    return f"audio/{lang}/{voice}/{item_id}.wav"


@dataclass(frozen=True)
class Layout:
    out: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))

    # -- what users read -----------------------------------------------------------------------
    def wav(self, lang: str, voice: str, item_id: str) -> Path:
        return self.out / wav_relpath(lang, voice, item_id)

    def metadata(self, lang: str) -> Path:
        return self.out / f"metadata_{lang}.jsonl"

    def failed(self, lang: str) -> Path:
        return self.out / f"failed_{lang}.jsonl"

    def summary(self) -> Path:
        return self.out / "summary.json"

    def dataset_card(self) -> Path:
        """The Hugging Face dataset card: its front matter makes the folder a dataset."""
        return self.out / "README.md"

    def dataset_metadata(self, lang: str) -> Path:
        """A language's rows for `datasets` (audiofolder): its `file_name`s are relative to it."""
        return self.out / "audio" / lang / "metadata.jsonl"

    def lhotse(self) -> Path:
        """Where `fishflow export lhotse` writes its manifests unless told otherwise."""
        return self.out / "lhotse"

    def report(self, name: str) -> Path:
        """`index.html`, `report.json` or `items.csv`."""
        return self.out / "report" / name

    def marks(self) -> Path:
        """A reviewer's marks (`fishflow browse`): items to speak again with their next seed."""
        return self.out / "review" / "marks.jsonl"

    def checkpoint_provenance(self) -> Path:
        return self.out / "provenance" / "checkpoint.json"

    # -- what the generation jobs keep ---------------------------------------------------------
    def journal(self, lang: str, voice: str, shard: str) -> Path:
        """A shard's journal of finished items: not a Snakemake output, so a failed job keeps
        it and the next run speaks only what is missing."""
        return self.out / "work" / "progress" / lang / voice / f"{shard}.jsonl"

    def tally(self, lang: str, voice: str, shard: str) -> Path:
        """A shard's items done and failed as its last generation job left them, with the
        journal's size and time then: while they match, a plan summary need not read the
        journal and every WAV."""
        return self.out / "work" / "progress" / lang / voice / f"{shard}.tally.json"

    def batch_record(self, lang: str, batch: str) -> Path:
        """A finished batch: one shard record per line, in plan order."""
        return self.out / "work" / "batches" / lang / f"{batch}.jsonl"

    def servers_record(self, lang: str, batch: str) -> Path:
        """How a batch's job ran its servers: replicas, node, Slurm job, GPUs, start-up."""
        return self.out / "work" / "batches" / lang / f"{batch}.servers.json"

    def browse_index(self) -> Path:
        """`fishflow browse`'s index of the manifests, kept for its next start."""
        return self.out / "work" / "browse" / "index.npz"

    def running_record(self, lang: str, batch: str) -> Path:
        """A batch's job while it runs: host, pid, Slurm job, GPUs, start (`fishflow status`).
        Removed when the job ends; one left by a killed job is told apart by its pid or job."""
        return self.out / "work" / "batches" / lang / f"{batch}.running.json"

    def run_record(self) -> Path:
        """The config and log of the Snakemake run that planned last (`fishflow status`)."""
        return self.out / "work" / "run.json"

    def partial_wavs(self, lang: str, batch: str) -> Path:
        """Where a batch's WAVs are written before they are renamed into audio/: a job killed
        mid-write leaves its partial WAV here, and the batch's next job removes it."""
        return self.out / "work" / "partial" / lang / batch

    def server_home(self, lang: str, batch: str, host: str, pid: int) -> Path:
        """Working folders of a job's server replicas (their reference stores)."""
        return self.out / "work" / "servers" / lang / f"{batch}-{host}-{pid}"

    # -- logs ----------------------------------------------------------------------------------
    def speak_log(self, lang: str, batch: str) -> Path:
        return self.out / "logs" / "speak" / lang / f"{batch}.log"

    def replica_log(self, lang: str, batch: str, replica: str) -> Path:
        return self.out / "logs" / "speak" / lang / batch / f"{replica}.log"

    def log(self, name: str) -> Path:
        """The log of a rule with one job per run or language (`merge/en`, `report`)."""
        return self.out / "logs" / f"{name}.log"

    # -- the Slurm controller (`fishflow submit`) ----------------------------------------------
    def controller_state(self) -> Path:
        return self.out / "work" / "controller.json"

    def controller_log(self) -> Path:
        return self.out / "logs" / "controller" / "snakemake.log"

    def submitit_folder(self) -> Path:
        return self.out / "logs" / "controller" / "submitit"

    def slurm_logs(self) -> Path:
        """Slurm's own logs of the generation jobs (`--slurm-logdir`)."""
        return self.out / "logs" / "slurm"
