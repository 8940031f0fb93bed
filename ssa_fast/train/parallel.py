"""Independent (model, fold) runs of a cross-validation in parallel: shares and worker processes.

The unit of work is one run of :func:`cv.plan_runs`'s fixed list; share ``I/N`` (I counted from
0) is the runs ``[I::N]``. Shares are disjoint and together cover every run, so any scheduler can
drive them: ``cv --shard I/N`` trains one share, a Slurm job array gives each task its share
(:func:`slurm_share`), and ``cv --jobs J`` starts J worker processes on this machine, each the
command line itself with a share (one per visible GPU, or J CPU processes with cores // J
threads each). Every run is trained under the lock of its folder (cv.py), so workers and
independent invocations never train the same run; each worker's output goes to its own log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .._process import end_with_parent
from ..errors import UserError

SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN")


def parse_share(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N; ValueError with the expected form otherwise."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        i = n = None
    if i is None or not 0 <= i < n:
        raise ValueError(f"expected I/N with 0 <= I < N (I counts from 0), got {text!r}")
    return i, n


def slurm_share(environ=os.environ) -> tuple[int, int] | None:
    """The share of a Slurm job-array task: (task id - min id) / step of N = task count; None
    outside a job array. UserError when the array's ids are not a range (a list like 1,4,9)."""
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return None
    try:
        task, count, low = (int(environ.get(name, "")) for name in SLURM)
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except ValueError:
        raise UserError("the Slurm job-array variables " + ", ".join(
            f"{name}={environ.get(name)!r}" for name in SLURM)
            + " are not integers; give the share with --shard I/N") from None
    if step < 1:
        raise UserError(f"the Slurm job-array variable SLURM_ARRAY_TASK_STEP={step} is not a "
                        "step (expected at least 1); give the share with --shard I/N")
    i, rest = divmod(task - low, step)
    if rest or not 0 <= i < count:
        raise UserError(f"Slurm array task {task} (min {low}, step {step}, {count} tasks) is "
                        "not in an evenly spaced range of task ids; use --array=0-(N-1) or "
                        "give the share with --shard I/N")
    return i, count


def sub_share(share: tuple[int, int] | None, j: int, jobs: int) -> tuple[int, int]:
    """Share ``j`` of ``jobs`` within ``share``: runs[i::n][j::jobs] == runs[i + n*j::n*jobs]."""
    i, n = share or (0, 1)
    return i + n * j, n * jobs


