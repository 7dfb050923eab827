"""A counting semaphore over lock files: at most N requests in flight per server replica.

The server decodes one request at a time and answers the rest in arrival order, so without a
bound a request of one shard waits behind those of every other shard in the job, and its timeout
measures the queue instead of its own generation. N = 2 keeps the next request queued, so the
GPU never waits for the client between requests. Locks held by a killed process are released by
the kernel.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def open_slot(directory: Path, index: int) -> int:
    """A descriptor of slot `index`'s lock file; each holder needs its own (flock is per open)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return os.open(Path(directory) / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
