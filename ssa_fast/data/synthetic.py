"""A synthetic emotional-speech corpus made with espeak-ng, so that everything runs with no
download.

It is NOT real emotional speech: "emotions" are prosody settings. Each speaker is an espeak-ng
voice with its own baseline pitch, pitch range and rate. The three non-neutral emotions are
expressed by three prosody *styles*, and which style expresses which emotion depends on the speaker
(a rotation by the speaker's index). The same acoustic change therefore means different emotions
for different speakers: the situation the paper's speaker conditioning is designed for.

Layout written by :func:`synthesize_corpus`: ``wav/<speaker>_<emotion>_p<phrase>_r<rep>.wav``
(16 kHz, 16-bit), ``manifest.csv`` (path, speaker, label, phrase) and ``synthetic.json`` (every
generation parameter).
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

EMOTIONS = ("neu", "hap", "sad", "ang")

# espeak-ng voice + variant per speaker (different timbres); all ship with espeakng-loader.
# No variant with `breath` (f2, f3, f5): espeak-ng seeds its breath noise from the clock, so
# those voices give different samples from one run to the next (measured; srand does not help).
VOICES = ("en-us+m1", "en-us+f1", "en-gb-x-rp+m3", "en-gb-scotland+f4", "en+m4", "en-029+f1",
          "en-us+m7", "en+f4", "en-gb-x-rp+f4", "en-us+m2", "en-us-nyc+f1", "en-029+m5")

# Prosody styles as offsets from a speaker's baseline: (pitch, range, rate factor, volume factor).
STYLES = {
    "plain": (0, 0, 1.00, 1.00),
    "A": (14, 25, 1.12, 1.10),  # raised, lively, a little faster
    "B": (-12, -20, 0.78, 0.75),  # lowered, flat, slow, soft
    "C": (5, 10, 1.28, 1.45),  # fast and loud
}

_SUBJECTS = ("The old man", "My sister", "Our neighbour", "The teacher", "A young doctor",
             "The driver", "Your brother", "The manager", "That little girl", "The musician")
_PREDICATES = ("walked to the station this morning", "has painted the kitchen blue",
               "will call you after dinner", "forgot the keys on the table",
               "is reading a book about the sea", "bought fresh bread at the market",
               "never answers the phone on Sunday", "found a letter under the door",
               "was waiting near the river", "opened the window to let the air in")
PHRASES = tuple(f"{s} {p}." for s in _SUBJECTS for p in _PREDICATES) + (
    "Nobody expected the meeting to end so early.",
    "It is raining again, just like yesterday.",
    "Please put the boxes in the garage.",
    "The train leaves at seven fifteen.",
)

SIZES = {  # speakers, phrases, repetitions
    "tiny": (2, 2, 1),  # a few seconds of audio per class (tests)
    "small": (6, 20, 1),  # ~8 minutes (the CPU demo)
    "medium": (8, 100, 1),
    "large": (10, 100, 3),  # ~4 hours
}


@dataclass(frozen=True)
class Utterance:
    speaker: str
    voice: str
    emotion: str
    phrase_index: int
    repetition: int
    pitch: int
    pitch_range: int
    rate: int
    volume: int

    @property
    def filename(self) -> str:
        return f"{self.speaker}_{self.emotion}_p{self.phrase_index:03d}_r{self.repetition}.wav"


def speaker_profiles(n_speakers: int, seed: int = 0) -> list[dict]:
    """Baseline prosody and the emotion -> style map of every speaker."""
    if not 1 <= n_speakers <= len(VOICES):
        raise UserError(f"speakers must be in [1, {len(VOICES)}], got {n_speakers}")
    rng = np.random.default_rng(seed)
    styles = ("A", "B", "C")
    profiles = []
    for s in range(n_speakers):
        rotation = {e: styles[(i + s) % 3] for i, e in enumerate(EMOTIONS[1:])}
        profiles.append({
            "speaker": f"spk{s:02d}", "voice": VOICES[s],
            "pitch": int(rng.integers(30, 66)), "range": int(rng.integers(35, 61)),
            "rate": int(rng.integers(145, 191)), "volume": 100,
            "styles": {"neu": "plain", **rotation},
        })
    return profiles


def plan(size: str = "small", *, speakers: int | None = None, phrases: int | None = None,
         repetitions: int | None = None, seed: int = 0) -> tuple[list[Utterance], list[dict]]:
    if size not in SIZES:
        raise UserError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    n_spk, n_phr, n_rep = SIZES[size]
    n_spk, n_phr, n_rep = speakers or n_spk, phrases or n_phr, repetitions or n_rep
    if not 1 <= n_phr <= len(PHRASES):
        raise UserError(f"phrases must be in [1, {len(PHRASES)}], got {n_phr}")
    profiles = speaker_profiles(n_spk, seed)
    rng = np.random.default_rng(seed + 1)
    utts = []
    for prof in profiles:
        for emotion in EMOTIONS:
            dp, dr, frate, fvol = STYLES[prof["styles"][emotion]]
            for p in range(n_phr):
                for r in range(n_rep):
                    jitter = rng.normal(size=3)  # small natural variation per utterance
                    utts.append(Utterance(
                        prof["speaker"], prof["voice"], emotion, p, r,
                        pitch=int(np.clip(prof["pitch"] + dp + 3 * jitter[0], 0, 99)),
                        pitch_range=int(np.clip(prof["range"] + dr + 4 * jitter[1], 0, 99)),
                        rate=int(np.clip(prof["rate"] * frate * (1 + 0.04 * jitter[2]), 80, 400)),
                        volume=int(np.clip(prof["volume"] * fvol, 10, 200))))
    return utts, profiles


def _render_group(args: tuple[list[Utterance], str]) -> list[tuple[str, float]]:
    """Worker: synthesise a group of utterances in order, resample to 16 kHz, write 16-bit WAVs.

    espeak-ng keeps internal state from one utterance to the next (the k-th call in a process
    depends on the calls before it; re-initialising does not reset it), so every group runs in
    a fresh process and in a fixed order: the corpus is identical for any number of jobs.
    """
    import soundfile as sf

    from ..audio.espeak import synthesize
    from ..audio.io import resample

    utts, out_dir = args
    results = []
    for utt in utts:
        y, sr = synthesize(PHRASES[utt.phrase_index], utt.voice, rate=utt.rate, pitch=utt.pitch,
                           pitch_range=utt.pitch_range, volume=utt.volume)
        y = np.clip(resample(y, sr, 16000), -1.0, 1.0)
        sf.write(Path(out_dir) / "wav" / utt.filename, y, 16000, subtype="PCM_16")
        results.append((utt.filename, len(y) / 16000))
    return results


def synthesize_corpus(out: str | Path, size: str = "small", *, speakers: int | None = None,
                      phrases: int | None = None, repetitions: int | None = None, seed: int = 0,
                      jobs: int | None = None, progress: bool = True) -> Path:
    """Write the synthetic corpus to `out`; returns the manifest path. Deterministic for a seed."""
    from tqdm import tqdm

    out = Path(out)
    utts, profiles = plan(size, speakers=speakers, phrases=phrases, repetitions=repetitions,
                          seed=seed)  # (validates the options before anything is written)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[Utterance]] = {}
    for u in utts:
        groups.setdefault((u.speaker, u.emotion), []).append(u)
    tasks = [(g, str(out)) for g in groups.values()]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    import multiprocessing as mp

    done: dict[str, float] = {}
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                             max_tasks_per_child=1) as pool, \
            tqdm(total=len(utts), desc=f"synthesising ({jobs} processes)", unit="utt",
                 disable=None if progress else True) as bar:
        for part in pool.map(_render_group, tasks):
            done.update(part)
            bar.update(len(part))
    results = [(u.filename, done[u.filename]) for u in utts]
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker", "label", "phrase"])
        for u, (name, _) in zip(utts, results, strict=True):
            w.writerow([f"wav/{name}", u.speaker, u.emotion, f"p{u.phrase_index:03d}"])
    meta = {
        "note": "Synthetic speech from espeak-ng; emotions are prosody settings, not real "
                "emotional speech. The emotion -> style map depends on the speaker.",
        "seed": seed, "size": size, "emotions": EMOTIONS, "styles": STYLES,
        "speakers": profiles, "phrases": list(PHRASES[:len({u.phrase_index for u in utts})]),
        "utterances": [asdict(u) | {"seconds": round(sec, 3)}
                       for u, (_, sec) in zip(utts, results, strict=True)],
        "hours": round(sum(sec for _, sec in results) / 3600, 4),
    }
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1))
    return manifest
