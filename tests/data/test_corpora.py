"""Corpus loaders on fixture trees in the real IEMOCAP / Att-HACK layouts (made here, tiny)."""

import json

import numpy as np
import pytest

from ssa_fast.data import load_corpus

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


def _wav(path, seconds=0.3, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    y = 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))
    sf.write(path, y.astype(np.float32), 16000, subtype="PCM_16")


EVAL_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _iemocap(root):
    s1, s2 = root / "Session1", root / "Session2"
    lines = {
        (s1, "Ses01F_impro01"): [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M001", "ang"),
                                 ("Ses01F_impro01_F002", "fru"), ("Ses01F_impro01_M003", "exc"),
                                 ("Ses01F_impro01_F004", "sad")],
        (s1, "Ses01F_script01_1"): [("Ses01F_script01_1_F000", "hap")],
        (s2, "Ses02M_impro03"): [("Ses02M_impro03_M000", "hap"), ("Ses02M_impro03_F001", "xxx"),
                                 ("Ses02M_impro03_F002", "neu"), ("Ses02M_impro03_M003", "sad")],
    }
    for (session, dialog), turns in lines.items():
        text = EVAL_HEADER
        for i, (turn, label) in enumerate(turns):
            text += f"[{i}.1000 - {i}.9000]\t{turn}\t{label}\t[2.5000, 2.5000, 2.5000]\n"
            text += "C-E1:\tNeutral;\t()\nA-E2:\tval 3; act 2; dom  3;\t()\n\n"
            if turn != "Ses02M_impro03_M003":  # its audio is missing
                _wav(session / "sentences" / "wav" / dialog / f"{turn}.wav", seed=i)
        text += "[9.0 - 9.5]\tbroken-line\n"  # odd line: no label column
        ev = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text(text)
    # a corrupt WAV
    (s2 / "sentences" / "wav" / "Ses02M_impro03" / "Ses02M_impro03_F002.wav").write_bytes(b"xx")


def test_iemocap_improvised_four_classes(tmp_path):
    _iemocap(tmp_path)
    c = load_corpus("iemocap", tmp_path)
    assert c.classes == ["neu", "hap", "sad", "ang"]
    got = {(r.path.split("/")[-1], r.speaker, r.label) for r in c}
    assert got == {("Ses01F_impro01_F000.wav", "Ses01F", "neu"),
                   ("Ses01F_impro01_M001.wav", "Ses01M", "ang"),
                   ("Ses01F_impro01_F004.wav", "Ses01F", "sad"),
                   ("Ses02M_impro03_M000.wav", "Ses02M", "hap"),
                   ("Ses02M_impro03_F002.wav", "Ses02F", "neu")}
    reasons = " ".join(r for _, r in c.skipped)
    assert "'fru'" in reasons and "'exc'" in reasons and "'xxx'" in reasons
    assert "file not found" in reasons and "unreadable annotation line" in reasons
    # the corrupt file is found at load time, reported and skipped
    kept, waves = c.load_audio()
    assert len(kept) == len(waves) == 4
    assert any("Ses02M_impro03_F002.wav" in item for item, _ in kept.skipped)


def test_iemocap_options(tmp_path):
    _iemocap(tmp_path)
    merged = load_corpus("iemocap", tmp_path, merge_excited=True)
    assert ("Ses01M", "hap") in {(r.speaker, r.label) for r in merged}
    scripted = load_corpus("iemocap", tmp_path, scripted=True)
    assert any("script" in r.path for r in scripted)
    with pytest.raises(FileNotFoundError, match="Session"):
        load_corpus("iemocap", tmp_path / "nothing")


