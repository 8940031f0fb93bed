"""User errors of the command line: one line `ssa-fast <cmd>: error: ...` naming the option or
file, exit status 2, checked before any expensive work; bad inputs of multi-file commands
reported and skipped (status 1); outputs that never collide; a full disk reported as such."""

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssa_fast.cli import _output_names, main

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


def _cli(*args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-m", "ssa_fast.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def _one_error_line(stderr: str, command: str, *names: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"ssa-fast {command}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _wav(path, seconds=0.5, seed=0, scale=0.1, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    y = scale * np.random.default_rng(seed).standard_normal(int(16000 * seconds))
    sf.write(path, y.astype(np.float32), 16000, subtype=subtype)
    return path


def _manifest(root, n=12):
    rows = ["path,speaker,label"]
    for i in range(n):
        _wav(root / "a" / f"u{i}.wav", seed=i, scale=0.05 * (1 + i % 2))
        rows.append(f"a/u{i}.wav,s{i % 3},{'neu' if i % 2 else 'ang'}")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    return root / "m.csv"


def test_option_values_and_paths_refused_in_process(tmp_path, capsys):
    """Every check that needs no data, through main() (the same code path as the console
    script; argparse's own errors exit with SystemExit(2))."""
    manifest = _manifest(tmp_path, 4)
    (tmp_path / "file").write_text("x")
    out = str(tmp_path / "out")
    train = ["train", "manifest", str(manifest), "--out", out]
    cases = [
        (train + ["--batch-size", "0"], "--batch-size"),
        (train + ["--epochs", "0"], "--epochs"),
        (train + ["--folds", "1"], "--folds"),
        (train + ["--lr", "0"], "--lr"),
        (train + ["--lr", "nan"], "--lr"),
        (train + ["--logit-scale", "0"], "--logit-scale"),
        (train + ["--segment-frames", "-3"], "--segment-frames"),
        # shorter than the preset's time pool, fewer bands than its frequency pool (a
        # traceback once every feature was computed; --pool was checked)
        (train + ["--segment-frames", "1"], "--segment-frames 1: shorter than the time pool of "
         "the paper preset (2 frames)"),
        (["cv", "manifest", str(manifest), "--out", out, "--n-mels", "1"],
         "--n-mels 1: fewer bands than the frequency pool"),
        (train + ["--fold", "2", "--folds", "2"], "--fold must be in [0, 2)"),
        (train + ["--device", "tpu7"], "--device"),
        (["train", "manifest", str(manifest), "--out", str(tmp_path / "file" / "run")],
         "is a file, not a folder"),
        (train + ["--cache", str(tmp_path / "file")], "--cache"),
        (["train", "manifest", str(tmp_path / "missing.csv"), "--out", out], "missing.csv"),
        (["cv", "synthetic", str(tmp_path / "nowhere"), "--out", out], "nowhere"),
        (["cv", "manifest", str(manifest), "--out", out, "--folds", "0"], "--folds"),
        (["evaluate", str(tmp_path / "no.pt"), "manifest", str(manifest)], "no.pt"),
        (["evaluate", str(manifest), "manifest", str(manifest), "--fold", "-1"], "--fold"),
        (["predict", str(tmp_path / "file"), "x.wav", "--attention-plot",
          str(tmp_path / "file")], "--attention-plot"),
        (["features", "x.wav", "--out", str(tmp_path / "file")], "--out"),
        (["features", "x.wav", "--out", out, "--win-length", "1000"], "win_length"),
        (["features", "x.wav", "--out", out, "--hop-length", "0"], "--hop-length"),
        (["synth", "--out", str(tmp_path / "file" / "s")], "is a file"),
        (["synth", "--out", out, "--speakers", "13"], "speakers"),
        (["demo", "--out", out, "--folds", "1"], "--folds"),
        (["bench", "--budget", "0"], "--budget"),
    ]
    if not torch.cuda.is_available():
        cases.append((train + ["--device", "cuda"], "CUDA is not available"))
        cases.append((["features", "x.wav", "--out", out, "--device", "cuda:0"], "--device"))
        cases.append((["predict", str(tmp_path / "no.pt"), "x.wav", "--device", "cuda"],
                      "CUDA is not available"))
    cases.append((["predict", str(tmp_path / "no.pt"), "x.wav", "--device", "tpu"], "--device"))
    for argv, name in cases:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        _one_error_line(err, argv[0], name)
    assert not (tmp_path / "out").exists()  # nothing was started


def test_checkpoint_errors_and_debug_as_real_subprocesses(tmp_path):
    empty = tmp_path / "best.pt"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    wav = _wav(tmp_path / "x.wav")
    proc = _cli("predict", empty, wav)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "predict", "best.pt", "empty")
    proc = _cli("evaluate", text, "manifest", _manifest(tmp_path / "c", 4))
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "evaluate", "notes.pt", "not a checkpoint")
    proc = _cli("predict", empty, wav, "--debug")  # the traceback, for a bug report
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "UserError" in proc.stderr


