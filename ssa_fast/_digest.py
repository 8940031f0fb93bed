"""Fingerprints: a stable short hash of a JSON-able record (a run's identity), shared by the
training bookkeeping (train/fingerprint.py) and the checkpoints that store one."""

from __future__ import annotations

import hashlib
import json


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(identity: dict) -> str:
    """A stable 16-hex-digit hash of ``identity`` (its canonical JSON)."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]
