"""Corpora as lists of records (path, speaker, label, phrase) with their class names, plus what
was skipped and why. Loaders: IEMOCAP, Att-HACK, a CSV/JSON manifest (any column names), a
folder per label, the synthetic corpus.

A speaker is optional: a record without one has ``speaker == ""``. Only what needs speakers
(the SSA models' speaker loss, speaker normalisation, leave-one-speaker-out) refuses such a
corpus, with :func:`check_speakers`; per-utterance normalisation is then the default."""

from __future__ import annotations

import csv
import json
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class Record:
    path: str
    speaker: str  # "" when unknown
    label: str
    phrase: str | None = None
    # what the audio is, whatever the listing: a hash of the decoded samples (audio_digest), set
    # once the file has been read (Corpus.load_audio, the feature cache); not part of equality
    audio: str | None = field(default=None, compare=False, repr=False)


def audio_digest(samples: np.ndarray) -> str:
    """A hash of decoded samples (mono float32 at the features' sample rate): the same audio
    listed under another path, manifest or annotation has the same digest."""
    import hashlib

    data = np.ascontiguousarray(samples, dtype=np.float32)
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


@dataclass
class Corpus(Sequence):
    """A list-like of :class:`Record` with the ordered class names.

    ``skipped`` lists ``(item, reason)`` for every file or annotation that was left out;
    ``notes`` what was changed while reading (labels merged across case variants); ``options``
    the reader's options that change what a class is (IEMOCAP's ``merge_excited``, which makes
    'hap' happy and excited, and ``scripted``), recorded with the runs trained on it.
    """

    records: list[Record]
    classes: list[str]
    name: str = ""
    root: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def speakers(self) -> list[str]:
        """The known speakers (records without a speaker are not one more speaker)."""
        return sorted({r.speaker for r in self.records if r.speaker})

    @property
    def n_without_speaker(self) -> int:
        """How many records have no speaker."""
        return sum(not r.speaker for r in self.records)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every record."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.label] for r in self.records], dtype=np.int64)

    def load_audio(self, sample_rate: int = 16000, *, progress: bool = False):
        """Load every file (mono float32 at `sample_rate`). Returns (corpus of the readable
        records, each with its ``audio`` digest, list of waveforms); unreadable files go to the
        returned corpus' ``skipped``."""
        from tqdm import tqdm

        from ..audio import AudioError, load

        kept, waves, skipped = [], [], list(self.skipped)
        for rec in tqdm(self.records, desc=f"loading {self.name or 'audio'}", unit="file",
                        disable=None if progress else True):
            try:
                y = load(rec.path, sample_rate)
            except AudioError as exc:
                skipped.append((rec.path, str(exc)))
                continue
            kept.append(replace(rec, audio=audio_digest(y)))
            waves.append(y)
        return Corpus(kept, self.classes, self.name, self.root, skipped, list(self.notes),
                      dict(self.options)), waves


