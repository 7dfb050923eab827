"""index.html: one self-contained page (inline CSS, PNG and WAV data URIs, no network).

The page is the headline figures, then one section per function in `SECTIONS`, each given the
`Page` and returning its `Section` (or None to leave it out): a new section is one function
added there. Tables are lists of `Column`s, one figure per column.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from html import escape
from pathlib import Path

from fishflow.report import plots
from fishflow.report.html import KEY, Column, Page, Section, card, table, total_class
from fishflow.report.numbers import NOT_MEASURED, duration, fixed, percent, significant
from fishflow.report.published import BenchmarkRow, for_language

# Audio samples per language × voice, embedded as data URIs: the shortest and the median text,
# enough to listen to each voice without making the page tens of megabytes.
SAMPLES = 2
CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 110em; }
h1 { margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
tr.total td { font-weight: bold; background: #f6f6f6; }
tr.published td { color: #555; font-style: italic; }
td.nm { color: #999; font-size: 0.85em; }
td.hash { font-family: monospace; font-size: 0.85em; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 1em 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.5em 0.8em; min-width: 7em; }
.card b { display: block; font-size: 1.5em; } .card span { font-weight: bold; }
.card small { display: block; color: #666; }
.card.nm b { color: #999; font-size: 1.1em; padding: 0.3em 0; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
img { max-width: 100%; display: block; margin: 1em 0; }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(24em, 1fr)); gap: 1em; }
.samples h3 { margin: 0 0 0.3em; font-size: 1em; }
.sample { margin: 0.3em 0 0.6em; } .sample audio { width: 100%; height: 2.2em; }
.sample small { color: #666; }
"""


def _timing(key: str, label: str) -> Column:
    return Column(label, lambda row: significant(row["timing"][key]))


# -- headline -------------------------------------------------------------------------------------


def _measured_note(figure: dict) -> str:
    return f"mean of {figure['n']} items" if figure["n"] else "no item measured"


def headline(report: dict) -> str:
    """The figures a reader looks for first, each in one box."""
    total, quality = report["total"], report["total"]["quality"]
    kinds: dict[str, int] = {}
    for reason, count in total["failures"].items():
        kind = reason.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + count
    failed_note = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "none"
    cards = [
        card("items", "items", str(total["items"]), f"{total['ok']} spoken"),
        card("audio", "audio", duration(total["audio_s"]), "spoken, in total"),
        card("failed", "failed", str(total["failed"]), failed_note),
        card("rtf", "RTF", significant(total["timing"]["rtf"]), "generation s / audio s"),
    ]
    for key, label in (("wer", "WER"), ("cer", "CER")):
        figure = quality[key]
        cards.append(card(key, label, percent(figure["mean"]), _measured_note(figure)))
    similarity = quality["similarity"]
    cards.append(
        card(
            "similarity",
            "speaker SIM",
            fixed(similarity["mean"], 3),
            _measured_note(similarity),
        )
    )
    if quality["mos"]["n"]:
        mos = quality["mos"]
        cards.append(card("mos", "MOS estimate", fixed(mos["mean"], 2), _measured_note(mos)))
    regenerations = quality["regenerations"]
    if regenerations["n"]:
        cards.append(
            card(
                "regenerations",
                "regenerations / item",
                fixed(regenerations["per_item"], 2),
                f"{regenerations['total']} in total",
            )
        )
    return f'<div class="cards" id="headline">{"".join(cards)}</div>'


# -- sections -------------------------------------------------------------------------------------


def quality_section(page: Page) -> Section:
    rows = page.report["rows"] + [page.report["total"]]
    if not page.report["total"]["quality"]["judged"]:
        body = (
            '<p id="quality">Quality not measured: no item was judged (the judge is off, '
            "<code>quality.enabled</code>, or the run was made before it).</p>"
        )
        return Section("quality", "Quality", body)
    columns, unmeasured = quality_columns(rows)
    note = (
        '<p class="note">Over every judged item, spoken or failed (a failed item: its best '
        "take). WER only for languages written with spaces; a language without an ASR model "
        "has no error rate."
        + (f" Not measured for any item: {escape(', '.join(unmeasured))}." if unmeasured else "")
        + "</p>"
    )
    return Section("quality", "Quality", table("quality", columns, rows, total_class) + note)


