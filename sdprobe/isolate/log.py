"""A resumable cache of evaluations: every result is appended to a JSONL log, and a restart replays it.

The log's first line is a header with the *fingerprint* of what the evaluations depend on (the candidate weights,
prompts, seeds, generation settings). Each further line is one evaluation::

    {"key": "<sha256 of the subset>", "n": 12, "values": {"color": 0.25, "shape": 1.0, ...}}

Lines are appended with one ``write`` and ``fsync``, so a killed process loses at most the evaluation that was
running; a torn last line is dropped on the next open and that evaluation is simply done again.

Example:
    >>> cached = CachedEvaluator(evaluate, EvaluationLog(folder / "evaluations.jsonl", cands.fingerprint()))
    >>> cached(np.array([3, 7]))["color"]
    0.25
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from sdprobe.errors import RunError
from sdprobe.isolate.candidates import as_ids

log = logging.getLogger(__name__)
LOG_VERSION = 1  # bump when the line format changes; an old log is then refused with a clear message


def subset_key(ids: np.ndarray) -> str:
    """The key of a subset of item ids: SHA-256 of its sorted, unique ids as little-endian int64."""
    return hashlib.sha256(as_ids(ids).astype("<i8").tobytes()).hexdigest()


def _encode_one(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_encode_one(x) for x in np.asarray(v, dtype=float).tolist()]
    return None if v is None or math.isnan(float(v)) else float(v)


def _decode_one(v):
    if isinstance(v, list):
        return np.array([np.nan if x is None else float(x) for x in v], dtype=float)
    return float("nan") if v is None else float(v)


def _encode(values: dict) -> dict:
    """Scalars, or per-image vectors (lists), with NaN written as null."""
    return {k: _encode_one(v) for k, v in values.items()}


def _decode(values: dict) -> dict:
    return {k: _decode_one(v) for k, v in values.items()}


class EvaluationLog:
    """Append-only JSONL store of evaluation results keyed by :func:`subset_key`.

    Args:
        path (Path | None): the log file; None keeps results in memory only.
        fingerprint (str): what the results depend on. A log with another fingerprint is refused.

    Raises:
        RunError: the file was written for another fingerprint or format version.
    """

    def __init__(self, path: Path | None, fingerprint: str):
        self.path = None if path is None else Path(path)
        self.fingerprint = fingerprint
        self.results: dict[str, dict[str, float]] = {}
        if self.path is not None:
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append({"version": LOG_VERSION, "fingerprint": self.fingerprint})
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):  # a torn last line from a killed process: drop it
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping an incomplete last line (an interrupted evaluation is redone)", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())
            data = data[:keep]
        lines = data.decode("utf-8").splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("version") != LOG_VERSION or header.get("fingerprint") != self.fingerprint:
            raise RunError(
                f"{self.path} holds evaluations of other candidate weights or evaluation settings (the run, its "
                f"thresholds or the prompts changed); delete it to start this search over"
            )
        for line in lines[1:]:
            rec = json.loads(line)
            self.results[rec["key"]] = _decode(rec["values"])
        log.info("%s: replaying %d logged evaluations", self.path, len(self.results))

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def __len__(self) -> int:
        return len(self.results)

    def get(self, key: str) -> dict[str, float] | None:
        return self.results.get(key)

    def add(self, key: str, n: int, values: dict) -> None:
        """Record one result: scalars or per-image vectors (appended and fsynced before this returns)."""
        encoded = _encode(values)
        if self.path is not None:
            self._append({"key": key, "n": int(n), "values": encoded})
        self.results[key] = _decode(encoded)


class CachedEvaluator:
    """Evaluate each subset at most once, across restarts.

    Args:
        evaluate (Callable[[np.ndarray], dict[str, float]]): the expensive evaluation of a subset of item ids
            (sorted int64 array), e.g. the per-meaning accuracies with that subset pruned.
        store (EvaluationLog): where results are kept.

    Attributes:
        fresh (int): evaluations computed by this object.
        replayed (int): requests answered from results logged before this object was made.
    """

    def __init__(self, evaluate: Callable[[np.ndarray], dict[str, float]], store: EvaluationLog):
        self.evaluate = evaluate
        self.store = store
        self._logged_before = set(store.results)
        self.fresh = 0
        self.replayed = 0

    def __call__(self, ids: np.ndarray) -> dict[str, float]:
        ids = as_ids(ids)
        key = subset_key(ids)
        hit = self.store.get(key)
        if hit is not None:
            if key in self._logged_before:
                self._logged_before.discard(key)
                self.replayed += 1
            return hit
        values = dict(self.evaluate(ids))
        self.store.add(key, len(ids), values)
        self.fresh += 1
        return self.store.results[key]
