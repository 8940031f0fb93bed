"""The predictions file of ``ssa-fast predict --out``: JSON lines or CSV, written as it goes.

Records are appended, each as one write of whole lines, to ``<out>.partial`` while the run goes
on; the finished file is renamed to ``<out>`` at the end, so ``<out>`` is never half-written. A
killed run leaves ``<out>.partial``, whose last line may be cut: ``--resume`` drops that line,
keeps every whole record and classifies only the files not in it (a finished ``<out>`` can be
resumed too, to add files). Every record names the checkpoint that made it (the first 16 hex
digits of the checkpoint file's SHA-256) and the statistics that normalised it (their kind, and
the training speaker whose they are): resuming with another checkpoint is refused, and so is
resuming over a file that this run would normalise otherwise (the caller's ``check_made``).
Every record
also holds its file's size and modification time (``bytes``, ``mtime_ns``) as they were before
it was read: a record whose file has changed since is dropped on resuming, and the file
classified again where the run names it (a change that keeps both is not seen, as by make),
and the code that made it (``code``: the digest of the library's prediction code and compiled
extension, ``_code.PREDICTION``): resuming with other code is refused too.
Files that failed are not written (a resumed run tries them again); files too short or silent
are, with their status.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from ..data.corpus import file_stamp
from ..errors import UserError

FORMATS = {".jsonl": "jsonl", ".csv": "csv"}


def checkpoint_id(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def prediction_code() -> str:
    """16 hex digits of the code that computes a prediction (sources and extension)."""
    from .._code import PREDICTION, code_digest

    return code_digest(PREDICTION)


def record(pred, checkpoint: str, bf16: bool = False) -> dict:
    """The output record of one Prediction of a file: the file as named and its absolute path
    (what --resume matches, from any working directory), its result, how it was made (the
    statistics that normalised it: their kind and the training speaker whose they are; bf16
    autocast or not; the checkpoint's id; the code's, prediction_code), and the file's size and
    modification time before it was read (``pred.stamp``; else as they are now)."""
    size, mtime = pred.stamp or file_stamp(pred.file) or (None, None)
    return {"file": pred.file, "path": os.path.abspath(pred.file), "status": pred.status,
            "label": pred.label,
            "probabilities": pred.probabilities,
            "duration": None if pred.duration is None else round(pred.duration, 4),
            "segments": [{"start": round(s.start, 4), "end": round(s.end, 4), "label": s.label}
                         for s in pred.segments],
            "reason": pred.reason, "normalisation": pred.normalisation, "bf16": bool(bf16),
            "checkpoint": checkpoint, "speaker": pred.speaker, "bytes": size, "mtime_ns": mtime,
            "code": prediction_code()}


class PredictionsFile:
    """``--out`` (.jsonl or .csv) for the ``classes`` of checkpoint ``checkpoint`` (its id),
    classified with bf16 autocast or not (``bf16``); ``done`` holds the files already in it
    when resuming (records of another checkpoint, or made with another ``bf16``, are refused:
    one file holds the numbers of one setting), and ``made`` how each was normalised:
    {path: (normalisation, speaker)}, speaker None where the record is of a version that did not
    name it (before 2026-12-07). ``check_made(source, made)``, when given, is called on resuming
    before anything is written, to refuse (by raising) the files it would normalise otherwise."""

    def __init__(self, out: str | os.PathLike, classes: list[str], checkpoint: str,
                 resume: bool = False, bf16: bool = False, check_made=None):
        self.out = Path(out)
        self.format = FORMATS.get(self.out.suffix.lower())
        if self.format is None:
            raise UserError(f"--out {out}: expected a .jsonl or .csv file name")
        self.classes, self.checkpoint, self.bf16 = list(classes), checkpoint, bool(bf16)
        self.check_made = check_made
        # (the columns before the path was recorded: such a file is resumed, its rows matched
        # by their file names from this working directory)
        self._columns_without_path = (["file", "status", "label", "duration"]
                                      + [f"p_{c}" for c in self.classes]
                                      + ["segments", "reason", "normalisation", "bf16",
                                         "checkpoint"])
        self._columns_without_speaker = self._columns_without_path + ["path"]
        self._columns_without_stamp = self._columns_without_speaker + ["speaker"]
        self.columns = self._columns_without_stamp + ["bytes", "mtime_ns", "code"]
        self.code = prediction_code()
        self.partial = partial_path(self.out)
        # the files in it (their absolute paths where recorded) -> (normalisation, the speaker
        # whose statistics; None where not recorded)
        self.made: dict[str, tuple[str | None, str | None]] = {}
        self.named_only = 0  # records (of an older version) without an absolute path
        self.changed: list[str] = []  # files whose records were dropped: changed since
        self.code_unknown = 0  # records (of an older version) that do not name their code
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        elif self.partial.exists():
            raise UserError(f"{self.partial}: the predictions of an interrupted run; --resume "
                            "continues it (or delete it to start over)")
        else:
            self._start()
        self.fh = open(self.partial, "a", encoding="utf-8", newline="")  # noqa: SIM115

    @property
    def done(self):
        """The files in it: their absolute paths where recorded (the keys of ``made``)."""
        return self.made.keys()

    def _start(self) -> None:
        with open(self.partial, "w", encoding="utf-8", newline="") as fh:
            if self.format == "csv":
                csv.writer(fh).writerow(self.columns)

    def _resume(self) -> None:
        source = self.partial if self.partial.exists() else self.out
        if not source.exists():
            self._start()
            return
        # a cut last line (a killed run) is dropped: cut as bytes, for it may end inside a
        # character of a file's name (a newline byte is never part of one in UTF-8)
        data = source.read_bytes()
        try:
            whole = data[:data.rfind(b"\n") + 1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"--resume: {source} is not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start}); not a predictions file of `ssa-fast predict`") \
                from None
        rows = self._parse(source, whole)
        for i, row in enumerate(rows):
            if row.get("checkpoint") != self.checkpoint:
                raise UserError(f"--resume: {source} record {i + 1} ({row.get('file')}) was "
                                f"written with checkpoint {row.get('checkpoint')}, not this "
                                f"one ({self.checkpoint}); use another --out, or the same "
                                "checkpoint")
            made = str(row.get("bf16")).lower()
            if made in ("true", "false") and (made == "true") != self.bf16:
                was = "with" if made == "true" else "without"
                raise UserError(f"--resume: {source} record {i + 1} ({row.get('file')}) was "
                                f"made {was} --bf16; resume {was} it, or use another --out")
            if row.get("code") and row["code"] != self.code:
                raise UserError(f"--resume: {source} record {i + 1} ({row.get('file')}) was "
                                f"made by other prediction code of ssa_fast (code "
                                f"{row['code']}, this one's {self.code}: another version, or "
                                "its compiled extension built or not), whose numbers may "
                                "differ; resume with the code that began it, or use another "
                                "--out")
        changed = [self._changed(row) for row in rows]
        if any(changed):  # (written again without the records of changed files)
            self.changed = [row["file"] for row, c in zip(rows, changed, strict=True) if c]
            rows = [row for row, c in zip(rows, changed, strict=True) if not c]
            whole = (self._csv_text(rows) if self.format == "csv"
                     else "".join(json.dumps(row) + "\n" for row in rows))
        elif rows and self.format == "csv" and list(rows[0]) != self.columns:  # (older file)
            whole = self._csv_text(rows)
        for row in rows:
            self.made[row.get("path") or row["file"]] = (row.get("normalisation") or None,
                                                         row.get("speaker") or None)
            self.named_only += not row.get("path")
            self.code_unknown += not row.get("code")
        if self.check_made is not None:
            self.check_made(source, self.made)
        tmp = self.partial.with_name(self.partial.name + f".tmp{os.getpid()}")
        tmp.write_text(whole if rows or self.format == "jsonl" else "", encoding="utf-8")
        os.replace(tmp, self.partial)
        if not rows and self.format == "csv":
            self._start()

    def _parse(self, source: Path, text: str) -> list[dict]:
        if self.format == "jsonl":
            rows = []
            for n, line in enumerate(text.splitlines()):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"--resume: {source} line {n + 1} is not a JSON record "
                                    f"({exc}); not a predictions file of `ssa-fast predict`") \
                        from exc
                if not isinstance(row, dict) or "file" not in row:
                    raise UserError(f"--resume: {source} line {n + 1} is not a prediction "
                                    "record (no file)")
                rows.append(row)
            return rows
        reader = csv.DictReader(io.StringIO(text))
        if text and reader.fieldnames not in (self.columns, self._columns_without_stamp,
                                              self._columns_without_speaker,
                                              self._columns_without_path):
            raise UserError(f"--resume: {source} has columns {reader.fieldnames}, expected "
                            f"{self.columns} (another checkpoint's classes, or not a "
                            "predictions file of `ssa-fast predict`)")
        return list(reader)

    @staticmethod
    def _changed(row: dict) -> bool:
        """Whether the file of a record has changed since it was read: its size or modification
        time is not the record's (records of a version that did not keep them, and files no
        longer there, are not judged)."""
        if not row.get("path") or row.get("bytes") in (None, "") \
                or row.get("mtime_ns") in (None, ""):
            return False
        now = file_stamp(row["path"])
        return now is not None and (str(now[0]), str(now[1])) != (str(row["bytes"]),
                                                                  str(row["mtime_ns"]))

    def _csv_text(self, rows: list[dict]) -> str:
        """CSV rows (of an older file too: without the path, speaker, or size, time and code
        columns) as this version writes them."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        writer.writerows([row.get(c) or "" for c in self.columns] for row in rows)
        return buf.getvalue()

    def write(self, pred) -> None:
        rec = record(pred, self.checkpoint, self.bf16)
        if self.format == "jsonl":
            line = json.dumps(rec) + "\n"
        else:
            buf = io.StringIO()
            probs = rec["probabilities"]
            csv.writer(buf).writerow(
                [rec["file"], rec["status"], rec["label"] or "", rec["duration"]]
                + ["" if c not in probs else f"{probs[c]:.6g}" for c in self.classes]
                + [json.dumps([[s["start"], s["end"], s["label"]] for s in rec["segments"]]),
                   rec["reason"] or "", rec["normalisation"], str(rec["bf16"]).lower(),
                   rec["checkpoint"], rec["path"], rec["speaker"] or "",
                   "" if rec["bytes"] is None else rec["bytes"],
                   "" if rec["mtime_ns"] is None else rec["mtime_ns"], rec["code"]])
            line = buf.getvalue()
        self.fh.write(line)  # whole lines, flushed: a kill cuts at most the last one
        self.fh.flush()
        self.made[rec["path"]] = (rec["normalisation"], rec["speaker"])

    def close(self, finished: bool) -> Path:
        """Close; a finished run's predictions become ``out`` (atomically). Returns the file
        that holds them."""
        self.fh.close()
        if finished:
            os.replace(self.partial, self.out)
            return self.out
        return self.partial
