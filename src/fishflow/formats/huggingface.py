"""The output folder as a Hugging Face dataset, one config per language.

`datasets` loads a folder of audio with a metadata file ("audiofolder"): per language,
`audio/<lang>/metadata.jsonl` holds the spoken items, each with its WAV's path relative to that
file (`file_name`), and the card `README.md` names per config the metadata and the WAVs
(`data_files`) and the columns' types (`features`). The types are declared, not left to
`datasets`: it infers them from the first 10 MB of a metadata file only, so a score that is None
in the first ~20k rows and set later fails the whole load (observed with datasets 3.6).
"""

from __future__ import annotations

import json
import posixpath
import typing
from collections.abc import Iterable
from pathlib import Path

import yaml

from fishflow import __version__, atomic
from fishflow.errors import FishflowError
from fishflow.layout import Layout
from fishflow.records import METADATA_FIELDS, ItemRecord

# A column's type: a `datasets` dtype name, a struct (name -> type) or a list (of one type).
Type = str | dict | list
NULL = "null"

# The fields the quality judge adds to the manifests (issue 13's contract), typed by meaning:
# each score may be None in every row of a run (not measured, or the judge off), yet a column
# must keep its type from run to run.
SCORE_TYPES: dict[str, Type] = {
    "wer": "float64",
    "cer": "float64",
    "transcript": "string",
    "repetition": "bool",
    "similarity": "float64",
    "lead_silence_s": "float64",
    "trail_silence_s": "float64",
    "speech_fraction": "float64",
    "mos": "float64",
    "judge_s": {"vad": "float64", "asr": "float64", "speaker": "float64"},
    "gate": "string",
}
JUDGE_TYPES: dict[str, Type] = {"scores": SCORE_TYPES, "takes": "int64"}
_SCALARS: dict[type, str] = {str: "string", bool: "bool", int: "int64", float: "float64"}
# `path` is relative to the output folder; `file_name` (relative to the metadata) replaces it.
_REPLACED = "path"


def declared_types() -> dict[str, Type]:
    """The manifest columns whose type is known before any row is read: the scalars as
    ItemRecord declares them, and the judge's. The others (`parameters`) are inferred."""
    hints = typing.get_type_hints(ItemRecord)
    types: dict[str, Type] = {}
    for name in METADATA_FIELDS:
        kinds = [k for k in typing.get_args(hints[name]) or (hints[name],) if k is not type(None)]
        if name != _REPLACED and len(kinds) == 1 and kinds[0] in _SCALARS:
            types[name] = _SCALARS[kinds[0]]
    return {**types, **JUDGE_TYPES}


def _infer(value) -> Type | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: _infer(item) for key, item in value.items()}
    if isinstance(value, list):
        element = None
        for item in value:
            element = merge_types(element, _infer(item), "[]")
        return [element]
    return _SCALARS[type(value)]


def merge_types(a: Type | None, b: Type | None, where: str) -> Type | None:
    """The one type that holds values of types `a` and `b` (None: nothing seen yet)."""
    if a is None or a == NULL:
        return a if b is None else b
    if b is None or b == NULL or a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {key: merge_types(a.get(key), b.get(key), f"{where}.{key}") for key in {**a, **b}}
    if isinstance(a, list) and isinstance(b, list):
        return [merge_types(a[0], b[0], f"{where}[]")]
    if isinstance(a, str) and isinstance(b, str) and {a, b} == {"int64", "float64"}:
        return "float64"
    raise FishflowError(f"metadata field {where!r} holds values of two types: {a} and {b}")


def column_types(rows: Iterable[dict]) -> dict[str, Type]:
    """Every column's type over all rows: the declared ones, widened by what the rows hold."""
    types: dict[str, Type | None] = dict(declared_types())
    for row in rows:
        for key, value in row.items():
            if value is None:
                types.setdefault(key, None)
            else:
                types[key] = merge_types(types.get(key), _infer(value), key)
    return {key: _settled(kind) for key, kind in types.items()}


def _settled(kind: Type | None) -> Type:
    """A type with nothing seen (every value None, no declaration) is `null`."""
    if kind is None:
        return NULL
    if isinstance(kind, dict):
        return {key: _settled(item) for key, item in kind.items()}
    if isinstance(kind, list):
        return [_settled(kind[0])]
    return kind


def _feature(kind: Type) -> dict:
    """A type in the card's YAML form (`datasets.Features._from_yaml_list`)."""
    if isinstance(kind, dict):
        return {"struct": [{"name": key, **_feature(item)} for key, item in kind.items()]}
    if isinstance(kind, list):
        return {"list": _feature(kind[0])}
    return {"dtype": kind}


