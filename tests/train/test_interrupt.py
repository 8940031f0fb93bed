"""Ctrl-C (SIGINT) in the middle of `ssa-fast train`: one line, exit status 130, no traceback,
and `--resume` continues from the last complete checkpoint."""

import json
import signal
import subprocess
import sys

import pytest
from helpers import signal_when

from ssa_fast.train import load_checkpoint


@pytest.mark.slow
def test_ctrl_c_mid_training_is_one_line_and_resumable(tiny_corpus, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = [sys.executable, "-m", "ssa_fast.cli", "train", "synthetic", str(tiny_corpus),
            "--out", str(out), "--folds", "2", "--model", "acrnn", "--preset", "small",
            "--epochs", "8", "--batch-size", "4", "--segment-frames", "100", "--cache",
            str(cache), "--quiet"]
    # interrupt once epoch 1 (index 0) is checkpointed (7 more epochs to go: the signal lands
    # inside training even on a loaded machine, not after the run has finished)
    rc, err = signal_when(args, lambda: load_checkpoint(out / "last.pt")["epoch"] >= 0,
                          signal.SIGINT)
    assert rc == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "ssa-fast train: interrupted"
    proc = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((out / "result.json").read_text())["history"]) == 8