def quality_columns(rows: list[dict]) -> tuple[list[Column], list[str]]:
    """One column per quality figure that some row measured; the names of those none did."""
    total = rows[-1]["quality"]
    columns = [*KEY, Column("judged", lambda row: str(row["quality"]["judged"]))]
    unmeasured = []
    for key, label, shown, side in (
        ("wer", "WER", percent, ">"),
        ("cer", "CER", percent, ">"),
        ("similarity", "SIM", lambda v: fixed(v, 3), "<"),
        ("mos", "MOS", lambda v: fixed(v, 2), None),
    ):
        if not total[key]["n"]:
            unmeasured.append(label)
            continue
        for stat in ("mean", "median"):
            columns.append(Column(f"{label} {stat}", _score(key, stat, shown)))
        gate = total[key]["gate"]
        if gate is not None:
            limit = percent(gate, 0) if shown is percent else f"{gate:g}"
            columns.append(Column(f"{label} {side} {limit}", _beyond(key)))
    if total["regenerations"]["n"]:
        columns.append(
            Column(
                "regen. / item", lambda row: fixed(row["quality"]["regenerations"]["per_item"], 2)
            )
        )
    for kind, label in (("failed", "failed"), ("flagged", "kept, flagged")):
        for gate in total[kind]:
            columns.append(
                Column(
                    f"{label}: {gate}", lambda row, k=kind, g=gate: str(row["quality"][k].get(g, 0))
                )
            )
    return columns, unmeasured


def _score(key: str, stat: str, shown: Callable) -> Callable[[dict], str]:
    return lambda row: shown(row["quality"][key][stat])


def _beyond(key: str) -> Callable[[dict], str]:
    return lambda row: percent(row["quality"][key]["beyond_gate"], 1)


def published_section(page: Page) -> Section | None:
    """Per language (test set), the run's error rates and similarity laid out like
    seed-tts-eval's table, with published figures for that language as labelled references."""
    report = page.report
    if not report["total"]["quality"]["judged"]:
        return None
    models = report["provenance"]["judge_models"]
    speaker = next((m["source"] for m in models if m["role"] == "speaker"), NOT_MEASURED)
    rows: list[BenchmarkRow] = []
    for language in report["languages"]:
        lang, quality = language["lang"], language["quality"]
        asr = (m["source"] for m in models if m["role"] == "ASR" and lang in m["languages"])
        measured = BenchmarkRow(
            system=f"this run ({report['title']})",
            lang=lang,
            test_set=f"{lang}: this run's texts",
            items=quality["judged"],
            wer=quality["wer"]["mean"],
            cer=quality["cer"]["mean"],
            similarity=quality["similarity"]["mean"],
            asr=next(asr, "no ASR model"),
            speaker=speaker,
            source="measured",
            published=False,
        )
        rows += [measured, *for_language(lang)]
    columns = [
        Column("test set", lambda row: row.test_set, left=True),
        Column("system", lambda row: row.system, left=True),
        Column("items", lambda row: "–" if row.published else str(row.items)),
        Column("WER %", lambda row: _figure(row, row.wer, lambda v: f"{100 * v:.2f}")),
        Column("CER %", lambda row: _figure(row, row.cer, lambda v: f"{100 * v:.2f}")),
        Column("SIM", lambda row: _figure(row, row.similarity, lambda v: f"{v:.3f}")),
        Column("ASR model", lambda row: row.asr, left=True),
        Column("speaker model", lambda row: row.speaker, left=True),
        Column(
            "source",
            lambda row: f"published: {row.source}" if row.published else row.source,
            left=True,
        ),
    ]
    note = (
        '<p class="note">Published rows (italic) are figures as their authors published them '
        "on seed-tts-eval's test sets with the models named, not measured here: set them beside "
        "this run's, scored on its own texts with its own models, as context, not as a "
        "like-for-like comparison.</p>"
    )
    body = table("published", columns, rows, lambda row: "published" if row.published else None)
    return Section("published", "Error rates and similarity, seed-tts-eval layout", body + note)


def _figure(row: BenchmarkRow, value: float | None, shown: Callable[[float], str]) -> str:
    if value is not None:
        return shown(value)
    # A figure a reference did not publish is not a measurement this run lacks.
    return "–" if row.published else NOT_MEASURED


def speed_section(page: Page) -> Section:
    report = page.report
    columns = [
        *KEY,
        Column("items", lambda row: str(row["items"])),
        Column("spoken", lambda row: str(row["ok"])),
        Column("failed", lambda row: str(row["failed"])),
        Column("1st attempt", lambda row: str(row["validation"]["passed_first_attempt"])),
        Column("after retry", lambda row: str(row["validation"]["passed_after_retry"])),
        Column("audio min", lambda row: significant(row["audio_s"] / 60)),
        _timing("generation_s", "generation s"),
        _timing("rtf", "RTF"),
        _timing("latency_p50_s", "p50 s"),
        _timing("latency_p95_s", "p95 s"),
        _timing("latency_p99_s", "p99 s"),
        _timing("items_per_min", "items/min"),
        _timing("audio_min_per_gpu_hour", "audio min / GPU-h"),
    ]
    # The judge's seconds per judged take, by step, where it ran.
    judge = [step for step, s in report["total"]["timing"]["judge_s"].items() if s is not None]
    columns += [
        Column(f"judge {step} s", lambda row, s=step: significant(row["timing"]["judge_s"][s]))
        for step in judge
    ]
    rows = report["rows"] + [report["total"]]
    note = (
        '<p class="note">RTF and throughput exclude server start-up '
        f"({significant(report['timing']['server_startup_s'])} s in total, below); latency is "
        "per request" + ("; judge seconds are the mean per judged take" if judge else "") + ".</p>"
    )
    body = table("figures", columns, rows, total_class) + note
    return Section("speed", "Speed per language and voice", body)


