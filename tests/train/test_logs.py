"""Logs of a run whose output is not a terminal (a file, a pipe, a batch job): no progress-bar
escape codes or carriage returns, one line per epoch and per finished run."""

import os
import re
import subprocess
import sys

from helpers import NO_FIGURES


def test_cv_log_without_a_terminal_is_plain_lines(tiny_corpus, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic", str(tiny_corpus), "--out",
         str(tmp_path / "cv"), "--models", "acrnn", "--folds", "2", "--preset", "small",
         "--epochs", "2", "--batch-size", "4", "--segment-frames", "100", "--cache",
         str(tmp_path / "cache"), *NO_FIGURES], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "\x1b[" not in log and "\r" not in log, log[:2000]
    lines = proc.stderr.splitlines()
    assert sum(line.startswith("acrnn epoch ") for line in lines) == 4  # 2 folds x 2 epochs
    assert [line.split(":")[0] for line in lines if " fold " in line] == \
        ["acrnn fold 0 of 2", "acrnn fold 1 of 2"]  # as train --fold, fold00, fold01


def test_a_long_epoch_in_a_log_shows_its_steps(tiny_corpus, tmp_path):
    """An epoch that takes minutes (the paper's shape on a CPU) writes a line at most every
    SSA_FAST_LOG_INTERVAL seconds between its epoch lines; 0 writes one before every step after
    the first, each with the step count, the time so far and an estimate of the rest."""
    env = {**os.environ, "SSA_FAST_LOG_INTERVAL": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_fast.cli", "train", "synthetic", str(tiny_corpus), "--out",
         str(tmp_path / "run"), "--model", "acrnn", "--folds", "2", "--fold", "1",
         "--preset", "small", "--epochs", "2", "--batch-size", "4", "--segment-frames", "100",
         "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=600,
        env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    for epoch in (1, 2):
        steps = [line for line in lines if line.startswith(f"acrnn epoch {epoch}/2: step ")]
        counts = [line.split(": step ")[1].split(",")[0] for line in steps]
        assert len(counts) >= 2, proc.stderr
        n = int(counts[0].split("/")[1])
        assert counts == [f"{k}/{n}" for k in range(1, n)], proc.stderr
        assert all(re.search(r", \d+ s \(about \d+ s left in the epoch\)$", line)
                   for line in steps), steps
    # (on stderr with the other progress; train's epoch results are on stdout)
    assert [line.split(":")[0] for line in lines if ": step " in line] == \
        sorted(line.split(":")[0] for line in lines if ": step " in line)
    assert [line for line in proc.stdout.splitlines() if " train loss " in line][-1] \
        .startswith("epoch 2: train loss")


def test_a_bad_log_interval_is_named_and_the_default_used(tiny_corpus, tmp_path):
    env = {**os.environ, "SSA_FAST_LOG_INTERVAL": "soon"}
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_fast.cli", "train", "synthetic", str(tiny_corpus), "--out",
         str(tmp_path / "run"), "--model", "acrnn", "--folds", "2", "--fold", "1",
         "--preset", "small", "--epochs", "1", "--batch-size", "4", "--segment-frames", "100",
         "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=600,
        env=env)
    assert proc.returncode == 0, proc.stderr
    assert "SSA_FAST_LOG_INTERVAL='soon' is not a number of seconds >= 0; using 60" \
        in proc.stderr
    assert ": step " not in proc.stderr  # (a tiny epoch takes far less than 60 s)
