import json
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from fishflow import layout
from fishflow.serving.checkpoints import checkpoint_files
from fishflow.planning.config import validate_config
from fishflow.errors import FishflowError
from fishflow.planning.plan import Plan, Settings, Unstored
from fishflow.planning.summary import summary_text
from fishflow.cluster.resources import check_resources_expanded

min_version("9.0")

# Validate everything before any job exists: a bad config or input fails the plan, not a GPU job.
try:
    if workflow.resource_settings.default_resources:
        check_resources_expanded(workflow.resource_settings.default_resources.args)
    validate_config(config)
    PLAN = Plan(config)
except FishflowError as exc:
    raise WorkflowError(f"fishflow: {exc}") from None

OUT = config["output_dir"]
SETTINGS = Settings(config)
SERVERS = f"{OUT}/work/servers"
FISH_SPEECH = config["server"]["fish_speech"]


wildcard_constraints:
    lang=r"[a-z]{2,3}",
    voice=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    shard=r"\d+",
    batch=r"b\d+",


if workflow.is_main_process:
    print(summary_text(PLAN), file=sys.stderr)


def all_targets():
    return (
        language_manifests("metadata")
        + language_manifests("failed")
        + [f"{OUT}/summary.json"]
        + [f"{OUT}/report/{n}" for n in ("index.html", "report.json", "items.csv")]
    )


def endpoint_file(wildcards):
    """The endpoint of the server of this shard's batch: one server start (one Slurm job, on
    its own node) serves `shards_per_job` shards."""
    batch = PLAN.batch(wildcards.lang, wildcards.voice, wildcards.shard)
    return f"{SERVERS}/{batch}.endpoint.json"


def checkpoint_paths():
    return {name: str(path) for name, path in checkpoint_files(FISH_SPEECH).items()}


def checkpoint_inputs(wildcards):
    return [path for path in checkpoint_paths().values() if Path(path).is_file()]


def checkpoint_provenance(wildcards):
    """fish-speech servers start after the checkpoint rule. ancient: a rerun of that rule (say,
    after the provenance file was deleted) must not restart servers and their shards."""
    if config["server"]["backend"] != "fish-speech":
        return []
    return [ancient(f"{OUT}/provenance/checkpoint.json")]


def server_spec(wildcards):
    """Unstored: server settings (timeouts, flags, fault injection) must not resubmit batches;
    what changes audio is in the shards' fingerprints."""
    voices = [voice.spec() for voice in PLAN.voices.values()]
    return Unstored(
        json.dumps(
            {"server": config["server"], "voices": voices, "servers_dir": SERVERS},
            sort_keys=True,
        )
    )


def shard_spec(wildcards):
    return PLAN.shard(wildcards.lang, wildcards.voice, wildcards.shard)


def shard_fingerprint(wildcards):
    return PLAN.shard_fingerprint(wildcards.lang, wildcards.voice, wildcards.shard)


def validated_shards(wildcards):
    return [
        f"{OUT}/work/validated/{lang}/{voice}/{shard}.jsonl"
        for lang, voice, shard in PLAN.shard_keys()
        if lang == wildcards.lang
    ]


def language_manifests(kind):
    return [f"{OUT}/{kind}_{lang}.jsonl" for lang in sorted(PLAN.rows)]


onstart:
    # A server endpoint left by an earlier, killed run must not be mistaken for this run's.
    for stale in Path(SERVERS).glob("*.endpoint.json"):
        stale.unlink()
