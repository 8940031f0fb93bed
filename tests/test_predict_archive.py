"""`ssa-fast predict` on archives: folders, manifests and list files, --out (JSON lines or CSV)
written as it goes, --resume, bad input reported and skipped, Ctrl-C, audio with nothing to
classify; and EmotionClassifier.classify_files, the same engine from Python. Every prediction
is checked against the unbatched reference (engine.classify on the whole file's features)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import alive, run_cli, signal_when, speech_like

from ssa_fast import EmotionClassifier
from ssa_fast.audio.io import AudioError, load
from ssa_fast.predict.engine import classify, load_trained, unclassifiable
from ssa_fast.predict.inputs import Entry, read_item
from ssa_fast.predict.output import prediction_code

sf = pytest.importorskip("soundfile")


def _reference(tm, path, speaker=None) -> dict:
    """The class probabilities of a file by the unbatched path: the whole file's features."""
    f = tm.features.module()(torch.from_numpy(load(path, tm.features.sample_rate)))
    probs, _, _ = classify(tm, [f], [speaker])
    return dict(zip(tm.classes, map(float, probs[0]), strict=True))


def _close(a: dict, b: dict, tol: float = 1e-4) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= tol for k in a)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A folder of good files (nested, another sample rate, stereo), files with nothing to
    classify (one sample, 10 ms, a second of digital silence), bad files (0 bytes, a truncated
    WAV, not audio), an empty folder, a list file and a manifest naming missing files."""
    root = tmp_path_factory.mktemp("archive")
    a = root / "a"
    (a / "sub").mkdir(parents=True)
    good = []
    for i in range(6):
        path = a / ("sub" if i % 2 else "") / f"f{i}.wav"
        sf.write(path, speech_like(16000 + 7000 * i, seed=i).astype(np.float32), 16000)
        good.append(path)
    sf.write(a / "r22.wav", speech_like(40000, 22050, seed=9).astype(np.float32), 22050)
    sf.write(a / "stereo.flac", np.stack([speech_like(30000, seed=10)] * 2, 1), 16000)
    good += [a / "r22.wav", a / "stereo.flac"]
    sf.write(a / "one.wav", np.array([0.3], np.float32), 16000)
    sf.write(a / "ten_ms.wav", speech_like(160, seed=11).astype(np.float32), 16000)
    sf.write(a / "zero.wav", np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    (a / "empty.wav").write_bytes(b"")
    (a / "trunc.wav").write_bytes(good[0].read_bytes()[:30])
    (a / "text.wav").write_text("not audio")
    (root / "nothing").mkdir()
    (root / "nothing" / "notes.txt").write_text("no audio here")
    (root / "list.txt").write_text("a/f0.wav\n# a comment\n\nmissing.wav\n")
    (root / "man.csv").write_text("file,spk\na/f2.wav,spk01\nnot_there.wav,\n")
    return root, good


def _predict(root, *args):
    return run_cli("predict", *args, cwd=root)


def test_archive_to_jsonl_and_csv_with_bad_input_reported(trained, archive):
    ckpt, _ = trained
    root, good = archive
    inputs = ["man.csv", "a", "list.txt", "nothing"]  # f2 first from the manifest, with its speaker
    common = ["--columns", "path=file,speaker=spk", "--workers", "2", "--batch-size", "5",
              "--quiet"]
    proc = _predict(root, ckpt, *inputs, "--out", "p.jsonl", *common)
    assert proc.returncode == 1, proc.stderr  # some failed: said by the status
    assert "Traceback" not in proc.stderr
    err = proc.stderr.splitlines()
    for text in ("nothing: a folder with no audio files", "empty.wav: an empty file (0 bytes)",
                 "trunc.wav: cannot read audio", "text.wav: cannot read audio",
                 "missing.wav: no such file", "not_there.wav: no such file"):
        assert sum(text in line for line in err) == 1, (text, proc.stderr)
    assert ("16 files" in err[-1] and "8 classified, 2 too short, 1 silent" in err[-1]
            and "5 failed, 1 input(s) naming no file" in err[-1]), err[-1]
    assert (root / "p.jsonl").is_file() and not (root / "p.jsonl.partial").exists()
    rows = [json.loads(line) for line in (root / "p.jsonl").read_text().splitlines()]
    by_file = {r["file"]: r for r in rows}
    assert len(by_file) == len(rows) == 11  # each file once (f0 and f2 are named twice)
    tm = load_trained(ckpt)
    for path in good:
        r = by_file[str(path.relative_to(root))]
        speaker = "spk01" if path.name == "f2.wav" else None  # the manifest's speaker column
        assert r["status"] == "ok" and r["label"] in tm.classes
        assert _close(r["probabilities"], _reference(tm, path, speaker)), path
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert abs(r["duration"] - sf.info(str(path)).duration) < 1e-3
        assert r["segments"][0]["start"] == 0 and r["segments"][-1]["end"] <= r["duration"]
    for name, status in (("one.wav", "too short"), ("ten_ms.wav", "too short"),
                         ("zero.wav", "silent")):
        r = by_file[f"a/{name}"]
        assert (r["status"], r["label"], r["probabilities"], r["segments"]) == \
            (status, None, {}, []), r
        assert r["reason"]
    # the same run into CSV: the same predictions
    proc = _predict(root, ckpt, *inputs, "--out", "p.csv", *common)
    assert proc.returncode == 1
    with open(root / "p.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["file"] for t in table] == [r["file"] for r in rows]
    for t in table:
        r = by_file[t["file"]]
        assert t["status"] == r["status"] and (t["label"] or None) == r["label"]
        for c, p in r["probabilities"].items():
            assert abs(float(t[f"p_{c}"]) - p) < 1e-5
        assert [s[2] for s in json.loads(t["segments"])] == [s["label"] for s in r["segments"]]


@pytest.mark.slow
def test_resume_continues_a_cut_file_and_refuses_another_checkpoint(trained, archive, tmp_path):
    ckpt, _ = trained
    root, _ = archive
    out = tmp_path / "p.jsonl"
    proc = _predict(root, ckpt, "a", "--out", out, "--workers", "1", "--quiet")
    full = out.read_text().splitlines(keepends=True)
    # a killed run: 3 whole records and half of the 4th in the .partial file
    partial = tmp_path / "p.jsonl.partial"
    partial.write_text("".join(full[:3]) + full[3][:40])
    out.unlink()
    proc = _predict(root, ckpt, "a", "--out", out, "--quiet")
    assert proc.returncode == 2 and "--resume continues it" in proc.stderr  # nothing lost
    assert partial.read_text().startswith("".join(full[:3]))
    proc = _predict(root, ckpt, "a", "--out", out, "--resume", "--workers", "2")
    assert proc.returncode == 1, proc.stderr  # (the archive's bad files)
    assert "3 of the 14 files are in" in proc.stderr
    again = out.read_text().splitlines(keepends=True)
    assert again[:3] == full[:3] and len(again) == len(full)
    first = {json.loads(r)["file"]: json.loads(r) for r in full}
    for line in again:
        r = json.loads(line)
        assert r["status"] == first[r["file"]]["status"]
        if r["status"] == "ok":
            assert _close(r["probabilities"], first[r["file"]]["probabilities"], 1e-5)
    # another checkpoint (the same weights saved anew: another file) is refused
    other = tmp_path / "other.pt"
    state = torch.load(ckpt, weights_only=True)
    state["epoch"] = 99
    torch.save(state, other)
    before = out.read_bytes()
    proc = _predict(root, other, "a", "--out", out, "--resume", "--quiet")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "written with checkpoint" in proc.stderr and str(out) in proc.stderr
    assert out.read_bytes() == before
    proc = _predict(root, ckpt, "a", "--resume", "--quiet")
    assert proc.returncode == 2 and "--resume: needs --out" in proc.stderr
    # the same files named otherwise (absolute paths, through a symlink): all done already (but
    # the failed ones, tried again)
    (tmp_path / "link").symlink_to(root / "a")
    for named in (root / "a", tmp_path / "link"):
        proc = _predict(root, ckpt, named, "--out", out, "--resume", "--quiet")
        assert "11 of the 14 files are in" in proc.stderr, proc.stderr  # (3 failed)
        assert out.read_bytes() == before


def test_nothing_to_classify_gets_no_label(trained, tmp_path):
    """A 1-sample or 10 ms file, a second of digital silence and a second of a constant offset
    (silence from a recorder with a DC bias) are marked, not labelled (they all got the same
    confident label); the summary and the exit status say so."""
    ckpt, _ = trained
    files = {"one.wav": np.array([0.3], np.float32),
             "ten_ms.wav": speech_like(160, seed=3).astype(np.float32),
             "silence.wav": np.zeros(16000, np.float32),
             "offset.wav": np.full(16000, -0.25, np.float32),
             "speech.wav": speech_like(24000, seed=4).astype(np.float32)}
    for name, y in files.items():
        sf.write(tmp_path / name, y, 16000)
    proc = run_cli("predict", ckpt, *(tmp_path / n for n in files), "--json", "--quiet")
    assert proc.returncode == 1, proc.stderr
    res = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(proc.stdout)}
    assert [res[n]["status"] for n in files] == ["too short", "too short", "silent", "silent", "ok"]
    for n in ("one.wav", "ten_ms.wav", "silence.wav", "offset.wav"):
        assert res[n]["emotion"] is None and res[n]["probabilities"] == {} and res[n]["reason"]
    assert res["speech.wav"]["emotion"] is not None
    assert "1 classified, 2 too short, 2 silent" in proc.stderr
    proc = run_cli("predict", ckpt, tmp_path / "silence.wav")
    assert "silence.wav: not classified (silent" in proc.stdout
    clf = EmotionClassifier.from_checkpoint(ckpt)
    batch = clf.classify_batch([files[n] for n in files], 16000)
    assert [p.status for p in batch] == ["too short", "too short", "silent", "silent", "ok"]
    assert [p.label is None for p in batch] == [True, True, True, True, False]
    assert not batch[2].classified and batch[2].probabilities == {}
    assert clf.classify_file(tmp_path / "one.wav").status == "too short"
    assert clf.classify_file(tmp_path / "offset.wav").status == "silent"
    # at a recorder's rate: judged before resampling, which rings at the constant's edges
    # (a swing of about 0.02 after it, and a label)
    offset44 = np.full(44100, 0.1, np.float32)
    sf.write(tmp_path / "offset44.wav", offset44, 44100, subtype="PCM_16")
    assert clf.classify_file(tmp_path / "offset44.wav").status == "silent"
    assert clf.classify(offset44, 44100).status == "silent"
    # a file too long to hold whole (streamed) is judged by the same range, block by block
    for name in ("offset.wav", "offset44.wav"):
        offset = read_item(0, Entry(str(tmp_path / name)), 16000, load_seconds=0.1)
        assert offset.stream and unclassifiable(offset.duration, offset.peak)[0] == "silent"
        assert offset.duration == pytest.approx(1.0)
    speech = read_item(0, Entry(str(tmp_path / "speech.wav")), 16000, load_seconds=0.1)
    assert speech.stream and unclassifiable(speech.duration, speech.peak) is None


def test_a_streamed_file_keeps_the_speaker_whose_statistics_it_took(trained, tmp_path):
    """A file too long to hold whole (over LOAD_SECONDS, here 0.1 s) is streamed: with an SSA
    model its result's ``speaker`` was the model's per-segment speaker guesses (a tensor), not
    the training speaker whose statistics normalised it; its record then broke --out with a
    traceback on every run and every --resume. The same file held whole gives the same result."""
    from ssa_fast.predict.engine import classify_items
    from ssa_fast.predict.output import PredictionsFile, record

    ckpt, _ = trained
    tm = load_trained(ckpt)
    assert tm.is_ssa and "spk00" in tm.speakers
    clf = EmotionClassifier.from_checkpoint(ckpt)
    path = tmp_path / "talk.wav"
    sf.write(path, speech_like(16000 * 7, seed=5).astype(np.float32), 16000)
    rate = tm.features.sample_rate
    for speaker, whose in (("spk00", "spk00"), (None, None)):
        items = [read_item(0, Entry(str(path), speaker), rate, load_seconds=0.1),
                 read_item(1, Entry(str(path), speaker), rate)]
        assert items[0].stream and not items[1].stream
        streamed, whole = classify_items(tm, items, keep_attention=True)
        for res in (streamed, whole):
            assert res["status"] == "ok" and res["speaker"] == whose, res["speaker"]
        assert set(streamed) == set(whole)
        torch.testing.assert_close(streamed["probabilities"], whole["probabilities"], rtol=0,
                                   atol=1e-5)
        # (both carry the file's size and time from before it was read, for its record)
        assert streamed["stamp"] == whole["stamp"] == (path.stat().st_size,
                                                       path.stat().st_mtime_ns)
        pred = clf._prediction(streamed, attention=False)
        json.dumps(record(pred, "0" * 16))  # (a tensor in it raised here)
        out = PredictionsFile(tmp_path / f"p{speaker}.csv", clf.classes, "0" * 16)
        out.write(pred)
        out.close(True)
        with open(tmp_path / f"p{speaker}.csv", newline="") as fh:
            (row,) = csv.DictReader(fh)
        assert row["speaker"] == (whose or "") and row["label"] == pred.label


def test_classify_files_is_the_clis_engine_in_input_order(trained, archive):
    ckpt, _ = trained
    root, good = archive
    clf = EmotionClassifier.from_checkpoint(ckpt)
    tm = load_trained(ckpt)
    order = [good[3], good[0], root / "a" / "trunc.wav", good[6], good[0]]
    preds = list(clf.classify_files(order, batch_size=3, num_workers=2))
    assert [p.file for p in preds] == [str(p) for p in order[:4]]  # the repeat once
    assert [p.status for p in preds] == ["ok", "ok", "failed", "ok"]
    assert "trunc.wav" in preds[2].reason and preds[2].label is None
    for path, p in zip(order, preds, strict=False):
        if p.classified:
            assert _close(p.probabilities, _reference(tm, path))
            assert _close(p.probabilities, clf.classify_file(path).probabilities, 1e-5)
    with pytest.warns(UserWarning, match="no audio files") as caught:
        assert list(clf.classify_files(root / "nothing")) == []
    assert caught[0].filename == __file__  # (the line that asked, not the library's)
    folder = list(clf.classify_files(root / "a", num_workers=0, batch_size=64))
    assert len(folder) == 14 and all(p.file.startswith(str(root / "a")) for p in folder)
    # the default batch (32 segments on the CPU) scores as a batch of 64 does
    default = list(clf.classify_files(root / "a", num_workers=0))
    assert [p.file for p in default] == [p.file for p in folder]
    for p, q in zip(default, folder, strict=True):
        assert p.status == q.status and (not p.classified or _close(p.probabilities,
                                                                    q.probabilities, 1e-6))


def test_scoring_batch_defaults_by_device():
    from ssa_fast.models.scoring import scoring_batch

    assert scoring_batch("cpu") == 32 and scoring_batch("cuda:1") == 128
    assert scoring_batch("cpu", 5) == 5
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        scoring_batch("cpu", 0)


def test_ctrl_c_keeps_whole_records_and_resume_finishes(trained, tmp_path):
    """Ctrl-C with decoding workers running: one line, status 130, the records written so far
    kept whole in the .partial file; --resume classifies the rest."""
    ckpt, _ = trained
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(60):
        sf.write(folder / f"x{i:02d}.wav", speech_like(24000, seed=i).astype(np.float32), 16000)
    out = tmp_path / "p.jsonl"
    partial = tmp_path / "p.jsonl.partial"
    args = [sys.executable, "-m", "ssa_fast.cli", "predict", str(ckpt), str(folder), "--out",
            str(out), "--workers", "2", "--batch-size", "1", "--quiet"]
    rc, err = signal_when(args, lambda: partial.read_text().count("\n") >= 3, signal.SIGINT)
    assert rc == 130, err
    assert "Traceback" not in err and "interrupted" in err and "(--resume continues)" in err
    assert not out.exists()
    kept = partial.read_text()
    assert kept.endswith("\n") and 3 <= kept.count("\n") < 60
    assert all(json.loads(line)["status"] == "ok" for line in kept.splitlines())
    proc = run_cli(*args[3:], "--resume")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == sorted(str(p) for p in folder.glob("*.wav"))

    # SIGKILL (no clean-up runs in the main process): its decoding workers end with it
    partial2 = tmp_path / "q.jsonl.partial"
    args[args.index(str(out))] = str(tmp_path / "q.jsonl")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (
            partial2.is_file() and partial2.read_text().count("\n") >= 2):
        time.sleep(0.02)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "ended before the kill"
    proc.kill()
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if alive(w)]


def _children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid`` (Linux's /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out



def test_inputs_expand_folders_manifests_and_lists(tmp_path):
    from ssa_fast.errors import UserError
    from ssa_fast.predict.inputs import expand_inputs

    (tmp_path / "d" / ".hidden").mkdir(parents=True)
    for name in ("d/b.wav", "d/a.FLAC", "d/.hidden/h.wav", "d/notes.md"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "m.json").write_text(json.dumps(
        [{"file": "d/b.wav", "spk": "s1"}, {"file": ""}, {"file": "x.wav"}]))
    (tmp_path / "l.lst").write_text("# nothing\n\n")
    entries, problems = expand_inputs(
        [tmp_path / "m.json", tmp_path / "d", tmp_path / "l.lst", tmp_path / "d" / "b.wav"],
        {"path": "file", "speaker": "spk"}, speaker="s0")
    assert [(e.path, e.speaker) for e in entries] == [
        (str(tmp_path / "d" / "b.wav"), "s1"), (str(tmp_path / "x.wav"), "s0"),
        (str(tmp_path / "d" / "a.FLAC"), "s0")]
    # the other endings speech is kept in, and linked folders (a link back up: no loop)
    (tmp_path / "e" / "real").mkdir(parents=True)
    for name in ("e/c.opus", "e/d.caf", "e/f.au", "e/real/g.w64"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "e" / "link").symlink_to(tmp_path / "e" / "real")
    (tmp_path / "e" / "real" / "up").symlink_to(tmp_path / "e")
    entries, _ = expand_inputs([tmp_path / "e"])
    assert sorted(os.path.realpath(e.path) for e in entries) == sorted(
        str((tmp_path / n).resolve()) for n in ("e/c.opus", "e/d.caf", "e/f.au", "e/real/g.w64"))
    assert len(problems) == 2 and "record 2 has no path" in problems[0]
    assert "naming no files" in problems[1]
    with pytest.raises(UserError, match="no column 'path'"):
        expand_inputs([tmp_path / "m.json"])


def test_inputs_read_speakers_as_training_does_whatever_the_order(tmp_path):
    """A manifest's speaker names in any Unicode normal form come out in NFC (training's: the
    checkpoint's statistics are found), and a file named by a folder and by a manifest keeps
    the manifest's speaker in either order; two manifests disagreeing: the first, warned."""
    import unicodedata
    import warnings

    from ssa_fast.predict.inputs import expand_inputs

    (tmp_path / "d").mkdir()
    for name in ("a.wav", "b.wav"):
        (tmp_path / "d" / name).write_bytes(b"x")
    nfd = unicodedata.normalize("NFD", "José")
    (tmp_path / "m.csv").write_text(f"path,speaker\nd/a.wav,{nfd}\n", encoding="utf-8")
    (tmp_path / "n.csv").write_text("path,speaker\nd/a.wav,other\n")
    folder, man = tmp_path / "d", tmp_path / "m.csv"
    want = [(str(folder / "a.wav"), "José"), (str(folder / "b.wav"), None)]
    for inputs in ([folder, man], [man, folder]):
        entries, _ = expand_inputs(inputs)
        got = sorted((os.path.realpath(e.path), e.speaker) for e in entries)
        assert got == sorted((os.path.realpath(p), s) for p, s in want), inputs
        assert all(e.speaker is None or unicodedata.is_normalized("NFC", e.speaker)
                   for e in entries)
    assert expand_inputs([folder], speaker=nfd)[0][0].speaker == "José"
    with pytest.warns(UserWarning, match="named with speaker 'José' and with 'other'"):
        entries, _ = expand_inputs([man, tmp_path / "n.csv"])
    assert [e.speaker for e in entries] == ["José"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expand_inputs([man, folder, man])  # the same speaker twice: nothing to say


def test_bf16_autocast_path_runs_on_the_cpu(trained, archive):
    """--bf16 (meant for GPUs) through the same engine: close to fp32 (the labels of a 1-epoch
    model, near-uniform, are not compared: that evidence needs a trained model on a GPU)."""
    ckpt, _ = trained
    _, good = archive
    clf = EmotionClassifier.from_checkpoint(ckpt)
    fp32 = list(clf.classify_files(good[:4], num_workers=0))
    bf16 = list(clf.classify_files(good[:4], num_workers=0, bf16=True))
    for a, b in zip(fp32, bf16, strict=True):
        assert a.file == b.file and b.classified
        assert _close(a.probabilities, b.probabilities, 0.05)
        assert a.probabilities != b.probabilities  # bf16 did run


@pytest.mark.slow
def test_records_say_how_each_file_was_made_and_resume_keeps_to_it(trained, tmp_path):
    """Each record names the statistics that normalised its file (their kind, and whose) and
    whether bf16 autocast ran: a resume that would normalise a file in it otherwise (without
    the speaker, or with another) or with another --bf16 is refused, the file unchanged (one
    file, one setting); and a checkpoint trained with global statistics says so (not
    "utterance", nor speakers it does not have)."""
    ckpt, corpus = trained
    wavs = sorted((corpus / "wav").glob("*.wav"))[:3]
    out = tmp_path / "p.csv"
    proc = run_cli("predict", ckpt, wavs[0], "--speaker", "spk00", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    before = out.read_bytes()
    for speaker, now in (([], "its own statistics"),
                         (["--speaker", "spk01"], "the training statistics of speaker 'spk01'")):
        proc = run_cli("predict", ckpt, *wavs[:2], *speaker, "--out", out, "--resume",
                       "--quiet")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"holds {wavs[0]} normalised with the training statistics of speaker 'spk00'; " \
            f"this run would normalise it with {now}" in proc.stderr, proc.stderr
        assert out.read_bytes() == before and not (tmp_path / "p.csv.partial").exists()
    proc = run_cli("predict", ckpt, *wavs[:2], "--speaker", "spk00", "--out", out, "--resume",
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["normalisation"], r["speaker"], r["bf16"]) for r in rows] == \
        [("speaker", "spk00", "false")] * 2
    before = out.read_bytes()
    proc = run_cli("predict", ckpt, *wavs, "--out", out, "--resume", "--bf16", "--quiet")
    assert proc.returncode == 2 and "was made without --bf16; resume without it" in proc.stderr
    assert out.read_bytes() == before

    glob = tmp_path / "global"
    proc = run_cli("train", "synthetic", corpus, "--out", glob, "--model", "acrnn", "--folds",
                   "2", "--preset", "small", "--epochs", "1", "--batch-size", "8",
                   "--segment-frames", "100", "--normalisation", "global", "--cache",
                   tmp_path / "cache", "--quiet")
    assert proc.returncode == 0, proc.stderr
    clf = EmotionClassifier.from_checkpoint(glob / "best.pt")
    assert clf.normalisation == "global" and clf.speakers == []
    assert clf.classify_file(wavs[0], speaker="spk00").normalisation == "global"
    proc = run_cli("predict", glob / "best.pt", wavs[0], "--speaker", "spk00", "--out",
                   tmp_path / "g.jsonl", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "not used, the checkpoint normalises with global statistics" in proc.stderr
    assert json.loads((tmp_path / "g.jsonl").read_text())["normalisation"] == "global"


@pytest.mark.slow
def test_resume_matches_the_files_done_from_any_working_directory(trained, tmp_path):
    """Records named files relative to the first run's working directory, and --resume read
    them from its own: the same folder named another way was classified twice, and another
    folder's files under the same relative names were skipped (the first run's predictions
    kept under their names)."""
    ckpt, _ = trained
    for d, seed in (("A", 0), ("B", 50)):
        (tmp_path / d / "data").mkdir(parents=True)
        for i in range(4):
            sf.write(tmp_path / d / "data" / f"x{i}.wav",
                     speech_like(16000 + 3000 * i, seed=seed + i).astype(np.float32), 16000)
    for suffix in ("jsonl", "csv"):
        out = tmp_path / f"p.{suffix}"
        proc = run_cli("predict", ckpt, "data", "--out", out, "--quiet", cwd=tmp_path / "A")
        assert proc.returncode == 0, proc.stderr
        full = out.read_bytes().splitlines(keepends=True)
        cut = 3 if suffix == "jsonl" else 4  # (2 records and half a 3rd; CSV: the header too)
        partial = tmp_path / f"p.{suffix}.partial"
        partial.write_bytes(b"".join(full[:cut - 1]) + full[cut - 1][:30])
        out.unlink()
        # the same folder by its absolute path, from elsewhere: the rest only
        proc = run_cli("predict", ckpt, tmp_path / "A" / "data", "--out", out, "--resume",
                       "--quiet", cwd="/")
        assert proc.returncode == 0 and "2 of the 4 files are in" in proc.stderr, proc.stderr
        if suffix == "jsonl":
            rows = [json.loads(line) for line in out.read_text().splitlines()]
        else:
            with open(out, newline="") as fh:
                rows = list(csv.DictReader(fh))
        assert len(rows) == 4 and len({r["path"] for r in rows}) == 4
        assert {r["path"] for r in rows} == {str(tmp_path / "A" / "data" / f"x{i}.wav")
                                             for i in range(4)}
        # another folder's files under the same relative names are other files
        proc = run_cli("predict", ckpt, "data", "--out", out, "--resume", "--quiet",
                       cwd=tmp_path / "B")
        assert proc.returncode == 0 and "0 of the 4 files are in" in proc.stderr, proc.stderr
        assert len(out.read_text().splitlines()) == (8 if suffix == "jsonl" else 9)
    # a file of the previous version (records without a path), resumed where it was made:
    # matched by name, and said so
    old = [{k: v for k, v in json.loads(line).items() if k != "path"}
           for line in (tmp_path / "p.jsonl").read_text().splitlines()[:2]]
    (tmp_path / "old.jsonl.partial").write_text("".join(json.dumps(r) + "\n" for r in old))
    proc = run_cli("predict", ckpt, "data", "--out", tmp_path / "old.jsonl", "--resume",
                   "--quiet", cwd=tmp_path / "A")
    assert "2 of the 4 files are in" in proc.stderr, proc.stderr
    assert "2 records (of an older version) name their files without an absolute path" in \
        proc.stderr
    assert len((tmp_path / "old.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_resume_classifies_again_the_files_changed_since(trained, tmp_path):
    """A record keeps its file's size and modification time: a file rewritten since (other
    audio in place, or the same bytes touched) is classified again on resuming, its old record
    dropped; before, the stale prediction was kept as the file's. A record whose file is gone
    is kept (nothing to compare), and a file rewritten that no input names loses its record."""
    ckpt, _ = trained
    tm = load_trained(ckpt)
    d = tmp_path / "d"
    d.mkdir()
    wavs = [d / f"x{i}.wav" for i in range(4)]
    for i, w in enumerate(wavs):
        sf.write(w, speech_like(16000 + 3000 * i, seed=70 + i).astype(np.float32), 16000)

    def rows_of(out):
        if out.suffix == ".jsonl":
            return {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
        with open(out, newline="") as fh:
            return {Path(r["path"]).name: r for r in csv.DictReader(fh)}

    def probs(row):
        return ({c: float(row[f"p_{c}"]) for c in tm.classes} if "p_" + tm.classes[0] in row
                else row["probabilities"])

    for suffix in ("jsonl", "csv"):
        for i, w in enumerate(wavs):
            sf.write(w, speech_like(16000 + 3000 * i, seed=70 + i).astype(np.float32), 16000)
        out = tmp_path / f"p.{suffix}"
        proc = run_cli("predict", ckpt, d, "--out", out, "--quiet")
        assert proc.returncode == 0, proc.stderr
        before = rows_of(out)
        for w in wavs:
            st = w.stat()
            assert (int(before[w.name]["bytes"]), int(before[w.name]["mtime_ns"])) == \
                (st.st_size, st.st_mtime_ns)
        # x0: other audio of another length in place; x1: the same bytes, touched; x3: other
        # audio of the same length, then left out of the inputs
        sf.write(wavs[0], speech_like(40000, seed=99).astype(np.float32), 16000)
        st = wavs[1].stat()
        os.utime(wavs[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        sf.write(wavs[3], speech_like(16000 + 9000, seed=98).astype(np.float32), 16000)
        proc = run_cli("predict", ckpt, *wavs[:3], "--out", out, "--resume", "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert "--resume: 3 records were of files changed since (size or modification " \
            "time)" in proc.stderr, proc.stderr
        assert "1 of the 3 files are in" in proc.stderr, proc.stderr
        after = rows_of(out)
        assert sorted(after) == ["x0.wav", "x1.wav", "x2.wav"]
        for w in wavs[:2]:  # classified again: this content, this size and time
            assert _close(probs(after[w.name]), _reference(tm, w)), w
            assert int(after[w.name]["mtime_ns"]) == w.stat().st_mtime_ns
        assert not _close(probs(before["x0.wav"]), probs(after["x0.wav"]))
        assert after["x2.wav"] == before["x2.wav"]
        if suffix == "csv":
            break
        # a file gone keeps its record; nothing else is classified
        wavs[2].unlink()
        proc = run_cli("predict", ckpt, *wavs[:2], "--out", out, "--resume", "--quiet")
        assert proc.returncode == 0 and "changed since" not in proc.stderr, proc.stderr
        assert "2 of the 2 files are in" in proc.stderr and rows_of(out) == after

        # records name the code that made them: another code's are refused (the file
        # unchanged), records without one (an older version) are kept, and said
        lines = out.read_text().splitlines()
        assert {json.loads(line)["code"] for line in lines} == {prediction_code()}
        other = [json.dumps({**json.loads(line), "code": "0123456789abcdef"}) for line in lines]
        out.write_text("\n".join(other) + "\n")
        proc = run_cli("predict", ckpt, *wavs[:2], "--out", out, "--resume", "--quiet")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "made by other prediction code of ssa_fast (code 0123456789abcdef" in proc.stderr
        assert out.read_text() == "\n".join(other) + "\n"
        older = [json.dumps({k: v for k, v in json.loads(line).items() if k != "code"})
                 for line in lines]
        out.write_text("\n".join(older) + "\n")
        proc = run_cli("predict", ckpt, *wavs[:2], "--out", out, "--resume", "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert "3 records (of an older version) do not name the code that made them" in \
            proc.stderr


def test_resume_of_a_file_cut_inside_a_character_and_of_text_that_is_not_utf8(trained,
                                                                              tmp_path):
    """A killed run's last line may end inside a multi-byte character of a file's name (CSV
    writes names as they are): --resume was a traceback, and so was a non-UTF-8 --out."""
    ckpt, _ = trained
    (tmp_path / "d").mkdir()
    for name in ("a_colère.wav", "b_colère.wav", "c_joie.wav"):
        sf.write(tmp_path / "d" / name, speech_like(20000, seed=len(name)).astype(np.float32),
                 16000)
    out = tmp_path / "p.csv"
    proc = run_cli("predict", ckpt, tmp_path / "d", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    out.unlink()
    cut = data.index(b"b_col") + len("b_col") + 1  # inside the 2 bytes of "è"
    (tmp_path / "p.csv.partial").write_bytes(data[:cut])
    proc = run_cli("predict", ckpt, tmp_path / "d", "--out", out, "--resume", "--quiet")
    assert proc.returncode == 0 and "1 of the 3 files are in" in proc.stderr, proc.stderr
    assert out.read_bytes() == data
    latin = tmp_path / "latin.csv"
    latin.write_bytes("file,status\ncolère.wav,ok\n".encode("latin-1"))
    proc = run_cli("predict", ckpt, tmp_path / "d", "--out", latin, "--resume", "--quiet")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "is not UTF-8 text" in lines[0], lines


def test_a_manifests_speaker_that_normalises_nothing_is_said(trained, tmp_path):
    """A manifest's speaker column with a typo fell back to each utterance's own statistics
    without a word (--speaker with the same typo was said)."""
    ckpt, _ = trained
    sf.write(tmp_path / "x.wav", speech_like(20000, seed=1).astype(np.float32), 16000)
    sf.write(tmp_path / "y.wav", speech_like(20000, seed=2).astype(np.float32), 16000)
    (tmp_path / "typo.csv").write_text("path,speaker\nx.wav,SPK00\ny.wav,SPK00\n")
    proc = run_cli("predict", ckpt, tmp_path / "typo.csv", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "'SPK00' was not in training" in line]
    assert len(said) == 1 and said[0].startswith("a manifest's speaker"), proc.stderr
    assert "training statistics of the speaker of that name" not in proc.stderr
    # a training speaker's name takes that speaker's statistics, matched by name alone: said,
    # with the files counted (a speaker of another corpus could share the name)
    (tmp_path / "named.csv").write_text("path,speaker\nx.wav,spk00\ny.wav,spk00\n")
    proc = run_cli("predict", ckpt, tmp_path / "named.csv", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "of that name" in line]
    assert len(said) == 1 and "spk00 (2 files)" in said[0], proc.stderr
    proc = run_cli("predict", ckpt, tmp_path / "named.csv", "--speaker", "spk00", "--quiet",
                   cwd=tmp_path)  # (named by --speaker too: the user chose it, nothing to say)
    assert proc.returncode == 0 and "of that name" not in proc.stderr, proc.stderr
    clf = EmotionClassifier.from_checkpoint(ckpt)
    with pytest.warns(UserWarning, match="speaker 'SPK00' was not in training") as record:
        preds = list(clf.classify_files([tmp_path / "typo.csv"], num_workers=0))
    assert [p.normalisation for p in preds] == ["utterance", "utterance"]
    assert sum("SPK00" in str(w.message) for w in record) == 1
    # a folder given to classify_file is named as such
    with pytest.raises(AudioError, match="a folder, not an audio file"):
        clf.classify_file(tmp_path)
