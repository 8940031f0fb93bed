"""Prediction over an archive of WAV files: the file-by-file loop against the batched engine of
`ssa-fast predict` (EmotionClassifier.classify_files), the same checkpoint in one run, and on a
GPU the model-only rate for comparison.

    python benchmarks/predict_archive.py                      # 2,000 files of 2-10 s, small preset
    python benchmarks/predict_archive.py --files 500          # a reduced run
    python benchmarks/predict_archive.py --preset paper --device cuda --bf16 --batch-size 512

It generates the files (speech-like signals, 16 kHz mono PCM-16, lengths uniform in 2-10 s; kept
in --dir to be reused), writes an untrained checkpoint of --preset (the speed does not depend on
the weights; or pass --checkpoint), then times, each after a short warm-up:

- file-by-file: the loop `ssa-fast predict` ran before the batched engine, predict.engine.
  classify_file on each file in turn (streamed: a statistics pass and a scoring pass; fp32);
- batched: classify_files on the folder (--workers decoding processes, --batch-size segments a
  forward pass, features on the device, bf16 autocast with --bf16);
- model-only (a GPU, or --model-only): forward passes of --batch-size random segments, as
  segments/s and hours of audio/s (one segment is segment_frames x hop seconds).

It checks that both paths give the same labels (and prints the largest probability difference:
with --bf16 and a trained --checkpoint, the evidence that bf16 keeps fp32's labels),
and prints files/s and hours of audio/s of each, the speed-up, and (with a model-only rate) the
batched path's fraction of it. --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

FILE_BY_FILE_BATCH = 64  # the segments a forward pass of the loop predict ran before the engine


def speechy(n: int, sr: int, seed: int) -> np.ndarray:
    """A voiced-speech-like signal (gliding f0, harmonics, syllable envelope, breath noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(h * phase) / h for h in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))) ** 2
    return (0.2 * y * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)


def make_files(folder: Path, n: int, seed: int = 0, sr: int = 16000) -> list[Path]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.random.default_rng(seed).uniform(2.0, 10.0, n)
    paths = []
    for i, seconds in enumerate(lengths):
        path = folder / f"f{i:05d}.wav"
        if not path.is_file():
            sf.write(path, speechy(int(seconds * sr), sr, seed + i), sr, subtype="PCM_16")
        paths.append(path)
    return paths


