"""What the reports of a real `ssa-fast cv` say about its numbers: one run of the CLI on the tiny
generated corpus (tests/train/conftest.py) with the linguistic protocol, whose 3 folds differ in
size (16, 8 and 8 held-out utterances), a selection split and 2 epochs, fewer than the table's
last 3. Each test reads what that run wrote (results.json, reports/) or draws its figures again
from its results.json."""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["--preset", "small", "--batch-size", "8", "--segment-frames", "100", "--threads", "1",
         "--quiet"]


@pytest.fixture(scope="module")
def cv_run(tiny_corpus, tmp_path_factory):
    """(the run's folder, its results.json, its stdout)."""
    out = tmp_path_factory.mktemp("reports") / "cv"
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic", str(tiny_corpus), "--out",
         str(out), "--cache", str(out.parent / "cache"), "--protocol", "linguistic", "--folds",
         "3", "--models", "acrnn", "ssa-crnn", "--epochs", "2", "--selection-split", "0.3",
         "--lr", "3e-3", *SMALL], capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_results_config_names_no_model_it_did_not_train(cv_run):
    """cv trains several models: its config holds the options they share, and names none of
    them (it named TrainConfig's default model, which this run never trained)."""
    out, r, _ = cv_run
    assert r["identity"]["models"] == ["acrnn", "ssa-crnn"]
    assert "model" not in r["config"]
    assert [f["identity"]["train"]["model"] for f in r["folds"]["ssa-crnn"]] == ["ssa-crnn"] * 3
    # what the reports read from it is still there: the preset and the selection level
    assert r["config"]["preset"] == "small" and r["config"]["select_by"] == "utterance"
    assert r["config"]["epochs"] == 2 and r["config"]["lr"] == 3e-3
    assert (out / "reports" / "table.md").is_file()
