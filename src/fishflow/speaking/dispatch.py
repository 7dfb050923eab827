"""The client side of a job's server replicas: hand each request to a ready replica with a free
slot, following the endpoint file as the launcher restarts or loses replicas."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fishflow.errors import FishflowError, ServerError
from fishflow.serving.client import FishSpeechClient
from fishflow.serving.endpoint import read_endpoint
from fishflow.speaking.slots import open_slot, try_lock, unlock

POLL_S = 0.01  # a freed slot must be taken again before the replica's queued request is done
REFRESH_S = 1.0
# The launcher notices a dead replica within a second and restarts it on a new port.
UNREACHABLE_S = 10.0


class Stopped(FishflowError):
    """The job is being stopped (SIGTERM): no new request is sent."""


class ReplicaPool:
    """At most `server.max_in_flight` requests per ready replica, across all shards of the job
    (every shard's generator holds its own pool over the same lock files)."""

    def __init__(self, endpoint: Path, info: dict, server: dict, stopping: threading.Event):
        self.endpoint = endpoint
        self.server = server
        self.stopping = stopping
        self.api_key = info.get("api_key")
        self.width = len(info["replicas"]) * server["max_in_flight"]
        self.turn = itertools.count(random.randrange(len(info["replicas"])))
        self.local = threading.local()  # a requests session is not meant to be shared by threads
        self.unreachable: dict[str, float] = {}  # url -> until when nothing goes there
        self._update(info)

    def _update(self, info: dict) -> None:
        if "error" in info:
            raise ServerError(f"the job's servers failed: {info['error']}")
        self.ready = [
            (r["url"], Path(r["slots"]))
            for r in info["replicas"]
            if r["state"] == "ready" and self.unreachable.get(r["url"], 0) < time.monotonic()
        ]
        self.refreshed = time.monotonic()

    def unreachable_at(self, url: str) -> None:
        """A replica did not answer: send nothing there for a while, even before the launcher
        has noticed it died (its slots are free, so it would be the first choice)."""
        self.unreachable[url] = time.monotonic() + UNREACHABLE_S
        self.ready = [(u, slots) for u, slots in self.ready if u != url]
        self.refresh()

    def refresh(self) -> None:
        """Re-read the endpoint file, where the launcher lists its replicas' states."""
        info = read_endpoint(self.endpoint)
        if info:
            self._update(info)

    def _lock(self, slots: Path, index: int) -> int | None:
        """This thread's descriptor of a slot, now locked, or None; descriptors stay open, so
        polling costs one flock call per slot."""
        fds = self.local.__dict__.setdefault("fds", {})
        if (slots, index) not in fds:
            fds[(slots, index)] = open_slot(slots, index)
        fd = fds[(slots, index)]
        return fd if try_lock(fd) else None

    def _client(self, url: str) -> FishSpeechClient:
        clients = self.local.__dict__.setdefault("clients", {})
        if url not in clients:
            clients[url] = FishSpeechClient(url, self.api_key, self.server["request_timeout_s"])
        return clients[url]

    @contextmanager
    def slot(self) -> Iterator[FishSpeechClient]:
        """A client of a ready replica, holding one of its in-flight slots for the block.

        Slot 0 of every replica is tried before any slot 1: the least busy replica gets the
        request, from a rotating start so that shards do not all prefer the same one."""
        waiting_since = time.monotonic()
        patience = self.server["startup_timeout_s"] * (self.server["max_restarts"] + 1)
        while True:
            if self.stopping.is_set():
                raise Stopped("the job was stopped (SIGTERM)")
            if time.monotonic() - self.refreshed > REFRESH_S:
                self.refresh()  # replicas that start, restart or fail
            ready, start = self.ready, next(self.turn)
            for index in range(self.server["max_in_flight"]):
                for offset in range(len(ready)):
                    url, slots = ready[(start + offset) % len(ready)]
                    fd = self._lock(slots, index)
                    if fd is None:
                        continue
                    try:
                        yield self._client(url)
                    finally:
                        unlock(fd)
                    return
            if not ready and time.monotonic() - waiting_since > patience:
                raise ServerError(f"no server replica ready for {patience:.0f} s")
            time.sleep(POLL_S)
