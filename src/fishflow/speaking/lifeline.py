"""A generation job stops when the Snakemake that started it is gone.

Snakemake runs a local job as `sh -c "python ..."` in its own process group, so a `kill -9` of
Snakemake (or of the terminal it ran in) leaves the job running, with its servers, as an
orphan. The job watches its ancestors up to the nearest Snakemake process, each by pid and start
time (pids are reused), and calls `on_lost` once one of them has gone. On a cluster that
Snakemake is the job step's own, on the job's node: the Slurm job ends with it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

CHECK_S = 1.0
MAX_DEPTH = 8


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), int(fields[19])) if fields[0] not in "ZX" else None


def _is_snakemake(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"snakemake" in handle.read()
    except OSError:
        return False


def ancestors() -> list[tuple[int, int]]:
    """(pid, start time) of each ancestor up to the nearest Snakemake, or of the parent alone
    when no Snakemake started this process."""
    chain, pid = [], os.getppid()
    while pid > 1 and len(chain) < MAX_DEPTH:
        stat = _stat(pid)
        if stat is None:
            break
        chain.append((pid, stat[1]))
        if _is_snakemake(pid):
            return chain
        pid = stat[0]
    return chain[:1]


def watch(on_lost: Callable[[str], None], stop: threading.Event) -> threading.Thread:
    """Call `on_lost(reason)` once an ancestor has gone; until `stop` is set."""
    chain = ancestors()

    def run() -> None:
        while not stop.wait(CHECK_S):
            for pid, started in chain:
                stat = _stat(pid)
                if stat is None or stat[1] != started:
                    on_lost(f"process {pid}, which started this job, has gone")
                    return

    thread = threading.Thread(target=run, name="lifeline", daemon=True)
    thread.start()
    return thread
