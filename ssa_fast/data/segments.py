"""Segmentation and normalisation of 3-D log-Mel features (design.md section 3).

Features of a whole utterance ``(3, T, M)`` are cut into consecutive segments of
``segment_frames`` (non-overlapping by default; a training ``hop`` < segment_frames overlaps);
a final partial segment is kept if it has at least ``min_tail`` frames or is the utterance's only
one. Each channel and mel bin is z-normalised with statistics of the speaker's *training*
segments (``speaker``: the frames its training segments cover, a dropped tail not among them; or
``global`` / ``utterance``); zero padding to ``segment_frames`` comes
after normalisation, so padded frames are exactly 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .constants import MIN_TAIL, NORMALISATIONS, SEGMENT_FRAMES  # noqa: F401 (also this module's)


def segment_bounds(n_frames: int, segment_frames: int = SEGMENT_FRAMES, hop: int | None = None,
                   min_tail: int = MIN_TAIL) -> list[tuple[int, int]]:
    """(start, length) of every segment of an utterance with `n_frames` frames."""
    if segment_frames < 1 or n_frames < 1:
        raise ValueError(f"need segment_frames >= 1 and n_frames >= 1, got {segment_frames}, "
                         f"{n_frames}")
    hop = segment_frames if hop is None else hop
    if not 1 <= hop <= segment_frames:
        raise ValueError(f"hop must be in [1, segment_frames={segment_frames}], got {hop}")
    bounds, start = [], 0
    while True:
        length = min(segment_frames, n_frames - start)
        if length == segment_frames or not bounds or length >= min_tail:
            bounds.append((start, length))
        if start + segment_frames >= n_frames:
            break
        start += hop
    return bounds


@dataclass
class Stats:
    mean: torch.Tensor  # (3, 1, M)
    std: torch.Tensor  # (3, 1, M)


class FrameStats:
    """Mean and unbiased standard deviation of every channel and mel bin over all frames of
    (3, T, M) blocks, added one block at a time (float64; blocks merged with Chan et al.'s
    pairwise update, as accurate as one pass over their concatenation). The one formula of the
    normalisation statistics: training speakers (the frames of their training segments as one
    block), utterances, and files streamed in blocks. One block gives exactly torch's ``mean``
    and ``std``."""

    def __init__(self):
        self.n = 0
        self.mean: torch.Tensor | None = None  # (3, 1, M)
        self.m2: torch.Tensor | None = None  # sum of squared deviations from the mean
        self._std: torch.Tensor | None = None  # torch's own std while there is one block

    def add(self, block: torch.Tensor) -> FrameStats:
        b = block.double()
        n_b = b.shape[1]
        if n_b == 0:
            return self
        mean_b = b.mean(dim=1, keepdim=True)
        # (one frame: no spread; torch's unbiased std of one value is NaN)
        std_b = b.std(dim=1, keepdim=True) if n_b > 1 else torch.zeros_like(mean_b)
        m2_b = std_b.square() * (n_b - 1)
        if self.mean is None:
            self.n, self.mean, self.m2, self._std = n_b, mean_b, m2_b, std_b
            return self
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta.square() * (self.n * n_b / n)
        self.n, self._std = n, None
        return self

    def stats(self, eps: float) -> Stats:
        """The statistics; the std is at least ``eps`` (a constant bin, or a single frame,
        normalises to 0 instead of dividing by 0)."""
        if self.mean is None:
            raise ValueError("no frames to take statistics of")
        std = self._std if self._std is not None else (self.m2 / max(self.n - 1, 1)).sqrt()
        return Stats(self.mean, std.clamp_min(eps))


class Normaliser:
    """Per-speaker (default), global or per-utterance z-normalisation of (3, T, M) features."""

    def __init__(self, mode: str = "speaker", eps: float = 1e-5):
        if mode not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {mode!r}")
        self.mode, self.eps = mode, eps
        self.stats: dict[str, Stats] = {}

    def fit(self, features: Sequence[torch.Tensor], speakers: Sequence[str], *,
            segment_frames: int | None = None, hop: int | None = None,
            min_tail: int = MIN_TAIL) -> Normaliser:
        """Statistics from the training segments (design.md section 3): the frames of each
        training utterance that its segments (``segment_frames``, ``hop``, ``min_tail``, as
        :func:`segment_bounds` cuts them) cover, each frame once; a final partial segment
        too short to be kept is not among them. ``segment_frames=None`` (a caller that cuts
        no segments): every frame. Cross-validation passes its segmentation."""
        if self.mode == "utterance":
            return self
        if self.mode == "speaker" and not all(speakers):  # "" would pool unrelated voices
            raise ValueError(f"speaker normalisation needs a speaker for every utterance; "
                             f"{sum(not s for s in speakers)} have none (use 'utterance')")
        groups: dict[str, list[torch.Tensor]] = defaultdict(list)
        for f, s in zip(features, speakers, strict=True):
            if segment_frames is not None and f.shape[1] > 0:
                # (segments start at 0 and overlap or abut: they cover one run of frames)
                start, length = segment_bounds(f.shape[1], segment_frames, hop, min_tail)[-1]
                f = f[:, :start + length]
            groups[s if self.mode == "speaker" else "*"].append(f)
        # (each group's frames as one block: exactly the mean and std of their concatenation)
        self.stats = {k: FrameStats().add(torch.cat(v, dim=1)).stats(self.eps)
                      for k, v in groups.items()}
        return self

    def __call__(self, feats: torch.Tensor, speaker: str) -> torch.Tensor:
        """Normalise one utterance. A speaker without training statistics (an unseen speaker at
        prediction time) falls back to the utterance's own statistics."""
        st = self.stats_for(speaker)
        return self.apply(feats, st if st is not None else FrameStats().add(feats).stats(self.eps))

    def stats_for(self, speaker: str | None) -> Stats | None:
        """The training statistics that normalise `speaker` (None: use the utterance's own)."""
        if self.mode == "utterance":
            return None
        return self.stats.get("*" if self.mode == "global" else speaker)

    def applied(self, speaker: str | None) -> str:
        """Which statistics normalise ``speaker``'s utterances: "speaker" (theirs, from
        training), "global" (every training utterance's) or "utterance" (each its own)."""
        if self.stats_for(speaker) is None:
            return "utterance"
        return "global" if self.mode == "global" else "speaker"

    def whose(self, speaker: str | None) -> tuple[str, str | None]:
        """(:meth:`applied`, the training speaker whose statistics those are, or None where
        they are no speaker's): how a prediction records what normalised it."""
        applied = self.applied(speaker)
        return applied, speaker if applied == "speaker" else None

    @staticmethod
    def apply(feats: torch.Tensor, st: Stats) -> torch.Tensor:
        return ((feats.double() - st.mean) / st.std).to(feats.dtype)

    def state_dict(self) -> dict:
        return {"mode": self.mode, "eps": self.eps,
                "stats": {k: {"mean": v.mean, "std": v.std} for k, v in self.stats.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> Normaliser:
        n = cls(state["mode"], state["eps"])
        n.stats = {k: Stats(v["mean"], v["std"]) for k, v in state["stats"].items()}
        return n


@dataclass
class Segments:
    x: torch.Tensor  # (S, 3, segment_frames, M), normalised, zero-padded
    lengths: torch.Tensor  # (S,) valid frames per segment
    utterance: torch.Tensor  # (S,) index of the source utterance
    label: torch.Tensor  # (S,) class index
    speaker: torch.Tensor  # (S,) speaker index

    def __len__(self) -> int:
        return self.x.shape[0]


def make_segments(features: Sequence[torch.Tensor], labels: Sequence[int],
                  speakers: Sequence[str], normaliser: Normaliser, speaker_index: dict[str, int],
                  *, segment_frames: int = SEGMENT_FRAMES, hop: int | None = None,
                  min_tail: int = MIN_TAIL) -> Segments:
    """Normalise every utterance, cut it into segments and zero-pad the short ones."""
    xs, lens, utt, lab, spk = [], [], [], [], []
    for i, (f, y, s) in enumerate(zip(features, labels, speakers, strict=True)):
        z = normaliser(f, s)
        for start, length in segment_bounds(f.shape[1], segment_frames, hop, min_tail):
            seg = torch.zeros(3, segment_frames, f.shape[2], dtype=z.dtype)
            seg[:, :length] = z[:, start:start + length]
            xs.append(seg)
            lens.append(length)
            utt.append(i)
            lab.append(int(y))
            spk.append(speaker_index.get(s, -1))
    if not xs:
        raise ValueError("no segments: the feature list is empty")
    as_long = lambda v: torch.tensor(v, dtype=torch.long)
    return Segments(torch.stack(xs), as_long(lens), as_long(utt), as_long(lab), as_long(spk))
