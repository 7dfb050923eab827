"""`fishflow browse` on a run of 1M items: indexing, the first page and filtered pages.

    .venv/bin/python benchmarks/browse_1m.py [--items 1000000] [--voices 5] [--repeats 5]

The manifests are SYNTHETIC: rows written directly, in the shape the merge writes (every
metadata field, plus the judge's `scores` and `takes` on most rows; 2 % failed rows with a
reason), into .cache/benchmarks/browse/ (reused while the item count matches). No WAV exists:
pages list items, and audio is fetched only when played. The real server (`BrowseServer`) runs
in this process and is timed over HTTP on loopback, as the page calls it. Targets: a page
(first or filtered) under 0.5 s; indexing (once, at start and after a manifest changes) is
reported, not targeted.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import threading
import time
import urllib.request

import common

from fishflow import atomic
from fishflow.layout import Layout
from fishflow.review.server import BrowseServer

TARGET_S = 0.5
LANGS = ("en", "de")
REASONS = ("validation:too_long", "quality:cer", "quality:similarity", "http_error")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def row(lang: str, voice: str, index: int, rng: random.Random) -> dict:
    item_id = f"r{index:07d}"
    base = {"id": item_id, "lang": lang, "voice": voice, "text": common.text(index)}
    judged = rng.random() < 0.9  # a tenth "not measured" (say, items from before the judge)
    scores = (
        {
            "cer": round(rng.random() * 0.5, 4),
            "wer": round(rng.random() * 0.8, 4),
            "similarity": round(0.3 + rng.random() * 0.7, 4),
            "transcript": common.text(index).lower(),
            "repetition": False,
            "lead_silence_s": 0.1,
            "trail_silence_s": 0.2,
            "speech_fraction": 0.8,
            "mos": None,
            "judge_s": {"vad": 0.01, "asr": 0.2, "speaker": 0.05},
            "gate": None,
        }
        if judged
        else None
    )
    takes = 1 if judged else None
    if rng.random() < 0.02:
        reason = rng.choice(REASONS)
        return {**base, "reason": reason, "last_error": "synthetic", "attempts": 3,
                "scores": scores, "takes": takes}  # fmt: skip
    return {
        **base,
        "path": f"audio/{lang}/{voice}/{item_id}.wav",
        "duration_s": round(2 + rng.random() * 4, 4),
        "sample_rate": 44100,
        "bytes": 400_000,
        "sha256": f"{index:064x}",
        "seed": rng.randrange(2**31),
        "parameters": {
            "chunk_length": 200,
            "max_new_tokens": 1024,
            "normalize": True,
            "repetition_penalty": 1.1,
            "temperature": 0.8,
            "top_p": 0.8,
        },  # fmt: skip
        "generation_s": round(rng.random(), 4),
        "attempts": 1,
        "backend": "fish-speech/openaudio-s1-mini/0123456789ab/cuda/bf16/eager",
        "scores": scores,
        "takes": takes,
    }


def build(out, items: int, voices: int) -> None:
    marker = out / "built.json"
    wanted = {"items": items, "voices": voices}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        print(f"manifests: reused {out}", flush=True)
        return
    common.fresh_dir(out)
    layout, rng = Layout(out), random.Random(1)
    per_lang = items // len(LANGS)
    started = time.perf_counter()
    for lang in LANGS:
        with (
            open(layout.metadata(lang), "w", encoding="utf-8") as spoken,
            open(layout.failed(lang), "w", encoding="utf-8") as failed,
        ):
            for v in range(voices):  # plan order: voice, then input order
                voice = f"voice{v + 1:02d}"
                for index in range(per_lang // voices):
                    record = row(lang, voice, index, rng)
                    (failed if "reason" in record else spoken).write(atomic.dumps_line(record))
    size = sum(p.stat().st_size for p in out.glob("*.jsonl"))
    print(
        f"manifests: {items} synthetic rows, {size / 2**20:.0f} MiB, written in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    marker.write_text(json.dumps(wanted))


def get(server: BrowseServer, path: str, **params) -> tuple[float, dict]:
    query = "&".join(f"{k}={v}" for k, v in {**params, "token": server.token}.items())
    url = f"http://127.0.0.1:{server.server_address[1]}{path}?{query}"
    started = time.perf_counter()
    with OPENER.open(url, timeout=60) as answer:
        body = json.loads(answer.read())
    return time.perf_counter() - started, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--voices", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    common.header("fishflow browse on 1M items (synthetic manifests)")
    out = common.CACHE / "browse" / "out"
    build(out, args.items, args.voices)
    Layout(out).marks().unlink(missing_ok=True)
    Layout(out).browse_index().unlink(missing_ok=True)  # the first browse of this run

    started, cpu = time.perf_counter(), time.process_time()
    BrowseServer(out).server_close()  # indexes the manifests before it serves
    index_s, index_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    server = BrowseServer(out)  # the next browse: the index kept in work/browse/
    cached_s = time.perf_counter() - started
    assert server.index.current().cached
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    snapshot = server.index.current()
    columns = [snapshot.file, snapshot.offset, snapshot.length, snapshot.lang, snapshot.voice]
    columns += [snapshot.status, snapshot.reason, snapshot.key, *snapshot.scores.values()]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(
        f"index: {len(snapshot)} lines in {index_s:.1f} s ({index_cpu_s:.1f} s CPU; next start, "
        f"cached: {cached_s:.2f} s), "
        f"{sum(c.nbytes for c in columns) / 2**20:.0f} MiB of columns; "
        f"peak RSS of this process {peak_mib:.0f} MiB"
    )
    # A page shown, then marked items found again: 3 marks through the API.
    _, first = get(server, "/api/items", limit=50)
    for record in first["rows"][:3]:
        body = json.dumps({k: record[k] for k in ("lang", "voice", "id", "seed")}).encode()
        url = f"http://127.0.0.1:{server.server_address[1]}/api/mark?token={server.token}"
        OPENER.open(urllib.request.Request(url, data=body), timeout=60).read()

    queries = {
        "first page": {},
        "voice": {"voice": "voice03"},
        "status failed": {"status": "failed"},
        "reason": {"reason": "quality:cer"},
        "lang+voice+cer>=0.45": {"lang": "de", "voice": "voice02", "score": "cer", "min": 0.45},
        "similarity worst first": {"score": "similarity", "worst": "1"},
        "marked (3)": {"status": "marked"},
        "last page": {"offset": args.items - 50},
    }
    print(f"\n{'page (50 rows)':<26} {'matches':>9} {'median s':>9} {'max s':>8}")
    worst = 0.0
    for name, params in queries.items():
        times, total = [], None
        for _ in range(args.repeats):
            seconds, body = get(server, "/api/items", limit=50, **params)
            times.append(seconds)
            total = body["total"]
        worst = max(worst, max(times))
        print(f"{name:<26} {total:>9} {statistics.median(times):>9.3f} {max(times):>8.3f}")
    verdict = "met" if worst < TARGET_S else "NOT met"
    print(f"\nslowest page: {worst:.3f} s, target {TARGET_S} s ({verdict})")
    server.shutdown()
    server.server_close()
    Layout(out).marks().unlink(missing_ok=True)


if __name__ == "__main__":
    main()
