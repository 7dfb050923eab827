"""Review by ear, end to end: a real run, `fishflow browse` in a real headless Chromium (filter,
play, mark three takes by clicking), then a real rerun that speaks exactly those three again."""

import base64
import hashlib
import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

from fishflow import atomic
from fishflow.planning.plan import item_seed
from tests.helpers import write_jsonl
from tests.report.chromium import Browser, require_chromium
from tests.workflow_runner import assert_ok

LONG = "This deliberately long sentence runs far past the duration limit set below. " * 3
MARKED = ["en/bob/en1", "de/alice/de2", "en/alice/en3"]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def requests(project) -> Counter:
    """(voice, text, seed) of every TTS request the run's servers answered, with counts."""
    return Counter((r["reference_id"], r["text"], r["seed"]) for r in project.tts_requests())


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_lines(out) -> dict[str, dict[str, str]]:
    """Each manifest's lines as written, by item (lang/voice/id)."""
    lines = {}
    for path in sorted(out.glob("*.jsonl")):
        rows = path.read_text(encoding="utf-8").splitlines()
        lines[path.name] = {
            "{lang}/{voice}/{id}".format(**json.loads(row)): row for row in rows if row
        }
    return lines


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def start_browse(out) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "fishflow.cli", "browse", str(out), "--no-open"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("fishflow browse: http://127.0.0.1:"), line
    return process, line.split()[-1]


