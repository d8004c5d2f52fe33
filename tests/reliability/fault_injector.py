"""Seeded fault injection for LocalServer routes (used in-process and by fault_server.py)."""

from __future__ import annotations

import random
import threading
from collections import Counter

from lamina.testing.server import RecordedRequest, Reply, _Hang, _Reset

__all__ = ["FaultInjector"]


class FaultInjector:
    """A route handler answering 503, resetting or hanging for a seeded share of requests.

    The decision for the n-th request to a path depends only on (seed, path, n),
    so a run is reproducible whatever order requests arrive in.
    """

    def __init__(
        self, seed: int, *, p503: float = 0.10, preset: float = 0.05, phang: float = 0.02
    ) -> None:
        self.seed = seed
        self.p503, self.preset, self.phang = p503, preset, phang
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def __call__(self, req: RecordedRequest) -> Reply:
        with self._lock:
            self._counts[req.path] += 1
            n = self._counts[req.path]
        kind = self.decide(req.path, n)
        self._note(kind)
        if kind == "503":
            return 503, {"injected": 503}, {}
        if kind == "reset":
            raise _Reset
        if kind == "hang":
            raise _Hang
        return 200, {"path": req.path, "attempt": n}, {}

    def decide(self, path: str, n: int) -> str:
        """What the n-th request to ``path`` gets: "503", "reset", "hang" or "ok"."""
        roll = random.Random(f"{self.seed}|{path}|{n}").random()
        if roll < self.p503:
            return "503"
        if roll < self.p503 + self.preset:
            return "reset"
        if roll < self.p503 + self.preset + self.phang:
            return "hang"
        return "ok"

    def _note(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self.injected.clear()