def label_key(label: str) -> str:
    """What two spellings of one label share: case-folded and in Unicode NFC (``colère`` typed
    with a precomposed ``è`` or, as file names copied from macOS, with ``e`` + a combining
    accent; ``Neu`` and ``neu``)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", label).casefold())


def nfc(text: str | None) -> str | None:
    """``text`` in Unicode normal form C, as speakers and phrases are read (None stays None)."""
    return None if text is None else unicodedata.normalize("NFC", text)


def _why_merged(old: str, new: str) -> str:
    if nfc(old) == nfc(new):
        return ("labels that differ only in Unicode normal form (accents composed or "
                "decomposed, as in file names copied from macOS) are one class")
    return "labels that differ only by case are one class"


def _spellings(counts: Mapping[str, int], tie) -> dict[str, str]:
    """{label_key: the spelling that names it}: the most frequent of ``counts`` ({spelling:
    records}), on a tie the least by ``tie(spelling)``, then the first in sorted order."""
    spelling: dict[str, str] = {}
    for text, _n in sorted(counts.items(), key=lambda kv: (-kv[1], tie(kv[0]), kv[0])):
        spelling.setdefault(label_key(text), text)
    return spelling


def _canonical_labels(records: list[Record], classes: Sequence[str] | None,
                      notes: list[str]) -> tuple[list[Record], list[str]]:
    """Labels that differ only by case (``neu``, ``Neu``) or Unicode normal form (``colère``
    in NFC and in NFD) are one class: merged, with a note. Speakers and phrases are read in
    NFC (one speaker written both ways is one speaker, with a note); phrases that differ only
    in case are one phrase, spelled as most of its records spell it (on a tie, the spelling
    with the fewest capitals, then the first in sorted order), with a note.

    With given ``classes`` a label takes the spelling of the class it matches (label_key);
    without, the most frequent spelling of each label_key (in NFC; on a tie the lower-case
    one, else the first in sorted order) names the class. Why merge rather than refuse: case
    variants are typing accidents in practice, normal forms an accident of the file system,
    and refusing would stop a run over one stray capital."""
    from collections import Counter

    counts = Counter(nfc(r.label) for r in records)
    if classes is not None:
        classes = list(classes)
        folded = [label_key(c) for c in classes]
        clash = sorted({c for c in classes if folded.count(label_key(c)) > 1})
        if clash:
            raise UserError(f"classes {clash} differ only by case or Unicode normal form: give "
                            "each class once")
        spelling = dict(zip(folded, classes, strict=True))
    else:
        spelling = _spellings(counts, lambda label: label != label.lower())
        classes = sorted(set(spelling.values()))
    renamed = Counter()
    merged = {what: {} for what in ("speaker", "phrase")}
    out = []
    for r in records:
        label = spelling.get(label_key(r.label), r.label)
        if label != r.label:
            renamed[(r.label, label)] += 1
        speaker, phrase = nfc(r.speaker), nfc(r.phrase)
        for what, old, new in (("speaker", r.speaker, speaker), ("phrase", r.phrase, phrase)):
            if new is not None:
                merged[what].setdefault(new, set()).add(old)
        if (label, speaker, phrase) != (r.label, r.speaker, r.phrase):
            r = Record(r.path, speaker, label, phrase)
        out.append(r)
    for (old, new), n in sorted(renamed.items()):
        notes.append(f"label {old!r} read as {new!r} ({n} record{'s' * (n != 1)}): "
                     + _why_merged(old, new))
    for what, spellings in merged.items():
        for name, written in sorted(spellings.items()):
            if len(written) > 1:
                notes.append(f"{what} {name!r} is written in {len(written)} Unicode normal "
                             f"forms: one {what}")
    # phrases that differ only in case are one sentence: one phrase (the linguistic split keeps
    # it on one side; before, "Phrase 0." and "PHRASE 0." could be trained on and validated on)
    phrase_spelling = _spellings(Counter(r.phrase for r in out if r.phrase is not None),
                                 lambda phrase: sum(map(str.isupper, phrase)))
    respelled = Counter()
    for i, r in enumerate(out):
        spelled = None if r.phrase is None else phrase_spelling[label_key(r.phrase)]
        if spelled != r.phrase:
            respelled[(r.phrase, spelled)] += 1
            out[i] = replace(r, phrase=spelled)
    for (old, new), n in sorted(respelled.items()):
        notes.append(f"phrase {old!r} read as {new!r} ({n} record{'s' * (n != 1)}): phrases "
                     "that differ only in case are one sentence")
    by_case: dict[str, set[str]] = {}
    for name in merged["speaker"]:  # (kept apart: "A" and "a" may be two people; said)
        by_case.setdefault(name.casefold(), set()).add(name)
    for names in sorted(sorted(n) for n in by_case.values() if len(n) > 1):
        notes.append(f"speakers {', '.join(map(repr, names))} differ only in case: read as "
                     f"{len(names)} speakers (if they are one person, write the name one way: "
                     "leave-one-speaker-out would hold one out and train on the other)")
    return out, classes


def match_classes(corpus: Corpus, classes: Sequence[str]) -> tuple[Corpus, dict[str, int]]:
    """``corpus`` with its labels spelled as ``classes`` (the classes of a trained model) where
    they match up to case and normal form (label_key; each rename is a note), and
    ``{label: utterances}`` of the labels that match none of them."""
    from collections import Counter

    notes = list(corpus.notes)
    records, _ = _canonical_labels(list(corpus.records), classes, notes)
    records = [replace(new, audio=old.audio) for old, new in zip(corpus.records, records,
                                                                 strict=True)]
    unknown = Counter(r.label for r in records if r.label not in classes)
    return Corpus(records, list(classes), corpus.name, corpus.root, list(corpus.skipped),
                  notes, dict(corpus.options)), dict(sorted(unknown.items()))


def file_stamp(path: str | os.PathLike) -> tuple[int, int] | None:
    """(size in bytes, modification time in ns) of the file at ``path`` (what tells a file
    rewritten since, for runs, the feature cache and predictions); None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def same_file_key(path: str) -> tuple:
    """One key for every name of one file: its device and inode (a hard link is the same
    file under another name), else, where the file system gives none, its real path (a
    symlink and its target)."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino) if st.st_ino else ("path", os.path.realpath(path))


def _repeats(records: Sequence[Record], key, again: str, times: str) -> dict[int, str]:
    """{index: reason} of the records to leave out among those with one ``key(record)`` (None:
    no key): the same annotation, kept once (``again``, with {first}: the record kept);
    different annotations, all left out (``times``, with {n}: how many)."""
    from collections import defaultdict

    rows = defaultdict(list)
    for i, r in enumerate(records):
        k = key(r)
        if k is not None:
            rows[k].append(i)
    drop = {}
    for idx in rows.values():
        if len(idx) == 1:
            continue
        annotations = {(records[i].speaker, records[i].label, records[i].phrase) for i in idx}
        if len(annotations) == 1:
            for i in idx[1:]:
                drop[i] = again.format(first=records[idx[0]].path) + ": kept once"
        else:
            shown = " / ".join(f"speaker {s!r} label {lab!r}" + (f" phrase {p!r}" if p else "")
                               for s, lab, p in sorted(annotations, key=str))
            for i in idx:
                drop[i] = (f"{times.format(n=len(idx))} with different annotations ({shown}): "
                           "left out")
    return drop


def _drop_duplicates(records: list[Record],
                     skipped: list[tuple[str, str]]) -> list[Record]:
    """One record per audio file. A file listed again with the same annotation is kept once (the
    repeat is reported in ``skipped``): under random folds a repeat could land in training and
    validation at once. A file listed with different annotations is left out entirely: there is
    no telling which one is right."""
    drop = _repeats(records, lambda r: same_file_key(r.path),
                    "listed again with the same annotation", "listed {n} times")
    for i in sorted(drop):
        skipped.append((records[i].path, drop[i]))
    return [r for i, r in enumerate(records) if i not in drop]


def drop_same_audio(corpus: Corpus, feats: list) -> tuple[Corpus, list]:
    """The corpus (and its features, aligned) with one record per audio content, by the digest
    of the decoded samples (``Record.audio``), as :func:`_drop_duplicates` keeps one per file:
    a copy of a file under another name (or re-encoded losslessly) with the same annotation is
    kept once, with different annotations left out; each reported in ``skipped``. Before, a copy
    could be trained on in one part of a fold and scored in another."""
    drop = _repeats(corpus.records, lambda r: r.audio,
                    "the same audio as another record ({first})",
                    "the same audio listed {n} times")
    if not drop:
        return corpus, feats
    skipped = list(corpus.skipped) + [(corpus.records[i].path, drop[i]) for i in sorted(drop)]
    kept = [i for i in range(len(corpus.records)) if i not in drop]
    return (Corpus([corpus.records[i] for i in kept], corpus.classes, corpus.name, corpus.root,
                   skipped, list(corpus.notes), dict(corpus.options)),
            [feats[i] for i in kept])


def not_a_class(label: str) -> str:
    """How a skip names an utterance left out for its label (a class the corpus does not
    study, not a problem with its file): ``label 'xxx'``, the start of its reason."""
    return f"label {label!r}"


def is_exclusion(reason: str) -> bool:
    """Whether a skip's reason (:func:`skip_reason`) is the corpus' own choice (a class it
    does not study, :func:`not_a_class`), not a problem with a file or a line."""
    return reason.startswith("label ")


def skip_reason(item: str, why: str) -> str:
    """A skip's reason without what names only that item: ``label 'xxx'`` (see
    :func:`not_a_class`), ``file not found``, ``cannot read audio``...; skips of one kind have
    one reason."""
    why = str(why)
    if why.startswith(f"{item}: "):
        why = why[len(item) + 2:]
    if why.startswith("label ") and " is not one of " in why:
        return why.split(" is not one of ")[0]
    return why.split(" (")[0]


def _finish(records: list[Record], classes: Sequence[str] | None, name: str, root: Path,
            skipped: list[tuple[str, str]], check_files: bool = True,
            options: dict | None = None) -> Corpus:
    """Merge case variants of labels, drop duplicated files, then keep the records with a known
    class and an existing file; everything left out goes to ``skipped`` with its reason."""
    notes: list[str] = []
    records, classes = _canonical_labels(records, classes, notes)
    records = _drop_duplicates(records, skipped)
    kept = []
    for r in records:
        if r.label not in classes:
            skipped.append((r.path, f"{not_a_class(r.label)} is not one of {classes}"))
        elif check_files and not Path(r.path).is_file():
            skipped.append((r.path, "file not found"))
        else:
            kept.append(r)
    return Corpus(kept, classes, name, str(root), skipped, notes, dict(options or {}))


def _field(path: Path, i: int, row: dict, key: str) -> str | None:
    """A manifest field as a stripped string; numbers are accepted (JSON label 0 is the label
    "0", not a missing one); None or blank is missing."""
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise UserError(f"{path}: record {i + 1}: {key} is a {type(value).__name__}, expected "
                         "a string or a number")
    value = str(value).strip()
    return value or None


MANIFEST_FIELDS = ("path", "label", "speaker", "phrase")


def parse_columns(text: str) -> dict[str, str]:
    """``"path=file,label=emotion,speaker=spk"`` -> ``{"path": "file", ...}`` (the ``--columns``
    option): which manifest column holds each field."""
    columns = {}
    for item in text.split(","):
        field_, sep, column = (part.strip() for part in item.partition("="))
        if not sep or not field_ or not column:
            raise UserError(f"columns {text!r}: expected FIELD=COLUMN[,FIELD=COLUMN...], e.g. "
                            "path=file,label=emotion,speaker=spk")
        columns[field_.lower()] = column
    _column_names(columns)
    return columns


def _column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
    """The (case-folded) manifest column of every field; a field not mapped keeps its name."""
    columns = dict(columns or {})
    unknown = sorted(set(map(str, columns)) - set(MANIFEST_FIELDS))
    if unknown:
        raise UserError(f"columns: unknown field{'s' * (len(unknown) > 1)} "
                        f"{', '.join(unknown)}; map {', '.join(MANIFEST_FIELDS)} to your "
                        "manifest's column names, e.g. path=file,label=emotion")
    names = {f: str(columns.get(f, f)).strip().lower() for f in MANIFEST_FIELDS}
    shared = sorted({c for c in names.values() if list(names.values()).count(c) > 1})
    if shared:
        raise UserError(f"columns: column {shared[0]!r} is mapped to several fields "
                        f"({', '.join(f for f in MANIFEST_FIELDS if names[f] == shared[0])})")
    return names


def _one_name(names) -> list[str]:
    """The names (columns, keys) that are one name to a manifest, which reads them stripped
    and without case: the later one would win."""
    folded = [str(k).strip().lower() for k in names if k is not None]
    return sorted({str(k) for k in names if k is not None and str(k).strip()
                   and folded.count(str(k).strip().lower()) > 1})


def read_manifest(path: str | Path, columns: Mapping[str, str] | None = None,
                  classes: Sequence[str] | None = None, required: Sequence[str] = ("path", "label")
                  ) -> tuple[Path, list[dict], dict[str, str], Sequence[str] | None]:
    """The records of a CSV or JSON manifest (or of the manifest.csv / .json of a folder) as
    (the manifest file, rows with stripped lower-case keys, the column of every field, the
    classes a JSON manifest declares or ``classes``); a ``required`` column (or a mapped one)
    that is absent is a UserError naming it and the columns found. Shared by training
    (:func:`load_manifest`) and prediction (which needs only the path column)."""
    names = _column_names(columns)
    path = Path(path)
    if path.is_dir():
        candidates = [path / "manifest.csv", path / "manifest.json"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no manifest.csv or manifest.json in this folder")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    header = None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from exc
        rows = data.get("records") if isinstance(data, dict) else data
        if isinstance(data, dict) and classes is None and data.get("classes") is not None:
            classes = data["classes"]
            if not isinstance(classes, list) or not all(isinstance(c, (str, int))
                                                        and str(c).strip() for c in classes):
                raise UserError(f"{path}: classes must be a list of names")
            classes = [str(c).strip() for c in classes]
    else:
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                rows = []
                for row in reader:
                    if None in row and not any(str(v).strip() for v in row[None]):
                        del row[None]  # (trailing empty fields: a spreadsheet's export)
                    if None in row:  # more fields than the header: the rest shifted
                        raise UserError(
                            f"{path}: line {reader.line_num} has "
                            f"{len(reader.fieldnames or []) + len(row[None])} fields, the header "
                            f"{len(reader.fieldnames or [])}: quote a field that holds a comma "
                            '(e.g. "Doe, Jane")')
                    rows.append(row)
                header = reader.fieldnames or []
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{path}: not a readable CSV manifest ({exc})") from exc
        same = _one_name(header)
        if same:  # (columns are read without case: the later one would win)
            raise UserError(f"{path}: columns {', '.join(map(repr, same))} are one name to the "
                            "manifest (column names are read without case): rename one")
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a list of records")
    for i, row in enumerate(rows):
        if row is not None and not isinstance(row, dict):
            raise UserError(f"{path}: record {i + 1} is a {type(row).__name__}, expected an "
                             "object with path, label[, speaker][, phrase]")
        same = _one_name(row or {}) if header is None else []
        if same:  # (a JSON record: the later key won, silently)
            raise UserError(f"{path}: record {i + 1} has keys {', '.join(map(repr, same))}, one "
                            "name to the manifest (keys are read without case): keep one")
    rows = [{str(k).strip().lower(): v for k, v in (row or {}).items() if k is not None}
            for row in rows]
    if not rows:
        raise UserError(f"{path}: the manifest holds no records")
    found = ([str(k).strip().lower() for k in header] if header is not None
             else sorted({k for row in rows for k in row}))
    for f in MANIFEST_FIELDS:  # a column that is absent altogether: the mapping is wrong
        if names[f] not in found and (f in required or f in (columns or {})):
            mapped = f" (columns {f}={names[f]})" if f in (columns or {}) else ""
            raise UserError(f"{path}: the manifest lacks {f}: no column {names[f]!r}{mapped}; "
                            f"columns found: {', '.join(map(repr, found)) or 'none'}; map "
                            f"yours with columns {f}=NAME")
    return path, rows, names, classes


def load_manifest(path: str | Path, classes: Sequence[str] | None = None,
                  name: str = "manifest", columns: Mapping[str, str] | None = None) -> Corpus:
    """CSV (header ``path,label[,speaker][,phrase]``) or JSON (a list of such objects, or
    ``{"records": [...], "classes": [...]}``); relative paths are relative to the manifest.

    ``columns`` maps the fields to other column names, e.g. ``{"path": "file", "label":
    "emotion", "speaker": "spk"}``; a missing path or label column (or a mapped column that is
    absent) is an error naming it and listing the columns found. Speaker and phrase are
    optional: without a speaker column, or with an empty value, a record has no speaker (see
    :func:`check_speakers`).

    Read leniently where the intent is clear: a UTF-8 byte-order mark is ignored, column names
    and values are stripped (column names case-insensitive), numbers are accepted as labels,
    speakers and phrases, and labels differing only by case are one class (noted in
    ``Corpus.notes``). A file listed twice is kept once, or left out when its annotations differ
    (reported in ``Corpus.skipped``)."""
    path, rows, names, classes = read_manifest(path, columns, classes)
    records, skipped = [], []
    for i, row in enumerate(rows):
        fields = {f: _field(path, i, row, names[f]) for f in MANIFEST_FIELDS}
        missing = [f for f in ("path", "label") if fields[f] is None]
        if missing:
            raise UserError(f"{path}: record {i + 1} lacks {', '.join(missing)} "
                             f"(column{'s' * (len(missing) > 1)} "
                             f"{', '.join(repr(names[f]) for f in missing)} empty or absent)")
        p = Path(fields["path"])
        p = p if p.is_absolute() else path.parent / p
        records.append(Record(str(p), fields["speaker"] or "", fields["label"], fields["phrase"]))
    return _finish(records, classes, name, path.parent, skipped)


def manifest_paths(path: str | Path, columns: Mapping[str, str] | None = None
                   ) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(path, speaker or None) of every record of a manifest to classify (no label needed;
    relative paths relative to the manifest), and one line per record without a path."""
    path, rows, names, _ = read_manifest(path, columns, required=("path",))
    out, problems = [], []
    for i, row in enumerate(rows):
        file = _field(path, i, row, names["path"])
        if file is None:
            problems.append(f"{path}: record {i + 1} has no path (column {names['path']!r} "
                            "empty)")
            continue
        p = Path(file)
        out.append((str(p if p.is_absolute() else path.parent / p),
                    _field(path, i, row, names["speaker"])))
    return out, problems


