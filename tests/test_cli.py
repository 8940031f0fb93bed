"""The `ssa-fast` command line, run as a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import librosa_logmel_delta, signal_when

import ssa_fast.cli

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ssa_fast.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_help_of_every_subcommand():
    subs = ("synth", "features", "train", "cv", "evaluate", "predict", "demo", "bench")
    for sub in subs:
        proc = _cli(sub, "--help")
        assert proc.returncode == 0 and "usage: ssa-fast " + sub in proc.stdout
    parser = ssa_fast.cli.build_parser()
    assert set(subs) == set(parser._subparsers._group_actions[0].choices)


def test_help_version_option_errors_and_synth_import_no_torch(tmp_path):
    """What needs no model answers without importing torch (about 1.2 s of a command's start):
    every command's --help but bench's (its choices are the timed workloads), --version, an
    option's or a command's misspelling, an option refused by its type, and synth."""
    script = f"""
import contextlib, io, json, sys
from ssa_fast.cli import main
out = []
for argv in ([["--help"], ["--version"], ["cvs"],
              ["cv", "synthetic", "y", "--out", "z", "--epoch", "2"],
              ["train", "synthetic", "x", "--out", "y", "--batch-size", "0"]]
             + [[c, "--help"] for c in ("synth", "cv", "train", "evaluate", "predict",
                                         "features", "demo")]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    out.append((" ".join(argv), status, err.getvalue()))
status = main(["synth", "--out", {str(tmp_path / "corpus")!r}, "--size", "tiny", "--phrases",
               "1", "--jobs", "1", "--quiet"])
out.append(("synth", status, ""))
print(json.dumps(dict(runs=out, torch="torch" in sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert not report["torch"]
    statuses = [status for _, status, _ in report["runs"]]
    assert statuses == [0, 0, 2, 2, 2] + [0] * 7 + [0], report["runs"]
    errors = "".join(err for _, _, err in report["runs"])
    assert "invalid choice: 'cvs'" in errors
    assert "unrecognized arguments: --epoch 2" in errors  # (never read as --epochs)
    assert "--batch-size: expected an integer >= 1" in errors
    assert len(list((tmp_path / "corpus" / "wav").glob("*.wav"))) == 8


def test_synth_command(tmp_path):
    proc = _cli("synth", "--out", str(tmp_path), "--size", "tiny", "--phrases", "1", "--quiet",
                "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 8 utterances" in proc.stdout
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 8
    assert (tmp_path / "manifest.csv").read_text().startswith("path,speaker,label,phrase")


@pytest.mark.slow
def test_cv_command_end_to_end(tmp_path):
    corpus = tmp_path / "corpus"
    assert _cli("synth", "--out", str(corpus), "--size", "tiny", "--phrases", "3",
                "--quiet").returncode == 0
    proc = _cli("cv", "synthetic", str(corpus), "--out", str(tmp_path / "cv"), "--models",
                "acrnn", "ssa-crnn-r", "--protocol", "random", "--folds", "2", "--preset",
                "small", "--epochs", "1", "--batch-size", "8", "--segment-frames", "100",
                "--cache", str(tmp_path / "cache"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "| SSA-CRNN-r |" in proc.stdout
    for name in ("table.md", "table.csv", "confusion_matrices.png", "tsne.png", "attention.png"):
        assert (tmp_path / "cv" / "reports" / name).is_file(), name
    # where the time went: printed last, stored for the command and for every run
    assert proc.stderr.strip().splitlines()[-1].startswith("time ")
    timing = json.loads((tmp_path / "cv" / "results.json").read_text())["timing"]
    runs = [json.loads(p.read_text())["timing"]
            for p in sorted((tmp_path / "cv").glob("*/fold*/result.json"))]
    assert len(runs) == 4
    for t in (timing, *runs):
        assert t["phases"]["training steps"] > 0 and t["other_s"] >= 0
        assert sum(t["phases"].values()) <= t["total_s"] + 1e-3
    assert {"features", "data", "validation", "reports"} <= set(timing["phases"])
    steps = sum(r["phases"]["training steps"] for r in runs)
    assert abs(timing["phases"]["training steps"] - steps) < 1e-3  # the runs', added up

    # predict with the trained SSA model, on a file of the corpus and on a corrupt one
    wav = sorted((corpus / "wav").glob("spk01_sad_*.wav"))[0]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    ckpt = tmp_path / "cv" / "ssa-crnn-r" / "fold00" / "best.pt"
    proc = _cli("predict", str(ckpt), str(wav), str(bad), "--speaker", "spk01", "--json",
                "--attention-plot", str(tmp_path / "att"))
    assert proc.returncode == 1 and "bad.wav" in proc.stderr  # reported, the rest still ran
    (res,) = json.loads(proc.stdout)
    assert res["emotion"] in ("neu", "hap", "sad", "ang")
    assert abs(sum(res["probabilities"].values()) - 1) < 1e-5 and len(res["segments"]) >= 1
    assert (tmp_path / "att" / (wav.stem + ".png")).is_file()


def test_features_command_writes_npy_and_skips_corrupt(tmp_path):
    rng = np.random.default_rng(0)
    good = []
    for i, n in enumerate([16000, 23456]):
        path = tmp_path / f"utt{i}.wav"
        sf.write(path, (0.2 * rng.standard_normal(n)).astype(np.float32), 16000)
        good.append(path)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file")
    # one sample at 44.1 kHz: nothing left at 16 kHz (a traceback that ended the run)
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, np.array([0.1], np.float32), 44100)
    out = tmp_path / "feats"
    proc = _cli("features", str(tiny), *map(str, good), str(bad), "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stderr  # 1: some inputs were skipped, the rest written
    assert "bad.wav" in proc.stderr and "skipped 2" in proc.stdout, proc.stdout + proc.stderr
    assert "tiny.wav: 1 sample(s) at 44100 Hz give no sample at 16000 Hz" in proc.stderr
    assert "Traceback" not in proc.stderr
    for path in good:
        feats = np.load(out / (path.stem + ".npy"))
        y, _ = sf.read(path, dtype="float32")
        truth = librosa_logmel_delta(y.astype(np.float64))
        assert feats.shape == truth.shape
        assert np.abs(feats - truth).max() < 1e-3


@pytest.mark.slow
def test_train_evaluate_predict_commands(tmp_path):
    corpus = tmp_path / "corpus"
    assert _cli("synth", "--out", str(corpus), "--size", "tiny", "--phrases", "4",
                "--quiet").returncode == 0
    common = ["--folds", "2", "--cache", str(tmp_path / "cache"), "--quiet"]
    run = tmp_path / "run"
    # the training options from a YAML file, one of them overridden on the command line
    (tmp_path / "run.yaml").write_text("model: ssa-crnn-r\nfold: 1\npreset: small\nepochs: 5\n"
                                       "batch-size: 8\nlr: 1.0e-3\nsegment_frames: 100\n")
    proc = _cli("train", "synthetic", str(corpus), "--out", str(run), "--config",
                str(tmp_path / "run.yaml"), "--epochs", "2", *common)
    assert proc.returncode == 0, proc.stderr
    assert "selected epoch" in proc.stdout
    saved = json.loads((run / "config.json").read_text())
    assert saved["options"]["epochs"] == 2 and saved["options"]["preset"] == "small"
    assert saved["options"]["lr"] == 1e-3 and saved["options"]["fold"] == 1
    assert saved["command"] == "train" and saved["corpus"] == "synthetic"
    import torch

    from ssa_fast.features import FeatureConfig

    bundle = torch.load(run / "best.pt", weights_only=True)["bundle"]
    assert bundle["feature_params"] == FeatureConfig().to_dict()  # every parameter, stored

    result = json.loads((run / "result.json").read_text())
    assert len(result["history"]) == 2
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"

    # evaluate on the same validation set reproduces the selected epoch's metrics exactly
    proc = _cli("evaluate", str(run / "best.pt"), "synthetic", str(corpus), "--fold", "1",
                "--json", *common)
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    assert ev["utterance_cm"] == result["utterance_cm"]
    assert ev["segment_cm"] == result["segment_cm"]
    assert ev["utterance_uar"] == result["utterance_uar"]
    assert ev["n_utterances"] == sum(map(sum, result["utterance_cm"]))
    # each prediction names its file: the fold's validation utterances, with their labels
    files = {p["file"]: p for p in ev["predictions"]}
    assert len(files) == ev["n_utterances"]
    assert all(Path(f).parent == corpus / "wav" and f"_{p['label']}_" in Path(f).name
               for f, p in files.items())
    cm = np.zeros_like(np.array(ev["utterance_cm"]))
    for p in ev["predictions"]:
        cm[ev["classes"].index(p["label"]), ev["classes"].index(p["predicted"])] += 1
    assert cm.tolist() == ev["utterance_cm"]

    # the whole corpus (training speakers' statistics), printed for a person; the utterances
    # the model was trained on are left out and counted
    proc = _cli("evaluate", str(run / "best.pt"), "synthetic", str(corpus), *common)
    assert proc.returncode == 0, proc.stderr
    n_train = 32 - ev["n_utterances"]
    assert f"excluded {n_train} of the 32 utterances" in proc.stderr
    assert f"{ev['n_utterances']} utterances" in proc.stdout and "confusion matrix" in proc.stdout

    # a fold out of range and a file that is not a checkpoint are clear errors
    proc = _cli("train", "synthetic", str(corpus), "--out", str(run), "--fold", "5", *common)
    assert proc.returncode == 2 and "--fold must be in [0, 2)" in proc.stderr
    proc = _cli("predict", str(run / "result.json"), str(next((corpus / "wav").iterdir())))
    assert proc.returncode == 2 and "result.json" in proc.stderr

    # predict: an unseen speaker falls back to per-utterance statistics
    wav = sorted((corpus / "wav").glob("*.wav"))[0]
    proc = _cli("predict", str(run / "best.pt"), str(wav), "--speaker", "nobody")
    assert proc.returncode == 0, proc.stderr
    assert "--speaker 'nobody' was not in training (the checkpoint's speakers: spk00, spk01): " \
        "normalised with each utterance's own statistics" in proc.stderr
    assert wav.name in proc.stdout


@pytest.mark.slow
def test_bench_command_prints_a_table():
    proc = _cli("bench", "--ops", "l1_project_", "ssa_attention", "--budget", "0.05", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| l1_project_")
            or line.startswith("| ssa_attention")]
    impls = {line.split("|")[3].strip() for line in rows}
    assert {"cpp", "reference", "literal"} <= impls
    for line in rows:
        assert float(line.split("|")[4]) > 0


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path):
    proc = _cli("demo", "--out", str(tmp_path), "--size", "tiny", "--folds", "2", "--epochs",
                "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for name in ("ACRNN", "ACRNN-r", "SSA-CRNN-r", "ACRNN-r, eq. 8 literal"):
        assert f"| {name} |" in proc.stdout
    lit = json.loads((tmp_path / "cv-literal" / "results.json").read_text())
    assert lit["config"]["logit_scale"] == 1.0 and list(lit["summary"]) == ["acrnn-r"]
    main = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert main["config"]["logit_scale"] == 300.0
    reports = tmp_path / "reports"
    for name in ("confusion_matrices.png", "tsne.png", "attention.png", "training_curves.png"):
        assert (reports / name).read_bytes()[:4] == b"\x89PNG", name
    assert "| SSA-CRNN-r |" in (reports / "table.md").read_text()
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert demo["folds"] == 2 and demo["epochs"] == 1

    # a rerun with other settings, interrupted once it has replaced a fold: no table, figure,
    # results.json or demo.json of the first run is left beside it (they were, unchanged)
    import signal

    fold = tmp_path / "cv" / "acrnn" / "fold00"
    rc, err = signal_when([sys.executable, "-m", "ssa_fast.cli", "demo", "--out", str(tmp_path),
                           "--size", "tiny", "--folds", "2", "--epochs", "3", "--quiet"],
                          lambda: not (fold / "result.json").exists(), signal.SIGINT)
    assert rc != 0 and "Traceback" not in err, err
    left = [p for p in (reports / "table.md", reports / "table.csv", reports / "tsne.png",
                        tmp_path / "demo.json", tmp_path / "cv" / "results.json") if p.exists()]
    assert not left, left


def test_demo_features_only_writes_wav_and_png(tmp_path):
    proc = _cli("demo", "--features-only", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "batched == one-by-one" in proc.stdout
    png = (tmp_path / "demo_logmel_delta.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    y, sr = sf.read(tmp_path / "demo_utterance.wav")
    assert sr == 16000 and len(y) > 3 * sr
