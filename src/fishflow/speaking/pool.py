"""The job's requests over its server replicas: each goes to the least busy ready replica, at
most `server.max_in_flight` at a time per replica.

The server decodes one request at a time and answers the rest in arrival order, so without a
bound a request waits behind all others and its timeout measures the queue instead of its own
generation. Two in flight keep the next request queued, so the GPU never waits for the client.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fishflow.errors import FishflowError, ServerError
from fishflow.serving.client import FishSpeechClient
from fishflow.serving.replicas import Replicas

WAIT_S = 0.2
# The replicas' thread notices a dead replica within a second and restarts it on a new port.
UNREACHABLE_S = 10.0


class Stopped(FishflowError):
    """The job is being stopped (SIGTERM, SIGINT, or its Snakemake is gone): nothing new is
    sent."""


class ReplicaPool:
    def __init__(self, replicas: Replicas, server: dict, stopping: threading.Event):
        self.replicas = replicas
        self.server = server
        self.stopping = stopping
        self.width = len(replicas.replicas) * server["max_in_flight"]
        self.in_flight: dict[str, int] = {}
        self.unreachable: dict[str, float] = {}  # url -> until when nothing goes there
        self.turn = itertools.count()
        self.free = threading.Condition()
        self.local = threading.local()  # a requests session is not meant to be shared

    def _choose(self) -> str | None:
        now = time.monotonic()
        ready = [
            r.url
            for r in self.replicas.ready()
            if self.unreachable.get(r.url, 0) < now
            and self.in_flight.get(r.url, 0) < self.server["max_in_flight"]
        ]
        if not ready:
            return None
        # The least busy; among equals, in turn, so that every replica gets work.
        start = next(self.turn)
        ready = ready[start % len(ready) :] + ready[: start % len(ready)]
        return min(ready, key=lambda url: self.in_flight.get(url, 0))

    @contextmanager
    def slot(self) -> Iterator[FishSpeechClient]:
        """A client of a ready replica, holding one of its in-flight places for the block."""
        waiting_since = time.monotonic()
        patience = self.server["startup_timeout_s"] * (self.server["max_restarts"] + 1)
        with self.free:
            while (url := self._choose()) is None:
                if self.stopping.is_set():
                    raise Stopped("the job was stopped")
                if self.replicas.failed():
                    raise ServerError(self.replicas.failure())
                if not self.replicas.ready() and time.monotonic() - waiting_since > patience:
                    raise ServerError(f"no server replica ready for {patience:.0f} s")
                self.free.wait(WAIT_S)
            self.in_flight[url] = self.in_flight.get(url, 0) + 1
        try:
            yield self._client(url)
        finally:
            with self.free:
                self.in_flight[url] -= 1
                self.free.notify()

    def unreachable_at(self, url: str) -> None:
        """A replica did not answer: send nothing there for a while, even before the replicas'
        thread has noticed that it died (its places are free, so it would be chosen first)."""
        with self.free:
            self.unreachable[url] = time.monotonic() + UNREACHABLE_S

    def _client(self, url: str) -> FishSpeechClient:
        clients = self.local.__dict__.setdefault("clients", {})
        if url not in clients:
            clients[url] = FishSpeechClient(
                url, self.replicas.api_key, self.server["request_timeout_s"]
            )
        return clients[url]
