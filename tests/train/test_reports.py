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


@pytest.mark.slow
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


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_confusion_figure_shows_the_tables_per_class_recall_and_uar(cv_run):
    """The folds differ in size (16, 8, 8 test utterances): a matrix summed over them weighs
    the large fold more than the table does. The figure shows the mean over folds of each
    fold's normalised matrix: its diagonal is the table's recall column, which averages to the
    table's UAR, and it says so, and that these are the test utterances."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ssa_fast.reports.experiment import confusions_figure

    out, r, _ = cv_run
    assert [f["n_test"] for f in r["folds"]["acrnn"]] == [16, 8, 8]
    table = (out / "reports" / "table.md").read_text()
    assert "per-class recall: mean over folds" in table.splitlines()[0]
    fig = confusions_figure(r)
    try:
        title = " ".join(fig.get_suptitle().split())
        assert title.startswith("Held-out test utterances: mean over the 3 folds of each "
                                "fold's row-normalised matrix")
        assert "Diagonal: the table's per-class recall" in title
        for ax, (m, v) in zip(_panels(fig), r["summary"].items(), strict=True):
            shown = np.array([float(t.get_text()) for t in ax.texts]).reshape(4, 4)
            assert np.diag(shown) == pytest.approx(v["utterance_recall"], abs=0.005), m
            row = next(line for line in table.splitlines() if line.startswith(f"| {v['name']} "))
            recall = [int(x) for x in row.rstrip(" |").rsplit("|", 1)[1].split(" / ")]
            assert 100 * np.diag(shown) == pytest.approx(recall, abs=0.51), m
            # the title's UAR (the table's) is the mean of the diagonal shown
            uar = float(ax.get_title().split("UAR ")[1].split(" ")[0])
            assert uar == pytest.approx(100 * np.diag(shown).mean(), abs=0.5), m
            assert f"| {uar:.2f} ± " in row
    finally:
        plt.close(fig)


def test_last_k_over_fewer_epochs_says_so(cv_run):
    """2 epochs run, 'last 3' asked for (the default): the mean is over 2 epochs in every fold,
    and the table says so; results.json and the CSV hold the count per fold."""
    import csv

    from ssa_fast.reports.experiment import what_is_reported

    out, r, stdout = cv_run
    assert r["last_k"] == 3
    for m in ("acrnn", "ssa-crnn"):
        assert r["summary"][m]["last_k_epochs"] == [2, 2, 2]
    said = ("'last 3': mean over the last 3 epochs, or all of a fold's epochs where it ran "
            "fewer (epochs averaged: ACRNN 2 in every fold; SSA-CRNN 2 in every fold), on the "
            "test set.")
    assert said in (out / "reports" / "table.md").read_text() and said in stdout
    with (out / "reports" / "table.csv").open() as fh:
        assert [row["last_3_epochs"] for row in csv.DictReader(fh)] == ["2 2 2", "2 2 2"]
    # one fold of 3 epochs: the counts fold by fold; every fold at k: nothing said
    s = r["summary"]
    three = {**r, "summary": {"acrnn": {**s["acrnn"], "last_k_epochs": [3, 2, 3]},
                              "ssa-crnn": {**s["ssa-crnn"], "last_k_epochs": [3, 3, 3]}}}
    assert "(epochs averaged: ACRNN, fold by fold, 3, 2 and 3), on" in what_is_reported(three)
    full = {**r, "summary": {m: {**v, "last_k_epochs": [3, 3, 3]} for m, v in s.items()}}
    assert "'last 3': mean over the last 3 epochs on the test set." in what_is_reported(full)
    # on the paper's protocol, early stopping decided on the scored utterances where the
    # window ends: the sentence does not claim that nothing was chosen on them
    val = {**full, "reported_on": "validation"}
    assert "with no choice of epoch." in what_is_reported(val)
    stopped = what_is_reported({**val, "config": {**r["config"], "patience": 1}})
    assert "no choice of epoch" not in stopped
    assert "though early stopping (patience 1) decided on them where training ended" in stopped


def test_selection_split_sentence_gives_the_share_of_phrases_and_the_sizes(cv_run):
    """The linguistic protocol selects a share of the training phrases, not of the
    utterances: 30% of 2 or 3 phrases is 1 phrase, 8 of 16 or 8 of 24 utterances. The sentence
    says phrases and gives the sizes each fold recorded."""
    out, r, _ = cv_run
    sizes = [(f["n_val"], f["n_train"] + f["n_val"]) for f in r["folds"]["acrnn"]]
    assert sizes == [(8, 16), (8, 24), (8, 24)]
    assert "validation split of 30% of the fold's training phrases (8 of 16, 8 of 24 and 8 of "\
        "24 training utterances, fold by fold), never on the test set." in \
        (out / "reports" / "table.md").read_text()


def test_table_marks_a_model_summarised_over_fewer_folds(cv_run, tmp_path):
    """summarise + write_table of partial results (Python API): a model over 2 of the run's
    3 folds has its number of folds by its name in the Markdown, as in the CSV."""
    import csv

    from ssa_fast.reports import write_table
    from ssa_fast.train.cv import summarise

    _, r, _ = cv_run
    partial = summarise(r["folds"]["ssa-crnn"][:2], True, r["last_k"], "SSA-CRNN")
    md = write_table({**r, "summary": {**r["summary"], "ssa-crnn": partial}}, tmp_path)
    assert "3 folds;" in md.splitlines()[0]
    assert "\n| SSA-CRNN (2 folds) | " in md and "\n| ACRNN | " in md
    with (tmp_path / "table.csv").open() as fh:
        assert [(row["model"], row["folds"]) for row in csv.DictReader(fh)] == \
            [("ACRNN", "3"), ("SSA-CRNN", "2")]
