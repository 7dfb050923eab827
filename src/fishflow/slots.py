"""A counting semaphore over lock files: at most N requests in flight per server.

The server decodes one request at a time and answers the rest in arrival order, so without a
bound a request of one shard waits behind those of every other shard in the job, and its timeout
measures the queue instead of its own generation. N = 2 keeps the next request queued, so the
GPU never waits for the client between requests. Locks held by a killed process are released by
the kernel.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.01


@contextmanager
def slot(directory: Path, slots: int):
    """Hold one of `slots` lock files in `directory` for the duration of the block."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(slots):
            fd = os.open(Path(directory) / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield index
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(POLL_S)