def failures_section(page: Page) -> Section:
    rows = page.report["rows"] + [page.report["total"]]
    reasons = list(page.report["total"]["failures"])
    if not reasons:
        return Section("failures", "Failures", '<p id="failures">No item failed.</p>')
    columns = [*KEY] + [
        Column(reason, lambda row, r=reason: str(row["failures"].get(r, 0))) for reason in reasons
    ]
    return Section("failures", "Failures", table("failures", columns, rows, total_class))


def servers_section(page: Page) -> Section:
    columns = [
        Column("batch", lambda s: s["batch"], left=True),
        Column("replica", lambda s: s["replica"], left=True),
        Column("backend", lambda s: s["backend"], left=True),
        Column("host", lambda s: s["host"], left=True),
        Column("Slurm job", lambda s: s["slurm_job_id"] or "none (local)", left=True),
        Column("start-up + warm-up s", lambda s: significant(s["startup_s"])),
    ]
    return Section(
        "servers", "Server starts", table("servers", columns, page.report["timing"]["servers"])
    )


def gpu_section(page: Page) -> Section:
    return Section("gpu", "GPU use per generation job", gpu_table(page.report["timing"]["jobs"]))


def gpu_table(jobs: list[dict]) -> str:
    """Per generation job: GPU busy fraction and memory (NVML), and what to do about them; one
    sentence where no job measured a GPU (a CPU run would repeat "not measured" on every row)."""
    if not any(job["gpu"]["measured"] for job in jobs):
        reasons = sorted({job["gpu"]["reason"] for job in jobs}) or ["no generation job ran"]
        return (
            f'<p id="gpu">GPU use not measured in any of the {len(jobs)} generation job(s): '
            f"{escape('; '.join(reasons))}.</p>"
        )
    columns = [
        Column("batch", lambda job: job["batch"], left=True),
        Column("host", lambda job: job["host"], left=True),
        Column("Slurm job", lambda job: str(job["slurm_job_id"]), left=True),
        Column("device", lambda job: job["device"], left=True),
        Column("replicas", lambda job: str(job["replicas"])),
        Column("GPUs", lambda job: _gpu_text(job["gpu"], _gpu_names), left=True),
        Column("busy", lambda job: _gpu_text(job["gpu"], _busy), left=True),
        Column("memory", lambda job: _gpu_text(job["gpu"], _memory), left=True),
        Column("advice", lambda job: job["advice"], left=True),
    ]
    return table("gpu", columns, jobs)


def _gpu_text(gpu: dict, text: Callable[[dict], str]) -> str:
    return text(gpu) if gpu["measured"] else NOT_MEASURED


def _gpu_names(gpu: dict) -> str:
    return ", ".join(f"{g['gpu']}: {g['name']}" for g in gpu["gpus"])


def _busy(gpu: dict) -> str:
    return "–" if gpu["busy_fraction"] is None else f"{gpu['busy_fraction']:.0%}"


def _memory(gpu: dict) -> str:
    return "; ".join(_memory_text(g) for g in gpu["gpus"])


def _memory_text(gpu: dict) -> str:
    if gpu["memory_peak_mib"] is None:
        return "–"
    text = f"peak {gpu['memory_peak_mib']:.0f} of {gpu['memory_total_mib']:.0f} MiB"
    replicas = gpu["replica_memory_peak_mib"]
    if replicas:
        text += " (" + ", ".join(f"{tag}: {mib:.0f}" for tag, mib in sorted(replicas.items())) + ")"
    return text


def plots_section(page: Page) -> Section:
    body = (
        f'<img alt="latency distribution" src="{plots.latency_distribution(page.items)}">'
        f'<img alt="duration vs text length" src="{plots.duration_vs_text_length(page.items)}">'
        f'<img alt="throughput per voice" src="{plots.throughput_per_voice(page.report["rows"])}">'
    )
    return Section("plots", "Plots", body)


