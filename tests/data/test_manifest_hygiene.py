"""Manifest hygiene: stripped fields, case variants of labels, duplicated files, numeric labels,
byte-order marks, stratified random folds, and a clear error for a class a fold cannot hold."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssa_fast.data import check_folds, load_corpus, random_folds
from ssa_fast.data.corpus import Corpus, Record
from ssa_fast.errors import UserError
from ssa_fast.train import make_folds

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


def _wavs(root, n, seconds=0.2):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        sf.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(int(16000 * seconds)))
                 .astype(np.float32), 16000)


def test_labels_stripped_and_case_variants_merged(tmp_path):
    _wavs(tmp_path / "a", 5)
    (tmp_path / "m.csv").write_text(
        " Path , SPEAKER ,label\n"  # column names: stripped, case-insensitive
        "a/u0.wav, s1 ,neu\na/u1.wav,s1,neu \na/u2.wav,s2,Neu\na/u3.wav,s2, sad\n"
        "a/u4.wav,s2,SAD\n")
    c = load_corpus("manifest", tmp_path / "m.csv")
    assert c.classes == ["neu", "sad"]  # the most frequent spelling names the class
    assert [r.label for r in c] == ["neu", "neu", "neu", "sad", "sad"]
    assert {r.speaker for r in c} == {"s1", "s2"}
    assert len(c.notes) == 2 and "'Neu' read as 'neu'" in c.notes[0]
    # with given classes, a label takes the class's spelling
    (tmp_path / "m.json").write_text(json.dumps({"classes": ["Neutral", "sad"], "records": [
        {"path": "a/u0.wav", "speaker": "s1", "label": "neutral"},
        {"path": "a/u1.wav", "speaker": "s1", "label": " SAD "}]}))
    j = load_corpus("manifest", tmp_path / "m.json")
    assert [r.label for r in j] == ["Neutral", "sad"] and j.labels.tolist() == [0, 1]
    (tmp_path / "c.json").write_text(json.dumps({"classes": ["neu", "Neu"], "records": [
        {"path": "a/u0.wav", "speaker": "s1", "label": "neu"}]}))
    with pytest.raises(UserError, match="differ only by case"):
        load_corpus("manifest", tmp_path / "c.json")


def test_duplicate_paths_kept_once_or_left_out(tmp_path):
    _wavs(tmp_path / "a", 4)
    (tmp_path / "m.csv").write_text(
        "path,speaker,label\na/u0.wav,s1,neu\n./a/u0.wav,s1,neu\na/../a/u0.wav,s1,Neu\n"
        "a/u1.wav,s1,neu\na/u1.wav,s1,sad\na/u2.wav,s2,sad\na/u3.wav,s2,sad\n")
    c = load_corpus("manifest", tmp_path / "m.csv")
    names = [r.path.rsplit("/", 1)[1] for r in c]
    assert names == ["u0.wav", "u2.wav", "u3.wav"]  # u0 once; u1 (conflicting) left out
    reasons = [why for _, why in c.skipped]
    assert sum("kept once" in why for why in reasons) == 2
    assert sum("different annotations" in why and "'sad'" in why for why in reasons) == 2
    assert len(c) + len(c.skipped) == 7  # every row accounted for once
    # a hard link is the same file under another name: kept once too
    os.link(tmp_path / "a" / "u2.wav", tmp_path / "a" / "u2_copy.wav")
    (tmp_path / "h.csv").write_text("path,speaker,label\na/u2.wav,s2,sad\na/u2_copy.wav,s2,sad\n"
                                    "a/u3.wav,s2,sad\n")
    h = load_corpus("manifest", tmp_path / "h.csv")
    assert [r.path.rsplit("/", 1)[1] for r in h] == ["u2.wav", "u3.wav"]
    assert [(p.rsplit("/", 1)[1], "kept once" in why) for p, why in h.skipped] == [
        ("u2_copy.wav", True)]


def test_copies_of_one_audio_kept_once_or_left_out(tmp_path):
    """A copy of a file under another name (a new inode, or re-encoded as FLAC) is the same
    audio: under random folds it was trained on in one part of a fold and scored in the other,
    said nothing. corpus_features keeps one per audio (by the decoded samples' digest) where the
    annotations agree, none where they differ, each reported with a reason of one kind; the
    features stay aligned with the records."""
    import shutil

    from ssa_fast.cli.corpus import describe
    from ssa_fast.data import corpus_features

    _wavs(tmp_path / "a", 4)
    shutil.copyfile(tmp_path / "a" / "u0.wav", tmp_path / "a" / "copy0.wav")
    y, rate = sf.read(tmp_path / "a" / "u1.wav", dtype="int16")
    sf.write(tmp_path / "a" / "u1.flac", y, rate, subtype="PCM_16")
    (tmp_path / "m.csv").write_text(
        "path,speaker,label\na/u0.wav,s1,neu\na/u1.wav,s1,neu\na/u2.wav,s2,sad\n"
        "a/u3.wav,s2,sad\na/copy0.wav,s1,neu\na/u1.flac,s2,sad\n")
    corpus = load_corpus("manifest", tmp_path / "m.csv")
    assert len(corpus) == 6 and not corpus.skipped  # (six files: no path is listed twice)
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # computed, filled, read back
        kept, feats = corpus_features(corpus, cache, progress=False)
        assert [Path(r.path).name for r in kept] == ["u0.wav", "u2.wav", "u3.wav"]
        alone, alone_feats = corpus_features(Corpus([r for r in corpus if r.path in {
            x.path for x in kept}], corpus.classes, corpus.name, corpus.root), None,
            progress=False)
        for f, g in zip(feats, alone_feats, strict=True):
            assert torch.equal(f, g)
        reasons = dict((Path(p).name, why) for p, why in kept.skipped)
        assert reasons["copy0.wav"].startswith("the same audio as another record (")
        assert reasons["copy0.wav"].endswith("u0.wav): kept once")
        for name in ("u1.wav", "u1.flac"):  # (one says neu, the other sad: neither kept)
            assert reasons[name].startswith("the same audio listed 2 times with different "
                                            "annotations")
    assert "3 skipped" in describe(kept)


def test_numeric_labels_and_byte_order_mark(tmp_path):
    _wavs(tmp_path, 4)
    rows = [{"path": f"u{i}.wav", "speaker": 7, "label": i % 2, "phrase": 0} for i in range(4)]
    (tmp_path / "m.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    c = load_corpus("manifest", tmp_path / "m.json")
    assert c.classes == ["0", "1"] and [r.label for r in c] == ["0", "1", "0", "1"]
    assert c[0].speaker == "7" and c[0].phrase == "0"  # 0 is a value, not a missing one
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfpath,speaker,label\nu0.wav,s,0\nu1.wav,s,1\n")
    c = load_corpus("manifest", tmp_path / "m.csv")
    assert len(c) == 2 and c.classes == ["0", "1"]  # the BOM did not hide the path column
    (tmp_path / "bad.json").write_text(json.dumps([{"path": "u0.wav", "speaker": "s",
                                                    "label": ["neu"]}]))
    with pytest.raises(UserError, match="label is a list"):
        load_corpus("manifest", tmp_path / "bad.json")
    (tmp_path / "blank.json").write_text(json.dumps([{"path": "u0.wav", "speaker": "s",
                                                      "label": "  "}]))
    with pytest.raises(UserError, match="lacks label"):
        load_corpus("manifest", tmp_path / "blank.json")


def test_random_folds_are_stratified():
    labels = np.array([0] * 40 + [1] * 9 + [2] * 3 + [3] * 2)
    for tr, va in random_folds(len(labels), 10, 0.2, seed=3, labels=labels):
        assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
        counts = np.bincount(labels[va], minlength=4)
        assert counts.tolist() == [8, 2, 1, 1]  # round(0.2 n), at least 1, never all
    # without labels the split is the plain one
    tr, va = random_folds(54, 2, 0.2, seed=0)[0]
    assert len(va) == 11


def test_check_folds_names_the_class_and_the_fold():
    labels = np.array([0, 0, 1, 1, 2])
    folds = [(np.array([0, 2, 4]), np.array([1, 3])), (np.array([0, 1, 4]), np.array([2, 3]))]
    with pytest.raises(UserError, match=r"class 'c' has no validation utterance in fold 0"):
        check_folds(folds, labels, ["a", "b", "c"])
    with pytest.raises(UserError, match=r"class 'b' has no training utterance in fold 1 of X"):
        check_folds([(np.arange(5), np.arange(5)), folds[1]], labels, ["a", "b", "c"], "X")


def test_make_folds_refuses_a_class_with_one_utterance(tmp_path):
    recs = [Record(f"u{i}.wav", f"s{i % 2}", "neu" if i < 6 else "sad", f"p{i % 3}")
            for i in range(7)]
    corpus = Corpus(recs, ["neu", "sad"])
    with pytest.raises(UserError, match="'sad' has no validation utterance in fold 0"):
        make_folds(corpus, "random", 3)
    # linguistic folds: 'sad' only in phrase p0 -> its fold trains without it
    recs = [Record(f"u{i}.wav", "s", "sad" if i == 0 else "neu", f"p{i % 3}") for i in range(9)]
    with pytest.raises(UserError, match="'sad' has no (training|validation) utterance in fold 0 "
                                        "of linguistic, 3 folds"):
        make_folds(Corpus(recs, ["neu", "sad"]), "linguistic", 3)


def _run_manifest(command: str, manifest, out, cache, *options):
    """`ssa-fast COMMAND manifest MANIFEST` as a subprocess, batches of 2, quiet."""
    return subprocess.run([sys.executable, "-m", "ssa_fast.cli", command, "manifest",
                           str(manifest), "--out", str(out), "--cache", str(cache),
                           "--batch-size", "2", *options, "--quiet"],
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_an_unrepresentable_class_before_any_work(tmp_path):
    """A real run: the error comes before feature extraction and training, one line, status 2."""
    _wavs(tmp_path / "a", 9)
    (tmp_path / "m.csv").write_text("path,speaker,label\n" + "".join(
        f"a/u{i}.wav,s{i % 2},{'sad' if i == 0 else 'neu'}\n" for i in range(9)))
    out, cache = tmp_path / "run", tmp_path / "cache"
    for command in ("train", "cv"):
        proc = _run_manifest(command, tmp_path / "m.csv", out, cache, "--folds", "3")
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"ssa-fast {command}: error: class 'sad' has no validation "
                               "utterance in fold 0 of random, 3 folds"), line
        assert not cache.exists() and not out.exists()  # nothing computed, nothing written


def test_cli_refuses_a_corpus_of_one_class_before_any_work(tmp_path):
    """One class to classify: refused before features and training, nothing written (before,
    a traceback after the features, and `train` left OUT/config.json behind)."""
    _wavs(tmp_path / "a", 8)
    (tmp_path / "m.csv").write_text("path,speaker,label\n" + "".join(
        f"a/u{i}.wav,s{i % 2},{'neu' if i % 2 else 'Neu'}\n" for i in range(8)))
    out, cache = tmp_path / "run", tmp_path / "cache"
    for command in ("train", "cv"):
        proc = _run_manifest(command, tmp_path / "m.csv", out, cache, "--folds", "2",
                             "--models" if command == "cv" else "--model", "acrnn")
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        assert errors == [f"ssa-fast {command}: error: {tmp_path / 'm.csv'}: every utterance is "
                          "labelled 'neu': classifying emotions needs at least 2 classes"], \
            proc.stderr
        assert "Traceback" not in proc.stderr
        assert not cache.exists() and not out.exists()  # nothing computed, nothing written


def test_labels_and_speakers_in_two_unicode_normal_forms_are_one(tmp_path):
    """A folder `colère` with a precomposed è beside one with e + a combining accent (what a
    copy from macOS makes) is one class, like case variants, with a note; a speaker folder
    written both ways is one speaker."""
    import unicodedata

    nfc, nfd = (unicodedata.normalize(form, "colère") for form in ("NFC", "NFD"))
    zoe_nfc, zoe_nfd = (unicodedata.normalize(form, "Zoë") for form in ("NFC", "NFD"))
    assert nfc != nfd
    _wavs(tmp_path / "root" / nfc / zoe_nfc, 3)
    _wavs(tmp_path / "root" / nfd / zoe_nfd, 2)
    _wavs(tmp_path / "root" / "calme" / "Max", 2)
    corpus = load_corpus("folder", tmp_path / "root")
    assert corpus.classes == ["calme", nfc] and len(corpus) == 7
    assert [r.label for r in corpus].count(nfc) == 5
    assert corpus.speakers == ["Max", zoe_nfc]
    assert any(f"label {nfd!r} read as {nfc!r} (2 records)" in n
               and "Unicode normal form" in n for n in corpus.notes), corpus.notes
    assert any(f"speaker {zoe_nfc!r}" in n for n in corpus.notes), corpus.notes
    # a manifest: the same, and given classes in either form match
    (tmp_path / "m.json").write_text(json.dumps({"classes": [nfd, "calme"], "records": [
        {"path": str(p), "label": label} for p, label in [
            (next((tmp_path / "root" / nfc / zoe_nfc).iterdir()), nfc),
            (next((tmp_path / "root" / "calme" / "Max").iterdir()), "Calme")]]}))
    j = load_corpus("manifest", tmp_path / "m.json")
    assert j.classes == [nfd, "calme"] and j.labels.tolist() == [0, 1] and not j.skipped
