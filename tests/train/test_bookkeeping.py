"""Experiment bookkeeping and the evaluation protocol, as users run them: `ssa-fast cv`, `train`
and `evaluate` as real subprocesses on the tiny generated corpus (tests/train/conftest.py),
with real files, a real truncated result and a real SIGKILL.

- every run, fold result and checkpoint carries the fingerprint of what produced it, and `cv`
  reuses a finished fold only when it matches (otherwise it recomputes, naming what changed);
- an unreadable fold result is recomputed; a `cv` killed mid-run continues on the rerun;
- `evaluate` refuses another fold layout than the checkpoint's and does not score training data;
- BatchNorm statistics are re-estimated on training batches before validation; the table shows
  WA, macro F1, per-class recall and the last-k-epoch mean beside the best-epoch UAR, and with a
  selection split it reports a held-out test set.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import NO_FIGURES, signal_when

from ssa_fast.data import load_corpus
from ssa_fast.errors import UserError
from ssa_fast.metrics import last_k_mean, macro_f1, recall_per_class, scores
from ssa_fast.predict.engine import load_trained
from ssa_fast.train import TrainConfig, build_model, confusion_matrix, load_checkpoint
from ssa_fast.train.evaluation import fold_layout_to_score
from ssa_fast.train.fingerprint import fingerprint, utterance_keys

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["--preset", "small", "--batch-size", "8", "--segment-frames", "100", "--threads", "1",
         "--quiet"]


def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=ENV)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _cv(corpus, out, cache, *extra, check=True, figures=False):
    return _cli("cv", "synthetic", corpus, "--out", out, "--cache", cache, "--protocol",
                "random", "--folds", "2", *SMALL, *([] if figures else NO_FIGURES), *extra,
                check=check)


def _results(out):
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_cv_reuses_a_fold_only_with_its_fingerprint(tiny_corpus, tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    first = _cv(tiny_corpus, out, cache, "--models", "acrnn", "ssa-crnn-r", "--epochs", "1",
                figures=True)
    assert "warning" not in first.stderr
    r1 = _results(out)
    fold = json.loads((out / "acrnn" / "fold00" / "result.json").read_text())
    ckpt = load_checkpoint(out / "acrnn" / "fold00" / "best.pt")
    # the fold result and its checkpoints carry the identity and fingerprint of the run
    assert fold["fingerprint"] == ckpt["fingerprint"] == r1["folds"]["acrnn"][0]["fingerprint"]
    assert load_checkpoint(out / "acrnn" / "fold00" / "last.pt")["fingerprint"] == \
        fold["fingerprint"]
    ident = fold["identity"]
    assert ident["folds"] == {"protocol": "random", "k": 2, "seed": 0, "fold": 0,
                              "selection": 0.0}
    assert ident["train"]["epochs"] == 1 and ident["train"]["model"] == "acrnn"
    assert ident["corpus"]["utterances"] == 32 and len(ident["corpus"]["hash"]) == 16
    assert ident["data"]["segment_frames"] == 100 and ident["data"]["features"]["n_mels"] == 40
    assert len(ckpt["train_utterances"]) == fold["n_train"]
    assert fold["fingerprint"] != r1["folds"]["acrnn"][1]["fingerprint"]  # another fold
    assert (out / "reports" / "attention.png").is_file()
    # beside the identity, what trained it; one environment for the table's 4 runs
    env = fold["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["processes"] == 1
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["device_name"]
    assert r1["environments"] == [{"environment": env, "runs": 4}]

    # the same command again: every fold reused, nothing rewritten, same table; the figures
    # are drawn again from the reused first fold's checkpoints
    stamp = (out / "acrnn" / "fold00" / "result.json").stat().st_mtime_ns
    figure = (out / "reports" / "attention.png").stat().st_mtime_ns
    again = _cv(tiny_corpus, out, cache, "--models", "acrnn", "ssa-crnn-r", "--epochs", "1",
                figures=True)
    assert "warning" not in again.stderr
    assert (out / "acrnn" / "fold00" / "result.json").stat().st_mtime_ns == stamp
    r2 = _results(out)
    assert all(f["reused"] for rows in r2["folds"].values() for f in rows)
    assert r2["fingerprint"] == r1["fingerprint"] and r2["summary"] == r1["summary"]
    assert again.stdout == first.stdout
    assert (out / "reports" / "attention.png").stat().st_mtime_ns > figure

    # a fold trained elsewhere (a shard on another node of a cluster, another torch): reused,
    # since it computed the same run, but the table says its runs come from two environments
    done = out / "ssa-crnn-r" / "fold01" / "result.json"
    result = json.loads(done.read_text())
    result["environment"].update(torch="2.11.0+cu130", device="cuda", device_name="NVIDIA H200")
    done.write_text(json.dumps(result))
    mixed = _cv(tiny_corpus, out, cache, "--models", "acrnn", "ssa-crnn-r", "--epochs", "1")
    assert "recomputing" not in mixed.stderr
    assert "the table's runs were trained in 2 environments (they differ in device, " \
        "device_name, torch)" in mixed.stderr
    assert [(e["environment"]["torch"], e["runs"]) for e in _results(out)["environments"]] == \
        [(torch.__version__, 3), ("2.11.0+cu130", 1)]

    # other options: recomputed with a warning naming them; results.json records what ran;
    # the SSA model's figure of the first run does not stay in reports/
    changed = _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "2", "--lr", "3e-3",
                  "--seed", "7", figures=True)
    for name in ("train.epochs: 1 -> 2", "train.lr: 0.0001 -> 0.003", "train.seed: 0 -> 7",
                 "folds.seed: 0 -> 7"):
        assert name in changed.stderr, name
    assert changed.stderr.count("recomputing") == 2
    r3 = _results(out)
    assert list(r3["folds"]) == ["acrnn"] and r3["config"]["epochs"] == 2
    for f in r3["folds"]["acrnn"]:
        assert not f["reused"] and len(f["history"]) == 2
        assert f["identity"]["train"]["lr"] == 0.003 and f["identity"]["train"]["seed"] == 7
    assert len(load_checkpoint(out / "acrnn" / "fold01" / "last.pt")["history"]) == 2
    assert not (out / "reports" / "attention.png").exists()
    # the table's last-k column is the mean of the last k epochs of every fold
    k = r3["last_k"]
    per_fold = [last_k_mean(f["history"], "utterance_uar", k) for f in r3["folds"]["acrnn"]]
    assert r3["summary"]["acrnn"]["last_k_utterance_uar"][0] == pytest.approx(np.mean(per_fold))

    # another corpus into the same --out (one utterance fewer): recomputed, never reported
    other = tmp_path / "other"
    shutil.copytree(tiny_corpus, other)  # copy2 keeps sizes and modification times
    rows = (other / "manifest.csv").read_text().splitlines()
    (other / "manifest.csv").write_text("\n".join(rows[:-1]) + "\n")
    moved = _cv(other, out, cache, "--models", "acrnn", "--epochs", "2", "--lr", "3e-3",
                "--seed", "7")
    assert "corpus.utterances: 32 -> 31" in moved.stderr and "corpus files" in moved.stderr
    r4 = _results(out)
    assert r4["identity"]["corpus"]["utterances"] == 31
    assert all(f["identity"]["corpus"]["utterances"] == 31 for f in r4["folds"]["acrnn"])


@pytest.mark.slow
def test_cv_recomputes_a_fold_whose_utterances_moved_when_the_listing_was_reordered(
        tiny_corpus, tmp_path):
    """The random protocol draws positions in the listing: the same files listed in another
    order give other folds. A fold trained on the old ones is recomputed, never reused; where
    the order does not decide the folds (loso: by speaker), it is reused."""
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)  # (copy2: the same sizes and modification times)
    rows = (corpus / "manifest.csv").read_text().splitlines()
    out, cache = tmp_path / "cv", tmp_path / "cache"
    loso = ["--protocol", "loso", "--folds", "2", "--models", "acrnn", "--epochs", "1"]
    _cv(corpus, out, cache, "--models", "acrnn", "--epochs", "1")
    _cli("cv", "synthetic", corpus, "--out", tmp_path / "loso", "--cache", cache, *SMALL, *loso,
         *NO_FIGURES)
    held_out = json.loads((out / "acrnn" / "fold00" / "result.json").read_text())["n_val"]
    (corpus / "manifest.csv").write_text("\n".join([rows[0], *rows[:0:-1]]) + "\n")

    moved = _cv(corpus, out, cache, "--models", "acrnn", "--epochs", "1")
    assert moved.stderr.count("the fold's utterances (training / selection / held out)") == 2
    assert moved.stderr.count("recomputing") == 2
    r = _results(out)
    assert not any(f["reused"] for f in r["folds"]["acrnn"])
    assert r["folds"]["acrnn"][0]["n_val"] == held_out  # the same sizes, other utterances
    same = _cli("cv", "synthetic", corpus, "--out", tmp_path / "loso", "--cache", cache, *SMALL,
                *loso, *NO_FIGURES)
    assert "warning" not in same.stderr
    assert all(f["reused"] for f in _results(tmp_path / "loso")["folds"]["acrnn"])
    # and what is reused is what the reordered listing trains: the order decides neither the
    # batches nor the statistics (before, another fold's loss, another table)
    _cli("cv", "synthetic", corpus, "--out", tmp_path / "loso2", "--cache", cache, *SMALL,
         *loso, *NO_FIGURES)
    for old, new in zip(_results(tmp_path / "loso")["folds"]["acrnn"],
                        _results(tmp_path / "loso2")["folds"]["acrnn"], strict=True):
        assert not new["reused"] and new["fingerprint"] == old["fingerprint"]
        assert new["history"] == old["history"] and new["utterance_cm"] == old["utterance_cm"]


@pytest.mark.slow
def test_train_overwrite_of_a_cv_fold_withdraws_the_cvs_table(tiny_corpus, tmp_path):
    """`train --overwrite` into a fold folder of a cv (retraining fold 0 longer) replaced the
    run the cv's table reported and left the table; it is now removed, said, and the cv with
    its own options writes it again (the fold retrained, its settings being other)."""
    out, cache = tmp_path / "cv", tmp_path / "cache"
    _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "1")
    assert (out / "results.json").is_file() and (out / "reports" / "table.md").is_file()
    fold = out / "acrnn" / "fold00"
    proc = _cli("train", "synthetic", tiny_corpus, "--out", fold, "--overwrite", "--model",
                "acrnn", "--protocol", "random", "--folds", "2", "--fold", "0", "--cache",
                cache, *SMALL, "--epochs", "2")
    assert f"{fold} is a fold of the cross-validation in {out}" in proc.stderr, proc.stderr
    assert not (out / "results.json").exists() and not (out / "reports" / "table.md").exists()
    assert json.loads((fold / "result.json").read_text())["identity"]["train"]["epochs"] == 2
    again = _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "1")
    assert "recomputing" in again.stderr and "train.epochs: 2 -> 1" in again.stderr
    r = _results(out)
    assert [f["reused"] for f in r["folds"]["acrnn"]] == [False, True]
    # a folder that is no fold of a table: nothing else is touched
    proc = _cli("train", "synthetic", tiny_corpus, "--out", out / "acrnn" / "other",
                "--overwrite", "--model", "acrnn", "--protocol", "random", "--folds", "2",
                "--fold", "0", "--cache", cache, *SMALL, "--epochs", "1")
    assert "cross-validation" not in proc.stderr and (out / "results.json").is_file()


@pytest.mark.slow
def test_cv_recomputes_a_truncated_fold_result_and_continues_after_sigkill(tiny_corpus,
                                                                           tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    args = [sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic", str(tiny_corpus), "--out",
            str(out), "--cache", str(cache), "--protocol", "random", "--folds", "2", "--models",
            "acrnn", "--epochs", "2", *SMALL, *NO_FIGURES]
    # kill it as soon as the first fold has finished: inside the second fold
    rc, _ = signal_when(args, (out / "acrnn" / "fold00" / "result.json").is_file, signal.SIGKILL,
                        env=ENV)
    assert rc == -signal.SIGKILL
    assert not (out / "results.json").exists()
    done = out / "acrnn" / "fold00" / "result.json"
    assert json.loads(done.read_text())["fingerprint"]  # written atomically: whole
    stamp = done.stat().st_mtime_ns
    # a temporary file of a dead process, as a kill during a write leaves it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = out / "acrnn" / "fold01" / f".result.json.tmp{dead}"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text('{"trunc')

    rerun = _cli(*args[3:])
    assert "warning" not in rerun.stderr
    assert done.stat().st_mtime_ns == stamp  # the finished fold was reused
    assert not stale.exists()
    r = _results(out)
    assert [f["reused"] for f in r["folds"]["acrnn"]] == [True, False]
    assert all(len(f["history"]) == 2 for f in r["folds"]["acrnn"])

    # a 0-byte result.json (what a kill during a non-atomic write left): recomputed, warned
    second = out / "acrnn" / "fold01" / "result.json"
    second.write_bytes(b"")
    rerun = _cli(*args[3:])
    assert "result.json is unreadable or partial (0 bytes" in rerun.stderr
    assert rerun.stderr.count("warning") == 1
    r = _results(out)
    assert [f["reused"] for f in r["folds"]["acrnn"]] == [True, False]
    assert json.loads(second.read_text())["fingerprint"] == r["folds"]["acrnn"][1]["fingerprint"]
    assert (out / "reports" / "table.md").is_file()

    # a rerun with other settings killed once it has replaced the first fold: no table of the
    # earlier run is left beside its folds (nor beside the config.json of the new one)
    other = [*args, "--lr", "3e-3"]
    old = json.loads(done.read_text())["fingerprint"]
    rc, _ = signal_when(other, lambda: json.loads(done.read_text())["fingerprint"] != old,
                        signal.SIGKILL, env=ENV)
    assert rc == -signal.SIGKILL
    assert json.loads((out / "config.json").read_text())["options"]["lr"] == 3e-3
    assert not (out / "results.json").exists()
    assert not [p.name for p in (out / "reports").iterdir()]
    _cli(*other[3:])
    assert _results(out)["config"]["lr"] == 3e-3 and (out / "reports" / "table.md").is_file()
    # a share of the runs (it writes no table) withdraws the table too, and says so
    share = _cli(*other[3:], "--shard", "0/2")
    assert "removed" in share.stderr and not (out / "results.json").exists()
    assert not (out / "reports" / "table.md").exists()


@pytest.mark.slow
def test_evaluate_keeps_to_the_checkpoints_fold_layout_and_held_out_data(tiny_corpus, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    train = ["train", "synthetic", tiny_corpus, "--out", run, "--model", "acrnn", "--protocol",
             "random", "--folds", "2", "--fold", "1", "--cache", cache, *SMALL]
    _cli(*train, "--epochs", "1")
    result = json.loads((run / "result.json").read_text())
    assert result["identity"]["folds"]["fold"] == 1
    # --resume with other options: refused, naming them, and nothing rewritten
    saved = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = _cli(*train, "--epochs", "2", "--resume", check=False)
    assert proc.returncode == 2 and "train.epochs: 1 -> 2" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == saved
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["identity"]["folds"]["fold"] == 1 and len(ckpt["train_utterances"]) == 24
    ev = ["evaluate", run / "best.pt", "synthetic", tiny_corpus, "--cache", cache, "--quiet"]

    # --fold alone takes the checkpoint's layout and reproduces the selected epoch's numbers
    scored = json.loads(_cli(*ev, "--fold", "1", "--json").stdout)
    assert scored["utterance_cm"] == result["utterance_cm"]
    assert scored["n_utterances"] == result["n_val"] == 8 and scored["excluded_training"] == 0

    # another K or fold: refused with one line, exit 2, nothing scored
    for fold, wrong in (("1", ["--folds", "3"]), ("0", [])):
        proc = _cli(*ev, "--fold", fold, *wrong, check=False)
        assert proc.returncode == 2, (wrong, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert "protocol random, 2 folds, seed 0, fold 1" in proc.stderr
        assert (wrong[0] if wrong else "--fold 0") in proc.stderr and not proc.stdout
    # the same check in-process for seed and protocol; the checkpoint's own values pass
    tm = load_trained(run / "best.pt")
    for wrong in ({"seed": 5}, {"protocol": "linguistic"}, {"k": 3}):
        with pytest.raises(UserError, match="another fold layout"):
            fold_layout_to_score(tm, 1, **wrong)
    assert fold_layout_to_score(tm, 1, "random", 2, 0)["fold"] == 1

    # the whole corpus: the 24 training utterances are left out, and said so; the 8 left are
    # the validation set that chose the epoch (no selection split): said too, not presented as
    # held out
    proc = _cli(*ev, "--json")
    whole = json.loads(proc.stdout)
    assert "excluded 24 of the 32 utterances" in proc.stderr
    assert "8 of the 8 utterances scored chose the checkpoint's epoch" in proc.stderr
    assert whole["n_utterances"] == 8 and whole["excluded_training"] == 24
    assert whole["epoch_selection_utterances"] == 8
    assert json.loads(_cli(*ev, "--fold", "1", "--json").stdout)[
        "epoch_selection_utterances"] == 8
    # the same files listed in reverse: the random protocol splits them otherwise, but the
    # checkpoint records the keys of the utterances that chose its epoch (before: not known,
    # and before that it said 0); a manifest of those 8 files alone is told too (it said
    # nothing, the score read as held out)
    with (tiny_corpus / "manifest.csv").open() as fh:
        listed = list(csv.DictReader(fh))
    reversed_listing = _listing(tiny_corpus, listed[::-1], tmp_path / "reversed.csv")
    rev = json.loads(_cli("evaluate", run / "best.pt", "manifest", reversed_listing,
                          "--cache", cache, "--json").stdout)
    assert rev["n_utterances"] == 8 and rev["epoch_selection_utterances"] == 8
    corpus = load_corpus("synthetic", tiny_corpus)
    trained_on = set(ckpt["train_utterances"])
    held = {os.path.realpath(r.path) for r, key in zip(corpus, utterance_keys(corpus),
                                                        strict=True) if key not in trained_on}
    val_only = [r for r in listed if os.path.realpath(tiny_corpus / r["path"]) in held]
    assert len(val_only) == 8
    proc = _cli("evaluate", run / "best.pt", "manifest",
                _listing(tiny_corpus, val_only, tmp_path / "val_only.csv"), "--cache", cache,
                "--json")
    alone = json.loads(proc.stdout)
    assert alone["training_utterances"] == 0 and alone["epoch_selection_utterances"] == 8
    assert "8 of the 8 utterances scored chose the checkpoint's epoch" in proc.stderr
    assert alone["utterance_cm"] == result["utterance_cm"]
    assert whole["utterance_cm"] == result["utterance_cm"]  # the held-out ones are the fold's
    proc = _cli(*ev, "--include-training", "--json")
    assert "24 of the 32 utterances scored were in the checkpoint's training set" in proc.stderr
    assert json.loads(proc.stdout)["n_utterances"] == 32
    # without --fold, a fold layout other than the checkpoint's is refused, not ignored; its own
    # is accepted
    proc = _cli(*ev, "--folds", "3", "--seed", "0", check=False)
    assert proc.returncode == 2 and not proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert "--folds 3: choose the fold layout of --fold" in line
    assert "protocol random, 2 folds, seed 0, fold 1" in line
    assert json.loads(_cli(*ev, "--folds", "2", "--json").stdout)["n_utterances"] == 8

    # labels the model lacks: one line naming them, before any feature is computed; labels
    # that differ from the model's only by case are its classes
    with (tiny_corpus / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    rows = [{**r, "label": {"ang": "fear", "neu": "NEU"}.get(r["label"], r["label"])}
            for r in rows]
    fresh = tmp_path / "fresh_cache"
    proc = _cli("evaluate", run / "best.pt", "manifest",
                _listing(tiny_corpus, rows, tmp_path / "fear.csv"), "--cache", fresh,
                check=False)
    assert proc.returncode == 2 and not proc.stdout and not fresh.exists()
    (line,) = [x for x in proc.stderr.splitlines() if "error" in x]
    assert "label 'fear' (8 utterances) is not among the classes" in line
    assert "(neu, hap, sad, ang)" in line and "Traceback" not in proc.stderr
    proc = _cli("evaluate", run / "best.pt", "manifest",
                _listing(tiny_corpus, [r for r in rows if r["label"] != "fear"],
                         tmp_path / "neu.csv"), "--cache", cache, "--json")
    assert "label 'NEU' read as 'neu' (8 records)" in proc.stderr
    assert json.loads(proc.stdout)["n_utterances"] == 6  # 24 held out, 2 of each class left
    # --fold on a corpus whose folds could not train every class (one 'ang' utterance): it is
    # scored (it was refused with advice for training: "choose another protocol"), its folds
    # rebuilt on it, said
    one_ang = [r for r in rows if r["label"] != "fear"] + [rows[-1] | {"label": "ang"}]
    proc = _cli("evaluate", run / "best.pt", "manifest",
                _listing(tiny_corpus, one_ang, tmp_path / "one_ang.csv"), "--fold", "1",
                "--cache", fresh, "--json")
    assert "its folds are rebuilt on this corpus" in proc.stderr
    assert json.loads(proc.stdout)["n_utterances"] > 0
    # (the same files, a label changed: its training files are left out, and every file left
    # is one of those that chose the epoch, by its keys; said)
    one_ang_scored = json.loads(proc.stdout)
    assert one_ang_scored["epoch_selection_utterances"] == one_ang_scored["n_utterances"]
    assert f"{one_ang_scored['n_utterances']} of the {one_ang_scored['n_utterances']} " \
        "utterances scored chose the checkpoint's epoch" in proc.stderr
    # a checkpoint of an older version, without its fold layout: --fold needs the layout it
    # was trained with (it crashed on protocol None, or took 10 folds)
    old = torch.load(run / "best.pt", weights_only=True)
    for key in ("identity", "fingerprint", "train_utterances", "used_utterances"):
        old.pop(key, None)
    torch.save(old, tmp_path / "old.pt")
    old_ev = ["evaluate", tmp_path / "old.pt", "synthetic", tiny_corpus, "--cache", cache]
    for given in ([], ["--protocol", "random"]):
        proc = _cli(*old_ev, "--fold", "1", *given, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "--fold 1: the checkpoint does not record its fold layout" in line
    proc = _cli(*old_ev, "--fold", "1", "--protocol", "random", "--folds", "2", "--json")
    assert json.loads(proc.stdout)["utterance_cm"] == result["utterance_cm"]


def _listing(corpus, rows, path, speakers=True):
    """A manifest of ``rows`` (dicts of the synthetic manifest) with absolute paths under
    ``corpus``, with or without the speaker column."""
    cols = ["path", "label"] + (["speaker"] if speakers else [])
    lines = [",".join(cols)] + [",".join([str(corpus / row["path"]), row["label"]]
                                         + ([row["speaker"]] if speakers else []))
                                for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_evaluate_recognises_training_utterances_whatever_the_listing(tiny_corpus, tmp_path):
    """The same files through another manifest (absolute paths, no speaker column), and the
    same audio copied elsewhere (new paths and modification times, some re-encoded as FLAC),
    are the checkpoint's training utterances: left out, said so; and what is left, most likely
    the fold's validation set that chose the epoch, is said to be possibly so (the split cannot
    be rebuilt on another listing). A checkpoint of an older version (listing keys only) is
    guarded as before."""
    sf = pytest.importorskip("soundfile")
    cache, run = tmp_path / "cache", tmp_path / "run"
    _cli("train", "synthetic", tiny_corpus, "--out", run, "--model", "acrnn", "--protocol",
         "random", "--folds", "2", "--fold", "1", "--cache", cache, *SMALL, "--epochs", "1")
    with (tiny_corpus / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))

    def evaluate(checkpoint, *corpus):
        proc = _cli("evaluate", checkpoint, *corpus, "--cache", cache, "--json", "--quiet")
        return json.loads(proc.stdout), proc.stderr

    listings = {"absolute paths, no speaker column":
                _listing(tiny_corpus, rows, tmp_path / "absolute.csv", speakers=False)}
    copy = tmp_path / "copy"
    for i, row in enumerate(rows):  # new files: new paths and modification times
        target = copy / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if i % 2:
            y, rate = sf.read(tiny_corpus / row["path"], dtype="int16")
            row = {**row, "path": row["path"][:-4] + ".flac"}
            sf.write(copy / row["path"], y, rate, subtype="PCM_16")
        else:
            shutil.copyfile(tiny_corpus / row["path"], target)
        rows[i] = row
    listings["a copy, half of it FLAC"] = _listing(copy, rows, tmp_path / "copy.csv")
    for what, manifest in listings.items():
        scored, err = evaluate(run / "best.pt", "manifest", manifest)
        assert "excluded 24 of the 32 utterances" in err, what
        assert scored["n_utterances"] == 8 and scored["excluded_training"] == 24, what
        # what is left is the validation set that chose the epoch: told by its keys
        assert scored["epoch_selection_utterances"] == 8, what
        assert "8 of the 8 utterances scored chose the checkpoint's epoch" in err, (what, err)
        # (a listing without speakers: the speaker-normalised checkpoint's fallback is said)
        nameless = "8 of the 8 utterances scored name no speaker" in err
        assert nameless == ("no speaker" in what), (what, err)
        assert scored["normalisation"] == {"utterance" if nameless else "speaker": 8}, what

    # a checkpoint written before those keys: the split cannot be rebuilt on another listing,
    # so whether they are among the scored cannot be told, and that is said
    ckpt = load_checkpoint(run / "best.pt")
    del ckpt["epoch_utterances"]
    torch.save(ckpt, tmp_path / "v3.pt")
    for what, manifest in listings.items():
        scored, err = evaluate(tmp_path / "v3.pt", "manifest", manifest)
        assert scored["n_utterances"] == 8 and scored["epoch_selection_utterances"] is None
        assert "whether the 8 utterances scored include those that chose its epoch" in err \
            and "cannot be told" in err, (what, err)

    # a checkpoint written before the audio and file keys: the listing keys still guard the
    # corpus it was trained on
    ckpt = load_checkpoint(run / "best.pt")
    assert set(ckpt["used_utterances"]) == {"listing", "file", "audio"}
    assert all(len(keys) == 24 for keys in ckpt["used_utterances"].values())
    del ckpt["used_utterances"]
    torch.save(ckpt, tmp_path / "old.pt")
    scored, err = evaluate(tmp_path / "old.pt", "synthetic", tiny_corpus)
    assert "excluded 24 of the 32 utterances" in err
    assert scored["n_utterances"] == 8 and scored["excluded_training"] == 24


@pytest.mark.slow
def test_selection_split_reports_a_held_out_test_set(tiny_corpus, tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    proc = _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "2",
               "--selection-split", "0.25", "--last-k", "2")
    r = _results(out)
    assert r["reported_on"] == "test" and r["selection"] == 0.25 and r["last_k"] == 2
    for f in r["folds"]["acrnn"]:
        # 32 utterances: 8 held out by the fold (test); a quarter of every class of the other
        # 24 (2 of 6) select the epoch
        assert (f["n_train"], f["n_val"], f["n_test"]) == (16, 8, 8)
        assert sum(map(sum, f["test"]["utterance_cm"])) == 8
        assert sum(map(sum, f["utterance_cm"])) == 8
        assert all("test_utterance_uar" in h for h in f["history"])
    s = r["summary"]["acrnn"]
    assert s["utterance_uar"][0] == pytest.approx(
        np.mean([f["test"]["utterance_uar"] for f in r["folds"]["acrnn"]]))
    assert s["last_k_utterance_uar"][0] == pytest.approx(np.mean(
        [last_k_mean(f["history"], "test_utterance_uar", 2) for f in r["folds"]["acrnn"]]))
    table = (out / "reports" / "table.md").read_text()
    assert "held-out test utterances" in table and "utterance UAR, last 2" in table
    assert "selected by the best utterance UAR" in table
    assert "on a validation split of 25% of the fold's training utterances (8 of 24 training " \
        "utterances in every fold), never on the test set" in table
    # the sentence names the level the epoch was chosen by (TrainConfig.select_by)
    from ssa_fast.reports.experiment import what_is_reported

    assert "best segment UAR" in what_is_reported({**r, "config": {**r["config"],
                                                                   "select_by": "segment"}})
    assert "best segment UAR" in what_is_reported({**r, "reported_on": "validation",
                                                   "config": {"select_by": "segment"}})
    # a first fold of 2 validation segments: no t-SNE map (it needs more points), no crash
    from ssa_fast.reports import write_reports

    tiny = {"z": np.random.default_rng(0).standard_normal((2, 8)), "labels": np.array([0, 1]),
            "alpha_em": None, "alpha_sp": None, "lengths": np.array([100, 100]),
            "predicted": np.array([0, 1])}
    paths = write_reports({**r, "figures_data": {"acrnn": tiny}}, out / "reports")
    assert "tsne" not in paths and not (out / "reports" / "tsne.png").exists()
    assert "held-out test" in proc.stdout
    with (out / "reports" / "table.csv").open() as fh:
        row = next(row for row in csv.DictReader(fh) if row["model"] == "ACRNN")
    assert row["reported_on"] == "test"
    assert float(row["utterance_macro_f1"]) == pytest.approx(s["utterance_macro_f1"][0])
    # the checkpoint trained on neither its selection nor its test utterances, and evaluate
    # --fold scores the test set
    ckpt = load_checkpoint(out / "acrnn" / "fold00" / "best.pt")
    assert len(ckpt["train_utterances"]) == 16
    ev = _cli("evaluate", out / "acrnn" / "fold00" / "best.pt", "synthetic", tiny_corpus,
              "--cache", cache, "--fold", "0", "--json", "--quiet")
    scored = json.loads(ev.stdout)
    assert scored["n_utterances"] == 8 and scored["excluded_training"] == 0
    assert scored["utterance_cm"] == r["folds"]["acrnn"][0]["test"]["utterance_cm"]
    # over the whole corpus, the 8 utterances that chose the epoch count as used, with the 16
    # it trained on: only the 8 test utterances are scored
    ev = _cli("evaluate", out / "acrnn" / "fold00" / "best.pt", "synthetic", tiny_corpus,
              "--cache", cache, "--json", "--quiet")
    whole = json.loads(ev.stdout)
    assert "excluded 24 of the 32 utterances: the checkpoint was trained on them or chose its " \
           "epoch on them" in ev.stderr
    assert whole["n_utterances"] == 8 and whole["excluded_training"] == 24
    assert whole["utterance_cm"] == r["folds"]["acrnn"][0]["test"]["utterance_cm"]


def test_metrics_against_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 40))
        y = rng.integers(0, 4, n)
        p = np.where(rng.random(n) < 0.5, y, rng.integers(0, 5, n))  # class 4: never true
        cm = confusion_matrix(y, p, 5)
        present = sorted(set(y.tolist()) | set(p.tolist()))
        s = scores(cm, "u")
        assert s["u_wa"] == pytest.approx(accuracy_score(y, p))
        assert s["u_uar"] == pytest.approx(recall_score(y, p, labels=sorted(set(y.tolist())),
                                                        average="macro", zero_division=0))
        assert macro_f1(cm) == pytest.approx(f1_score(y, p, labels=present, average="macro",
                                                      zero_division=0))
        truth = recall_score(y, p, labels=list(range(5)), average=None, zero_division=0)
        for c, r in enumerate(recall_per_class(cm)):
            assert (r is None) == (c not in y) and (r is None or r == pytest.approx(truth[c]))
    with pytest.raises(ValueError):
        last_k_mean([], "utterance_uar", 3)


def test_batchnorm_recalibration_is_the_average_over_training_batches():
    from ssa_fast.data.segments import Segments
    from ssa_fast.train import TrainConfig, build_model, recalibrate_batchnorm

    torch.manual_seed(0)
    cfg = TrainConfig(model="ssa-crnn-r", preset="small")
    model = build_model(cfg, 4, 3, 40, 40)
    S = 24
    segs = Segments(torch.randn(S, 3, 40, 40), torch.full((S,), 40), torch.arange(S),
                    torch.arange(S) % 4, torch.arange(S) % 3)
    batches = [list(range(i, i + 8)) for i in range(0, S, 8)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 2  # one per classifier of SSA-CRNN
    inputs = {bn: [] for bn in bns}
    hooks = [bn.register_forward_hook(lambda m, a, o: inputs[m].append(a[0].detach()))
             for bn in bns]
    model.train()
    rng = torch.get_rng_state()
    assert recalibrate_batchnorm(model, segs, batches, cfg) == 3
    for h in hooks:
        h.remove()
    assert torch.equal(torch.get_rng_state(), rng)  # no random numbers drawn (resume-exact)
    assert model.training and all(bn.momentum == 0.1 for bn in bns)
    for bn in bns:
        xs = inputs[bn]  # (B, C, T) per batch
        assert len(xs) == 3
        mean = torch.stack([x.mean(dim=(0, 2)) for x in xs]).mean(0)
        var = torch.stack([x.transpose(0, 1).reshape(x.shape[1], -1).var(dim=1)
                           for x in xs]).mean(0)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
    before = [bn.running_mean.clone() for bn in bns]
    assert recalibrate_batchnorm(model, segs, [], cfg) == 0  # no batches: statistics kept
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns, strict=True))


@pytest.mark.slow
def test_cv_recomputes_a_fold_computed_by_other_code(tiny_corpus, tmp_path):
    """A fold's identity holds the digest of the code that computes it (ssa_fast/_code.py):
    one trained by another version of the library is recomputed, naming the code."""
    from ssa_fast._code import code_digest

    out, cache = tmp_path / "cv", tmp_path / "cache"
    _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "1")
    assert all(f["identity"]["code"] == code_digest()
               for f in _results(out)["folds"]["acrnn"])
    # what a fold trained by another version of the library holds
    done = out / "acrnn" / "fold01" / "result.json"
    result = json.loads(done.read_text())
    result["identity"]["code"] = "0123456789abcdef"
    result["fingerprint"] = fingerprint(result["identity"])
    done.write_text(json.dumps(result))

    again = _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "1")
    assert f"ssa_fast's code that computes the results: 0123456789abcdef -> " \
        f"{code_digest()}" in again.stderr
    assert again.stderr.count("recomputing") == 1
    assert [f["reused"] for f in _results(out)["folds"]["acrnn"]] == [True, False]
    assert json.loads(done.read_text())["identity"]["code"] == code_digest()
    assert torch.load(out / "acrnn" / "fold01" / "best.pt",
                      weights_only=True)["identity"]["code"] == code_digest()


@pytest.mark.slow
def test_skipped_utterances_are_counted_by_reason_problems_first(tiny_corpus, tmp_path):
    """A missing file and an unreadable one among the corpus: the summary counts the skips by
    reason (they vanished into one count beside the classes left out), the listing shows them
    first, and evaluate says what it skipped too (on stderr: stdout is its JSON)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    wavs = sorted((corpus / "wav").glob("*.wav"))
    wavs[0].unlink()
    wavs[1].write_bytes(b"RIFF not audio")
    out, cache = tmp_path / "cv", tmp_path / "cache"
    proc = _cv(corpus, out, cache, "--models", "acrnn", "--epochs", "1", "--show-skipped", "5")
    first = proc.stdout.splitlines()[0]
    assert first.startswith("synthetic: 31 utterances, 2 speakers, classes ['neu', 'hap', "
                            "'sad', 'ang'] (") and first.endswith("; 1 skipped (1 file not found)")
    assert "30 utterances left after reading the audio; 1 skipped (1 cannot read audio)" \
        in proc.stdout
    listed = [line for line in proc.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(listed) == 2 and wavs[0].name in listed[0] + listed[1] \
        and wavs[1].name in listed[0] + listed[1]
    ev = _cli("evaluate", out / "acrnn" / "fold00" / "best.pt", "synthetic", corpus, "--fold",
              "0", "--cache", cache, "--json", "--quiet")
    json.loads(ev.stdout)
    assert "30 utterances" in ev.stderr and "1 file not found" in ev.stderr \
        and "1 cannot read audio" in ev.stderr
    assert sum(line.startswith("skipped: ") for line in ev.stderr.splitlines()) == 2


def test_the_models_options_are_trained_recorded_and_predicted_with(tiny_corpus, tmp_path):
    """--pool, --dropout, --combine, --ssa-scale and --constrain-speaker build the model they
    say (the checkpoint's model config holds them, prediction rebuilds it), are part of the
    run's identity (another value recomputes), and the defaults build the paper's model."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    opts = ["--pool", "2,4", "--dropout", "0.2", "--combine", "sum", "--ssa-scale", "0.05",
            "--constrain-speaker", "--select-by", "segment"]
    _cli("train", "synthetic", tiny_corpus, "--out", out, "--cache", cache, "--model",
         "ssa-crnn-r", "--folds", "2", "--epochs", "1", *SMALL, *opts)
    ckpt = load_checkpoint(out / "best.pt")
    mc = ckpt["model_config"]
    assert (tuple(mc["preset"]["pool"]), mc["preset"]["dropout"], mc["combine"], mc["scale"],
            mc["l1_constraint_speaker"]) == ((2, 4), 0.2, "sum", 0.05, True)
    ident = json.loads((out / "result.json").read_text())["identity"]["train"]
    assert (ident["pool"], ident["combine"], ident["constrain_speaker"], ident["select_by"]) == \
        ([2, 4], "sum", True, "segment")
    trained = load_trained(out / "best.pt")
    assert trained.model.ssa.combine == "sum" and trained.model.speaker.classifier.l1_constraint
    wav = next((tiny_corpus / "wav").glob("*.wav"))
    assert _cli("predict", out / "best.pt", wav).returncode == 0
    # the defaults: the paper's model
    default = build_model(TrainConfig(model="ssa-crnn-r", preset="small"), 4, 2, 100, 40)
    assert default.config["combine"] == "concat" and default.config["scale"] is None
    assert tuple(default.config["preset"]["pool"]) == (2, 2)
    assert not default.config["l1_constraint_speaker"]


def test_the_python_api_records_the_features_mel_bands(tiny_corpus, tmp_path):
    """cross_validate without feature_params recorded the defaults' 40 bands beside 64-band
    features: prediction refused the run's own checkpoint. The bands are read from the
    features (and feature_params that contradict them are refused)."""
    from ssa_fast import EmotionClassifier
    from ssa_fast.data import corpus_features, load_corpus
    from ssa_fast.features import FeatureConfig
    from ssa_fast.train import cross_validate

    corpus, feats = corpus_features(load_corpus("synthetic", tiny_corpus), tmp_path / "cache",
                                    features=FeatureConfig(n_mels=64), progress=False)
    cfg = TrainConfig(model="acrnn", preset="small", epochs=1, batch_size=8)
    cross_validate(corpus, feats, ["acrnn"], cfg, tmp_path / "api", protocol="linguistic", k=2,
                   segment_frames=100, progress=False)
    clf = EmotionClassifier.from_checkpoint(tmp_path / "api" / "acrnn" / "fold00" / "best.pt")
    assert clf.classify_file(next((tiny_corpus / "wav").glob("*.wav"))).status == "ok"
    with pytest.raises(ValueError, match="n_mels=40, but the features have 64 mel bands"):
        cross_validate(corpus, feats, ["acrnn"], cfg, tmp_path / "api2", protocol="linguistic",
                       k=2, segment_frames=100, progress=False,
                       feature_params=FeatureConfig().to_dict())


@pytest.mark.parametrize("name", ["acrnn", "acrnn-r", "ssa-crnn", "ssa-crnn-r"])
def test_options_a_model_ignores_are_not_in_its_runs_identity(name):
    """What a model ignores (the logit scale without the L1 constraint, the SSA options without
    SSA) is left out of its runs' identity, so that another --ssa-scale retrains the SSA models
    only; and it is truly ignored: the same weights and outputs, no speaker loss."""
    from dataclasses import asdict, fields

    from ssa_fast.models import model_spec

    ignored = model_spec(name).ignored_options()
    other = {"logit_scale": 7.0, "learn_logit_scale": True, "speaker_weight": 0.25,
             "combine": "sum", "ssa_scale": 0.3, "constrain_speaker": True}
    assert set(ignored) <= set(other) <= {f.name for f in fields(TrainConfig)}
    base = TrainConfig(model=name, preset="small")
    changed = TrainConfig(**{**asdict(base), **{k: other[k] for k in ignored}})
    assert asdict(changed.as_used()) == asdict(base.as_used()) == asdict(base)
    for key in set(other) - set(ignored):  # what it uses stays in
        used = TrainConfig(**{**asdict(base), key: other[key]})
        assert asdict(used.as_used())[key] == other[key], key

    x = torch.randn(3, 3, 100, 40)
    outputs = []
    for cfg in (base, changed):
        torch.manual_seed(0)
        model = build_model(cfg, 4, 3, 100, 40).eval()
        with torch.no_grad():
            outputs.append((model.state_dict(), model(x)))
    (sd0, out0), (sd1, out1) = outputs
    assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    torch.testing.assert_close(out1.emotion_logits, out0.emotion_logits, rtol=0, atol=0)
    if "speaker_weight" in ignored:
        assert out0.speaker_logits is None


@pytest.mark.slow
def test_cv_retrains_only_the_models_an_option_changes(tiny_corpus, tmp_path):
    """--ssa-scale retrains SSA-CRNN-r and reuses ACRNN's folds; --logit-scale retrains ACRNN-r
    only."""
    out, cache = tmp_path / "cv", tmp_path / "cache"
    models = ["--models", "acrnn", "acrnn-r", "ssa-crnn-r", "--epochs", "1"]
    _cv(tiny_corpus, out, cache, *models)
    ssa = _cv(tiny_corpus, out, cache, *models, "--ssa-scale", "0.5")
    assert ssa.stderr.count("recomputing") == 2 and "train.ssa_scale: None -> 0.5" in ssa.stderr
    assert [[f["reused"] for f in rows] for rows in _results(out)["folds"].values()] == \
        [[True, True], [True, True], [False, False]]
    scale = _cv(tiny_corpus, out, cache, *models, "--ssa-scale", "0.5", "--logit-scale", "50")
    assert scale.stderr.count("recomputing") == 4 and "train.logit_scale: 300.0 -> 50.0" in \
        scale.stderr
    assert [[f["reused"] for f in rows] for rows in _results(out)["folds"].values()] == \
        [[True, True], [False, False], [False, False]]


def test_cv_reports_no_table_when_another_process_replaced_one_of_its_folds(tiny_corpus,
                                                                            tmp_path,
                                                                            monkeypatch):
    """Two cv's with other options on one --out each recompute the folds the other trained:
    the one that finished wrote a table of folds whose files the other had replaced (its
    results.json gave numbers no file beside it held). Here the other is a real process (a
    share of a cv with more epochs) that replaces fold 0 while this cv trains fold 1."""
    from ssa_fast.data import corpus_features, load_corpus
    from ssa_fast.features import FeatureConfig
    from ssa_fast.train import cross_validate
    from ssa_fast.train import cv as cv_module

    cache, out = tmp_path / "cache", tmp_path / "out"
    corpus, feats = corpus_features(load_corpus("synthetic", tiny_corpus), cache,
                                    features=FeatureConfig(), progress=False)
    train_run = cv_module._train_run

    def meanwhile(cfg, corpus, segs, split, fold, *args, **kwargs):
        if fold == 1:  # (fold 0 is done and unlocked; this one is ours: the share skips it)
            proc = _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "2",
                       "--shard", "0/2")
            assert "trained 1" in proc.stdout + proc.stderr, proc.stderr
        return train_run(cfg, corpus, segs, split, fold, *args, **kwargs)

    monkeypatch.setattr(cv_module, "_train_run", meanwhile)
    cfg = TrainConfig(model="acrnn", preset="small", epochs=1, batch_size=8)
    with pytest.raises(UserError, match="acrnn fold 0: .* was replaced while this cv ran"):
        cross_validate(corpus, feats, ["acrnn"], cfg, out, protocol="random", k=2,
                       segment_frames=100, progress=False)
    assert not (out / "results.json").exists()
    other = json.loads((out / "acrnn" / "fold00" / "result.json").read_text())
    assert len(other["history"]) == 2  # (the other's: 2 epochs)


@pytest.mark.slow
def test_a_table_written_while_another_process_replaced_a_fold_is_withdrawn(tiny_corpus,
                                                                            tmp_path,
                                                                            monkeypatch, capsys):
    """The other process replaced fold 0 after this cv had checked its runs and before it
    wrote its table (here: while it writes the reports): the table stayed, exit 0, beside a
    fold it did not describe. The cv now checks again after its last write and withdraws it;
    the other process, when it replaces a finished run, removes the table after the run's
    files (whichever comes last, no table describes a fold it does not hold)."""
    import ssa_fast.reports as reports
    from ssa_fast.cli import main
    from ssa_fast.data import corpus_features, load_corpus
    from ssa_fast.features import FeatureConfig
    from ssa_fast.train import cross_validate
    from ssa_fast.train.cv import replaced_since

    cache, out = tmp_path / "cache", tmp_path / "out"
    options = ["cv", "synthetic", str(tiny_corpus), "--out", str(out), "--cache", str(cache),
               "--protocol", "random", "--folds", "2", "--models", "acrnn", *map(str, SMALL),
               *NO_FIGURES, "--quiet"]
    write_reports = reports.write_reports

    def meanwhile(*args, **kwargs):
        proc = _cv(tiny_corpus, out, cache, "--models", "acrnn", "--epochs", "2",
                   "--shard", "0/2")
        assert "trained 1" in proc.stdout + proc.stderr, proc.stderr
        return write_reports(*args, **kwargs)

    monkeypatch.setattr(reports, "write_reports", meanwhile)
    assert main([*options, "--epochs", "1"]) == 2
    assert "acrnn fold 0: " in capsys.readouterr().err
    assert not (out / "results.json").exists() and not (out / "reports" / "table.md").exists()
    monkeypatch.setattr(reports, "write_reports", write_reports)

    # the other side: a cv with other settings calls on_replace once a finished run's files
    # are gone, and replaced_since sees the table's run replaced
    corpus, feats = corpus_features(load_corpus("synthetic", tiny_corpus), cache,
                                    features=FeatureConfig(), progress=False)
    cfg = TrainConfig(model="acrnn", preset="small", epochs=1, batch_size=8)
    kw = dict(protocol="random", k=2, segment_frames=100, progress=False)
    api = tmp_path / "api"
    first = cross_validate(corpus, feats, ["acrnn"], cfg, api, **kw)
    assert replaced_since(api, first) is None
    seen = []
    cross_validate(corpus, feats, ["acrnn"], TrainConfig(model="acrnn", preset="small",
                                                         epochs=2, batch_size=8), api,
                   share=(1, 2), on_replace=lambda: seen.append(
                       (api / "acrnn" / "fold01" / "result.json").exists()), **kw)
    assert seen == [False]
    assert replaced_since(api, first).startswith("acrnn fold 1: ")


def test_evaluate_of_a_held_out_speaker_alone_needs_no_fold_of_the_run(tiny_corpus, tmp_path):
    """A loso checkpoint scored on its held-out speaker's utterances alone (no --fold): the
    count of the utterances that chose its epoch rebuilt the run's fold on this corpus, which
    has one speaker, so one fold: "--fold must be in [0, 1)", an option nobody gave."""
    cache, run = tmp_path / "cache", tmp_path / "run"
    _cli("train", "synthetic", tiny_corpus, "--out", run, "--model", "acrnn", "--protocol",
         "loso", "--folds", "2", "--fold", "1", "--epochs", "1", "--cache", cache, *SMALL)
    with (tiny_corpus / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    held_out = sorted({r["speaker"] for r in rows})[1]
    one = _listing(tiny_corpus, [r for r in rows if r["speaker"] == held_out],
                   tmp_path / "one.csv")
    proc = _cli("evaluate", run / "best.pt", "manifest", one, "--cache", cache, "--json")
    scored = json.loads(proc.stdout)
    assert scored["n_utterances"] == 16 and scored["excluded_training"] == 0
    # the held-out speaker chose the run's epoch (no selection split): told by the keys the
    # checkpoint records (before: not known, and nothing said of a score that read as held out)
    assert scored["epoch_selection_utterances"] == 16
    assert "16 of the 16 utterances scored chose the checkpoint's epoch" in proc.stderr


def test_environments_are_counted_and_their_differences_named(monkeypatch):
    from ssa_fast import available_backends
    from ssa_fast.train.fingerprint import environment, environment_differences, environments

    monkeypatch.delenv("SSA_FAST_BACKEND", raising=False)  # (the automatic choice)
    env = environment("cpu")
    assert json.loads(json.dumps(env)) == env  # JSON-ready as stored
    # what changes a CPU run's numbers in rounding beside the versions: its threads, the
    # extension (else the reference), a backend forced from outside the configuration
    assert env["threads"] == torch.get_num_threads() and env["backend"] is None
    assert env["extension"] == ("cpp" in available_backends("cpu"))
    monkeypatch.setenv("SSA_FAST_BACKEND", "reference")
    torch.set_num_threads(1 if env["threads"] > 1 else 2)
    forced = environment("cpu")  # (the thread count is restored by tests/conftest.py)
    assert forced["backend"] == "reference"
    assert environment_differences([env, forced]) == ["backend", "threads"]
    other = dict(env, torch="2.11.0+cu130")
    runs = [{"environment": env}, {"environment": other}, {"environment": dict(env)}, {}]
    assert environments(runs) == [{"environment": env, "runs": 2},
                                  {"environment": other, "runs": 1},
                                  {"environment": None, "runs": 1}]
    assert environment_differences([env, other, None]) == ["torch", "unrecorded"]
    assert environment_differences([env, dict(env, processes=2)]) == ["processes"]
    assert environment_differences([env, dict(env)]) == []
    # the audio libraries that decode and resample, and the GPU kernels' opt-in variants (none
    # set: None, as a record without the entry reads, so older records do not differ by it)
    from importlib import metadata

    assert env["soundfile"] == metadata.version("soundfile")
    for name in ("SSA_FAST_SSA_ONE_LAUNCH", "SSA_FAST_SSA_LARGE", "SSA_FAST_LOGMEL_REGFFT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSA_FAST_SSA_LARGE", "0")
    plain = environment("cpu")
    assert plain["kernel_variants"] is None
    assert environment_differences([plain, {k: v for k, v in plain.items()
                                            if k != "kernel_variants"}]) == []
    monkeypatch.setenv("SSA_FAST_SSA_ONE_LAUNCH", "1")
    monkeypatch.setenv("SSA_FAST_LOGMEL_REGFFT", "yes")
    asked = environment("cpu")
    assert asked["kernel_variants"] == {"SSA_FAST_SSA_ONE_LAUNCH": "1",
                                        "SSA_FAST_LOGMEL_REGFFT": "yes"}
    assert environment_differences([plain, asked]) == ["kernel_variants"]