def samples_section(page: Page) -> Section:
    cells: dict[tuple[str, str], list[dict]] = {}
    for item in page.items:
        if item["status"] == "ok":
            cells.setdefault((item["lang"], item["voice"]), []).append(item)
    parts = []
    for (lang, voice), ok in sorted(cells.items()):
        by_length = sorted(ok, key=lambda item: (item["text_chars"], item["id"]))
        chosen = {id(item): item for item in (by_length[0], by_length[len(by_length) // 2])}
        samples = "".join(_sample(item, page.out) for item in list(chosen.values())[:SAMPLES])
        parts.append(f"<div><h3>{escape(lang)} / {escape(voice)}</h3>{samples}</div>")
    return Section("samples", "Samples", f'<div class="samples">{"".join(parts)}</div>')


def _sample(item: dict, out: Path) -> str:
    wav = base64.b64encode((out / item["path"]).read_bytes()).decode("ascii")
    scores = item["scores"] or {}
    measured = [
        f"{label} {shown(scores[key])}"
        for key, label, shown in (
            ("wer", "WER", lambda v: percent(v, 1)),
            ("cer", "CER", lambda v: percent(v, 1)),
            ("similarity", "SIM", lambda v: fixed(v, 3)),
        )
        if scores.get(key) is not None
    ]
    heard = f"<br><small>{escape(' · '.join(measured))}</small>" if measured else ""
    return (
        f'<div class="sample">{escape(item["id"])}: {escape(item["text"])}{heard}'
        f'<audio controls preload="auto" src="data:audio/wav;base64,{wav}"></audio></div>'
    )


def provenance_section(page: Page) -> Section:
    prov, timing = page.report["provenance"], page.report["timing"]
    environment = prov["environment"]
    slurm = sorted({s["slurm_job_id"] for s in timing["servers"] if s["slurm_job_id"]})
    judge = [
        (f"{m['role']} model ({', '.join(m['languages'])})", {"source": m["source"], **m["sha256"]})
        for m in prov["judge_models"]
    ] or [("judge models", "none (the judge is off)")]
    pairs = [
        ("fishflow commit", prov["fishflow_commit"]),
        ("config sha256", prov["config_sha256"]),
        ("inputs sha256", prov["inputs_sha256"]),
        ("references sha256", prov["references_sha256"]),
        ("checkpoint", prov["checkpoint"]),
        ("backend", prov["backend"]),
        ("model generation", prov["model_generation"] or "none"),
        ("models", ", ".join(prov["models"])),
        *judge,
        ("server flags", prov["server_flags"]),
        (
            "Python / torch / CUDA",
            f"{environment['python']} / {environment['torch']} / {environment['cuda']}",
        ),
        ("GPU", environment["gpu"]),
        ("Slurm jobs", ", ".join(slurm) or "none"),
        ("nodes", ", ".join(sorted({s["host"] for s in timing["servers"]})) or "none"),
        ("started", timing["started_at"]),
        ("finished", timing["finished_at"]),
    ]
    rows = "".join(
        f'<tr><th class="l">{escape(key)}</th><td class="l hash">{_lines(value)}</td></tr>'
        for key, value in pairs
    )
    return Section("provenance", "Provenance", f'<table id="provenance">{rows}</table>')


def _lines(value) -> str:
    """A mapping one `key: value` per line (hashes are long); nested values as given."""
    if isinstance(value, dict):
        return "<br>".join(f"{escape(str(k))}: {_lines(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return escape(", ".join(map(str, value))) or "none"
    return "none" if value is None else escape(str(value))


SECTIONS: tuple[Callable[[Page], Section | None], ...] = (
    quality_section,
    published_section,
    speed_section,
    failures_section,
    servers_section,
    gpu_section,
    plots_section,
    samples_section,
    provenance_section,
)


def render_html(report: dict, items: list[dict], out: Path) -> str:
    page = Page(report, items, out)
    sections = [section for make in SECTIONS if (section := make(page))]
    nav = "".join(f'<a href="#section-{s.id}">{escape(s.title)}</a>' for s in sections)
    # Section anchors are prefixed: the tables inside carry the plain ids.
    body = "\n".join(f'<h2 id="section-{s.id}">{escape(s.title)}</h2>\n{s.body}' for s in sections)
    prov, timing = report["provenance"], report["timing"]
    title = escape(report["title"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fishflow report: {title}</title>
<style>{CSS}</style></head><body>
<h1>fishflow report: {title}</h1>
<p class="sub">{escape(prov["backend"])} backend, {escape(", ".join(prov["models"]) or "no model")};
generation {escape(str(timing["started_at"]))} to {escape(str(timing["finished_at"]))}</p>
{headline(report)}
<nav>{nav}</nav>
{body}
</body></html>
"""
