"""Corpora as lists of records (path, speaker, label, phrase) with their class names, plus what
was skipped and why. Loaders: IEMOCAP, Att-HACK, a CSV/JSON manifest, the synthetic corpus."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Record:
    path: str
    speaker: str
    label: str
    phrase: str | None = None


@dataclass
class Corpus(Sequence):
    """A list-like of :class:`Record` with the ordered class names.

    ``skipped`` lists ``(item, reason)`` for every file or annotation that was left out.
    """

    records: list[Record]
    classes: list[str]
    name: str = ""
    root: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def speakers(self) -> list[str]:
        return sorted({r.speaker for r in self.records})

    @property
    def labels(self) -> np.ndarray:
        """Class index of every record."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.label] for r in self.records], dtype=np.int64)

    def subset(self, indices) -> Corpus:
        return Corpus([self.records[i] for i in indices], self.classes, self.name, self.root,
                      list(self.skipped))

    def load_audio(self, sample_rate: int = 16000, *, progress: bool = False):
        """Load every file (mono float32 at `sample_rate`). Returns (corpus of the readable
        records, list of waveforms); unreadable files go to the returned corpus' ``skipped``."""
        from tqdm import tqdm

        from ..audio import AudioError, load

        kept, waves, skipped = [], [], list(self.skipped)
        for rec in tqdm(self.records, desc=f"loading {self.name or 'audio'}", unit="file",
                        disable=not progress):
            try:
                y = load(rec.path, sample_rate)
            except AudioError as exc:
                skipped.append((rec.path, str(exc)))
                continue
            kept.append(rec)
            waves.append(y)
        return Corpus(kept, self.classes, self.name, self.root, skipped), waves


def _finish(records: list[Record], classes: Sequence[str] | None, name: str, root: Path,
            skipped: list[tuple[str, str]], check_files: bool = True) -> Corpus:
    if classes is None:
        classes = sorted({r.label for r in records})
    classes = list(classes)
    kept = []
    for r in records:
        if r.label not in classes:
            skipped.append((r.path, f"label {r.label!r} is not one of {classes}"))
        elif check_files and not Path(r.path).is_file():
            skipped.append((r.path, "file not found"))
        else:
            kept.append(r)
    return Corpus(kept, classes, name, str(root), skipped)