def test_output_names_never_collide(tmp_path):
    a, b = tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav"
    names = _output_names([str(a), str(b), str(tmp_path / "y.wav")], ".npy")
    assert [str(n) for n in names.values()] == ["a/x.npy", "b/x.npy", "y.npy"]
    names = _output_names(["d/x.wav", "d/x.flac", "d/x.wav.flac", "./d/x.wav"], ".npy")
    assert list(names) == ["d/x.wav", "d/x.flac", "d/x.wav.flac"]  # ./d/x.wav: the same file
    # x.wav.flac has a stem of its own, so its documented name x.wav.npy (it went to d/x.wav,
    # listed first); the shared stem x's name that clashes with it is the one renumbered
    assert [str(n) for n in names.values()] == ["x.wav-1.npy", "x.flac.npy", "x.wav.npy"]
    # links are named as given, not as their targets: a/x.wav, b/x.wav -> store/1.wav, 2.wav
    # were named 1.npy and 2.npy, and a real 1.wav listed after them got 1-1.npy
    store = tmp_path / "store"
    store.mkdir()
    for i in (1, 2):
        (store / f"{i}.wav").write_bytes(b"")
    for d, i in (("a", 1), ("b", 2)):
        (tmp_path / "l" / d).mkdir(parents=True)
        (tmp_path / "l" / d / "x.wav").symlink_to(store / f"{i}.wav")
    (tmp_path / "l" / "1.wav").write_bytes(b"")
    given = [str(tmp_path / "l" / "a" / "x.wav"), str(tmp_path / "l" / "b" / "x.wav"),
             str(tmp_path / "l" / "1.wav")]
    for order in (given, given[::-1]):
        names = _output_names(order, ".npy")
        assert {Path(f).relative_to(tmp_path / "l").as_posix(): str(n)
                for f, n in names.items()} == {"a/x.wav": "a/x.npy", "b/x.wav": "b/x.npy",
                                               "1.wav": "1.npy"}


