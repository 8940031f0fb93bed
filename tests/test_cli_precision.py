"""`ssa-fast train --bf16` and `--compile` on the CPU, as users run them: real subprocesses on a
small generated corpus, one epoch of the small preset."""

import json
import math
import subprocess
import sys
import warnings

import pytest
import torch

from ssa_fast.cli import checks
from ssa_fast.cli.checks import cpu_has_native_bf16

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
    # (said on a CPU without oneDNN's bfloat16 only: this machine's answer decides)
    slow = "--bf16" in flags and not cpu_has_native_bf16()
    assert ("--bf16 on this CPU: torch's bfloat16 convolutions need" in proc.stderr) == slow, \
        proc.stderr
    result = json.loads((run / "result.json").read_text())
    assert len(result["history"]) == 1
    assert math.isfinite(result["history"][0]["train_loss"])
    config = torch.load(run / "best.pt", map_location="cpu", weights_only=True)["config"]
    assert config["bf16"] == ("--bf16" in flags) and config["compile"] == ("--compile" in flags)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_onednn_bfloat16_is_said_before_the_work(monkeypatch, native):
    monkeypatch.setattr(checks, "cpu_has_native_bf16", lambda: native)
    for bf16, device in ((True, "cpu"), (True, "cuda"), (True, "cuda:1"), (False, "cpu")):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            checks.check_bf16(bf16, device)
        said = [str(w.message) for w in seen]
        if bf16 and device == "cpu" and not native:
            assert len(said) == 1 and said[0].startswith(
                "--bf16 on this CPU: torch's bfloat16 convolutions need AVX-512"), said
            assert "slower than in float32" in said[0]
        else:
            assert said == [], (bf16, device, native, said)
    # no --device: the automatic one (cpu here unless CUDA is visible)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        checks.check_bf16(True, None)
    assert len(seen) == (not native and not torch.cuda.is_available())
    # under torchrun, said by rank 0 alone (each rank runs the command, before the process
    # group exists)
    monkeypatch.setenv("WORLD_SIZE", "4")
    for rank, said in (("0", not native), ("1", False), ("3", False)):
        monkeypatch.setenv("RANK", rank)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            checks.check_bf16(True, "cpu")
        assert len(seen) == said, rank
