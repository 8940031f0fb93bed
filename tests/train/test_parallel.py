"""Cross-validation runs in parallel, as users run it: `ssa-fast cv --jobs N` and `--shard I/N`
(and a Slurm job array's variables) as real subprocesses on the tiny generated corpus
(tests/train/conftest.py), with real worker processes, a real SIGKILL and real file locks.

- `--jobs 2` gives the same per-fold results as a sequential run (one thread per process on the
  CPU, where a seed gives bit-identical training);
- shards train their runs only; a plain `cv` afterwards assembles the table without retraining;
- a killed worker is named and its run resumed by the next call; a crashed worker is named and
  the others' runs complete;
- a run locked by another process is skipped by a shard (named) and waited for by an
  assembling `cv`; two concurrent invocations on one --out never train the same run;
- bad values (--jobs beyond the cores, a share out of range, a Slurm array that is not a range):
  one line, exit status 2.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import NO_FIGURES, alive

from ssa_fast._lock import folder_lock
from ssa_fast.errors import UserError
from ssa_fast.train.parallel import cpu_cores, parse_share, slurm_share, sub_share, worker_count

# One thread per process: CPU training is then bit-reproducible for a seed, whatever the number
# of processes beside it (the comparisons below are exact).
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
       "OMP_NUM_THREADS": "1"}
OPTIONS = ["--models", "acrnn", "--protocol", "random", "--folds", "2", "--preset", "small",
           "--epochs", "4", "--batch-size", "8", "--lr", "1e-3", "--segment-frames", "100",
           "--threads", "1", "--device", "cpu"]
RUNS = ["acrnn fold 0", "acrnn fold 1"]


def _args(corpus, out, cache, *extra):
    return [sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic", str(corpus), "--out",
            str(out), "--cache", str(cache), *OPTIONS, *NO_FIGURES, *map(str, extra)]


def _cv(corpus, out, cache, *extra, env=None, code=0):
    proc = subprocess.run(_args(corpus, out, cache, *extra), capture_output=True, text=True,
                          timeout=600, env=env or ENV)
    assert proc.returncode == code, proc.stderr[-3000:]
    return proc


def _folds(out):
    rows = json.loads((out / "results.json").read_text())["folds"]["acrnn"]
    return [(r["utterance_uar"], r["history"], r["utterance_cm"]) for r in rows]


def _trained(stderr: str) -> list[str]:
    """The runs a (non-quiet, logged) cv trained itself: its lines without "(reused)"."""
    return [f"acrnn fold {m[1]}" for m in
            re.finditer(r"^acrnn fold (\d+) of 2: utterance UAR [\d.]+ %$", stderr, re.M)]


def _stamps(out):
    return [(out / "acrnn" / f"fold0{f}" / "result.json").stat().st_mtime_ns for f in (0, 1)]


@pytest.fixture(scope="module")
def sequential(tiny_corpus, tmp_path_factory):
    """The reference: the same cross-validation run one fold after the other."""
    out = tmp_path_factory.mktemp("sequential") / "cv"
    _cv(tiny_corpus, out, out.parent / "cache", "--quiet")
    return _folds(out)


def test_shares_partition_the_runs():
    runs = list(range(23))
    for n in (1, 2, 5):
        for jobs in (1, 3):
            parts = [runs[i::n][j::jobs] for i in range(n) for j in range(jobs)]
            subs = [runs[s[0]::s[1]] for i in range(n) for s in
                    [sub_share((i, n), j, jobs) for j in range(jobs)]]
            assert subs == parts and sorted(sum(parts, [])) == runs
    assert parse_share("0/1") == (0, 1) and parse_share("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "0/0", "x", "1", "1/2/3", ""):
        with pytest.raises(ValueError, match="0 <= I < N"):
            parse_share(bad)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
           "SLURM_ARRAY_TASK_STEP": "2"}  # --array=1-7:2: tasks 1, 3, 5, 7
    assert slurm_share(env) == (3, 4) and slurm_share({}) is None
    with pytest.raises(UserError, match="Slurm array task 7"):  # the step left out
        slurm_share({**env, "SLURM_ARRAY_TASK_STEP": "1"})
    for step in ("0", "-2"):  # (a division by zero)
        with pytest.raises(UserError, match=f"SLURM_ARRAY_TASK_STEP={step} is not a step"):
            slurm_share({**env, "SLURM_ARRAY_TASK_STEP": step})


def test_workers_for_the_runs_left():
    assert worker_count([], 4) == 0
    assert worker_count(list(range(30)), 4) == 4 and worker_count(list(range(3)), 4) == 3
    assert worker_count([5], 4) == 1 and worker_count([28, 29], 4) == 2
    # the last run of each of 4 workers' shares: 4 workers, one run each
    assert worker_count([26, 27, 28, 29], 4) == 4
    # two runs left at positions 1 and 3: 2 workers would give both to one (1 % 2 == 3 % 2)
    assert worker_count([1, 3], 4) == 3 and worker_count([1, 3], 2) == 1
    # 4 runs, --jobs 3: 3 workers take 2 rounds (0 and 3 fall to one), as 2 workers do
    assert worker_count(list(range(4)), 3) == 2
    for left in ([0, 2, 4, 6], [1, 3], list(range(7)), [3, 4, 9, 10, 11]):
        for jobs in range(1, 6):
            m = worker_count(left, jobs)
            shares = [[k for k in left if k % m == j] for j in range(m)]
            assert sorted(sum(shares, [])) == left  # every run left goes to a worker
            assert max(map(len, shares)) == min(
                max(sum(k % n == j for k in left) for j in range(n))
                for n in range(1, jobs + 1))  # in the fewest rounds
            assert m <= min(jobs, len(left)) or max(map(len, shares)) == 1


@pytest.mark.slow
def test_jobs_match_sequential_and_a_killed_worker_resumes(tiny_corpus, tmp_path, sequential):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    # kill worker 1 (its run: fold 1) with SIGKILL once its first epoch is checkpointed
    proc = subprocess.Popen(_args(tiny_corpus, out, cache, "--jobs", "2", "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    run, victim = out / "acrnn" / "fold01", None
    deadline = time.time() + 300
    while victim is None and proc.poll() is None and time.time() < deadline:
        holder = (run / ".lock").read_text() if (run / ".lock").is_file() else ""
        if (run / "last.pt").is_file() and holder.startswith("pid "):
            victim = int(holder.split()[1])
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.02)
    _, err = proc.communicate(timeout=600)
    assert victim is not None, err[-3000:]
    assert proc.returncode == 1, err[-3000:]
    assert "worker 1 (--shard 1/2: acrnn fold 1) was killed by SIGKILL" in err
    assert "logs/shard-1-of-2.log" in err and "1 of 2 workers failed" in err
    assert not (out / "results.json").exists() and not (run / "result.json").exists()
    assert (out / "acrnn" / "fold00" / "result.json").is_file()  # the other worker finished
    assert (out / "logs" / "shard-0-of-2.log").read_text().count("share 0/2: trained 1") == 1

    # the next call resumes the killed run (from its last.pt) and reuses the finished one: one
    # run is left, so one worker trains it (the second would have nothing to do)
    done = (out / "acrnn" / "fold00" / "result.json").stat().st_mtime_ns
    again = _cv(tiny_corpus, out, cache, "--jobs", "2")
    assert "1 worker (1 thread(s) each)" in again.stderr, again.stderr[-2000:]
    # the workers' lines count folds from 0, as the assembly's and train --fold do
    assert re.search(r"^acrnn fold 1 of 2: utterance UAR [\d.]+ % \(worker 0\)$", again.stderr,
                     re.M), again.stderr[-2000:]
    assert (out / "acrnn" / "fold00" / "result.json").stat().st_mtime_ns == done
    assert _folds(out) == sequential  # bit-identical to one run after the other
    rows = json.loads((out / "results.json").read_text())["folds"]["acrnn"]
    # fold 0 was finished before this call; its workers trained fold 1 (the assembly reads it)
    assert [r["reused"] for r in rows] == [True, False]
    assert "| ACRNN |" in again.stdout
    # every run finished: no worker is started, the table is assembled from the runs as they are
    stamps = _stamps(out)
    third = _cv(tiny_corpus, out, cache, "--jobs", "2")
    assert not re.search(r"\d+ workers? \(", third.stderr) and third.stdout == again.stdout
    assert _stamps(out) == stamps and _folds(out) == sequential
    rows = json.loads((out / "results.json").read_text())["folds"]["acrnn"]
    assert all(r["reused"] for r in rows)


@pytest.mark.slow
def test_shards_then_a_plain_cv_assembles_without_retraining(tiny_corpus, tmp_path,
                                                             sequential):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    first = _cv(tiny_corpus, out, cache, "--shard", "0/2")
    assert _trained(first.stderr) == ["acrnn fold 0"]
    assert "share 0/2: trained 1, reused 0 of its runs" in first.stdout
    assert not (out / "results.json").exists() and not (out / "reports").exists()
    assert not (out / "acrnn" / "fold01").exists()

    # a Slurm array task (--array=1-2: ids 1 and 2) takes its share from the variables
    slurm = {**ENV, "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2",
             "SLURM_ARRAY_TASK_MIN": "1"}
    second = _cv(tiny_corpus, out, cache, env=slurm)
    assert "share 1/2 of the runs from the Slurm job array" in second.stderr
    assert _trained(second.stderr) == ["acrnn fold 1"]
    assert not (out / "results.json").exists()

    stamps = _stamps(out)
    table = _cv(tiny_corpus, out, cache, "--figure-format", "png")  # (the last value counts)
    assert _trained(table.stderr) == [] and table.stderr.count("(reused)") == 2
    assert _stamps(out) == stamps  # nothing retrained, nothing rewritten
    assert _folds(out) == sequential
    assert (out / "reports" / "table.md").is_file() and (out / "config.json").is_file()
    # the figures of runs the shards trained: drawn from their checkpoints
    assert {p.name for p in (out / "reports").iterdir()} >= {"confusion_matrices.png",
                                                              "training_curves.png"}
    options = json.loads((out / "config.json").read_text())["options"]
    assert "shard" not in options and "jobs" not in options  # (typed each time, see below)
    # a one-task Slurm array is every run: it writes the table (a typed --shard 0/1 is a share)
    (out / "results.json").unlink()
    one = _cv(tiny_corpus, out, cache, env={**ENV, "SLURM_ARRAY_TASK_ID": "0",
                                            "SLURM_ARRAY_TASK_COUNT": "1",
                                            "SLURM_ARRAY_TASK_MIN": "0"})
    assert _trained(one.stderr) == [] and "| ACRNN |" in one.stdout
    assert (out / "results.json").is_file()
    for extra in ([], ["--jobs", "2"]):  # (every run finished: no worker is started)
        share = _cv(tiny_corpus, out, cache, "--shard", "0/1", *extra)
        assert "share 0/1: trained 0, reused 2" in share.stdout
        assert not re.search(r"\d+ workers? \(", share.stderr)
        assert not (out / "results.json").exists()
    # a job array larger than the plan: its last tasks have nothing to do, with --jobs too
    for extra in ([], ["--jobs", "2"]):
        idle = _cv(tiny_corpus, tmp_path / "idle", cache, "--shard", "2/3", *extra)
        assert _trained(idle.stderr) == [] and not (tmp_path / "idle" / "acrnn").exists()
        assert ("has none of the 2 runs" if extra else "trained 0, reused 0") in \
            idle.stdout + idle.stderr
        assert not extra or "trained 0" not in idle.stdout + idle.stderr  # (said once)


@pytest.mark.slow
def test_workers_keep_their_threads_and_a_run_without_its_best_pt_is_trained_again(
        tiny_corpus, tmp_path):
    """However many workers a call starts, each computes with the threads of N = --jobs
    workers (the thread count changes a run's numbers): a run trained again after the others
    finished ends as it did the first time. A run whose best.pt is gone is not finished: a
    worker trains it, and the table does not call it reused."""
    i = OPTIONS.index("--threads")
    options = OPTIONS[:i] + OPTIONS[i + 2:]  # the cores shared out by cv itself
    out, cache = tmp_path / "cv", tmp_path / "cache"

    def cv():
        proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic",
                               str(tiny_corpus), "--out", str(out), "--cache", str(cache),
                               *options, *NO_FIGURES, "--jobs", "2"], capture_output=True,
                              text=True, timeout=600, env=ENV)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads((out / "acrnn" / "fold01" / "result.json").read_text())
        rows = json.loads((out / "results.json").read_text())["folds"]["acrnn"]
        return proc.stderr, result["history"], [r["reused"] for r in rows]

    threads = max(1, cpu_cores() // 2)
    err, history, reused = cv()
    assert f"2 workers ({threads} thread(s) each)" in err and reused == [False, False]
    shutil.rmtree(out / "acrnn" / "fold01")
    err, again, reused = cv()
    assert f"1 worker ({threads} thread(s) each)" in err and reused == [True, False]
    assert again == history
    (out / "acrnn" / "fold01" / "best.pt").unlink()
    err, again, reused = cv()
    assert f"1 worker ({threads} thread(s) each)" in err and reused == [True, False]
    assert again == history


@pytest.mark.slow
def test_a_crashed_worker_is_named_and_the_others_finish(tiny_corpus, tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    (out / "acrnn").mkdir(parents=True)
    (out / "acrnn" / "fold01").write_text("a file where worker 1's run folder goes")
    proc = _cv(tiny_corpus, out, cache, "--jobs", "2", "--quiet", code=1)
    assert "worker 1 (--shard 1/2: acrnn fold 1) exited with status 2" in proc.stderr
    assert "fold01" in proc.stderr.split("the end of its log")[1]  # the worker's own error
    assert (out / "acrnn" / "fold00" / "result.json").is_file()
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_a_locked_run_is_skipped_by_a_shard_and_awaited_by_the_assembly(tiny_corpus, tmp_path,
                                                                        sequential):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    with folder_lock(out / "acrnn" / "fold00", wait=False) as held:  # "another process"
        assert held
        shard = _cv(tiny_corpus, out, cache, "--shard", "0/2")  # (fold 0 alone)
        assert f"skipped acrnn fold 0: pid {os.getpid()} on " in shard.stderr
        assert _trained(shard.stderr) == []
        assert "skipped 1 (being trained elsewhere)" in shard.stdout
        other = _cv(tiny_corpus, out, cache, "--shard", "1/2")
        assert _trained(other.stderr) == ["acrnn fold 1"]
        log = tmp_path / "assembly.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(_args(tiny_corpus, out, cache), stdout=subprocess.DEVNULL,
                                    stderr=fh, text=True, env=ENV)
        deadline = time.time() + 300
        while "waiting for acrnn fold 0" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None  # it waits while the lock is held
        # a train into that run's folder meanwhile: refused, one line, nothing written
        train = subprocess.run(
            [sys.executable, "-m", "ssa_fast.cli", "train", "synthetic", str(tiny_corpus),
             "--out", str(out / "acrnn" / "fold00"), "--model", "acrnn", "--folds", "2",
             "--fold", "0", "--overwrite", "--cache", str(cache), *OPTIONS[OPTIONS.index(
                 "--preset"):]], capture_output=True, text=True, timeout=300, env=ENV)
        assert train.returncode == 2 and train.stderr.count("\n") == 1, train.stderr
        assert f"pid {os.getpid()} on " in train.stderr and "is training in it" in train.stderr
        assert [p.name for p in (out / "acrnn" / "fold00").iterdir()] == [".lock"]
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    err = log.read_text()
    assert f"waiting for acrnn fold 0: pid {os.getpid()} on " in err
    assert _trained(err) == ["acrnn fold 0"]  # trained once the lock was released
    assert _folds(out) == sequential


def test_two_invocations_on_one_out_never_train_a_run_twice(tiny_corpus, tmp_path, sequential):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    procs = [subprocess.Popen(_args(tiny_corpus, out, cache), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        errs.append(err)
    a, b = (_trained(e) for e in errs)
    assert sorted(a + b) == RUNS, errs  # every run trained by exactly one of them
    assert _folds(out) == sequential


def test_bad_parallel_options_one_line_exit_2(tiny_corpus, tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    cases = [(["--jobs", "100000"], "--jobs 100000: only "),
             (["--shard", "2/2"], "--shard: expected I/N with 0 <= I < N"),
             (["--shard", "0/0"], "--shard: expected I/N"),
             (["--shard", "x"], "--shard: expected I/N")]
    for extra, expected in cases:
        proc = _cv(tiny_corpus, out, cache, *extra, code=2)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], proc.stderr
    listed = {**ENV, "SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3",
              "SLURM_ARRAY_TASK_MIN": "1"}  # --array=1,2,4: not a range
    proc = _cv(tiny_corpus, out, cache, env=listed, code=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Slurm array task 4" in lines[0], proc.stderr
    assert not out.exists()  # refused before any work


def test_workers_end_with_their_parent(tiny_corpus, tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    proc = subprocess.Popen(_args(tiny_corpus, out, cache, "--jobs", "2", "--epochs", "500",
                                  "--quiet"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    locks = [out / "acrnn" / f"fold0{f}" / ".lock" for f in (0, 1)]
    workers, deadline = [], time.time() + 300
    while len(workers) < 2 and time.time() < deadline:
        holders = [p.read_text() if p.is_file() else "" for p in locks]
        workers = [int(h.split()[1]) for h in holders if h.startswith("pid ")]
        time.sleep(0.05)
    assert len(workers) == 2 and proc.poll() is None
    proc.kill()  # SIGKILL: the parent cannot stop them itself
    proc.wait(timeout=60)
    deadline = time.time() + 60
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)  # 500 epochs would take minutes
    assert not any((p.parent / "result.json").exists() for p in locks)