def test_features_multi_file_run(tmp_path):
    """Same-named inputs in different folders give different files; a corrupt file, a float
    file far beyond audio range, a path that does not exist and a folder are reported (the last
    two in plain words, not soundfile's) and skipped; the rest is written; status 1."""
    a = _wav(tmp_path / "a" / "x.wav", seed=1)
    b = _wav(tmp_path / "b" / "x.wav", seconds=0.7, seed=2)
    c = _wav(tmp_path / "a" / "x.flac", seconds=0.3, seed=3)
    huge = tmp_path / "huge.wav"
    sf.write(huge, np.full(4000, 1e16, np.float32), 16000, subtype="FLOAT")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    gone, folder = tmp_path / "gone.wav", tmp_path / "clips"
    folder.mkdir()
    out = tmp_path / "feats"
    proc = _cli("features", a, huge, b, bad, c, a, gone, folder, "--out", out, "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "wrote 3 feature files" in proc.stdout and "skipped 4" in proc.stdout
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 4 and "huge.wav" in skipped[0] and "not audio" in skipped[0]
    assert "bad.wav: cannot read audio" in skipped[1]
    assert skipped[2] == f"skipped: {gone}: no such file"
    assert skipped[3] == f"skipped: {folder}: a folder, not an audio file"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/x.flac.npy", "a/x.wav.npy", "b/x.npy"]  # the count printed
    frames = {name: np.load(out / name).shape[1] for name in written}
    assert frames == {"a/x.wav.npy": 51, "b/x.npy": 71, "a/x.flac.npy": 31}  # each its own input


def test_feature_options_that_hardly_do_what_was_meant_are_said(tmp_path, capsys):
    """More mel bands than the FFT resolves leave bands at the log floor, and window and hop
    are counted in samples whatever --sample-rate: both are said in one warning line each
    (and not when the options say what they mean)."""
    wav = _wav(tmp_path / "x.wav", seconds=1.0)

    def features(*options):
        out = tmp_path / "f" / "-".join(options).replace("--", "")
        assert main(["features", str(wav), "--out", str(out), "--quiet", *options]) == 0
        return np.load(out / "x.npy"), capsys.readouterr().err

    feats, err = features("--n-mels", "256")
    (line,) = err.splitlines()
    assert line.startswith("ssa-fast features: warning: --n-mels 256: 24 of the mel bands "
                           "(0, 3, 8, 11, 16, 19, 24, 27, ...) get no FFT bin"), line
    assert "31.25 Hz per bin at --n-fft 512" in line and "a larger --n-fft" in line
    assert np.allclose(feats[0, :, 0], np.log(1e-10), rtol=0, atol=1e-4)  # the floor, always
    assert features("--n-mels", "256", "--n-fft", "2048")[1] == ""  # resolved: no warning
    _, err = features("--sample-rate", "8000")
    (line,) = err.splitlines()
    assert "--sample-rate 8000: the window (400 samples) and hop (160) are counted in " \
           "samples, so frames are 50 ms long every 20 ms" in line
    assert "give --win-length 200 --hop-length 80" in line
    _, err = features("--sample-rate", "48000")
    assert "--win-length 1200 --hop-length 480 --n-fft 2048" in err
    assert features("--sample-rate", "8000", "--win-length", "200", "--hop-length", "80")[1] \
        == ""
    assert features()[1] == ""
    # train and cv: --n-mels too, before any work
    assert main(["train", "folder", str(tmp_path), "--out", str(tmp_path / "o"), "--n-mels",
                 "256"]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("ssa-fast train: warning: --n-mels 256: 24 of the mel bands")
    assert "use fewer mel bands" in warning and "--n-fft" not in warning.split("; ")[-1]
    assert error.startswith("ssa-fast train: error:")


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs "
                            "/mnt 2>/dev/null || mount -t tmpfs -o size=16k tmpfs /tmp"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unprivileged user + mount namespaces "
                    "(unshare -rm) to mount a tiny tmpfs; test_file_size_limit covers EFBIG")
def test_full_disk_is_reported_and_leaves_no_partial_file(tmp_path):
    """A real full disk: a 16 KiB tmpfs in a private mount namespace, as the output folder of
    `features` and as the feature cache of `train`."""
    disk = tmp_path / "disk"
    disk.mkdir()
    wav = _wav(tmp_path / "long.wav", seconds=3.0)
    manifest = _manifest(tmp_path / "c", 12)
    cli = f"{sys.executable} -m ssa_fast.cli"
    script = (f"mount -t tmpfs -o size=16k tmpfs {disk} && "
              f"{cli} features {wav} --out {disk}/feats --quiet; echo rc=$? >&2; "
              f"{cli} train manifest {manifest} --out {tmp_path}/run --cache {disk}/cache "
              f"--folds 2 --batch-size 4 --quiet; echo rc=$? >&2; "
              f"find {disk} -type f ! -name .lock >&2")  # (the cache folder's empty lock file)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300)
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("ssa-fast features: error: no space left on the device while "
                               f"writing {disk}/feats/long.npy"), proc.stderr
    assert lines[1] == "rc=2"
    err = [line for line in lines[2:] if line.startswith("ssa-fast train")]
    assert len(err) == 1 and "no space left on the device while writing" in err[0], proc.stderr
    assert f"{disk}/cache/features-manifest-" in err[0]
    assert lines[lines.index(err[0]) + 1] == "rc=2"
    assert lines[-1] == "rc=2", proc.stderr  # `find` listed no file: no partial temp file left


def test_file_size_limit_is_one_line_and_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes writes fail with EFBIG (Python ignores SIGXFSZ): the same path as a
    full disk, reported as the file-size limit it is."""
    wav = _wav(tmp_path / "long.wav", seconds=3.0)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    proc = _cli("features", wav, "--out", tmp_path / "feats", "--quiet", preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, "features", "long.npy", "too large")
    assert os.listdir(tmp_path / "feats") == []


@pytest.mark.slow
def test_train_refuses_non_empty_out_heals_cache_and_predict_plots_apart(tmp_path):
    """`train` into a used --out is refused unless --overwrite or --resume; a truncated feature
    cache is named, removed and rebuilt; predict --attention-plot of same-named files."""
    manifest = _manifest(tmp_path, 12)
    run, cache = tmp_path / "run", tmp_path / "cache"
    common = ["train", "manifest", manifest, "--out", run, "--cache", cache, "--folds", "2",
              "--batch-size", "4", "--epochs", "1", "--preset", "small", "--segment-frames", "20",
              "--model", "ssa-crnn-r", "--quiet"]
    proc = _cli(*common)
    assert proc.returncode == 0, proc.stderr
    first = (run / "best.pt").read_bytes()
    (cached,) = cache.glob("features-*.pt")
    data = cached.read_bytes()
    cached.write_bytes(data[: len(data) // 2])  # a truncated cache file

    proc = _cli(*common, "--lr", "1e-2")
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "train", "--out", "not empty", "--overwrite")
    assert (run / "best.pt").read_bytes() == first and len(cached.read_bytes()) < len(data)

    proc = _cli(*common, "--lr", "1e-2", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(cached) in warning[0] and "recomputing" in warning[0]
    assert len(cached.read_bytes()) == len(data)  # rebuilt (same features, same size)
    assert torch.load(cached, weights_only=True)["paths"]
    assert (run / "best.pt").read_bytes() != first
    # a learning rate at which the first epoch diverges: one line, no checkpoint (it exited 0,
    # "selected epoch 1: ... 25.00 %", with NaN weights that predict served as "ok")
    nan = tmp_path / "nan"
    proc = _cli(*[nan if a == run else a for a in common], "--lr", "3e3")
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "train", "training diverged in epoch 1", "lower --lr")
    assert not (nan / "best.pt").exists()

    x1, x2 = _wav(tmp_path / "p" / "x.wav", seed=5), _wav(tmp_path / "q" / "x.wav", seed=6)
    bad = tmp_path / "p" / "bad.wav"
    bad.write_bytes(b"")
    att = tmp_path / "att"
    proc = _cli("predict", run / "best.pt", x1, bad, x2, "--attention-plot", att, "--quiet")
    assert proc.returncode == 1 and "bad.wav" in proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == [str(x1), str(x2)]
    pngs = sorted(p.relative_to(att).as_posix() for p in att.rglob("*") if p.is_file())
    assert pngs == ["p/x.png", "q/x.png"]
    assert all((att / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    # resumed with more files: the plot of a file done before is not replaced by a new file's
    # of the same name (names are given over every input, as a run from the start gives them)
    att2, out = tmp_path / "att2", tmp_path / "p.jsonl"
    proc = _cli("predict", run / "best.pt", x1, "--attention-plot", att2, "--out", out, "--quiet")
    first_plot = (att2 / "x.png").read_bytes()
    proc = _cli("predict", run / "best.pt", x1, x2, "--attention-plot", att2, "--out", out,
                "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (att2 / "x.png").read_bytes() == first_plot and (att2 / "q" / "x.png").is_file()
