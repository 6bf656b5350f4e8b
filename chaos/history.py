"""The history: one JSON line per client operation (and per fault), as it completed.

An operation is ``{"i", "proc", "op", "t0", "t1", "outcome", "args", "result"}``:
``proc`` is the client (``alice-0``: user ``alice``, session 0) or ``nemesis`` for faults;
``t0``/``t1`` are seconds since the run began; ``outcome`` is

- ``ok``: it completed and took effect (a turn ended with ``done``, a 2xx answer);
- ``error``: it completed without effect, or its effect is known (a 4xx answer, a turn
  ended with ``error``, a refused connection);
- ``unknown``: it may or may not have taken effect (a dropped stream, a timeout, a 5xx).

The checker reads only this file and the database, so a failed run can be checked again.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, Literal, TextIO

Outcome = Literal["ok", "error", "unknown"]


class History:
    """Appends operations to a JSON-lines file, flushed line by line (a crash keeps them)."""

    def __init__(self, path: Path, began: float | None = None) -> None:
        self.path = path
        self.began = time.monotonic() if began is None else began
        self._file: TextIO = path.open("w", encoding="utf-8")
        self._ids = itertools.count()
        self.counts: dict[str, int] = {}

    def now(self) -> float:
        return time.monotonic() - self.began

    def record(
        self,
        proc: str,
        op: str,
        t0: float,
        outcome: Outcome,
        args: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        entry = {
            "i": next(self._ids),
            "proc": proc,
            "op": op,
            "t0": round(t0, 3),
            "t1": round(self.now(), 3),
            "outcome": outcome,
            "args": args or {},
            "result": result or {},
        }
        self._file.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        self._file.flush()
        self.counts[op] = self.counts.get(op, 0) + 1
        return entry

    def close(self) -> None:
        self._file.close()


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def client_ops(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in history if h["proc"] != "nemesis"]
