import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from fishflow.cluster.resources import check_resources_expanded
from fishflow.errors import FishflowError
from fishflow.layout import Layout
from fishflow.planning.config import validate_config
from fishflow.planning.plan import Plan, Settings
from fishflow.planning.summary import summary_text
from fishflow.report.provenance import judge_models
from fishflow.serving.checkpoints import checkpoint_files

min_version("9.0")

# Validate everything before any job exists: a bad config or input fails the plan, not a GPU job.
try:
    if workflow.resource_settings.default_resources:
        check_resources_expanded(workflow.resource_settings.default_resources.args)
    validate_config(config)
    PLAN = Plan(config)
except FishflowError as exc:
    raise WorkflowError(f"fishflow: {exc}") from None

LAYOUT = Layout(config["output_dir"])
SETTINGS = Settings(config)
FISH_SPEECH = config["server"]["fish_speech"]
LANGUAGES = sorted(PLAN.rows)


wildcard_constraints:
    lang=r"[a-z]{2,3}",
    batch=r"b\d+",


if workflow.is_main_process:
    print(summary_text(PLAN), file=sys.stderr)


def all_targets():
    return (
        language_manifests("metadata")
        + language_manifests("failed")
        + [str(LAYOUT.summary())]
        + [
            str(LAYOUT.report(name))
            for name in ("index.html", "report.json", "items.csv")
        ]
    )


def language_manifests(kind):
    manifest = LAYOUT.metadata if kind == "metadata" else LAYOUT.failed
    return [str(manifest(lang)) for lang in LANGUAGES]


def checkpoint_paths():
    return {name: str(path) for name, path in checkpoint_files(FISH_SPEECH).items()}


def checkpoint_inputs(wildcards):
    return [path for path in checkpoint_paths().values() if Path(path).is_file()]


def checkpoint_provenance(wildcards):
    """fish-speech servers start after the model's files are provided. ancient: a rerun of
    that rule (say, after the provenance file was deleted) must not restart any batch.
    """
    if config["server"]["backend"] != "fish-speech":
        return []
    return [ancient(str(LAYOUT.checkpoint_provenance()))]


def batch_spec(wildcards):
    return PLAN.batch(wildcards.lang, wildcards.batch)


def batch_fingerprint(wildcards):
    return PLAN.batch_fingerprint(wildcards.lang, wildcards.batch)


def batch_records(wildcards):
    """A language's batch records."""
    return [
        str(LAYOUT.batch_record(lang, batch))
        for lang, batch in PLAN.batch_keys()
        if lang == wildcards.lang
    ]


def servers_records(wildcards):
    return [str(LAYOUT.servers_record(*key)) for key in PLAN.batch_keys()]


def judge_model_files(wildcards):
    """The files of the judge's models, hashed into the report's provenance."""
    return [str(path) for model in judge_models(config) for path in model.files]
