"""Own data: manifest column mapping, corpora without speakers, a folder per label, and IEMOCAP
leave-one-session-out; in Python and as real `ssa-fast` runs on tiny generated corpora."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import NO_FIGURES

from ssa_fast.data import (
    Normaliser,
    check_speakers,
    default_normalisation,
    leave_one_session_out,
    leave_one_speaker_out,
    load_corpus,
    parse_columns,
)
from ssa_fast.errors import UserError
from ssa_fast.train import make_folds
from ssa_fast.train.cv import check_plan

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips

# tiny runs: 1 epoch of the small preset on 100-frame segments
FAST = ("--preset", "small", "--epochs", "1", "--segment-frames", "100", "--bn-batches", "1",
        "--quiet")


def _wav(path, seconds=1.0, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    y = 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))
    sf.write(path, y.astype(np.float32), 16000, subtype="PCM_16")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ssa_fast.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _one_line_error(proc, command, *parts):
    assert proc.returncode == 2, proc.stderr
    *notes, line = proc.stderr.strip().splitlines()  # notes on how the corpus was read
    assert all(n.startswith("note: ") for n in notes), proc.stderr
    assert line.startswith(f"ssa-fast {command}: error: "), line
    for part in parts:
        assert part in line, line
    return line


def _speakerless_manifest(root, n_per_class=4, classes=("calm", "angry", "sad")):
    """file,emotion columns (no speaker), one of them with a speaker column of empty values."""
    rows = []
    for c, label in enumerate(classes):
        for i in range(n_per_class):
            _wav(root / "clips" / f"{label}{i}.wav", seed=10 * c + i)
            rows.append(f"clips/{label}{i}.wav,{label.upper() if i == 0 else label}")
    (root / "m.csv").write_text("File,Emotion\n" + "\n".join(rows) + "\n")
    return root / "m.csv"


def test_column_mapping(tmp_path):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav", seed=1)
    (tmp_path / "m.csv").write_text("File,Emotion,Spk,Text\na.wav,neu,x,p1\nb.wav,sad,y,p2\n")
    c = load_corpus("manifest", tmp_path / "m.csv",
                    columns={"path": "file", "label": "EMOTION", "speaker": "spk",
                             "phrase": "text"})
    assert [(r.path.split("/")[-1], r.speaker, r.label, r.phrase) for r in c] == [
        ("a.wav", "x", "neu", "p1"), ("b.wav", "y", "sad", "p2")]
    # the same mapping as the CLI spells it
    assert parse_columns(" path = file,label=Emotion ") == {"path": "file", "label": "Emotion"}
    with pytest.raises(UserError, match=r"lacks label: no column 'emotion' \(columns "
                                        r"label=emotion\); columns found: 'path', 'label'"):
        (tmp_path / "n.csv").write_text("path,label\na.wav,neu\n")
        load_corpus("manifest", tmp_path / "n.csv", columns={"label": "emotion"})
    with pytest.raises(UserError, match=r"lacks path: no column 'path'; columns found: 'file', "
                                        r"'emotion', 'spk', 'text'; map yours with columns "
                                        r"path=NAME"):
        load_corpus("manifest", tmp_path / "m.csv")
    with pytest.raises(UserError, match=r"lacks speaker: no column 'who'"):  # mapped, absent
        load_corpus("manifest", tmp_path / "m.csv",
                    columns={"path": "file", "label": "emotion", "speaker": "who"})
    with pytest.raises(UserError, match="unknown field emotion"):
        parse_columns("path=file,emotion=label")
    with pytest.raises(UserError, match="FIELD=COLUMN"):
        parse_columns("path:file")
    with pytest.raises(UserError, match="'file' is mapped to several fields"):
        parse_columns("path=file,phrase=file")
    # JSON: the columns found are the keys of the records
    (tmp_path / "m.json").write_text(json.dumps([{"wav": "a.wav", "emo": "neu"}]))
    with pytest.raises(UserError, match=r"no column 'path'; columns found: 'emo', 'wav'"):
        load_corpus("manifest", tmp_path / "m.json")
    j = load_corpus("manifest", tmp_path / "m.json", columns={"path": "wav", "label": "emo"})
    assert [(r.label, r.speaker) for r in j] == [("neu", "")]


def test_speakers_are_optional_for_what_does_not_need_them(tmp_path):
    c = load_corpus("manifest", _speakerless_manifest(tmp_path),
                    columns={"path": "file", "label": "emotion"})
    assert len(c) == 12 and c.classes == ["angry", "calm", "sad"]  # CALM merged into calm
    assert c.speakers == [] and c.n_without_speaker == 12
    assert default_normalisation(c) == "utterance"
    check_speakers(c, ["acrnn", "acrnn-r"], "utterance", "random")  # nothing needs speakers
    check_speakers(c, ["acrnn"], "global", "random")
    for kwargs, needs in [({"models": ["acrnn", "ssa-crnn-r"]}, "model ssa-crnn-r needs"),
                          ({"normalisation": "speaker"}, "normalisation 'speaker' needs"),
                          ({"protocol": "loso"}, "protocol 'loso' needs")]:
        with pytest.raises(UserError, match=f"{needs} a speaker for every utterance, but 12 "
                                            "of 12 in .* have none"):
            check_speakers(c, **kwargs)
    with pytest.raises(UserError, match="2 of 3 have none"):
        leave_one_speaker_out(["s1", "", ""])
    feats = [torch.randn(3, 7, 4) for _ in range(2)]
    with pytest.raises(ValueError, match="1 have none"):
        Normaliser("speaker").fit(feats, ["s1", ""])
    # some speakers known, one blank: still refused for speaker normalisation
    (tmp_path / "p.csv").write_text("path,label,speaker\nclips/calm0.wav,calm,a\n"
                                    "clips/calm1.wav,calm, \nclips/sad0.wav,sad,b\n")
    p = load_corpus("manifest", tmp_path / "p.csv")
    assert p.speakers == ["a", "b"] and p.n_without_speaker == 1
    assert default_normalisation(p) == "utterance"
    with pytest.raises(UserError, match="1 of 3"):
        check_speakers(p, normalisation="speaker")


def _folder_corpus(root):
    """root/<label>/<file> for 'calm', root/<label>/<speaker>/<file> for the others, plus what
    is not a usable file."""
    for i in range(4):
        _wav(root / "calm" / f"c{i}.wav", seed=i)
        _wav(root / "angry" / f"spk{i % 2}" / f"a{i}.flac", seed=10 + i)
        _wav(root / "sad " / f"spk{i % 2}" / f"s{i}.wav", seed=20 + i)
    _wav(root / "Angry" / "spk0" / "a9.wav", seed=9)  # case variant of the label: merged
    (root / "calm" / "notes.txt").write_text("not audio")
    (root / ".hidden").mkdir()
    _wav(root / ".hidden" / "x.wav")
    (root / "calm" / ".DS_Store").write_bytes(b"\0")
    _wav(root / "loose.wav")
    _wav(root / "sad " / "spk0" / "deep" / "d.wav")


def test_folder_corpus(tmp_path):
    _folder_corpus(tmp_path)
    c = load_corpus("folder", tmp_path)
    assert c.classes == ["angry", "calm", "sad"]
    assert np.bincount(c.labels).tolist() == [5, 4, 4]
    assert c.speakers == ["spk0", "spk1"] and c.n_without_speaker == 4  # calm has none
    assert {r.speaker for r in c if r.label == "calm"} == {""}
    assert any("'Angry' read as 'angry'" in n for n in c.notes)
    reasons = {os.path.basename(p): why for p, why in c.skipped}
    assert set(reasons) == {"notes.txt", "loose.wav", "d.wav"}  # hidden files are ignored
    assert "not an audio file" in reasons["notes.txt"]
    assert "not in a label folder" in reasons["loose.wav"]
    assert "nested deeper" in reasons["d.wav"]
    # a file reached under two labels (a symlink) is left out, with the reason
    os.symlink(tmp_path / "calm" / "c0.wav", tmp_path / "sad " / "c0.wav")
    c2 = load_corpus("folder", tmp_path)
    assert len(c2) == len(c) - 1
    assert sum("with different annotations" in why for _, why in c2.skipped) == 2
    # linked label and speaker folders are read like others (a link back up is no loop)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    for i in range(3):
        _wav(elsewhere / "happy" / f"h{i}.wav", seed=30 + i)
        _wav(elsewhere / "spk2" / f"s{i}.wav", seed=40 + i)
    os.symlink(elsewhere / "happy", tmp_path / "happy")
    os.symlink(elsewhere / "spk2", tmp_path / "angry" / "spk2")
    os.symlink(tmp_path, elsewhere / "happy" / "up")
    c3 = load_corpus("folder", tmp_path)
    assert c3.classes == ["angry", "calm", "happy", "sad"] and len(c3) == len(c2) + 6
    assert {r.speaker for r in c3 if r.label == "angry"} == {"spk0", "spk1", "spk2"}
    with pytest.raises(UserError, match="no audio file in a label folder"):
        load_corpus("folder", tmp_path / ".hidden")  # x.wav lies directly in this root
    with pytest.raises(UserError, match="not a folder"):
        load_corpus("folder", tmp_path / "loose.wav")


def _iemocap_sessions(root, sessions=5):
    """IEMOCAP layout, one improvised dialog per session, each speaker with every class."""
    for s in range(1, sessions + 1):
        dialog = f"Ses0{s}F_impro01"
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        for i, (gender, label) in enumerate((g, lab) for g in "FM"
                                            for lab in ("neu", "hap", "sad", "ang")):
            turn = f"{dialog}_{gender}{i:03d}"
            text += f"[{i}.1 - {i}.9]\t{turn}\t{label}\t[2.5, 2.5, 2.5]\n\n"
            _wav(root / f"Session{s}" / "sentences" / "wav" / dialog / f"{turn}.wav",
                 seed=10 * s + i)
        ev = root / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text(text)


def test_leave_one_session_out(tmp_path):
    _iemocap_sessions(tmp_path)
    c = load_corpus("iemocap", tmp_path)
    folds = make_folds(c, "loso-session", 10)
    assert len(folds) == 5  # one fold per session, whatever k above 5
    for f, (tr, va) in enumerate(folds):
        assert {c[int(i)].speaker for i in va} == {f"Ses0{f + 1}F", f"Ses0{f + 1}M"}
        assert not {c[int(i)].speaker[:5] for i in tr} & {f"Ses0{f + 1}"}
        assert len(tr) + len(va) == len(c)
    assert len(make_folds(c, "loso-session", 2)) == 2
    # fewer folds than sessions: the others are never held out, which the table cannot show
    with pytest.warns(UserWarning, match=r"--protocol loso-session with 2 folds holds out 2 of "
                      r"the 5 sessions: Ses03, Ses04, Ses05 are never held out \(--folds 5 "
                      r"holds out every session\)"):
        check_plan(c, ["acrnn"], protocol="loso-session", k=2, seed=0, normalisation=None)
    with pytest.warns(UserWarning, match="1 of the 10 speakers: Ses01M, Ses02F, .* are never"):
        check_plan(c, ["acrnn"], protocol="loso", k=1, seed=0, normalisation=None)
    with warnings.catch_warnings():  # every group held out: nothing to say
        warnings.simplefilter("error")
        check_plan(c, ["acrnn"], protocol="loso-session", k=10, seed=0, normalisation=None)
        check_plan(c, ["acrnn"], protocol="loso", k=10, seed=0, normalisation=None)
    with pytest.raises(UserError, match=r"needs IEMOCAP speakers .* got 'spk1'"):
        leave_one_session_out(["Ses01F", "spk1"])
    with pytest.raises(UserError, match="at least 2 sessions"):
        leave_one_session_out(["Ses01F", "Ses01M"])


def _main(capsys, *args):
    """The command line in this process (for refusals that come before any work: a subprocess
    adds nothing there); returns (exit status, stderr)."""
    from ssa_fast.cli import main

    try:
        status = main(list(map(str, args)))
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("extra, expected", [
    (("--models", "acrnn", "--normalisation", "speaker"),
     "normalisation 'speaker' needs a speaker for every utterance, but 12 of 12"),
    (("--models", "acrnn", "--protocol", "loso"), "protocol 'loso' needs a speaker"),
    (("--columns", "path=file", "--models", "acrnn"),
     "lacks label: no column 'label'; columns found: 'file', 'emotion'; map yours with "
     "columns label=NAME"),
    (("--columns", "path=file,emotion=label"), "argument --columns: columns: unknown field "
                                              "emotion"),
])
def test_cli_refusals_before_any_work(tmp_path, capsys, extra, expected):
    manifest = _speakerless_manifest(tmp_path)
    status, err = _main(capsys, "cv", "manifest", manifest, "--out", tmp_path / "cv", "--cache",
                        tmp_path / "cache", "--batch-size", "6", "--quiet",
                        *(() if "--columns" in extra else ("--columns",
                                                           "path=file,label=emotion")), *extra)
    assert status == 2 and expected in err.strip().splitlines()[-1], err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "cv").exists()
    status, err = _main(capsys, "cv", "folder", tmp_path, "--columns", "path=file", "--out",
                        tmp_path / "cv")
    assert status == 2 and "--columns: applies to the manifest corpus, not 'folder'" in err


def test_cli_refuses_ssa_without_speakers(tmp_path):
    """A real run: an SSA model on a corpus without speakers is refused before any feature is
    computed (one line, status 2). (ACRNN on such a corpus: test_readme_own_data_examples.)"""
    manifest = _speakerless_manifest(tmp_path)
    cache, out = tmp_path / "cache", tmp_path / "cv"
    columns = ("--columns", "path=file,label=emotion")
    proc = _cli("cv", "manifest", manifest, *columns, "--out", out, "--cache", cache,
                "--models", "acrnn", "ssa-crnn-r", "--batch-size", "6", *FAST)
    _one_line_error(proc, "cv", "model ssa-crnn-r needs a speaker for every utterance",
                    "12 of 12")
    assert not cache.exists() and not out.exists()


def _readme_blocks(section="## Train on your own data"):
    """The code blocks of one README section: (language, text)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    body = text.split(section + "\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w*)\n(.*?)```", body, re.S)


