"""`fishflow browse`'s server on a hand-made output folder: the token, the loopback binding, WAVs
with byte ranges, the filters of the items API and the marks it writes."""

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fishflow import atomic
from fishflow.errors import FishflowError
from fishflow.layout import Layout
from fishflow.review.index import ManifestIndex, Query, smallest
from fishflow.review.marks import read_marks
from fishflow.review.server import BrowseServer
from tests.helpers import write_jsonl, write_wav

# No proxy: the server is on loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def spoken(lang, voice, item_id, seed, scores=None) -> dict:
    return {
        "id": item_id,
        "lang": lang,
        "voice": voice,
        "text": f"Text of {item_id}.",
        "path": f"audio/{lang}/{voice}/{item_id}.wav",
        "duration_s": 1.0,
        "seed": seed,
        **({"scores": scores} if scores is not None else {}),
    }


def failed(lang, voice, item_id, reason) -> dict:
    text = f"Text of {item_id}."
    return {"id": item_id, "lang": lang, "voice": voice, "text": text, "reason": reason}


@pytest.fixture
def browse(tmp_path):
    out = tmp_path / "out"
    layout = Layout(out)
    en = [
        spoken("en", "alice", "a1", 11, {"cer": 0.05, "wer": 0.1, "similarity": 0.9}),
        spoken("en", "alice", "a2", 12, {"cer": 0.4, "wer": None, "similarity": 0.6}),
        spoken("en", "bob", "b1", 13),  # judged by no one: "not measured"
        spoken("en", "bob", "b2", 14, {"cer": 0.3, "wer": 0.3, "similarity": 0.3}),
    ]
    atomic.write_jsonl(layout.metadata("en"), en)
    atomic.write_jsonl(layout.failed("en"), [failed("en", "bob", "b3", "validation:too_long")])
    atomic.write_jsonl(layout.metadata("de"), [spoken("de", "bob", "d1", 15)])
    atomic.write_jsonl(layout.failed("de"), [failed("de", "alice", "d2", "quality:cer")])
    write_wav(layout.wav("en", "alice", "a1"), seconds=1.0)
    server = BrowseServer(out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def call(server, path, token=True, body=None, headers=None, **params):
    if token:
        params["token"] = server.token if token is True else token
    query = "&".join(f"{k}={v}" for k, v in params.items())
    url = f"http://127.0.0.1:{server.server_address[1]}{path}?{query}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with OPENER.open(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def items(server, **params) -> tuple[int, list[str]]:
    status, _, body = call(server, "/api/items", **params)
    assert status == 200, body
    page = json.loads(body)
    return page["total"], [f"{r['lang']}/{r['voice']}/{r['id']}" for r in page["rows"]]


def test_binds_loopback_only_and_every_route_needs_the_token(browse):
    assert browse.server_address[0] == "127.0.0.1"
    assert browse.url.startswith(f"http://127.0.0.1:{browse.server_address[1]}/?token=")
    assert len(browse.token) >= 32
    routes = ["/", "/api/items", "/api/overview", "/audio/en/alice/a1.wav", "/report", "/nope"]
    for path in routes:
        for token in (False, "wrong", browse.token[:-1]):
            status, _, body = call(browse, path, token=token)
            assert status == 403, (path, token)
            assert b"token" in body
    status, _, _ = call(browse, "/api/mark", token=False, body={})
    assert status == 403
    status, headers, page = call(browse, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    # Nothing from elsewhere: no external URL, and the policy allows only this server.
    assert b"http://" not in page and b"https://" not in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_wavs_are_served_whole_and_by_byte_range(browse):
    wav = Layout(browse.out).wav("en", "alice", "a1").read_bytes()
    status, headers, body = call(browse, "/audio/en/alice/a1.wav")
    assert (status, headers["Content-Type"], headers["Accept-Ranges"]) == (
        200,
        "audio/wav",
        "bytes",
    )
    assert body == wav
    size = len(wav)
    for asked, start, end in (
        ("0-99", 0, 99),
        ("100-", 100, size - 1),
        ("-10", size - 10, size - 1),
    ):
        status, headers, body = call(
            browse, "/audio/en/alice/a1.wav", headers={"Range": f"bytes={asked}"}
        )
        assert status == 206
        assert headers["Content-Range"] == f"bytes {start}-{end}/{len(wav)}"
        assert body == wav[start : end + 1]
    for asked in (f"bytes={size}-", "bytes=5-2", "bytes=-", "lines=0-1"):
        status, headers, _ = call(browse, "/audio/en/alice/a1.wav", headers={"Range": asked})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}", asked
    for path in ("/audio/en/alice/nope.wav", "/audio/../../etc/passwd", "/audio/%2e%2e/en.jsonl"):
        assert call(browse, path)[0] == 404, path


def test_filters_pages_and_scores(browse):
    assert items(browse)[0] == 7
    assert items(browse, voice="bob")[1] == ["de/bob/d1", "en/bob/b1", "en/bob/b2", "en/bob/b3"]
    assert items(browse, lang="en", status="failed")[1] == ["en/bob/b3"]
    assert items(browse, reason="quality:cer")[1] == ["de/alice/d2"]
    assert items(browse, voice="carol") == (0, [])
    assert items(browse, score="cer", min=0.3)[1] == ["en/alice/a2", "en/bob/b2"]
    assert items(browse, score="cer", max=0.3)[1] == ["en/alice/a1", "en/bob/b2"]
    # Worst first: highest error rate, lowest similarity; "not measured" last.
    assert items(browse, score="wer", worst="1", lang="en", status="ok")[1] == [
        "en/bob/b2",
        "en/alice/a1",
        "en/alice/a2",
        "en/bob/b1",
    ]
    assert items(browse, score="similarity", worst="1", limit=2)[1] == ["en/bob/b2", "en/alice/a2"]
    assert items(browse, score="cer", worst="1", limit=1) == (7, ["en/alice/a2"])  # of all 7
    assert items(browse, offset=5, limit=5) == (7, items(browse)[1][5:])
    status, _, body = call(browse, "/api/items", score="mos")
    assert status == 400 and b"score" in body
    assert call(browse, "/api/items", limit=1000)[0] == 400
    _, _, body = call(browse, "/api/overview")
    overview = json.loads(body)
    assert overview["voices"] == ["alice", "bob"] and overview["langs"] == ["de", "en"]
    assert overview["reasons"] == ["quality:cer", "validation:too_long"]
    assert overview["scores"] == ["cer", "wer", "similarity"]
    assert overview["figures"] is None and overview["summary"] is None


def test_marks_are_written_for_the_seed_heard_and_can_be_undone(browse):
    marks = Layout(browse.out).marks()
    item = {"lang": "en", "voice": "bob", "id": "b2"}
    status, _, body = call(browse, "/api/mark", body={**item, "seed": 99})
    assert status == 400 and b"spoken again since (seed 14)" in body
    status, _, body = call(browse, "/api/mark", body={**failed("en", "bob", "b3", ""), "seed": 1})
    assert status == 400 and b"no spoken item en/bob/b3" in body
    status, _, _ = call(browse, "/api/mark", body={**item, "seed": 14, "note": "clicks"})
    assert status == 200
    [(line, mark)] = read_marks(marks)
    assert (mark.item, mark.seed, mark.note, line) == (("en", "bob", "b2"), 14, "clicks", 1)
    assert items(browse, status="marked")[1] == ["en/bob/b2"]
    _, _, body = call(browse, "/api/items", voice="bob", lang="en", status="ok")
    rows = {row["id"]: row["marks"] for row in json.loads(body)["rows"]}
    assert rows == {"b1": [], "b2": [14]}
    status, _, body = call(browse, "/api/unmark", body={**item, "seed": 14})
    assert (status, json.loads(body)) == (200, {"removed": 1})
    assert read_marks(marks) == [] and items(browse, status="marked") == (0, [])


def test_a_replaced_manifest_is_indexed_again(browse):
    layout = Layout(browse.out)
    before = browse.index.current()
    rows = atomic.read_jsonl(layout.metadata("de"))
    atomic.write_jsonl(layout.metadata("de"), [spoken("de", "alice", "d3", 16)] + rows)
    assert items(browse, lang="de", status="ok")[1] == ["de/alice/d3", "de/bob/d1"]
    # A page of the older snapshot reads the lines it indexed, not the new file's.
    _, lines = before.select(Query(lang="de", status="ok"), set())
    assert [row["id"] for row in before.read(lines)] == ["d1"]


def test_no_such_output_folder(tmp_path):
    with pytest.raises(FishflowError, match="no such output folder"):
        BrowseServer(Path(tmp_path / "missing"))


def test_the_next_browse_takes_the_cached_index_while_the_manifests_are_the_same(browse):
    layout = Layout(browse.out)
    assert browse.index.current().cached is False
    assert layout.browse_index().is_file()
    again = ManifestIndex(browse.out).current()
    assert again.cached is True
    first = browse.index.current()
    query = Query(voice="bob", score="cer", worst_first=True)
    assert again.read(again.select(query, set())[1]) == first.read(first.select(query, set())[1])
    assert again.facets()["voices"] == ["alice", "bob"]
    assert again.find("en", "bob", "b2")["seed"] == 14
    # A changed manifest, or a cache that is not one, and the manifests are indexed again.
    rows = atomic.read_jsonl(layout.failed("de"))
    atomic.write_jsonl(layout.failed("de"), rows + [failed("de", "bob", "d9", "http_error")])
    assert ManifestIndex(browse.out).current().cached is False
    assert ManifestIndex(browse.out).current().cached is True
    layout.browse_index().write_bytes(b"not an index")
    fresh = ManifestIndex(browse.out).current()
    assert fresh.cached is False and len(fresh) == 8


def test_worst_first_pages_are_a_stable_sort_however_they_are_cut():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 20, 500).astype(float)  # many ties
    values[rng.integers(0, 500, 40)] = np.inf  # not measured
    whole = np.argsort(values, kind="stable")
    for count in (1, 7, 50, 499, 500, 900):
        assert smallest(values, count).tolist() == whole[:count].tolist()


def test_a_bad_marks_file_is_an_error_with_its_line_not_a_dropped_connection(browse):
    write_jsonl(Layout(browse.out).marks(), ['{"lang": "en"}'])
    status, _, body = call(browse, "/api/items")
    assert status == 500 and "marks.jsonl:1: not a review mark" in json.loads(body)["error"]
