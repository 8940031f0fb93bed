"""Crash safety and reproducibility of `ssa-fast train`, with real processes: a run killed with
SIGKILL in the middle of training resumes from its last checkpoint and ends exactly like an
uninterrupted run; the same seed gives the same result twice; a failed save leaves the previous
checkpoint intact."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from helpers import signal_when

from ssa_fast._atomic import _host, save_torch
from ssa_fast.train import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _args(corpus, out, cache):
    # On CUDA (the default device where present) bit equality is promised only by the
    # deterministic mode; CPU runs with one thread are reproducible without it. With dropout:
    # its masks after a resume are the uninterrupted run's (torch's RNG state, and on a GPU its
    # device's, are in last.pt)
    return [sys.executable, "-m", "ssa_fast.cli", "train", "synthetic", str(corpus), "--out",
            str(out), "--folds", "2", "--model", "ssa-crnn-r", "--preset", "small", "--epochs",
            "5", "--batch-size", "4", "--lr", "1e-3", "--segment-frames", "100", "--threads",
            "1", "--dropout", "0.3", "--cache", str(cache), "--quiet"] + (
                ["--deterministic"] if torch.cuda.is_available() else [])


def _run(args):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_uninterrupted(tiny_corpus, tmp_path):
    cache = tmp_path / "cache"
    _run(_args(tiny_corpus, tmp_path / "full", cache))
    full = json.loads((tmp_path / "full" / "result.json").read_text())

    cut = tmp_path / "cut"
    # kill it once epoch 2 (index 1) is checkpointed, i.e. somewhere inside epoch 3
    rc, _ = signal_when(_args(tiny_corpus, cut, cache),
                        lambda: load_checkpoint(cut / "last.pt")["epoch"] >= 1, signal.SIGKILL,
                        env=ENV)
    assert rc == -signal.SIGKILL
    state = load_checkpoint(cut / "last.pt")  # the last checkpoint is whole
    assert 1 <= state["epoch"] < 4
    assert not (cut / "result.json").exists()

    _run(_args(tiny_corpus, cut, cache) + ["--resume"])
    resumed = json.loads((cut / "result.json").read_text())
    assert resumed["history"] == full["history"]
    assert resumed["utterance_cm"] == full["utterance_cm"]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(cut / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_kill_between_the_two_checkpoints_of_an_epoch_resumes_to_the_same_result(
        tiny_corpus, tmp_path):
    """Each epoch writes last.pt, then (when it is the best so far) best.pt. Killed between the
    two, the run has a last.pt whose best epoch is its own and a best.pt behind it: the resume
    writes best.pt from last.pt's model (the same state) and ends as the uninterrupted run. A
    best.pt ahead of last.pt (an older version wrote best.pt first) holds an epoch the resumed
    run would not have: that run starts afresh, with a warning."""
    cache = tmp_path / "cache"
    args = _args(tiny_corpus, tmp_path / "full", cache)
    args[args.index("--epochs") + 1] = "2"
    _run(args)
    full = json.loads((tmp_path / "full" / "result.json").read_text())
    full_best = load_checkpoint(tmp_path / "full" / "best.pt")

    behind = tmp_path / "behind"  # killed after last.pt of the final epoch, before its best.pt
    shutil.copytree(tmp_path / "full", behind)
    state = load_checkpoint(behind / "last.pt")
    state["best_epoch"], state["best_metric"] = 1, state["history"][1]["utterance_uar"]
    save_torch(behind / "last.pt", state)
    (behind / "best.pt").unlink()
    done = _run([*(a if a != str(tmp_path / "full") else str(behind) for a in args), "--resume"])
    assert "warning" not in done.stderr
    best = load_checkpoint(behind / "best.pt")
    assert best["epoch"] == 1 and best["fingerprint"] == full_best["fingerprint"]
    assert all(torch.equal(best["model"][k], state["model"][k]) for k in state["model"])
    result = json.loads((behind / "result.json").read_text())
    assert result["best_epoch"] == 1 and result["history"] == full["history"]
    if full["best_epoch"] == 1:  # (the uninterrupted run chose the same epoch)
        assert result["utterance_cm"] == full["utterance_cm"]

    ahead = tmp_path / "ahead"  # best.pt of epoch 1, last.pt of epoch 1 naming epoch 0 the best
    shutil.copytree(tmp_path / "full", ahead)
    state = load_checkpoint(ahead / "last.pt")
    state["best_epoch"], state["best_metric"] = 0, 1.0
    save_torch(ahead / "last.pt", state)
    best = load_checkpoint(ahead / "best.pt")
    best["epoch"] = 1
    save_torch(ahead / "best.pt", best)
    again = _run([*(a if a != str(tmp_path / "full") else str(ahead) for a in args), "--resume"])
    assert "does not hold the best epoch" in again.stderr and "starting this run afresh" in \
        again.stderr
    result = json.loads((ahead / "result.json").read_text())
    assert result["history"] == full["history"] and result["best_epoch"] == full["best_epoch"]
    assert result["utterance_cm"] == full["utterance_cm"]


@pytest.mark.slow
def test_same_seed_same_result_twice(tiny_corpus, tmp_path):
    cache = tmp_path / "cache"
    one = _run(_args(tiny_corpus, tmp_path / "one", cache))
    two = _run(_args(tiny_corpus, tmp_path / "two", cache))
    r1 = json.loads((tmp_path / "one" / "result.json").read_text())
    r2 = json.loads((tmp_path / "two" / "result.json").read_text())
    assert r1["history"] == r2["history"] and one.stdout == two.stdout.replace("two", "one")
    other = _run(_args(tiny_corpus, tmp_path / "seed1", cache) + ["--seed", "1"])
    r3 = json.loads((tmp_path / "seed1" / "result.json").read_text())
    assert r3["history"] != r1["history"] and other.returncode == 0


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_torch(path, {"epoch": 1, "w": torch.ones(3)})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError, match="disk full"):
        save_torch(path, {"epoch": 2, "w": torch.zeros(3), "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1  # intact, loads with weights_only=True
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_background_writes_are_snapshots_in_order_and_fail_loudly(tmp_path):
    from ssa_fast._atomic import BackgroundWriter

    w = torch.zeros(1000)
    writer = BackgroundWriter()
    for epoch in range(3):  # training changes the weights in place right after each hand-over
        writer.save_torch(tmp_path / "last.pt", {"epoch": epoch, "w": w, "nested": [w, (w,)]})
        w.add_(1)
    writer.wait()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and bool((state["w"] == 2).all())  # the last hand-over's values
    assert bool((state["nested"][1][0] == 2).all())

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated)")

    writer.save_torch(tmp_path / "last.pt", {"epoch": 3, "bad": Unpicklable()})
    with pytest.raises(RuntimeError, match="disk full"):
        writer.wait()
    writer.close()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2  # the previous file, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def _acrnn(corpus, out, cache, *extra):
    return [sys.executable, "-m", "ssa_fast.cli", "train", "synthetic", str(corpus), "--out",
            str(out), "--folds", "2", "--model", "acrnn", "--preset", "small", "--batch-size",
            "4", "--lr", "1e-3", "--segment-frames", "100", "--threads", "1", "--cache",
            str(cache), "--quiet", *extra]


@pytest.mark.slow
def test_a_run_patience_stopped_and_killed_before_its_result_resumes_to_the_same_end(
        tiny_corpus, tmp_path):
    """Killed after its last epoch's checkpoints, before result.json (as a script that always
    passes --resume also finds it): resuming a run --patience had stopped trained on, and its
    scores changed."""
    cache = tmp_path / "cache"
    args = _acrnn(tiny_corpus, tmp_path / "full", cache, "--epochs", "10", "--patience", "1")
    _run(args)
    full = json.loads((tmp_path / "full" / "result.json").read_text())
    assert len(full["history"]) < 10  # (patience stopped it: what this test is about)
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    (cut / "result.json").unlink()
    _run(_acrnn(tiny_corpus, cut, cache, "--epochs", "10", "--patience", "1", "--resume"))
    resumed = json.loads((cut / "result.json").read_text())
    assert resumed["history"] == full["history"]
    assert resumed["best_epoch"] == full["best_epoch"]
    assert resumed["utterance_uar"] == full["utterance_uar"]


@pytest.mark.slow
def test_resume_takes_an_option_the_model_ignores_and_refuses_a_bad_last_pt_in_one_line(
        tiny_corpus, tmp_path):
    """--ssa-scale is not ACRNN's (its run's identity leaves it out, so cv kept the fold's
    last.pt), and resuming was then refused naming no difference: the run could not go on.
    A last.pt that is no last checkpoint was a traceback."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    _run(_acrnn(tiny_corpus, out, cache, "--epochs", "2"))
    (out / "result.json").unlink()
    # (and a killed write's temporary file, of a process that is gone: swept, as cv does)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = out / f".last.pt.tmp{dead}@{_host()}"
    stale.write_bytes(b"half a checkpoint")
    _run(_acrnn(tiny_corpus, out, cache, "--epochs", "2", "--resume", "--ssa-scale", "2"))
    assert json.loads((out / "result.json").read_text())["best_epoch"] >= 0
    assert not stale.exists()
    # an option it uses is still refused, naming it
    proc = subprocess.run(_acrnn(tiny_corpus, out, cache, "--epochs", "2", "--resume",
                                 "--lr", "2e-3"), capture_output=True, text=True, timeout=600,
                          env=ENV)
    assert proc.returncode == 2 and "train.lr: 0.001 -> 0.002" in proc.stderr, proc.stderr
    best = out / "best.pt"
    for name, content in (("garbage", b"not a checkpoint"), ("empty", b""),
                          ("a best.pt", best.read_bytes())):
        (out / "last.pt").write_bytes(content)
        proc = subprocess.run(_acrnn(tiny_corpus, out, cache, "--epochs", "2", "--resume"),
                              capture_output=True, text=True, timeout=600, env=ENV)
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "last.pt is not a last checkpoint" in lines[0], (name, lines)