@pytest.mark.slow
def test_readme_own_data_examples(tmp_path, monkeypatch):
    """The `cv` lines and the Python block of the README's "Train on your own data" section, run
    as written on tiny generated data named as there (clips.csv, my_clips, IEMOCAP_full_release),
    with the tiny-run options appended: 2 folds, 1 epoch, the small preset, one model (acrnn
    where the line names the ACRNN models, else SSA-CRNN-r, which needs the speakers); then the
    same manifest without its speaker column, which ACRNN accepts (per-utterance normalisation)
    and a prediction reads back. (tests/test_readme.py runs every block once more, in order.)"""
    import shlex

    monkeypatch.chdir(tmp_path)
    classes = ("calm", "angry", "sad")
    rows = [f"clips/{lab}{i}.wav,{lab},spk{i % 2}" for lab in classes for i in range(4)]
    for i, row in enumerate(rows):
        _wav(tmp_path / row.split(",")[0], seed=i)
    (tmp_path / "clips.csv").write_text("file,emotion,spk\n" + "\n".join(rows) + "\n")
    (tmp_path / "nospk.csv").write_text(
        "file,emotion\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    _folder_corpus(tmp_path / "my_clips")
    _iemocap_sessions(tmp_path / "IEMOCAP_full_release")
    blocks = _readme_blocks()
    assert [lang for lang, _ in blocks] == ["bash", "yaml", "bash", "python"]
    scope = {}
    exec(blocks[3][1], scope)  # noqa: S102
    assert len(scope["corpus"]) == 12 and scope["corpus"].speakers == ["spk0", "spk1"]
    lines = blocks[0][1].strip().splitlines()
    assert len(lines) == 3
    lines.append("ssa-fast cv manifest nospk.csv --columns path=file,label=emotion --models "
                 "acrnn --out runs/nospk")
    for line in lines:
        argv = shlex.split(line.split("#")[0])
        assert argv[:2] == ["ssa-fast", "cv"]
        model = "acrnn" if "acrnn" in argv else "ssa-crnn-r"
        if "--models" in argv:  # (the tiny run: one model)
            i = argv.index("--models")
            argv = argv[:i] + argv[i + 1:][next(j for j, w in enumerate(argv[i + 1:])
                                                if w.startswith("--")):]
        if "--folds" in argv:
            i = argv.index("--folds")
            argv = argv[:i] + argv[i + 2:]
        proc = _cli(*argv[1:], "--cache", tmp_path / "cache", "--folds", "2", "--models", model,
                    "--batch-size", "12", *NO_FIGURES, *FAST)
        assert proc.returncode == 0, (line, proc.stderr)
        out = tmp_path / argv[argv.index("--out") + 1]
        res = json.loads((out / "results.json").read_text())
        assert res["k"] == 2 and list(res["summary"]) == [model], line
        norm = res["identity"]["data"]["normalisation"]
        if argv[2] == "folder":  # calm/ has no speaker folders
            assert "folder: 13 utterances, 2 speakers, classes ['angry', 'calm', 'sad'] " \
                   "(angry 5, calm 4, sad 4); 3 skipped (" in proc.stdout
            assert "'Angry' read as 'angry'" in proc.stderr and "loose.wav" in proc.stderr
            assert norm == "utterance"
        elif "loso-session" in argv:
            assert res["protocol"] == "loso-session" and norm == "speaker"
            assert [r["n_val"] for r in res["folds"][model]] == [8, 8]
        elif "speaker=spk" in line:
            assert norm == "speaker" and "2 speakers" in proc.stdout
        else:  # no speakers: ACRNN with per-utterance normalisation, then a prediction
            assert norm == "utterance" and "0 speakers" in proc.stdout
            assert "--normalisation utterance" in proc.stderr
            proc = _cli("predict", out / model / "fold00" / "best.pt", "clips/sad1.wav",
                        "--json", "--quiet")
            assert proc.returncode == 0, proc.stderr
            (pred,) = json.loads(proc.stdout)
            assert set(pred["probabilities"]) == set(classes)


def test_cli_iemocap_leave_one_session_out_has_five_folds(tmp_path):
    """(A real loso-session run: test_readme_own_data_examples.)"""
    _iemocap_sessions(tmp_path / "iemocap")
    proc = _cli("train", "iemocap", tmp_path / "iemocap", "--protocol", "loso-session",
                "--fold", "5", "--out", tmp_path / "run", "--cache", tmp_path / "cache")
    _one_line_error(proc, "train", "--fold must be in [0, 5) for 5 folds (loso-session)")
    assert not (tmp_path / "cache").exists()
