"""Logs of a run whose output is not a terminal (a file, a pipe, a batch job): no progress-bar
escape codes or carriage returns, one line per epoch and per finished run."""

import subprocess
import sys


def test_cv_log_without_a_terminal_is_plain_lines(tiny_corpus, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic", str(tiny_corpus), "--out",
         str(tmp_path / "cv"), "--models", "acrnn", "--folds", "2", "--preset", "small",
         "--epochs", "2", "--batch-size", "4", "--segment-frames", "100", "--cache",
         str(tmp_path / "cache")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "\x1b[" not in log and "\r" not in log, log[:2000]
    lines = proc.stderr.splitlines()
    assert sum(line.startswith("acrnn epoch ") for line in lines) == 4  # 2 folds x 2 epochs
    assert [line.split(":")[0] for line in lines if " fold " in line] == \
        ["acrnn fold 1/2", "acrnn fold 2/2"]