# the file endings of the audio formats libsndfile reads that speech is kept in (a file with
# another ending can still be named directly, or listed in a manifest)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                  ".au", ".snd", ".w64", ".rf64", ".caf", ".sph")


def walk_files(root: str | Path) -> list[Path]:
    """Every file below ``root``, sorted, hidden files and folders left out, through linked
    folders too (a link to a folder above it, a loop, is not followed)."""
    files: list[Path] = []

    def visit(folder: str, above: frozenset) -> None:
        real = os.path.realpath(folder)
        if real in above:
            return
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():  # (a link to a folder too)
                visit(entry.path, above | {real})
            elif entry.is_file():
                files.append(Path(entry.path))

    visit(str(root), frozenset())
    return sorted(files)


def load_folder(root: str | Path, classes: Sequence[str] | None = None,
                name: str = "folder") -> Corpus:
    """A folder per label: ``root/<label>/<file>`` (no speaker) or
    ``root/<label>/<speaker>/<file>`` (the sub-folder names the speaker); both may be mixed.

    Audio files are those ending in one of AUDIO_SUFFIXES; hidden files and folders are ignored,
    other files, files directly in ``root`` and files nested deeper are reported in
    ``Corpus.skipped``. Folder names are labels as in a manifest: stripped, case variants merged
    (with a note), a file reached twice (symlinks) kept once or, under two labels, left out."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected root/<label>/*.wav)")
    records, skipped = [], []
    for path in walk_files(root):  # (linked label and speaker folders too)
        rel = path.relative_to(root)
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            skipped.append((str(path), f"not an audio file (expected {', '.join(AUDIO_SUFFIXES)})"))
        elif len(rel.parts) == 1:
            skipped.append((str(path), "not in a label folder (expected root/<label>/<file>)"))
        elif len(rel.parts) > 3:
            skipped.append((str(path), "nested deeper than root/<label>/<speaker>/<file>"))
        elif not rel.parts[0].strip():
            skipped.append((str(path), "the label folder's name is blank"))
        else:
            speaker = rel.parts[1].strip() if len(rel.parts) == 3 else ""
            records.append(Record(str(path), speaker, rel.parts[0].strip()))
    if not records:
        raise UserError(f"{root}: no audio file in a label folder (expected root/<label>/*.wav "
                        f"or root/<label>/<speaker>/*.wav; {len(skipped)} other files)")
    return _finish(records, classes, name, root, skipped)


SPEAKER_PROTOCOLS = ("loso", "loso-session")


def default_normalisation(corpus: Corpus) -> str:
    """``speaker`` when every record has a speaker, else ``utterance`` (each utterance's own
    statistics): with speakers missing, speaker statistics would pool unrelated voices."""
    return "utterance" if corpus.n_without_speaker else "speaker"


def check_speakers(corpus: Corpus, models: Sequence[str] = (), normalisation: str | None = None,
                   protocol: str | None = None) -> None:
    """Refuse, before any work, what needs a speaker for every record when some have none:
    the SSA models (their speaker loss), speaker normalisation and leave-one-speaker-out."""
    n = corpus.n_without_speaker
    if not n:
        return
    needs = [f"model {m}" for m in models if m.startswith("ssa")]
    if normalisation == "speaker":
        needs.append("normalisation 'speaker'")
    if protocol in SPEAKER_PROTOCOLS:
        needs.append(f"protocol {protocol!r}")
    if needs:
        raise UserError(
            f"{', '.join(needs)} need{'s' * (len(needs) == 1)} a speaker for every utterance, "
            f"but {n} of {len(corpus)} in {corpus.root or corpus.name} have none (no speaker "
            "column, empty values, or files directly in root/<label>/); use the models acrnn / "
            "acrnn-r with normalisation 'utterance' or 'global', or give the speakers")


IEMOCAP_CLASSES = ("neu", "hap", "sad", "ang")


def iemocap_phrase(dialog: str) -> str:
    """The text unit of a dialog for the linguistic protocol: a script, whose lines are the
    same in every session and recording (``Ses01F_script01_1``, ``Ses02M_script01_1``,
    ``Ses05M_script01_1b`` -> ``script01_1``: a recording's name put one script's lines in
    training and validation); an improvisation, whose words are its speakers' own, is its
    dialog, both parts of a split one together (``Ses03M_impro05a`` / ``b`` ->
    ``Ses03M_impro05``)."""
    dialog = re.sub(r"(?<=\d)[ab]$", "", dialog)
    return re.sub(r"^Ses\d\d[FM]_", "", dialog) if "_script" in dialog else dialog


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
                line = line.lstrip("\ufeff").strip()  # (a file saved with a BOM, indented)
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
                records.append(Record(str(wav), f"{turn[:5]}{gender}", label,
                                      iemocap_phrase(dialog)))
    return _finish(records, classes, "iemocap", root, skipped,
                   options={"merge_excited": merge_excited, "scripted": scripted})


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
        raise UserError(f"attitudes must name a1..a4 (4 names), got {list(attitudes)}")
    pattern = re.compile(r"^([FM]\d{2})_a([1-4])_s(\d{3})_v(\d{2})\.(?i:wav)$")
    records, skipped = [], []
    for wav in sorted(p for p in wav_dir.iterdir() if p.suffix.lower() == ".wav"):  # (.WAV too)
        m = pattern.match(wav.name)
        if not m:
            skipped.append((str(wav), "name does not follow {F|M}NN_a{k}_s{NNN}_v{NN}.wav"))
            continue
        records.append(Record(str(wav), m.group(1), attitudes[int(m.group(2)) - 1],
                              f"s{m.group(3)}"))
    return _finish(records, list(attitudes), "atthack", root, skipped,
                   options={"attitudes": list(attitudes)})


def load_corpus(name: str, root: str | Path, **options) -> Corpus:
    """Load a corpus: ``"iemocap"``, ``"atthack"``, ``"manifest"`` (root = manifest file or
    its folder; ``columns=`` maps its column names), ``"folder"`` (root/<label>/...) or
    ``"synthetic"`` (root = the folder written by ``ssa-fast synth``)."""
    if name == "iemocap":
        return load_iemocap(root, **options)
    if name == "atthack":
        return load_atthack(root, **options)
    if name == "manifest":
        return load_manifest(root, **options)
    if name == "folder":
        return load_folder(root, **options)
    if name == "synthetic":
        from .synthetic import EMOTIONS

        return load_manifest(Path(root) / "manifest.csv", classes=options.pop("classes", EMOTIONS),
                             name="synthetic", **options)
    raise UserError(f"unknown corpus {name!r}: use iemocap, atthack, manifest, folder or "
                    "synthetic")
