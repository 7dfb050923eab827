"""The plan: which item is spoken in which voice, grouped into shards, with fingerprints.

A shard (language x voice x index) is one Snakemake target. Items are materialised lazily per
shard, and only when a job reads them, so that planning a million rows stays cheap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fishflow import layout
from fishflow.errors import ConfigError, InputError
from fishflow.judging.models import JudgeModels, judge_models
from fishflow.planning.inputs import Row, read_rows
from fishflow.planning.voices import Voice, load_voices
from fishflow.review.marks import read_marks
from fishflow.serving.backends import get_backend

FINGERPRINT_VERSION = 1
GENERATION_KEYS = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "repetition_penalty",
    "chunk_length",
    "normalize",
)


@dataclass(frozen=True, slots=True)
class Item:
    lang: str
    voice: str
    id: str
    text: str
    seed: int
    fingerprint: str
    # Seeds a reviewer rejected (fishflow browse marks): never spoken again for this item.
    rejected_seeds: frozenset[int] = frozenset()

    def seeds(self, base_seed: int) -> Iterator[int]:
        """The item's seeds in the order they are tried (first take, then regenerations):
        `item_seed` for attempt 0, 1, 2, ..., without the rejected ones."""
        attempt = 0
        while True:
            seed = item_seed(base_seed, self.lang, self.voice, self.id, attempt)
            if seed not in self.rejected_seeds:
                yield seed
            attempt += 1

    @property
    def wav(self) -> str:
        """Path of the WAV relative to the output directory."""
        return layout.wav_relpath(self.lang, self.voice, self.id)


class Settings:
    """The config, wrapped so that Snakemake neither stores nor compares it as a param.

    Only the batch fingerprint decides reruns: timeouts, retries or fault injection can change
    without regenerating audio.
    """

    def __init__(self, config: dict):
        self.config = config
        self.out = Path(config["output_dir"])


@dataclass(frozen=True, slots=True)
class ItemMaker:
    """Makes the items of one language x voice. An item's fingerprint is
    `_digest(common, id, text)`, with the JSON of the common part encoded once: JSON joins list
    elements with ", ", so the bytes hashed are the same. An item a reviewer marked adds its
    rejected seeds, sorted (`_digest(common, id, text, seeds)`): its fingerprint changes, every
    other one keeps its bytes."""

    lang: str
    voice: str
    base_seed: int
    head: str  # "[" + JSON of the common part + ", "
    # id -> seeds a reviewer rejected, for the marked items of this language x voice only.
    rejected: dict[str, frozenset[int]] = field(default_factory=dict, hash=False)

    def fingerprint(self, item_id: str, text: str) -> str:
        seeds = self.rejected.get(item_id)
        marked = f", {_json(sorted(seeds))}" if seeds else ""
        body = f"{self.head}{_json(item_id)}, {_json(text)}{marked}]"
        return hashlib.sha256(body.encode()).hexdigest()

    def item(self, item_id: str, text: str) -> Item:
        return Item(
            lang=self.lang,
            voice=self.voice,
            id=item_id,
            text=text,
            seed=item_seed(self.base_seed, self.lang, self.voice, item_id),
            fingerprint=self.fingerprint(item_id, text),
            rejected_seeds=self.rejected.get(item_id, frozenset()),
        )


class ShardItems(Sequence):
    """A shard's items, made on first use: Snakemake evaluates every job's params while it
    builds the DAG, but only the job that speaks the shard reads them."""

    __slots__ = ("_maker", "_rows", "_items")

    def __init__(self, maker: ItemMaker, rows: Sequence[Row]):
        self._maker, self._rows, self._items = maker, rows, None

    def _all(self) -> tuple[Item, ...]:
        if self._items is None:
            self._items = tuple(self._maker.item(row.id, row.text) for row in self._rows)
        return self._items

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        return self._all()[index]

    def __iter__(self) -> Iterator[Item]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(self._all())

    def __reduce__(self):
        # The job receives the recipe, not the items: a smaller pickle in its script preamble.
        return (ShardItems, (self._maker, self._rows))


@dataclass(frozen=True)
class Shard:
    """A shard's items (made when the job reads them) and its fingerprint."""

    lang: str
    voice: str
    name: str
    items: ShardItems
    fingerprint: str


@dataclass(frozen=True)
class Batch:
    """Everything a generation job needs, passed to it as a Snakemake param (not compared):
    shards of one language (see Plan.batch_keys) and their voices."""

    lang: str
    name: str
    shards: tuple[Shard, ...]
    references: tuple[dict, ...]  # Voice.spec(): id, audio, text, sha256


