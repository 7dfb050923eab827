"""A counting semaphore over lock files: at most N requests in flight per server replica.

The server decodes one request at a time and answers the rest in arrival order, so without a
bound a request of one shard waits behind those of every other shard in the job, and its timeout
measures the queue instead of its own generation. N = 2 keeps the next request queued, so the
GPU never waits for the client between requests. Locks held by a killed process are released by
the kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def try_acquire(directory: Path, index: int) -> int | None:
    """The descriptor of a lock now held on slot `index` in `directory`, or None if it is taken."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(directory) / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