def load_manifest(path: str | Path, classes: Sequence[str] | None = None,
                  name: str = "manifest") -> Corpus:
    """CSV (header ``path,speaker,label[,phrase]``) or JSON (a list of such objects, or
    ``{"records": [...], "classes": [...]}``); relative paths are relative to the manifest."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "manifest.csv", path / "manifest.json"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no manifest.csv or manifest.json in this folder")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        rows = data.get("records") if isinstance(data, dict) else data
        if isinstance(data, dict) and classes is None:
            classes = data.get("classes")
    else:
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a readable CSV manifest ({exc})") from exc
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of records")
    records, skipped = [], []
    for i, row in enumerate(rows):
        if row is not None and not isinstance(row, dict):
            raise ValueError(f"{path}: record {i + 1} is a {type(row).__name__}, expected an "
                             "object with path, speaker, label[, phrase]")
        missing = [k for k in ("path", "speaker", "label") if not (row or {}).get(k)]
        if missing:
            raise ValueError(f"{path}: record {i + 1} lacks {', '.join(missing)} "
                             "(columns path, speaker, label[, phrase] are required)")
        p = Path(row["path"])
        p = p if p.is_absolute() else path.parent / p
        records.append(Record(str(p), str(row["speaker"]), str(row["label"]),
                              str(row["phrase"]) if row.get("phrase") not in (None, "") else None))
    if not records:
        raise ValueError(f"{path}: the manifest holds no records")
    return _finish(records, classes, name, path.parent, skipped)


IEMOCAP_CLASSES = ("neu", "hap", "sad", "ang")


def load_iemocap(root: str | Path, *, scripted: bool = False, merge_excited: bool = False,
                 classes: Sequence[str] = IEMOCAP_CLASSES) -> Corpus:
    """IEMOCAP_full_release: ``SessionN/sentences/wav/<dialog>/<turn>.wav`` with labels from
    ``SessionN/dialog/EmoEvaluation/<dialog>.txt``. Improvised dialogs only unless ``scripted``;
    ``merge_excited`` relabels ``exc`` as ``hap``. Speaker = session + gender of the turn
    (``Ses01F_impro01_M003`` -> ``Ses01M``): 10 speakers."""
    root = Path(root)
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
    if not sessions:
        raise FileNotFoundError(f"{root}: no Session1..Session5 folders (expected the "
                                "IEMOCAP_full_release folder)")
    records, skipped = [], []
    for session in sessions:
        for txt in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            dialog = txt.stem
            if "impro" not in dialog and not scripted:
                continue
            for n, line in enumerate(txt.read_text(errors="replace").splitlines(), 1):
                if not line.startswith("["):
                    continue  # headers and the per-evaluator lines
                parts = [p.strip() for p in line.split("\t")]
                if len(parts) < 3 or "_" not in parts[1]:
                    skipped.append((f"{txt}:{n}", "unreadable annotation line"))
                    continue
                turn, label = parts[1], parts[2]
                if merge_excited and label == "exc":
                    label = "hap"
                gender = turn.rsplit("_", 1)[1][:1]
                wav = session / "sentences" / "wav" / dialog / f"{turn}.wav"
                records.append(Record(str(wav), f"{turn[:5]}{gender}", label, dialog))
    return _finish(records, classes, "iemocap", root, skipped)


# [configuration] The order of Att-HACK's attitudes a1..a4 is not confirmed by any source found;
# override with load_corpus("atthack", root, attitudes=(...)).
ATTHACK_ATTITUDES = ("friendly", "seductive", "dominant", "distant")


def load_atthack(root: str | Path, *, attitudes: Sequence[str] = ATTHACK_ATTITUDES) -> Corpus:
    """Att-HACK: ``wav/{F|M}NN_a{k}_s{NNN}_v{NN}.wav`` (speaker, attitude 1-4, sentence 1-100,
    version). ``attitudes`` maps a1..a4 to names (see ATTHACK_ATTITUDES)."""
    import re

    root = Path(root)
    wav_dir = root / "wav"
    if not wav_dir.is_dir():
        raise FileNotFoundError(f"{root}: no wav/ folder (expected the Att-HACK folder)")
    if len(attitudes) != 4:
        raise ValueError(f"attitudes must name a1..a4 (4 names), got {list(attitudes)}")
    pattern = re.compile(r"^([FM]\d{2})_a([1-4])_s(\d{3})_v(\d{2})\.wav$")
    records, skipped = [], []
    for wav in sorted(wav_dir.glob("*.wav")):
        m = pattern.match(wav.name)
        if not m:
            skipped.append((str(wav), "name does not follow {F|M}NN_a{k}_s{NNN}_v{NN}.wav"))
            continue
        records.append(Record(str(wav), m.group(1), attitudes[int(m.group(2)) - 1],
                              f"s{m.group(3)}"))
    return _finish(records, list(attitudes), "atthack", root, skipped)


def load_corpus(name: str, root: str | Path, **options) -> Corpus:
    """Load a corpus: ``"iemocap"``, ``"atthack"``, ``"manifest"`` (root = manifest file or
    its folder) or ``"synthetic"`` (root = the folder written by ``ssa-fast synth``)."""
    if name == "iemocap":
        return load_iemocap(root, **options)
    if name == "atthack":
        return load_atthack(root, **options)
    if name == "manifest":
        return load_manifest(root, **options)
    if name == "synthetic":
        from .synthetic import EMOTIONS

        return load_manifest(Path(root) / "manifest.csv", classes=options.pop("classes", EMOTIONS),
                             name="synthetic", **options)
    raise ValueError(f"unknown corpus {name!r}: use iemocap, atthack, manifest or synthetic")