def status_of(url: str) -> int:
    try:
        with OPENER.open(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


class Page:
    """The browse page in Chromium, driven as a user would: selects, clicks."""

    def __init__(self, browser: Browser):
        self.browser = browser

    def wait(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.browser.evaluate(expression):
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def loads(self) -> int:
        return int(self.browser.evaluate("document.body.dataset.loads"))

    def reloaded_after(self, action) -> None:
        """Run `action` (which makes the page load its items) and wait for the new items."""
        before = self.loads()
        action()
        self.wait(
            f"+document.body.dataset.loads > {before} && document.body.dataset.loading === '0'"
        )

    def choose(self, select: str, value: str) -> None:
        script = (
            f"(() => {{ const s = document.getElementById('{select}'); s.value = '{value}'; "
            "s.dispatchEvent(new Event('change')); })()"
        )
        self.reloaded_after(lambda: self.browser.evaluate(script))

    def rows(self) -> list[str]:
        return self.browser.evaluate(
            "[...document.querySelectorAll('#items tbody tr')].map(r => r.dataset.key)"
        )

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        x, y = self.browser.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.call(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )


PLAY = """(async () => {
  const audio = document.querySelector('#items tbody tr audio');
  await audio.play();
  await new Promise(r => setTimeout(r, 300));
  audio.pause();
  const seeked = new Promise(r => audio.addEventListener('seeked', r, {once: true}));
  audio.currentTime = audio.duration / 2;
  await seeked;
  return {ready: audio.readyState, duration: audio.duration, time: audio.currentTime,
          seekable: audio.seekable.length ? audio.seekable.end(0) : 0,
          error: audio.error && audio.error.code, src: audio.currentSrc};
})()"""


def test_review_in_a_real_browser_then_the_rerun_speaks_exactly_the_marked_items(project, tmp_path):
    binary = require_chromium()
    # A failure to see and filter: one row far too long for the limit, in both voices.
    path = project.root / "en.jsonl"
    write_jsonl(path, atomic.read_jsonl(path) + [{"id": "en5", "text": LONG.strip()}])
    project.config["validation"]["max_duration_s"] = 8.0
    # Each seed a different take, as on a real server: a re-spoken item is new audio.
    project.config["server"]["demo"] = {"vary_with_seed": True}
    assert_ok(project.run())
    wavs = {name: sha(p) for name, p in project.wavs().items()}
    lines = manifest_lines(project.out)
    requests_before = requests(project)

    server, url = start_browse(project.out)
    browser = Browser(binary, tmp_path / "profile")
    try:
        port = int(url.split(":")[2].split("/")[0])
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        assert status_of(url.split("?")[0]) == 403
        assert status_of(url.replace("token=", "token=x")) == 403
        assert status_of(url) == 200
        for domain in ("Network", "Page", "Runtime"):
            browser.call(f"{domain}.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1500,
            height=1100,
            deviceScaleFactor=1,
            mobile=False,
        )
        page = Page(browser)
        browser.call("Page.navigate", url=url)
        page.wait("document.body?.dataset.loads === '1'")
        assert len(page.rows()) == 22  # 2 languages x 2 voices x 5 rows, and en5 twice
        figures = page.wait("document.getElementById('figures-table')?.rows.length")
        assert figures == 1 + 4  # header, languages x voices

        page.choose("f-status", "failed")
        assert page.rows() == ["en/alice/en5", "en/bob/en5"]
        reasons = browser.evaluate(
            "[...document.querySelectorAll('#items tbody .reason')].map(e => e.textContent)"
        )
        assert reasons == ["validation:too_long"] * 2
        page.choose("f-status", "")
        page.choose("f-voice", "bob")
        assert len(page.rows()) == 11 and all("/bob/" in key for key in page.rows())
        page.choose("f-status", "ok")
        assert len(page.rows()) == 10

        played = browser.evaluate(PLAY, awaitPromise=True, userGesture=True)
        assert played["error"] is None and played["ready"] >= 2, played
        assert played["duration"] > 0.3 and played["seekable"] > 0.3, played
        assert abs(played["time"] - played["duration"] / 2) < 0.1, played
        audio = [
            event["params"]["response"]
            for event in browser.events
            if event.get("method") == "Network.responseReceived"
            and "/audio/" in event["params"]["response"]["url"]
        ]
        assert audio and all(r["mimeType"] == "audio/wav" for r in audio)
        assert 206 in {r["status"] for r in audio}  # the element seeks by byte ranges

        page.choose("f-voice", "")
        for n, key in enumerate(MARKED):
            row = f'#items tr[data-key="{key}"]'
            if n == 0:
                page.click(f"{row} input")
                browser.call("Input.insertText", text="clicks at the end")
            page.reloaded_after(lambda row=row: page.click(f"{row} button.mark"))
            assert browser.evaluate(f"document.querySelector('{row}').className") == "marked"
        page.choose("f-status", "marked")
        assert sorted(page.rows()) == sorted(MARKED)
        shot = browser.call("Page.captureScreenshot", format="png")
        (tmp_path / "browse.png").write_bytes(base64.b64decode(shot["data"]))
        page.choose("f-status", "")
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (tmp_path / "browse-all.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
        server.terminate()
        server.wait(timeout=30)

    marks = atomic.read_jsonl(project.out / "review" / "marks.jsonl")
    seeds = {key: json.loads(lines[f"metadata_{key[:2]}.jsonl"][key])["seed"] for key in MARKED}
    assert [("{lang}/{voice}/{id}".format(**m), m["seed"]) for m in marks] == list(seeds.items())
    assert marks[0]["note"] == "clicks at the end" and "note" not in marks[1]
    assert all(mark["time"].endswith("Z") for mark in marks)

    rerun = project.run()
    assert_ok(rerun)
    assert "items: 22 total, 17 done, 5 to do" in rerun.stdout  # 3 marked, 2 failed
    after = {name: sha(p) for name, p in project.wavs().items()}
    assert after.keys() == wavs.keys()
    changed = {name for name in wavs if after[name] != wavs[name]}
    assert changed == {f"audio/{key}.wav" for key in MARKED}
    new_lines = manifest_lines(project.out)
    assert new_lines.keys() == lines.keys()
    for manifest, rows in lines.items():
        assert new_lines[manifest].keys() == rows.keys()
        for key, line in rows.items():
            if key not in MARKED:
                assert new_lines[manifest][key] == line, key
    for key in MARKED:
        lang, voice, item_id = key.split("/")
        row = json.loads(new_lines[f"metadata_{lang}.jsonl"][key])
        tried = (item_seed(42, lang, voice, item_id, n) for n in itertools.count())
        assert row["seed"] == next(s for s in tried if s != seeds[key])
        assert row["sha256"] == after[row["path"]]
    # The run spoke the marked items, each once with its new seed, and tried the failed ones.
    spoken = requests(project) - requests_before
    marked = [json.loads(new_lines[f"metadata_{key[:2]}.jsonl"][key]) for key in MARKED]
    retried = {(voice, LONG.strip()) for voice in ("alice", "bob")}
    assert {(voice, text) for voice, text, _ in spoken} == retried | {
        (row["voice"], row["text"]) for row in marked
    }
    assert all(spoken[(row["voice"], row["text"], row["seed"])] == 1 for row in marked)
    assert spoken.total() == len(marked) + 2 * (project.config["validation"]["retries"] + 1)
    assert "Nothing to be done" in project.run("-n").stdout  # the marks stay; no rerun loop


def test_a_bad_mark_fails_planning_with_its_file_and_line(project):
    marks = project.out / "review" / "marks.jsonl"
    write_jsonl(marks, [{"lang": "en", "voice": "bob", "id": "en1", "seed": "7", "time": "t"}])
    result = project.run("-n")
    assert result.returncode != 0
    message = f"fishflow: {marks}:1: not a review mark: 'seed' must be a non-empty int"
    assert message in result.stdout
