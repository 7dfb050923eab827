"""index.html: one self-contained page (inline CSS, PNG and WAV data URIs, no network)."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from fishflow.report import plots
from fishflow.report.stats import FIRST_AUDIO_PERCENTILES

# Audio samples per language × voice, embedded as data URIs: the shortest and the median text,
# enough to listen to each voice without making the page tens of megabytes.
SAMPLES = 2
CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
.sample { margin: 0.3em 0; } .sample span { display: inline-block; width: 28em; }
"""
FIGURES = (
    ("items", "items"),
    ("ok", "ok"),
    ("failed", "failed"),
    ("audio_s", "audio s"),
)
TIMINGS = (
    ("generation_s", "generation s"),
    ("rtf", "RTF"),
    ("latency_p50_s", "p50 s"),
    ("latency_p95_s", "p95 s"),
    ("latency_p99_s", "p99 s"),
    ("items_per_min", "items/min"),
    ("audio_min_per_gpu_hour", "audio min / GPU-h"),
)


def _cell(value) -> str:
    if value is None:
        return "<td>–</td>"
    if isinstance(value, dict):
        text = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        return f'<td class="l">{escape(text)}</td>'
    return f"<td>{escape(str(value))}</td>"


def figures_table(rows: list[dict]) -> str:
    head = ['<th class="l">language</th><th class="l">voice</th>']
    head += [f"<th>{escape(label)}</th>" for _, label in FIGURES + TIMINGS]
    head += ['<th class="l">failures</th><th class="l">validation</th>']
    body = []
    for row in rows:
        cells = [
            f'<td class="l">{escape(row["lang"])}</td><td class="l">{escape(row["voice"])}</td>'
        ]
        cells += [_cell(row[key]) for key, _ in FIGURES]
        cells += [_cell(row["timing"][key]) for key, _ in TIMINGS]
        cells += [_cell(row["failures"]), _cell(row["validation"])]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="figures"><tr>{"".join(head)}</tr>{"".join(body)}</table>'


def first_audio_section(rows: list[dict]) -> str:
    """TTFB and TTFA percentiles per language × voice where answers were streamed
    (server.streaming), beside the generation seconds of the same items; else one sentence."""
    measured = [row for row in rows if row["timing"]["first_audio"]]
    if not measured:
        return (
            '<p id="first-audio">Time to first audio not measured: no answer was streamed '
            "(server.streaming: true measures it).</p>"
        )
    columns = [("items", "items")]
    for key, label in (("ttfb", "TTFB"), ("ttfa", "TTFA"), ("generation", "generation")):
        columns += [(f"{key}_p{p}_s", f"{label} p{p} s") for p in FIRST_AUDIO_PERCENTILES]
    columns.append(("ttfa_share_p50", "TTFA / generation p50"))
    head = '<th class="l">language</th><th class="l">voice</th>'
    head += "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    body = "".join(
        f'<tr><td class="l">{escape(row["lang"])}</td><td class="l">{escape(row["voice"])}</td>'
        + "".join(_cell(row["timing"]["first_audio"][key]) for key, _ in columns)
        + "</tr>"
        for row in measured
    )
    return f'<table id="first-audio"><tr>{head}</tr>{body}</table>'


def key_value_table(table_id: str, pairs: list[tuple[str, object]]) -> str:
    rows = "".join(
        f'<tr><th class="l">{escape(key)}</th><td class="l">{escape(_plain(value))}</td></tr>'
        for key, value in pairs
    )
    return f'<table id="{table_id}">{rows}</table>'


def _plain(value) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True) if value else "none"
    return "none" if value is None else str(value)


def servers_table(servers: list[dict]) -> str:
    head = "".join(
        f'<th class="l">{h}</th>' for h in ("batch", "replica", "backend", "host", "Slurm job")
    )
    body = "".join(
        f'<tr><td class="l">{escape(s["batch"])}</td><td class="l">{escape(s["replica"])}</td>'
        f'<td class="l">{escape(s["backend"])}</td>'
        f'<td class="l">{escape(s["host"])}</td>'
        f'<td class="l">{escape(s["slurm_job_id"] or "none (local)")}</td>'
        f"{_cell(s['startup_s'])}</tr>"
        for s in servers
    )
    return f'<table id="servers"><tr>{head}<th>start-up + warm-up s</th></tr>{body}</table>'