def test_iemocap_phrase_is_the_script_and_lines_are_read_however_saved(tmp_path):
    """The linguistic protocol keeps a phrase on one side of a fold: IEMOCAP's phrase is the
    script (its lines are the same in every session and recording, sometimes in two parts),
    not the recording (one script trained in Session1 and validated in Session2); an
    improvisation, whose words are its speakers' own, stays its dialog (both parts of a split
    one together). A label file saved with a byte-order mark, or indented lines, loses no
    turn."""
    dialogs = {"Ses01F_script01_1": "script01_1", "Ses02M_script01_1": "script01_1",
               "Ses05M_script01_1b": "script01_1", "Ses03M_impro05a": "Ses03M_impro05",
               "Ses03M_impro05b": "Ses03M_impro05", "Ses01F_impro01": "Ses01F_impro01"}
    for dialog in dialogs:
        session = tmp_path / f"Session{int(dialog[3:5])}"
        turns = [f"{dialog}_F000", f"{dialog}_M001"]
        ev = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text("\ufeff" + "".join(  # (no header: the first line carries the BOM)
            f"{'  ' * i}[{i}.1 - {i}.9]\t{t}\tneu\t[2.5, 2.5, 2.5]\n"
            for i, t in enumerate(turns)), encoding="utf-8")
        for t in turns:
            _wav(session / "sentences" / "wav" / dialog / f"{t}.wav")
    c = load_corpus("iemocap", tmp_path, scripted=True)
    assert len(c) == 12 and not c.skipped
    assert {(r.path.split("/")[-2], r.phrase) for r in c} == set(dialogs.items())


def test_atthack_layout(tmp_path):
    for name in ["F01_a1_s001_v01", "F01_a2_s002_v01", "M03_a3_s001_v02", "M03_a4_s099_v01"]:
        _wav(tmp_path / "wav" / f"{name}.{'WAV' if name.startswith('M03_a3') else 'wav'}")
    _wav(tmp_path / "wav" / "notes_take2.wav")
    (tmp_path / "wav" / "F01_a4_s003_v01.wav").write_bytes(b"RIFF....")
    c = load_corpus("atthack", tmp_path)
    assert c.classes == ["friendly", "seductive", "dominant", "distant"]
    rows = {(r.speaker, r.label, r.phrase) for r in c}
    assert ("F01", "friendly", "s001") in rows and ("M03", "distant", "s099") in rows
    assert any("notes_take2" in item for item, _ in c.skipped)
    kept, _ = c.load_audio()
    assert len(kept) == 4 and any("F01_a4_s003" in i for i, _ in kept.skipped)
    custom = load_corpus("atthack", tmp_path, attitudes=("a", "b", "c", "d"))
    assert {r.label for r in custom} == {"a", "b", "c", "d"}
    with pytest.raises(ValueError, match="a1..a4"):
        load_corpus("atthack", tmp_path, attitudes=("a", "b"))


def test_manifest_csv_and_json(tmp_path):
    for i in range(3):
        _wav(tmp_path / "audio" / f"u{i}.wav", seed=i)
    (tmp_path / "m.csv").write_text("path,speaker,label,phrase\naudio/u0.wav,s1,happy,p1\n"
                                    "audio/u1.wav,s2,sad,\naudio/u2.wav,s2,bored,p3\n"
                                    "audio/missing.wav,s1,sad,p4\n")
    c = load_corpus("manifest", tmp_path / "m.csv", classes=["happy", "sad"])
    assert [r.label for r in c] == ["happy", "sad"] and c[1].phrase is None
    reasons = dict(c.skipped)
    assert any("bored" in r for r in reasons.values())
    assert any(k.endswith("missing.wav") for k in reasons)
    (tmp_path / "m.json").write_text(json.dumps(
        {"classes": ["sad", "happy"], "records": [{"path": "audio/u0.wav", "speaker": "a",
                                                    "label": "happy"}]}))
    j = load_corpus("manifest", tmp_path / "m.json")
    assert j.classes == ["sad", "happy"] and j.labels.tolist() == [1]


@pytest.mark.parametrize("content, match", [
    ("path,speaker\nx.wav,s1\n", "lacks label"),
    ("path,speaker,label\n", "no records"),
    # an unquoted comma: every later field shifted (a speaker read as a class), said nothing
    ("path,label,speaker\na.wav,neu,s1\nb.wav,sad,Doe, Jane\n",
     r"line 3 has 4 fields, the header 3: quote a field that holds a comma"),
    ("path,Label,label,speaker\na.wav,neu,sad,s1\n",
     r"columns 'Label', 'label' are one name to the manifest"),
    ("path,label,speaker\na.wav,neu,s1,,x\n", "line 2 has 5 fields, the header 3"),
])
def test_manifest_errors(tmp_path, content, match):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ValueError, match=match):
        load_corpus("manifest", tmp_path / "m.csv")