def worker_count(left: list[int], jobs: int) -> int:
    """How many workers train the runs left: ``left`` are their positions in the share's list
    of runs (worker j of m takes the positions j, j + m, ..., sub_share). The fewest workers that
    need no more rounds than ``jobs`` of them would (each is a process start, and on CUDA a
    GPU); 0 when no run is left. (Two runs left at positions 1 and 3 both fall to one worker
    of two; three workers train them side by side, the third with none of them.)"""
    if not left:
        return 0

    def rounds(m: int) -> int:  # (the most runs one worker of m takes)
        return max(Counter(k % m for k in left).values())

    return min(range(1, jobs + 1), key=lambda m: (rounds(m), m))


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices a worker can be given (CUDA_VISIBLE_DEVICES entries, or indices)."""
    import torch

    n = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()][:n]
    return [str(d) for d in range(n)]


def check_jobs(jobs: int, device: str) -> None:
    """Refuse more workers than this machine has GPUs (CUDA) or cores (CPU)."""
    if jobs <= 1:
        return
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise UserError(f"--jobs {jobs}: not under torchrun (its ranks already share the "
                        "work); use --jobs 1")
    if device.startswith("cuda"):
        if device != "cuda":
            raise UserError(f"--jobs {jobs} with --device {device}: the workers take one GPU "
                            "each; use --device cuda (and CUDA_VISIBLE_DEVICES to choose GPUs)")
        gpus = visible_gpus()
        if jobs > len(gpus):
            raise UserError(f"--jobs {jobs}: only {len(gpus)} CUDA device(s) are visible (one "
                            "worker per GPU)")
    elif jobs > cpu_cores():
        raise UserError(f"--jobs {jobs}: only {cpu_cores()} CPU core(s) are available to this "
                        "process (one worker per core at most)")


PARENT = "SSA_FAST_CV_PARENT"  # a worker's environment: the pid of the cv that started it


def follow_parent() -> None:
    """In a worker of ``cv --jobs``: end (SIGTERM) when the cv that started it ends, so that no
    orphan goes on training after its parent was killed (Linux; elsewhere a no-op). Set here,
    not before the exec: a child of a threaded process runs no Python code before it."""
    parent = os.environ.pop(PARENT, None)
    if parent is not None:
        end_with_parent(int(parent), signal.SIGTERM)


def _tail(path: Path, lines: int = 12) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:]]


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def run_workers(argv: list[str], runs: list, out_dir: str | Path, *, jobs: int, device: str,
                threads: int, share: tuple[int, int] | None = None, progress: bool = True,
                say=print) -> list[str]:
    """Start ``jobs`` workers ``python -m ssa_fast.cli <argv> --jobs 1 --shard S`` (S: their
    shares of ``share``, :func:`sub_share`), one per visible GPU on CUDA or with ``threads``
    threads each on the CPU; wait for all of them, showing the finished
    runs of ``runs`` (cv.plan_runs) as they appear. Each worker's output goes to
    OUT/logs/shard-I-of-N.log. Returns a description of each worker that failed (its status, its
    runs and the end of its log); the others run to their end regardless."""
    from tqdm import tqdm

    from .._lock import folder_lock
    from .cv import finished_result

    out_dir = Path(out_dir)
    shares = [sub_share(share, j, jobs) for j in range(jobs)]
    owner = {}  # run index -> worker
    for j, (i, n) in enumerate(shares):
        owner.update({r: j for r in range(i, len(runs), n)})
    gpus = visible_gpus() if device.startswith("cuda") else None
    with folder_lock(out_dir / "logs", wait=False) as own_logs:
        logs = out_dir / "logs" / ("" if own_logs else f"pid{os.getpid()}")
        logs.mkdir(parents=True, exist_ok=True)
        procs = []
        for j, (i, n) in enumerate(shares):
            env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT: str(os.getpid())}
            extra = ["--jobs", "1", "--shard", f"{i}/{n}"]
            if gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpus[j]
            else:
                env["OMP_NUM_THREADS"] = str(threads)
                extra += ["--threads", str(threads)]
            log = logs / f"shard-{i}-of-{n}.log"
            with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
                procs.append((subprocess.Popen(
                    [sys.executable, "-m", "ssa_fast.cli", *argv, *extra], stdout=fh,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env), log))
        say(f"{len(procs)} worker{'s' * (len(procs) > 1)} "
            f"({'one per GPU' if gpus else f'{threads} thread(s) each'}), logs in {logs}")
        done = {r for r in owner if finished_result(runs[r]) is not None}
        bar = tqdm(total=len(owner), initial=len(done), desc="cross-validation", unit="run",
                   disable=None if progress else True)
        lines = progress and not sys.stderr.isatty()
        try:
            while True:
                running = any(p.poll() is None for p, _ in procs)
                for r in sorted(set(owner) - done):
                    result = finished_result(runs[r])
                    if result is None:
                        continue
                    done.add(r)
                    bar.update()
                    if lines:
                        run = runs[r]
                        print(f"{run.model} fold {run.fold} of {runs[-1].fold + 1}: utterance "
                              f"UAR {100 * result['utterance_uar']:.2f} % (worker {owner[r]})",
                              file=sys.stderr, flush=True)
                if not running:
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:  # Ctrl-C: every worker stops too (its files stay whole)
            for p, _ in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            for p, _ in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
            raise
        finally:
            bar.close()
    failed = []
    for j, ((p, log), (i, n)) in enumerate(zip(procs, shares, strict=True)):
        if p.returncode == 0:
            continue
        names = [runs[r].name for r in range(i, len(runs), n)]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        failed.append(f"worker {j} (--shard {i}/{n}: {shown}) {_status(p.returncode)}; "
                      f"the end of its log {log}:\n"
                      + "\n".join(f"    {line}" for line in _tail(log)))
    return failed