def item_seed(base_seed: int, lang: str, voice: str, item_id: str, attempt: int = 0) -> int:
    """Deterministic per-item seed; later attempts (after failed validation) get the next ones."""
    key = f"{base_seed}\0{lang}\0{voice}\0{item_id}\0{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFFFFFF


# json.dumps(value, ensure_ascii=False), without building an encoder on every call.
_json = json.JSONEncoder(ensure_ascii=False).encode


def _digest(*parts: object) -> str:
    return hashlib.sha256(_json(parts).encode()).hexdigest()


class Plan:
    def __init__(self, config: dict):
        self.config = config
        self.out = Path(config["output_dir"])
        self.shard_size = config["shard_size"]
        self.base_seed = config["generation"]["seed"]
        self.params = {key: config["generation"][key] for key in GENERATION_KEYS}
        self.backend = get_backend(config["server"])
        # Preflight first: the generation (S1, S2) of a checkpoint folder that holds neither is
        # unknown, and the language list and model id follow the generation.
        self.backend.preflight(config["server"])
        self.generation = self.backend.generation(config["server"])
        self.model_id = self.backend.model_id(config["server"])
        self._check_languages(config["inputs"])
        self.voices: dict[str, Voice] = load_voices(config["voices"], config["validation"])
        max_chars = config["generation"]["max_text_chars"]
        self.rows: dict[str, list[Row]] = {
            lang: read_rows(Path(path), lang, max_chars)
            for lang, path in sorted(config["inputs"].items())
        }
        self.assignment = self._assign(config["voice_assignment"])
        self.rejected = self._rejected_seeds(layout.Layout(self.out).marks())
        self.judge: JudgeModels | None = judge_models(config["quality"], sorted(self.rows))
        self.shards_per_job = config["shards_per_job"]
        self._shard_fingerprints: dict[tuple[str, str, str], str] = {}

    def _check_languages(self, inputs: dict) -> None:
        supported = self.backend.languages(self.config["server"])
        unknown = sorted(set(inputs) - supported)
        if unknown:
            model = f" with model {self.generation}" if self.generation else ""
            raise ConfigError(
                f"config key inputs: language(s) {unknown} not supported by backend "
                f"{self.backend.name!r}{model} (supported: {sorted(supported)})"
            )

    def _assign(self, mode: str) -> dict[tuple[str, str], list[int]]:
        """(lang, voice) -> indices of the rows spoken in that voice, in input order."""
        voice_ids = sorted(self.voices)
        assignment: dict[tuple[str, str], list[int]] = {}
        for lang, rows in self.rows.items():
            if mode == "all":
                for voice in voice_ids:
                    assignment[(lang, voice)] = list(range(len(rows)))
                continue
            for index, row in enumerate(rows):
                voice = voice_ids[index % len(voice_ids)] if mode == "round_robin" else row.voice
                if mode == "row":
                    self._check_row_voice(lang, row)
                assignment.setdefault((lang, voice), []).append(index)
        return assignment

    def _check_row_voice(self, lang: str, row: Row) -> None:
        path = self.config["inputs"][lang]
        if row.voice is None:
            raise InputError(path, row.line, "voice_assignment is 'row' but the row has no 'voice'")
        if row.voice not in self.voices:
            raise InputError(
                path, row.line, f"unknown voice {row.voice!r} (configured: {sorted(self.voices)})"
            )

    def _rejected_seeds(self, marks: Path) -> dict[tuple[str, str], dict[str, frozenset[int]]]:
        """(lang, voice) -> id -> the seeds a reviewer rejected (`fishflow browse` marks). The
        file is read at every planning, so a new mark changes the item's fingerprint, hence its
        shard's and batch's: Snakemake reruns that batch (rerun trigger "params")."""
        rejected: dict[tuple[str, str], dict[str, set[int]]] = {}
        ids: dict[tuple[str, str], set[str]] = {}
        for line, mark in read_marks(marks):
            key = (mark.lang, mark.voice)
            if key not in ids:
                rows = self.rows.get(mark.lang, ())
                ids[key] = {rows[i].id for i in self.assignment.get(key, ())}
            if mark.id not in ids[key]:
                raise InputError(
                    marks,
                    line,
                    f"the plan has no item {mark.lang}/{mark.voice}/{mark.id} (is its input row, "
                    "language or voice gone? then remove this mark)",
                )
            rejected.setdefault(key, {}).setdefault(mark.id, set()).add(mark.seed)
        return {
            key: {item_id: frozenset(seeds) for item_id, seeds in items.items()}
            for key, items in rejected.items()
        }

    # -- shards ---------------------------------------------------------------------------------

    def shard_count(self, lang: str, voice: str) -> int:
        return -(-len(self.assignment.get((lang, voice), ())) // self.shard_size)

    def shard_keys(self) -> list[tuple[str, str, str]]:
        return [
            (lang, voice, layout.shard_name(index))
            for (lang, voice) in sorted(self.assignment)
            for index in range(self.shard_count(lang, voice))
        ]

    # -- batches: what one generation job speaks ----------------------------------------------
    # Batch b of a language holds shards b*span .. (b+1)*span - 1 of each of its voices, where
    # span spreads `shards_per_job` over the voices: one server start serves every voice, and
    # rows appended to an input change at most the last batch of each language x voice they
    # touch (its last shard), and add new batches.

    @property
    def batch_span(self) -> int:
        """Shards per voice in one batch."""
        return -(-self.shards_per_job // len(self.voices))

    def batch_keys(self) -> list[tuple[str, str]]:
        keys = []
        for lang in sorted(self.rows):
            shards = max(self.shard_count(lang, voice) for voice in self.voices)
            keys += [(lang, layout.batch_name(i)) for i in range(-(-shards // self.batch_span))]
        return keys

    def batch_of(self, shard: str) -> str:
        return layout.batch_name(layout.shard_index(shard) // self.batch_span)

    def batch_shards(self, lang: str, batch: str) -> list[tuple[str, str]]:
        """(voice, shard) of the batch's shards, in plan order."""
        first = layout.shard_index(batch[1:]) * self.batch_span
        shards = [
            (voice, layout.shard_name(index))
            for voice in sorted(self.voices)
            for index in range(first, min(first + self.batch_span, self.shard_count(lang, voice)))
        ]
        if not shards:
            raise KeyError(f"no batch {lang}/{batch} in the plan")
        return shards

    def batch_fingerprint(self, lang: str, batch: str) -> str:
        """Changes exactly when some item of the batch would change; a Snakemake rerun
        trigger (the items' own fingerprints decide what is spoken again)."""
        shards = self.batch_shards(lang, batch)
        return _digest([self.shard_fingerprint(lang, voice, name) for voice, name in shards])

    def batch(self, lang: str, batch: str) -> Batch:
        shards = tuple(
            self.shard(lang, voice, name) for voice, name in self.batch_shards(lang, batch)
        )
        voices = sorted({shard.voice for shard in shards})
        return Batch(lang, batch, shards, tuple(self.voices[voice].spec() for voice in voices))

    def shard_rows(self, lang: str, voice: str, name: str) -> list[Row]:
        index = layout.shard_index(name)
        indices = self.assignment.get((lang, voice), [])
        selected = indices[index * self.shard_size : (index + 1) * self.shard_size]
        if not selected:
            raise KeyError(f"no shard {lang}/{voice}/{name} in the plan")
        rows = self.rows[lang]
        return [rows[i] for i in selected]

    def _common(self, lang: str, voice: str) -> tuple:
        ref = self.voices[voice]
        return (
            FINGERPRINT_VERSION,
            lang,
            voice,
            ref.sha256,
            ref.text,
            self.params,
            self.model_id,
            self.base_seed,
        )

    def shard_fingerprint(self, lang: str, voice: str, name: str) -> str:
        """Changes exactly when some item of the shard would change. Computed once: the plan
        summary and every batch's params ask for it."""
        key = (lang, voice, name)
        if key not in self._shard_fingerprints:
            rows = self.shard_rows(lang, voice, name)
            rejected = self.rejected.get((lang, voice), {})
            pairs = [
                (row.id, row.text, sorted(rejected[row.id]))
                if row.id in rejected
                else (row.id, row.text)
                for row in rows
            ]
            parts = [self._common(lang, voice), pairs]
            if self.judge is not None:  # a changed judge reruns the job, which judges again
                parts.append(self.judge.fingerprints[lang])
            self._shard_fingerprints[key] = _digest(*parts)
        return self._shard_fingerprints[key]

    def item_maker(self, lang: str, voice: str) -> ItemMaker:
        head = f"[{_json(self._common(lang, voice))}, "
        rejected = self.rejected.get((lang, voice), {})
        return ItemMaker(
            lang=lang, voice=voice, base_seed=self.base_seed, head=head, rejected=rejected
        )

    def shard(self, lang: str, voice: str, name: str) -> Shard:
        rows = self.shard_rows(lang, voice, name)
        return Shard(
            lang=lang,
            voice=voice,
            name=name,
            items=ShardItems(self.item_maker(lang, voice), rows),
            # Computed once per plan: the batch's params asked for it already.
            fingerprint=self.shard_fingerprint(lang, voice, name),
        )

    def judge_fingerprint(self, lang: str) -> str | None:
        """What an item of `lang` must have been judged under to be done (None: judge off)."""
        return self.judge.fingerprints[lang] if self.judge is not None else None

    def item_count(self) -> int:
        return sum(len(indices) for indices in self.assignment.values())
