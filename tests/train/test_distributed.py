"""Multi-process training with torchrun and gloo (2 CPU processes), as real subprocesses.

The runs are pinned to the CPU (``--device cpu``): on a machine with one GPU, two ranks on CUDA
would ask for cuda:1; NCCL with two GPUs is another setup, not what these tests compare."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.mark.parametrize("dropout", [None, "0.5"])
def test_one_ddp_step_equals_the_single_process_step(tmp_path, dropout):
    """With dropout too: every rank drew the same mask for its own rows (neither the one
    process's masks nor independent ones; the gradients differed by a factor)."""
    proc = _torchrun(str(HERE / "ddp_one_step.py"), str(tmp_path / "diff.json"),
                     *([dropout] if dropout else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert len(diff["grads"]) > 30
    worst = max(diff["grads"], key=diff["grads"].get)
    assert diff["grads"][worst] < 1e-3, worst  # measured ~4e-5 (fp32 sums in another order)
    assert len(diff["zero_grad_noise"]) == 2 and max(diff["zero_grad_noise"].values()) < 1e-5
    assert max(diff["buffers"].values()) < 1e-5  # BatchNorm running statistics
    assert diff["projected"] < 1e-5  # the L1 projection saw the whole batch
    # the synchronised BatchNorm holds the model's own parameters: an optimiser made before
    # the swap steps them (it held copies' originals, and BatchNorm never trained)
    assert diff["same_parameters"]


def test_torchrun_train_into_a_folder_another_process_writes_is_refused_on_every_rank(
        tiny_corpus, tmp_path):
    """Rank 0 refused (the folder's lock is held) and the other rank went on, to fail at its
    next collective with a gloo traceback: every rank follows rank 0's refusal."""
    from ssa_fast._lock import folder_lock

    out = tmp_path / "held"
    with folder_lock(out):  # (this test process is "another train in it")
        proc = _torchrun("-m", "ssa_fast.cli", "train", "synthetic", str(tiny_corpus), "--out",
                         str(out), "--model", "acrnn", "--preset", "small", "--epochs", "1",
                         "--folds", "2", "--segment-frames", "100", "--batch-size", "8",
                         "--threads", "1", "--device", "cpu", "--cache",
                         str(tmp_path / "cache"), "--quiet")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "ssa-fast train: error:" in line]
    assert len(errors) == 1 and "is training in it" in errors[0], proc.stderr[-3000:]
    assert "Connection reset" not in proc.stderr and "RuntimeError" not in proc.stderr, \
        proc.stderr[-3000:]
    assert not (out / "config.json").exists()


@pytest.mark.slow
def test_torchrun_training_matches_the_single_process_run(tiny_corpus, tmp_path):
    common = ["train", "synthetic", str(tiny_corpus), "--folds", "2", "--fold", "1",
              "--model", "ssa-crnn-r", "--preset", "small", "--epochs", "2", "--batch-size", "8",
              "--lr", "1e-3", "--segment-frames", "100", "--threads", "1", "--device", "cpu",
              "--cache", str(tmp_path / "cache"), "--quiet",
              # eq. 8's literal scale: with the default (300) the logits are 300x larger and
              # Adam amplifies the order of fp32 sums to ~1% in 2 epochs (the one-step test
              # above checks the default scale's gradients)
              "--logit-scale", "1"]
    single = subprocess.run([sys.executable, "-m", "ssa_fast.cli", *common, "--out",
                             str(tmp_path / "one")], capture_output=True, text=True,
                            timeout=300, env=ENV)
    assert single.returncode == 0, single.stderr
    multi = _torchrun("-m", "ssa_fast.cli", *common, "--out", str(tmp_path / "two"))
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("selected epoch") == 1  # one process prints
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert len(two["history"]) == 2
    assert (one["environment"]["processes"], two["environment"]["processes"]) == (1, 2)
    for a, b in zip(one["history"], two["history"], strict=True):
        # same batches, same model; Adam amplifies the order of fp32 sums a little per step
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-3)
    assert sum(map(sum, two["utterance_cm"])) == sum(map(sum, one["utterance_cm"]))
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == [".lock", "best.pt", "config.json", "last.pt", "metrics.csv", "result.json",
                     "training_curves.png"]
    rows = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss") and [r.split(",")[0] for r in rows[1:]] == \
        ["1", "2"]
    # every weight trained as in the one process, BatchNorm's too (under torchrun its weight
    # and bias stayed exactly 1 and 0: the optimiser held parameters the swap had replaced)
    w1, w2 = (torch.load(tmp_path / d / "best.pt", weights_only=True)["model"]
              for d in ("one", "two"))
    names = [n for n in w1 if "bn" in n and n.endswith((".weight", ".bias"))]
    assert len(names) == 4
    for name in names:
        init = 1.0 if name.endswith("weight") else 0.0
        moved, apart = (w1[name] - init).abs().mean(), (w2[name] - w1[name]).abs().mean()
        # (the two runs drift apart by the order of fp32 sums, as every weight does: by up to
        # ~1e-2 here, the linear layers' too; stuck at the start they were as far apart as
        # the one process's weights had moved)
        assert apart < 0.5 * moved, (name, float(apart), float(moved))


HOLDER = """
import os, shutil, sys, time
from pathlib import Path
from ssa_fast._lock import folder_lock

def waited_on(path):
    # a process blocked in flock on this file: Linux lists it in /proc/locks after "->"
    inode = str(os.stat(path).st_ino)
    with open("/proc/locks") as fh:
        rows = [line.split() for line in fh]
    return any(r[1] == "->" and r[6].rsplit(":", 1)[1] == inode for r in rows if len(r) > 6)

out, ref = Path(sys.argv[1]), Path(sys.argv[2])
with folder_lock(out / "acrnn" / "fold01", wait=False) as held:
    assert held
    print("holding", flush=True)
    lock, deadline = out / "acrnn" / "fold01" / ".lock", time.time() + 200
    while not waited_on(lock) and time.time() < deadline:  # rank 0, after its first run
        time.sleep(0.05)
    print("rank 0 waited" if waited_on(lock) else "nobody waited", flush=True)
    for name in ("best.pt", "last.pt", "metrics.csv", "result.json"):  # finished elsewhere
        shutil.copy2(ref / "acrnn" / "fold01" / name, out / "acrnn" / "fold01" / name)
"""


@pytest.mark.slow
def test_torchrun_ranks_follow_rank_0_when_another_process_finishes_a_run(tiny_corpus,
                                                                           tmp_path):
    """Another process holds a run's lock and finishes it while a torchrun cv waits for it:
    rank 0 reuses the run, and so does rank 1, whatever it saw in the folder before rank 0 held
    the lock (it trained it alone, out of step with rank 0, and the job hung)."""
    common = ["cv", "synthetic", str(tiny_corpus), "--folds", "2", "--models", "acrnn",
              "--preset", "small", "--epochs", "1", "--batch-size", "8", "--segment-frames",
              "100", "--threads", "1", "--device", "cpu", "--cache", str(tmp_path / "cache"),
              "--quiet"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    single = subprocess.run([sys.executable, "-m", "ssa_fast.cli", *common, "--out", str(ref)],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert single.returncode == 0, single.stderr
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ref)],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "holding"
        multi = _torchrun("-m", "ssa_fast.cli", *common, "--out", str(out), timeout=240)
    finally:
        holder.kill()
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert holder.wait() == 0
    assert holder.stdout.readline().strip() == "rank 0 waited"  # (the case this test is about)
    folds = json.loads((out / "results.json").read_text())["folds"]["acrnn"]
    assert [f["reused"] for f in folds] == [False, True]
    assert folds[1]["fingerprint"] == json.loads(
        (ref / "acrnn" / "fold01" / "result.json").read_text())["fingerprint"]


def test_only_the_launchers_rank_0_is_main_before_the_process_group_exists(monkeypatch):
    """Under torchrun a command checks its options before the process group starts: there the
    launcher's RANK decides which process prints and writes, not every rank at once."""
    from ssa_fast import distributed as dist

    assert dist.is_main()  # one process, nothing launched it
    monkeypatch.setenv("RANK", "2")
    assert dist.is_main()  # a RANK without a world of several processes means nothing
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert not dist.is_main() and dist.rank() == 0 and dist.world_size() == 1
    monkeypatch.setenv("RANK", "0")
    assert dist.is_main()