def make_checkpoint(path: Path, preset: str, model: str = "ssa-crnn-r") -> Path:
    from ssa_fast.data.segments import Normaliser
    from ssa_fast.models import model_spec

    torch.manual_seed(0)
    net = model_spec(model).build(4, 10, preset=preset, segment_frames=300, n_mels=40,
                                  logit_scale=300.0)
    torch.save({"config": {"pooling": "mean", "model": model}, "model": net.state_dict(),
                "model_config": net.config,
                "bundle": {"classes": ["neu", "hap", "sad", "ang"], "speakers": [],
                           "normaliser": Normaliser("utterance").state_dict(),
                           "segment_frames": 300, "feature_params": {}}}, path)
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(tm, batch: int, bf16: bool, seconds: float = 10.0) -> float:
    """Segments per second of the model alone (random normalised segments on the device)."""
    from ssa_fast.models.scoring import score_batch

    device = next(tm.model.parameters()).device
    x = torch.randn(batch, 3, tm.segment_frames, 40, device=device)
    for _ in range(3):
        score_batch(tm.model, x, {}, bf16=bf16)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        score_batch(tm.model, x, {}, bf16=bf16)
        n += batch
    sync(device)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--dir", default="bench_archive", help="where the generated files are kept")
    ap.add_argument("--preset", default="small", choices=("small", "paper"))
    ap.add_argument("--checkpoint", default=None, help="a best.pt (default: an untrained one)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="segments a forward pass of the batched path (default: predict's, 32 "
                         "on the CPU and 128 on a GPU)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--model-only", action="store_true", help="also on the CPU")
    ap.add_argument("--json", default=None, help="write the numbers to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from ssa_fast import EmotionClassifier
    from ssa_fast.models.scoring import scoring_batch
    from ssa_fast.predict.engine import classify_file, load_trained
    from ssa_fast.predict.inputs import default_workers

    folder = Path(args.dir)
    t0 = time.perf_counter()
    paths = make_files(folder / "wav", args.files)
    print(f"{len(paths)} files in {folder / 'wav'} ({time.perf_counter() - t0:.0f} s to make)",
          file=sys.stderr)
    ckpt = Path(args.checkpoint) if args.checkpoint else make_checkpoint(
        folder / f"untrained-{args.preset}.pt", args.preset)
    device = torch.device(args.device)
    args.batch_size = scoring_batch(device, args.batch_size)
    tm = load_trained(ckpt, device)
    clf = EmotionClassifier(tm)
    workers = default_workers() if args.workers is None else args.workers
    import soundfile as sf

    hours = sum(sf.info(str(p)).duration for p in paths) / 3600

    # warm-up of both paths (kernels, threads, allocator) on a few files
    for p in paths[:4]:
        classify_file(tm, p, batch=FILE_BY_FILE_BATCH)
    list(clf.classify_files(paths[:16], batch_size=args.batch_size, num_workers=0,
                            bf16=args.bf16))

    sync(device)
    t0 = time.perf_counter()
    loop = [classify_file(tm, p, batch=FILE_BY_FILE_BATCH)["probabilities"] for p in paths]
    sync(device)
    t_loop = time.perf_counter() - t0

    t0 = time.perf_counter()
    batched = list(clf.classify_files([folder / "wav"], batch_size=args.batch_size,
                                      num_workers=workers, bf16=args.bf16))
    sync(device)
    t_batched = time.perf_counter() - t0

    assert [p.file for p in batched] == [str(p) for p in paths]
    same = sum(clf.classes[int(a.argmax())] == b.label for a, b in zip(loop, batched,
                                                                      strict=True))
    diff = max(max(abs(float(a[i]) - b.probabilities[c]) for i, c in enumerate(clf.classes))
               for a, b in zip(loop, batched, strict=True))
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, "
                 f"{os.cpu_count()} cores")
    res = {"device": name, "preset": args.preset, "files": len(paths),
           "hours_of_audio": hours, "batch_size": args.batch_size, "workers": workers,
           "bf16": args.bf16, "same_labels": same, "max_probability_difference": diff,
           "file_by_file_s": t_loop, "batched_s": t_batched,
           "file_by_file_files_per_s": len(paths) / t_loop,
           "batched_files_per_s": len(paths) / t_batched,
           "file_by_file_hours_per_s": hours / t_loop, "batched_hours_per_s": hours / t_batched,
           "speed_up": t_loop / t_batched}
    if device.type == "cuda" or args.model_only:
        segs = model_only(tm, args.batch_size, args.bf16)
        seg_seconds = tm.segment_frames * tm.features.frame_seconds
        res.update(model_only_segments_per_s=segs,
                   model_only_hours_per_s=segs * seg_seconds / 3600,
                   fraction_of_model_only=(hours / t_batched) / (segs * seg_seconds / 3600))
    print(f"device: {name}; {args.preset} preset; {len(paths)} files, {hours:.2f} h of audio; "
          f"batch {args.batch_size}, {workers} workers, bf16 {args.bf16}")
    print("| path | seconds | files/s | h of audio/s |")
    print("|---|---:|---:|---:|")
    print(f"| file by file | {t_loop:.1f} | {len(paths) / t_loop:.1f} | {hours / t_loop:.4f} |")
    print(f"| batched | {t_batched:.1f} | {len(paths) / t_batched:.1f} | "
          f"{hours / t_batched:.4f} |")
    if "model_only_hours_per_s" in res:
        print(f"| model only | | | {res['model_only_hours_per_s']:.4f} |")
    print(f"speed-up {res['speed_up']:.2f}x; same label {same}/{len(paths)}; largest probability "
          f"difference {diff:.2g}"
          + (f"; batched = {100 * res['fraction_of_model_only']:.0f} % of model-only"
             if "fraction_of_model_only" in res else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