def test_a_json_records_keys_that_differ_only_in_case_are_refused(tmp_path):
    """As a CSV header's columns: keys are read without case, so a record with "label" and
    "Label" (or "path" and " Path") was read with the later one, another class or file, and
    nothing said."""
    for keys, named in ((("label", "Label"), "'Label', 'label'"),
                        (("path", " Path"), "' Path', 'path'")):
        row = {"path": "a.wav", "speaker": "s1", "label": "neu", keys[1]: "sad"}
        (tmp_path / "m.json").write_text(json.dumps([{"path": "b.wav", "label": "neu"}, row]))
        with pytest.raises(ValueError, match=f"record 2 has keys {named}, one name to the "
                                             r"manifest \(keys are read without case\)"):
            load_corpus("manifest", tmp_path / "m.json")


def test_unknown_corpus_and_missing_manifest(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("timit", tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        load_corpus("manifest", tmp_path)


def test_phrases_differing_only_in_case_are_one_phrase(tmp_path):
    """'Phrase number 0.' from one speaker and 'PHRASE NUMBER 0.' from another are one sentence:
    the linguistic split put them on both sides of a fold, said nothing. They are one phrase,
    spelled as most of its records spell it, with a note; the folds keep it on one side."""
    from ssa_fast.data.splits import linguistic_folds

    rows = ["path,label,speaker,phrase"]
    for i in range(24):
        _wav(tmp_path / f"u{i}.wav", seed=i)
        phrase = f"Phrase number {i % 12}."
        rows.append(f"u{i}.wav,{('neu', 'sad')[i % 2]},s{i // 12},"
                    f"{phrase.upper() if i in (12, 13) else phrase}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    c = load_corpus("manifest", tmp_path / "m.csv")
    assert {r.phrase for r in c} == {f"Phrase number {j}." for j in range(12)}
    assert [n for n in c.notes if n.startswith("phrase ")] == [
        "phrase 'PHRASE NUMBER 0.' read as 'Phrase number 0.' (1 record): phrases that "
        "differ only in case are one sentence",
        "phrase 'PHRASE NUMBER 1.' read as 'Phrase number 1.' (1 record): phrases that "
        "differ only in case are one sentence"]
    phrases = [r.phrase for r in c]
    for seed in range(5):
        for train, val in linguistic_folds(phrases, k=3, groups=6, val_groups=2, seed=seed):
            assert not ({phrases[i].casefold() for i in train}
                        & {phrases[i].casefold() for i in val})


def test_speakers_differing_only_in_case_are_noted(tmp_path):
    """'SPK1' and 'spk1': two speakers (they may be two people), and a note says so (under
    leave-one-speaker-out one is held out while the other trains)."""
    for i in range(4):
        _wav(tmp_path / f"u{i}.wav", seed=i)
    (tmp_path / "m.csv").write_text("path,label,speaker\nu0.wav,neu,spk1\nu1.wav,sad,SPK1\n"
                                    "u2.wav,neu,spk2\nu3.wav,sad,spk2\n")
    c = load_corpus("manifest", tmp_path / "m.csv")
    assert c.speakers == ["SPK1", "spk1", "spk2"]
    assert any("speakers 'SPK1', 'spk1' differ only in case: read as 2 speakers" in n
               for n in c.notes)



@pytest.mark.slow
def test_evaluate_says_when_iemocap_is_read_otherwise_than_training(tmp_path):
    """'hap' is happy and excited with --merge-excited, happy alone without: a model trained
    one way and scored the other was scored without a word (the checkpoint did not record how
    its corpus was read). The run's identity records it; evaluate warns."""
    import subprocess
    import sys

    root = tmp_path / "IEMOCAP_full_release"
    labels = ["neu", "hap", "sad", "ang", "exc"]
    for s in (1, 2):
        for g in "FM":
            dialog = f"Ses0{s}{g}_impro0{s}"
            text = EVAL_HEADER
            for i in range(15):
                turn = f"{dialog}_{g}{i:03d}"
                text += f"[{i}.1 - {i}.9]\t{turn}\t{labels[i % 5]}\t[2.5, 2.5, 2.5]\n"
                _wav(root / f"Session{s}" / "sentences" / "wav" / dialog / f"{turn}.wav",
                     seconds=0.6, seed=100 * s + 50 * (g == "M") + i)  # (distinct audio)
            ev = root / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            ev.parent.mkdir(parents=True, exist_ok=True)
            ev.write_text(text)
    assert load_corpus("iemocap", root, merge_excited=True).options == \
        {"merge_excited": True, "scripted": False}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", *map(str, args)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    cli("train", "iemocap", root, "--out", tmp_path / "run", "--model", "acrnn", "--folds", "2",
        "--epochs", "1", "--preset", "small", "--batch-size", "8", "--segment-frames", "50",
        "--cache", tmp_path / "cache", "--quiet", "--threads", "1")
    ident = json.loads((tmp_path / "run" / "result.json").read_text())["identity"]
    assert ident["corpus"]["options"] == {"merge_excited": False, "scripted": False}
    best = tmp_path / "run" / "best.pt"
    same = cli("evaluate", best, "iemocap", root, "--cache", tmp_path / "cache", "--quiet",
               "--include-training")
    assert "--merge-excited" not in same.stderr
    other = cli("evaluate", best, "iemocap", root, "--merge-excited", "--cache",
                tmp_path / "cache", "--quiet", "--include-training")
    assert "--merge-excited: the checkpoint was trained on iemocap read without it, this " \
           "corpus is read with it ('hap' is happy and excited with it" in other.stderr


def test_atthack_attitudes_from_the_command_line(tmp_path):
    """No source confirms which attitude a1..a4 is: --attitudes names them (train, cv,
    evaluate; refused for another corpus, and anything but four distinct names); the names
    are part of the corpus read, recorded with the run."""
    import subprocess
    import sys

    from ssa_fast import cli, config_file

    for name in ["F01_a1_s001_v01", "F01_a2_s002_v01", "M03_a3_s001_v02", "M03_a4_s099_v01"]:
        _wav(tmp_path / "wav" / f"{name}.wav")
    c = load_corpus("atthack", tmp_path, attitudes=("d", "c", "b", "a"))
    assert c.classes == ["d", "c", "b", "a"] and c.options == {"attitudes": ["d", "c", "b", "a"]}
    parser = cli.build_parser()
    argv = ["cv", "atthack", str(tmp_path), "--out", "o", "--attitudes", "d, c,b,a"]
    config_file.apply(parser, argv)
    assert parser.parse_args(argv).attitudes == ("d", "c", "b", "a")
    for bad in ("a,b,c", "a,a,b,c", "a,,b,c"):
        proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", "cv", "atthack",
                               str(tmp_path), "--out", str(tmp_path / "o"), "--attitudes", bad],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "four distinct names" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", "cv", "folder", str(tmp_path),
                           "--out", str(tmp_path / "o"), "--attitudes", "a,b,c,d"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--attitudes: applies to the atthack corpus" in proc.stderr


def test_a_spreadsheets_empty_trailing_fields_and_columns_are_read(tmp_path):
    """Rows ending in a comma, and a header with empty trailing columns (as a spreadsheet
    exports them), hold nothing shifted: read as before."""
    for i in range(2):
        _wav(tmp_path / f"u{i}.wav", seed=i)
    (tmp_path / "a.csv").write_text("path,speaker,label\nu0.wav,s1,neu,\nu1.wav,s2,sad,,\n")
    (tmp_path / "b.csv").write_text("path,speaker,label,,\nu0.wav,s1,neu,,\nu1.wav,s2,sad,,\n")
    for name in ("a.csv", "b.csv"):
        c = load_corpus("manifest", tmp_path / name)
        assert [(r.speaker, r.label) for r in c] == [("s1", "neu"), ("s2", "sad")], name

