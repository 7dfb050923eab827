"""The GPU kit (benchmarks/gpu_throughput.py) in its CPU variant: the real fish-speech 0.1.0
server with tiny random checkpoints, the same command a GPU machine runs at real size."""

import json
import subprocess
import sys

from benchmarks.common import REPO

KIT_TIMEOUT_S = 420


def test_the_kit_answers_every_request_with_the_same_audio_on_both_sides(fish_speech, tmp_path):
    logs = tmp_path / "kit"
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py")]
    command += ["--size", "tiny", "--device", "cpu", "--items", "4", "--max-new-tokens", "16"]
    # A budget too small for --compile's guard: the skip is part of what is checked.
    command += ["--replicas", "1", "--budget-s", "300", "--logs", str(logs)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=KIT_TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    result = json.loads((logs / "results.json").read_text())
    sequential, fishflow, compiled = result["phases"]
    assert (sequential["name"], fishflow["name"]) == ("sequential", "fishflow x1")
    assert compiled["skipped"].startswith("would not fit")
    frames = 16 - 1  # random weights never end early: max_new_tokens - 1 frames per item
    for phase in (sequential, fishflow):
        assert phase["results"]["answered"] == phase["results"]["items"] == 4
        assert abs(phase["results"]["audio_s"] - 4 * frames * 2048 / 44100) < 0.01
        assert phase["results"]["gpu"] == {"measured": False, "reason": "the servers run on CPU"}
    assert result["problems"] == []
    # Each phase that ran keeps its servers' record, its job log and each server's output.
    for folder in ("sequential", "fishflow-x1"):
        record = json.loads((logs / folder / "servers.json").read_text())
        assert [(s["replica"], s["restart"]) for s in record["starts"]] == [("r0", 0)]
        assert "server ready at" in (logs / folder / "job.log").read_text()
        assert (logs / folder / "r0.log").read_text().startswith("fishflow: command: ")
    assert "en/voice02/00000 r0000001 ok" in (logs / "fishflow-x1" / "job.log").read_text()
    # The table comes last, one line per phase, GPU figures "not measured" on CPU.
    table = run.stdout.strip().splitlines()[-4:]
    assert table[0].startswith("phase") and "x seq" in table[0]
    assert table[1].startswith("sequential") and table[1].endswith("1.00x")
    assert "not measured" in table[2] and "skipped: would not fit" in table[3]
