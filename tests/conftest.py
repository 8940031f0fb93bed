"""Test configuration.

Triton kernels run on the CPU through Triton's interpreter unless a CUDA GPU is present; the
variable must be set before any @triton.jit runs, hence before ssa_fast is imported.

Under ``pytest -n N`` (``make test``) the cores are shared out: each worker, and the command-line
processes its tests start, computes with cores / N threads, not with every core each (N workers
of all-core thread pools oversubscribe the machine). Freed memory stays in each process, as in
the command line (ssa_fast/_malloc.py).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from helpers import backends_for_tests, run_cli  # noqa: E402

try:  # CI's verdict depends on the commit alone: there the property tests
    # (test_hostile_inputs.py) draw the same examples on every run (.ci/run sets
    # SSA_FAST_HYPOTHESIS_PROFILE=ci); elsewhere they draw new ones each run, and a failure
    # prints the blob that reproduces it
    from hypothesis import settings
except ImportError:  # (a dev dependency, which the other tests do not need)
    pass
else:
    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.load_profile(os.environ.get("SSA_FAST_HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    from ssa_fast import keep_freed_memory

    keep_freed_memory()  # as the command line does (the tests train in this process too)
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers and workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the processes the tests start


@pytest.fixture(autouse=True)
def _torch_threads_kept():
    """A test that runs the command line in this process (`ssa_fast.cli.main([..., "--threads",
    "1"])`) sets torch's thread count for the process: the tests after it get the count back."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(params=backends_for_tests())
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(best.pt, corpus folder) of a 1-epoch SSA-CRNN-r on the tiny synthetic corpus, trained
    by the command line."""
    tmp = tmp_path_factory.mktemp("trained")
    corpus = tmp / "corpus"
    for args in (("synth", "--out", corpus, "--size", "tiny", "--phrases", "4", "--quiet"),
                 ("train", "synthetic", corpus, "--out", tmp / "run", "--model", "ssa-crnn-r",
                  "--folds", "2", "--preset", "small", "--epochs", "1", "--batch-size", "8",
                  "--segment-frames", "100", "--cache", tmp / "cache", "--quiet")):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
    return tmp / "run" / "best.pt", corpus
