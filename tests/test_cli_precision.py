"""`ssa-fast train --bf16` and `--compile` on the CPU, as users run them: real subprocesses on a
small generated corpus, one epoch of the small preset."""

import json
import math
import subprocess
import sys

import pytest
import torch

pytest.importorskip("soundfile")  # the corpus is written as wav files


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ssa_fast.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision") / "corpus"
    proc = _cli("synth", "--out", str(root), "--size", "tiny", "--phrases", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--bf16"], ["--compile"]], ids=["bf16", "compile"])
def test_train_with_precision_flags_on_cpu(corpus, tmp_path, flags):
    run = tmp_path / "run"
    proc = _cli("train", "synthetic", str(corpus), "--out", str(run), "--model", "ssa-crnn-r",
                "--fold", "1", "--folds", "2", "--preset", "small", "--epochs", "1",
                "--batch-size", "8", "--lr", "1e-3", "--segment-frames", "100", "--threads", "1",
                "--cache", str(tmp_path / "cache"), "--device", "cpu", "--quiet", *flags)
    assert proc.returncode == 0, proc.stderr
    assert "selected epoch" in proc.stdout
    result = json.loads((run / "result.json").read_text())
    assert len(result["history"]) == 1
    assert math.isfinite(result["history"][0]["train_loss"])
    config = torch.load(run / "best.pt", map_location="cpu", weights_only=True)["config"]
    assert config["bf16"] == ("--bf16" in flags) and config["compile"] == ("--compile" in flags)
