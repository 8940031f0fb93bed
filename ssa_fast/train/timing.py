"""Where a run's wall time goes: a breakdown by phase (training steps, data, validation...).

Every ``train`` and ``cv`` run records one, prints it at the end and stores it in its
``result.json`` / ``results.json``. A phase is timed on the host clock; on CUDA the device is
synchronised when a phase ends, so that the GPU work queued in a phase is counted in it (a few
synchronisations per epoch, none per step). Whatever no phase covers is reported as ``other``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

# the phases in the order they are printed; a run may record others (printed after these)
PHASES = ("features", "data", "startup", "training steps", "batch gathering",
          "BatchNorm re-estimation", "validation", "checkpoints", "final evaluation", "reports")


class Breakdown:
    """Seconds per phase, and the wall time since the breakdown started."""

    def __init__(self, device: torch.device | str | None = None):
        device = torch.device(device) if device is not None else None
        self.cuda = device if device is not None and device.type == "cuda" else None
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def _sync(self) -> None:
        if self.cuda is not None:
            torch.cuda.synchronize(self.cuda)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def merge(self, other: dict, exclude: tuple[str, ...] = ()) -> None:
        """Add the phases of another run's :meth:`as_dict` (its ``other`` and total excluded)."""
        for name, s in other.get("phases", {}).items():
            if name not in exclude:
                self.add(name, s)

    def as_dict(self) -> dict:
        total = time.perf_counter() - self.start
        phases = {n: round(s, 4) for n, s in sorted(self.seconds.items(), key=_order)}
        other = max(0.0, total - sum(self.seconds.values()))
        return {"total_s": round(total, 4), "phases": phases, "other_s": round(other, 4)}


def _order(item) -> tuple[int, str]:
    name = item[0]
    return (PHASES.index(name) if name in PHASES else len(PHASES), name)


def describe(timing: dict) -> str:
    """One line: 'time 86.2 s: training steps 30.1 s (35%), validation 12.0 s (14%), ...'."""
    total = timing["total_s"]
    parts = [(n, s) for n, s in timing["phases"].items()] + [("other", timing["other_s"])]
    share = (lambda s: f" ({100 * s / total:.0f}%)") if total > 0 else (lambda s: "")
    shown = ", ".join(f"{n} {s:.1f} s{share(s)}" for n, s in parts
                      if s >= 0.05 or n == "training steps")
    return f"time {total:.1f} s" + (f": {shown}" if shown else "")