def dataset_rows(rows: list[dict], folder: str) -> list[dict]:
    """Manifest rows as `datasets` reads them: every field, and the WAV relative to the metadata's
    `folder` (relative to the output folder) as `file_name` instead of `path`."""
    prefix = f"{folder}/"
    out = []
    for row in rows:
        path = row[_REPLACED]
        if not path.startswith(prefix):
            raise FishflowError(f"item {row['id']!r} has its WAV outside {folder}: {path}")
        fields = {key: value for key, value in row.items() if key != _REPLACED}
        out.append({"file_name": path[len(prefix) :], **fields})
    return out


def config_entry(lang: str, metadata: str, types: dict[str, Type]) -> dict:
    """A language's config: its metadata (`metadata`, relative to the output folder), the WAVs
    beside it, and the columns' types."""
    columns = [{"name": "audio", "dtype": "audio"}] + [
        {"name": name, **_feature(kind)} for name, kind in types.items() if name != "file_name"
    ]
    wavs = f"{posixpath.dirname(metadata)}/**/*.wav"
    return {
        "config_name": lang,
        "data_files": [{"split": "train", "path": [metadata, wavs]}],
        "features": columns,
    }


def card_text(
    configs: list[dict], summary: dict, backends: list[str], config_sha256: str, license: str
) -> str:
    """The dataset card: front matter for `datasets` and the Hub, then what the folder holds."""
    front = {
        "license": license,
        "language": [config["config_name"] for config in configs],
        "task_categories": ["text-to-speech"],
        "tags": ["synthetic", "fishflow"],
        "configs": configs,
    }
    languages = summary["languages"]
    total = summary["total"]
    hours = sum(c["audio_s"] for voices in languages.values() for c in voices.values()) / 3600
    voices = sorted({voice for per_voice in languages.values() for voice in per_voice})
    table = ["| Language | Voice | Items | Audio (h) | Failed |", "|---|---|---:|---:|---:|"]
    for lang, per_voice in languages.items():
        for voice, cell in per_voice.items():
            table.append(
                f"| {lang} | {voice} | {cell['ok']} | {cell['audio_s'] / 3600:.3f} "
                f"| {cell['failed']} |"
            )
    first = configs[0]["config_name"] if configs else "<lang>"
    body = f"""
# Synthetic speech: {", ".join(front["language"])}

Made by fishflow {__version__} from one run's texts and reference voices: {total["ok"]} items
spoken ({hours:.3f} h of audio) in {len(languages)} language(s) by {len(voices)} voice(s)
({", ".join(voices)}). {total["failed"]} item(s) failed; they are not in the dataset
(`failed_<lang>.jsonl` gives their reasons).

- Speech engine: {", ".join(f"`{backend}`" for backend in backends) or "none"}
- Config fingerprint (sha256 of the run's config without `output_dir`): `{config_sha256}`

{chr(10).join(table)}

## Loading

One config per language; each row holds `audio`, `text`, `voice`, `id`, `seed`, `duration_s`
and the rest of the item's row in `metadata_<lang>.jsonl` (`scores` when the quality judge ran).

```python
from datasets import load_dataset

ds = load_dataset("path/to/this/folder", "{first}", split="train")
ds[0]["audio"]  # {{"array": ..., "sampling_rate": ..., "path": ...}}
```

`datasets` 3.6 decodes the WAVs with soundfile; 4.0 and newer need `torchcodec` and FFmpeg.
To upload, `work/` and `logs/` (fishflow's own state) can be left out.

## Licence

{_licence_text(license)}
"""
    return f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n{body}"


def _licence_text(license: str) -> str:
    if license != "unknown":
        return f"`{license}`, as the run's config (`dataset.license`) says."
    return (
        "Not set (`license: unknown`): the rights to the input texts and to the reference\n"
        "voices decide it. Set `dataset.license` in the run's config before sharing this dataset\n"
        "(each run writes this card anew)."
    )


def write_dataset(
    out: Path, languages: list[str], summary: Path, config_sha256: str, license: str
) -> None:
    """Per language the rows for `datasets`, then the card that names them."""
    layout = Layout(out)
    configs, backends = [], set()
    for lang in languages:
        metadata = layout.dataset_metadata(lang).relative_to(layout.out).as_posix()
        rows = dataset_rows(atomic.read_jsonl(layout.metadata(lang)), posixpath.dirname(metadata))
        backends.update(row["backend"] for row in rows)
        configs.append(config_entry(lang, metadata, column_types(rows)))
        atomic.write_jsonl(layout.dataset_metadata(lang), rows)
    summary_data = json.loads(Path(summary).read_text(encoding="utf-8"))
    text = card_text(configs, summary_data, sorted(backends), config_sha256, license)
    atomic.write_text(layout.dataset_card(), text)
