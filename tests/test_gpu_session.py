"""The GPU session script works the first time: every stage's plumbing runs here on the CPU at
tiny sizes (``--dry-run``), bad stage names are refused, and the per-test alarm of the test stage
stops a hanging test where pytest-timeout is not installed."""

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "gpu_session" / "gpu_session.sh"


def _script_env(**extra) -> dict:
    """This environment for a session script, without what the outer test run sets."""
    env = {**os.environ, "PYTHON": sys.executable, **extra}
    env.pop("TRITON_INTERPRET", None)  # the script sets what each mode needs
    for key in [k for k in env if k.startswith("PYTEST_XDIST") or k == "PYTEST_CURRENT_TEST"]:
        del env[key]  # (under pytest -n the inner pytest-benchmark would disable itself)
    return env


def _session(*args, tmp_path, timeout=1200, **env):
    env = _script_env(OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), **env)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)


def test_stage_names_are_checked(tmp_path):
    proc = _session(tmp_path=tmp_path)
    assert proc.returncode == 2 and "probe" in proc.stderr  # the usage
    proc = _session("--dry-run", "probe", "bechn", tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown stage 'bechn'" in proc.stderr


@pytest.mark.slow  # ~40 s of CPU: eight Python processes, each stage's rows at tiny sizes
@pytest.mark.skipif(bool(os.environ.get("SSA_FAST_IN_SESSION")),
                    reason="inside a GPU session, whose real stages are the test")
def test_dry_run_of_every_stage(tmp_path):
    proc = _session("--dry-run", "probe", "tests", "bench", "train", "demo", tmp_path=tmp_path)
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    for stage in ("probe", "tests", "bench", "train", "demo"):
        mine = [f for f in files if f.startswith(stage + ".")]
        assert f"{stage}.md" in mine and len(mine) <= 4, files  # 5 stages x <= 4 files
    probe = (out / "probe.md").read_text()
    assert "DRY RUN" in probe and "FAIL" not in probe
    for check in ("logmel_delta triton", "ssa_attention triton fwd+bwd float32",
                  "ssa_attention triton fwd+bwd bfloat16", "l1_project_ triton",
                  "ssa-crnn-r small B=2 bf16 train step"):
        assert re.search(rf"\| {re.escape(check)}.*\| ok \|", probe), check
    tests = (out / "tests.md").read_text()
    assert re.search(r"collected (\d+); passed \1, failed 0", tests), tests
    bench = (out / "bench.md").read_text()
    assert "Ceilings measured in this run" in bench
    for group in ("### logmel_delta cpu", "### ssa_attention fwd+bwd cpu", "### l1_project_ cpu"):
        assert group in bench, bench
    assert re.search(r"\| triton \|.*\((memory|flops)\) \|", bench)  # every row has its floor
    train = (out / "train.md").read_text()
    assert "### ssa-crnn-r small train step cpu" in train and "bf16_cl" in train
    assert "eager_fp32_reference" in train and "segments/s" in train
    assert "demo_logmel_delta" in (out / "demo.md").read_text()


@pytest.mark.slow  # ~60 s of CPU: a tiny cv and a compile of the small model
@pytest.mark.skipif(bool(os.environ.get("SSA_FAST_IN_SESSION")),
                    reason="inside a GPU session, whose real stages are the test")
def test_dry_run_of_the_cv10_and_compile_stages(tmp_path):
    proc = _session("--dry-run", "cv10", "compile", tmp_path=tmp_path)
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    cv10 = (out / "cv10.md").read_text()
    assert re.search(r"wall time of the command: \d+ s", cv10), cv10
    assert re.search(r"[\d,]+ segments/s inside the training steps", cv10), cv10
    assert "| training steps |" in cv10 and "| SSA-CRNN-r |" in cv10
    compile_md = (out / "compile.md").read_text()
    assert re.search(r"\| regional \| [\d.]+ .*\| (True|False) \|", compile_md), compile_md
    assert re.search(r"\| eager \| [\d.]+ .*\| 1.00x \|", compile_md), compile_md


def test_test_stage_alarm_stops_a_hanging_test(tmp_path):
    (tmp_path / "test_hang.py").write_text(
        "import time\n\ndef test_hangs():\n    time.sleep(60)\n\ndef test_fine():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SSA_FAST_SESSION_OUT": str(tmp_path),
           "SSA_FAST_TEST_TIMEOUT": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "gpu_session.session_plugin", "test_hang.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stdout
    summary = (tmp_path / "tests.md").read_text()
    assert "passed 1, failed 1" in summary and "TimeoutError" in summary, summary


@pytest.mark.slow  # ~70 s of CPU: a few tests under xdist beside the CLI stage's commands
@pytest.mark.skipif(bool(os.environ.get("SSA_FAST_IN_SESSION")),
                    reason="inside a GPU session, whose real stages are the test")
def test_dry_run_of_the_one_call_lease(tmp_path):
    """gpu_lease.sh: the tests beside the CLI stage, every summary back in DEST (at most 8
    files), the logs packed; the CLI stage's commands all succeed. (The probe's dry run is in
    test_dry_run_of_every_stage.)"""
    dest = tmp_path / "dest"
    env = _script_env(DRY="1", DEST=str(dest), GS_DIR=str(tmp_path / "gs"),
                      WORK=str(tmp_path / "work"), TESTS="tests/test_backend.py",
                      TEST_K="unknown_backend", TEST_WORKERS="2", STAGES1="", STAGES3="",
                      P2="1100")  # (a slow CI machine: no budget cut)
    proc = subprocess.run(["bash", str(ROOT / "gpu_session" / "gpu_lease.sh")], capture_output=True,
                          text=True, timeout=1500, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in dest.iterdir())
    assert {"tests.md", "cli.md", "session.tgz"} <= set(files) and len(files) <= 8
    cli = (dest / "cli.md").read_text()
    assert "0 command(s) failed" in cli, cli
    for command in ("synth", "train_bf16", "evaluate", "predict", "features", "cv_bf16",
                    "resume", "cv_again"):
        assert re.search(rf"\| `{command}` \| 0 \|", cli), (command, cli)
    assert "| ACRNN-r |" in cli  # the cv table came back
    tests = (dest / "tests.md").read_text()
    assert re.search(r"collected (\d+); passed \1, failed 0", tests), tests
    with tarfile.open(dest / "session.tgz") as tgz:  # the logs, packed from where they were
        packed = tgz.getnames()
    assert "gs/tests.stdout" in packed and any(n.startswith("work/") for n in packed), packed


@pytest.mark.slow  # ~1 min of CPU: synth, a warm-up run, then 1 and 2 concurrent cv processes
@pytest.mark.skipif(bool(os.environ.get("SSA_FAST_IN_SESSION")),
                    reason="inside a GPU session, whose real stages are the test")
def test_dry_run_of_the_concurrent_cv_stage(tmp_path):
    proc = _session("--dry-run", "cvpar", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    table = (tmp_path / "out" / "cvpar.md").read_text()
    assert "DRY RUN" in table
    for k in (1, 2):
        assert re.search(rf"^\| {k} \| [\d.]+ \| [\d.]+ \| [\d.]+x \| ok \|$", table, re.M), table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["cvpar.json", "cvpar.log", "cvpar.md"]