def gpu_table(jobs: list[dict]) -> str:
    """Per generation job: GPU busy fraction and memory (NVML), and what to do about them; one
    sentence where no job measured a GPU (a CPU run would repeat "not measured" on every row)."""
    if not any(job["gpu"]["measured"] for job in jobs):
        reasons = sorted({job["gpu"]["reason"] for job in jobs}) or ["no generation job ran"]
        return (
            f'<p id="gpu">GPU use not measured in any of the {len(jobs)} generation job(s): '
            f"{escape('; '.join(reasons))}.</p>"
        )
    head = "".join(
        f'<th class="l">{h}</th>'
        for h in ("batch", "host", "Slurm job", "device", "replicas", "GPUs", "busy", "memory")
    )
    body = []
    for job in jobs:
        gpu = job["gpu"]
        if gpu["measured"]:
            names = ", ".join(f"{g['gpu']}: {g['name']}" for g in gpu["gpus"])
            busy = "–" if gpu["busy_fraction"] is None else f"{gpu['busy_fraction']:.0%}"
            memory = "; ".join(_memory_text(g) for g in gpu["gpus"])
        else:
            names, busy, memory = "not measured", "not measured", "not measured"
        cells = (job["batch"], job["host"], str(job["slurm_job_id"]), job["device"])
        body.append(
            "<tr>"
            + "".join(f'<td class="l">{escape(cell)}</td>' for cell in cells)
            + _cell(job["replicas"])
            + "".join(
                f'<td class="l">{escape(cell)}</td>'
                for cell in (names, busy, memory, job["advice"])
            )
            + "</tr>"
        )
    return f'<table id="gpu"><tr>{head}<th class="l">advice</th></tr>{"".join(body)}</table>'


def _memory_text(gpu: dict) -> str:
    if gpu["memory_peak_mib"] is None:
        return "–"
    text = f"peak {gpu['memory_peak_mib']:.0f} of {gpu['memory_total_mib']:.0f} MiB"
    replicas = gpu["replica_memory_peak_mib"]
    if replicas:
        text += " (" + ", ".join(f"{tag}: {mib:.0f}" for tag, mib in sorted(replicas.items())) + ")"
    return text


def samples(items: list[dict], out: Path) -> str:
    cells: dict[tuple[str, str], list[dict]] = {}
    for item in items:
        if item["status"] == "ok":
            cells.setdefault((item["lang"], item["voice"]), []).append(item)
    parts = []
    for (lang, voice), ok in sorted(cells.items()):
        by_length = sorted(ok, key=lambda item: (item["text_chars"], item["id"]))
        chosen = {id(item): item for item in (by_length[0], by_length[len(by_length) // 2])}
        parts.append(f"<h3>{escape(lang)} / {escape(voice)}</h3>")
        for item in list(chosen.values())[:SAMPLES]:
            wav = base64.b64encode((out / item["path"]).read_bytes()).decode("ascii")
            parts.append(
                f'<div class="sample"><span>{escape(item["id"])}: {escape(item["text"])}</span>'
                f'<audio controls preload="auto" src="data:audio/wav;base64,{wav}"></audio></div>'
            )
    return "\n".join(parts)


def render_html(report: dict, items: list[dict], out: Path) -> str:
    prov, timing = report["provenance"], report["timing"]
    environment = prov["environment"]
    slurm = sorted({s["slurm_job_id"] for s in timing["servers"] if s["slurm_job_id"]})
    provenance_pairs = [
        ("fishflow commit", prov["fishflow_commit"]),
        ("config sha256", prov["config_sha256"]),
        ("inputs sha256", prov["inputs_sha256"]),
        ("references sha256", prov["references_sha256"]),
        ("checkpoint", prov["checkpoint"]),
        ("backend", prov["backend"]),
        ("model generation", prov["model_generation"] or "none"),
        ("models", ", ".join(prov["models"])),
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
    title = escape(report["title"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fishflow report: {title}</title>
<style>{CSS}</style></head><body>
<h1>fishflow report: {title}</h1>
<p>{report["total"]["ok"]} items spoken, {report["total"]["failed"]} failed,
{report["total"]["audio_s"]} s of audio. Throughput excludes server start-up
({timing["server_startup_s"]} s in total, below).</p>
<h2>Per language and voice</h2>
{figures_table(report["rows"] + [report["total"]])}
<h2>Time to first audio</h2>
{first_audio_section(report["rows"] + [report["total"]])}
<h2>Server starts</h2>
{servers_table(timing["servers"])}
<h2>GPU use per generation job</h2>
{gpu_table(timing["jobs"])}
<h2>Plots</h2>
<img alt="latency distribution" src="{plots.latency_distribution(items)}">
<img alt="duration vs text length" src="{plots.duration_vs_text_length(items)}">
<img alt="throughput per voice" src="{plots.throughput_per_voice(report["rows"])}">
<h2>Samples</h2>
{samples(items, out)}
<h2>Provenance</h2>
{key_value_table("provenance", provenance_pairs)}
</body></html>
"""
