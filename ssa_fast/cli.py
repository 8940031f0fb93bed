"""`ssa-fast` command line.

    ssa-fast synth --out DIR [--size small]       the synthetic corpus (espeak-ng), WAV + manifest
    ssa-fast cv CORPUS ROOT --out DIR             K-fold cross-validation of the models, Table 1
    ssa-fast predict CHECKPOINT WAV [WAV ...]     emotion of audio files with a trained model
    ssa-fast features WAV [WAV ...] --out DIR     3-D log-Mel of audio files, one .npy each
    ssa-fast demo [--out DIR]                     synthesise speech, extract features, plot them
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _feature_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features (SPEC.md section 2 defaults)")
    g.add_argument("--sample-rate", type=int, default=16000, help="resample audio to this rate")
    g.add_argument("--n-fft", type=int, default=512)
    g.add_argument("--win-length", type=int, default=400)
    g.add_argument("--hop-length", type=int, default=160)
    g.add_argument("--n-mels", type=int, default=40)
    g.add_argument("--fmin", type=float, default=0.0)
    g.add_argument("--fmax", type=float, default=None, help="default: sample_rate / 2")
    g.add_argument("--window", choices=("hamming", "hann"), default="hamming")
    g.add_argument("--htk", action="store_true", help="HTK mel scale instead of Slaney")
    g.add_argument("--backend", choices=("reference", "cpp", "triton"), default=None,
                   help="implementation (default: fastest available for the device)")


def _feature_kwargs(args) -> dict:
    return dict(sample_rate=args.sample_rate, n_fft=args.n_fft, win_length=args.win_length,
                hop_length=args.hop_length, n_mels=args.n_mels, fmin=args.fmin, fmax=args.fmax,
                window=args.window, htk=args.htk)


def cmd_features(args) -> int:
    import torch
    from tqdm import tqdm

    from .audio import AudioError, load
    from .kernels.logmel_delta import logmel_delta

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    skipped = []
    for path in tqdm(args.files, desc="features", unit="file", disable=args.quiet):
        try:
            y = load(path, args.sample_rate)
        except AudioError as exc:
            skipped.append(str(exc))
            continue
        feats = logmel_delta(torch.from_numpy(y).to(device), backend=args.backend,
                             **_feature_kwargs(args))
        np.save(out / (Path(path).stem + ".npy"), feats.cpu().numpy())
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"wrote {len(args.files) - len(skipped)} feature files to {out}"
          + (f"; skipped {len(skipped)}" if skipped else ""))
    return 0 if len(skipped) < len(args.files) else 1


def cmd_demo(args) -> int:
    from .demo import feature_check, run_demo

    if args.features_only:
        feature_check(args.out)
        return 0
    run_demo(args.out, folds=args.folds, epochs=args.epochs, size=args.size,
             progress=not args.quiet)
    return 0


def cmd_synth(args) -> int:
    from .data.synthetic import synthesize_corpus

    manifest = synthesize_corpus(args.out, args.size, speakers=args.speakers,
                                 phrases=args.phrases, repetitions=args.repetitions,
                                 seed=args.seed, jobs=args.jobs, progress=not args.quiet)
    import json

    meta = json.loads((manifest.parent / "synthetic.json").read_text())
    print(f"wrote {len(meta['utterances'])} utterances ({meta['hours'] * 60:.1f} min of audio) "
          f"-> {manifest}")
    return 0


def _load_corpus(args):
    """The corpus of the command line with its (cached) features; prints a one-line summary."""
    import torch

    from . import distributed as dist
    from .data import corpus_features

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    device = _device(dist.init_from_env(args.device))  # under torchrun: one process per rank
    main = dist.is_main()
    corpus = _open_corpus(args)
    _say(f"{corpus.name}: {len(corpus)} utterances, {len(corpus.speakers)} speakers, "
         f"classes {corpus.classes}; {len(corpus.skipped)} skipped")
    if not main:
        dist.barrier()  # rank 0 fills the feature cache first; the others read it
    corpus, feats = corpus_features(corpus, args.cache, device=device,
                                    progress=not args.quiet and main, n_mels=args.n_mels)
    if main:
        dist.barrier()
        for item, why in corpus.skipped[: args.show_skipped]:
            print(f"skipped: {item}: {why}", file=sys.stderr)
    return corpus, feats, device


def _device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def _open_corpus(args):
    from .data import load_corpus

    options = {}
    if args.corpus == "iemocap":
        options = {"merge_excited": args.merge_excited, "scripted": args.scripted}
    return load_corpus(args.corpus, args.root, **options)


def _say(*args, **kwargs) -> None:
    """print on rank 0 only (one process prints under torchrun)."""
    from .distributed import is_main

    if is_main():
        print(*args, **kwargs)


def _train_config(args, device: str, model: str = "ssa-crnn-r"):
    from .train import TrainConfig

    return TrainConfig(model=model, preset=args.preset, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                       seed=args.seed, device=device, bf16=args.bf16, compile=args.compile,
                       pooling=args.pooling, speaker_weight=args.speaker_weight,
                       deterministic=args.deterministic)


def cmd_cv(args) -> int:
    from .distributed import is_main
    from .reports import write_reports
    from .train import cross_validate

    corpus, feats, device = _load_corpus(args)
    results = cross_validate(corpus, feats, args.models, _train_config(args, device), args.out,
                             protocol=args.protocol, k=args.folds,
                             normalisation=args.normalisation,
                             segment_frames=args.segment_frames, train_hop=args.train_hop,
                             resume=not args.restart, progress=not args.quiet,
                             feature_params={"n_mels": args.n_mels})
    if not is_main():
        return 0
    paths = write_reports(results, Path(args.out) / "reports")
    _say(paths["table"].read_text())
    _say("reports: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_train(args) -> int:
    import json

    from .distributed import is_main
    from .reports.experiment import plot_history
    from .train import make_folds, prepare_fold, train
    from .train.cv import fold_bundle, run_summary

    corpus, feats, device = _load_corpus(args)
    folds = make_folds(corpus, args.protocol, args.folds, args.seed)
    if not 0 <= args.fold < len(folds):
        _say(f"--fold must be in [0, {len(folds)}) for {len(folds)} folds, got {args.fold}",
             file=sys.stderr)
        return 2
    tr, va = folds[args.fold]
    train_segs, val_segs, norm = prepare_fold(corpus, feats, tr, va,
                                              normalisation=args.normalisation,
                                              segment_frames=args.segment_frames,
                                              train_hop=args.train_hop)
    _say(f"fold {args.fold} of {len(folds)} ({args.protocol}): {len(tr)} training / {len(va)} "
         f"validation utterances, {len(train_segs)} / {len(val_segs)} segments")
    bundle = fold_bundle(corpus, norm, args.segment_frames, {"n_mels": args.n_mels})
    cfg = _train_config(args, device, args.model)
    out = Path(args.out)
    res = train(cfg, train_segs, val_segs, n_classes=len(corpus.classes),
                n_speakers=len(corpus.speakers), out_dir=out, resume=args.resume,
                progress=not args.quiet, bundle=bundle,
                on_epoch_end=None if args.quiet else _print_epoch)
    if not is_main():
        return 0
    (out / "result.json").write_text(json.dumps(run_summary(res), indent=1))
    png = plot_history(res["history"], out / "training_curves.png", title=cfg.model)
    _say(f"selected epoch {res['best_epoch'] + 1}: validation UAR segment "
         f"{100 * res['segment_uar']:.2f} %, utterance {100 * res['utterance_uar']:.2f} %")
    _say(f"model -> {out / 'best.pt'}; curves -> {png}")
    return 0


def _print_epoch(epoch: int, m: dict) -> None:
    from tqdm import tqdm

    from .distributed import is_main

    if is_main():
        tqdm.write(f"epoch {epoch + 1}: train loss {m['train_loss']:.4f}, validation UAR "
                   f"segment {100 * m['segment_uar']:.2f} %, utterance "
                   f"{100 * m['utterance_uar']:.2f} %")


def cmd_evaluate(args) -> int:
    import json

    from .data import corpus_features
    from .train import make_folds
    from .train.inference import load_trained, score

    device = _device(args.device)
    tm = load_trained(args.checkpoint, device)
    corpus = _open_corpus(args)
    n_mels = tm.feature_params.get("n_mels", 40)
    corpus, feats = corpus_features(corpus, args.cache, device=device, progress=not args.quiet,
                                    n_mels=n_mels)
    idx = list(range(len(corpus)))
    where = "all utterances"
    if args.fold is not None:
        idx = list(make_folds(corpus, args.protocol, args.folds, args.seed)[args.fold][1])
        where = f"validation set of fold {args.fold} ({args.protocol}, {args.folds} folds)"
    res = score(tm, [feats[i] for i in idx], [corpus.classes[corpus.labels[i]] for i in idx],
                [corpus[i].speaker for i in idx])
    res.update(checkpoint=str(args.checkpoint), corpus=corpus.name, subset=where)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{corpus.name}, {where}: {res['n_utterances']} utterances, "
              f"{res['n_segments']} segments")
        print(f"UAR: segment {100 * res['segment_uar']:.2f} %, "
              f"utterance {100 * res['utterance_uar']:.2f} %")
        print("utterance confusion matrix (rows: true " + ", ".join(tm.classes) + "):")
        for name, row in zip(tm.classes, res["utterance_cm"], strict=True):
            print(f"  {name:>8} " + " ".join(f"{v:5d}" for v in row))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


def cmd_bench(args) -> int:
    import torch

    from .bench import format_rows, quick_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    rows = quick_bench(device, ops=args.ops, compile=args.compile, budget_s=args.budget,
                       progress=not args.quiet)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; median milliseconds")
    print(format_rows(rows))
    print("full suite with floors and peers: make bench (pytest benchmarks --benchmark-only)")
    return 0


def cmd_predict(args) -> int:
    import json

    from .audio import AudioError
    from .train.inference import classify_file, load_trained

    try:
        tm = load_trained(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.speaker and args.speaker not in tm.normaliser.stats:
        print(f"speaker {args.speaker!r} was not in training: per-utterance normalisation",
              file=sys.stderr)
    results, status = [], 0
    for path in args.files:
        try:  # streamed: bounded memory for files of any length
            out = classify_file(tm, path, args.speaker, progress=not args.quiet,
                                keep_attention=bool(args.attention_plot))
        except AudioError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            status = 1
            continue
        probs = out["probabilities"]
        res = {"file": str(path), "emotion": tm.classes[int(probs.argmax())],
               "probabilities": dict(zip(tm.classes, map(float, probs), strict=True)),
               "segments": [tm.classes[int(i)] for i in out["logp"].argmax(dim=1)]}
        results.append(res)
        if args.attention_plot and tm.is_ssa:
            from .reports.experiment import plot_attention

            out_dir = Path(args.attention_plot)
            out_dir.mkdir(parents=True, exist_ok=True)
            data = {"ssa": {"alpha_em": out["alpha_em"], "alpha_sp": out["alpha_sp"],
                            "labels": out["logp"].argmax(dim=1), "lengths": out["lengths"]}}
            plot_attention(data, out_dir, tm.classes).rename(out_dir / (Path(path).stem + ".png"))
        if not args.json:
            top = ", ".join(f"{c} {p:.2f}" for c, p in res["probabilities"].items())
            print(f"{path}: {res['emotion']}  ({top}; {len(res['segments'])} segment(s))")
    if args.json:
        print(json.dumps(results, indent=1))
    return status


MODEL_CHOICES = ("acrnn", "acrnn-r", "ssa-crnn", "ssa-crnn-r")


def _corpus_arguments(p: argparse.ArgumentParser, n_mels: bool = True) -> None:
    p.add_argument("corpus", choices=("synthetic", "iemocap", "atthack", "manifest"))
    p.add_argument("root", help="corpus folder (the manifest file for 'manifest')")
    g = p.add_argument_group("corpus")
    if n_mels:
        g.add_argument("--n-mels", type=int, default=40)
    g.add_argument("--merge-excited", action="store_true", help="IEMOCAP: exc -> hap")
    g.add_argument("--scripted", action="store_true", help="IEMOCAP: scripted dialogs too")
    g.add_argument("--cache", default=".ssa_fast_cache", help="feature cache folder")
    g.add_argument("--show-skipped", type=int, default=20, help="skipped files to list")
    g.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _protocol_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol")
    g.add_argument("--protocol", choices=("random", "linguistic", "loso"), default=None,
                   help="default: linguistic for atthack and synthetic, random otherwise")
    g.add_argument("--folds", type=int, default=10)


def _training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (SPEC.md section 7 defaults)")
    g.add_argument("--preset", choices=("paper", "small"), default="paper")
    g.add_argument("--epochs", type=int, default=30)
    g.add_argument("--batch-size", type=int, default=40)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--speaker-weight", type=float, default=1.0,
                   help="lambda of the speaker loss (SSA-CRNN)")
    g.add_argument("--patience", type=int, default=None, help="early stopping (epochs)")
    g.add_argument("--pooling", choices=("mean", "max"), default="mean",
                   help="utterance decision: mean of segment log-probs or max posterior")
    g.add_argument("--normalisation", choices=("speaker", "global", "utterance"),
                   default="speaker")
    g.add_argument("--segment-frames", type=int, default=300)
    g.add_argument("--train-hop", type=int, default=None, help="overlapping training segments")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic CUDA algorithms (reproducible GPU runs; slower)")
    g.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssa-fast", description="Speaker-attentive speech emotion recognition (SSA-CRNN).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="synthesise the synthetic emotional-speech corpus",
                       description="Synthesise speech with espeak-ng for several voices "
                                   "(speakers) and 4 emotions expressed by prosody in a "
                                   "speaker-dependent way; writes DIR/wav/*.wav (16 kHz), "
                                   "DIR/manifest.csv and DIR/synthetic.json. Synthetic speech, "
                                   "not real emotional speech. Deterministic for a seed.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", default="small", choices=("tiny", "small", "medium", "large"),
                   help="tiny: 2 speakers x 2 phrases (tests); small: 6 x 20 (~8 min, the "
                        "demo); medium: 8 x 100; large: 10 x 100 x 3 repetitions (~4 h)")
    p.add_argument("--speakers", type=int, help="override the number of speakers (max 12)")
    p.add_argument("--phrases", type=int, help="override the number of phrases (max 104)")
    p.add_argument("--repetitions", type=int, help="override repetitions per phrase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("cv", help="K-fold cross-validation of ACRNN / ACRNN-r / SSA-CRNN-r",
                       description="The paper's protocol: features (cached), per-fold speaker "
                                   "normalisation, balanced batches, NAdam, model selection by "
                                   "validation UAR; writes per-fold checkpoints, results.json "
                                   "and reports/ (table.md, table.csv, confusion matrices, "
                                   "attention curves, t-SNE, training curves). Interrupted runs "
                                   "continue where they stopped unless --restart.")
    _corpus_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", nargs="+", default=["acrnn", "acrnn-r", "ssa-crnn-r"],
                   choices=MODEL_CHOICES)
    _protocol_options(p)
    _training_options(p)
    p.add_argument("--restart", action="store_true", help="ignore finished folds/checkpoints")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("train", help="train one model on one fold of a corpus",
                       description="Train one model on the training part of one fold (--fold) "
                                   "of the chosen protocol and validate on the rest every "
                                   "epoch. Writes OUT/best.pt (the selected model, with the "
                                   "class names, normaliser and feature parameters that "
                                   "`predict` and `evaluate` need), OUT/last.pt (for --resume), "
                                   "OUT/result.json and OUT/training_curves.png.")
    _corpus_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="ssa-crnn-r", choices=MODEL_CHOICES)
    _protocol_options(p)
    p.add_argument("--fold", type=int, default=0, help="which fold validates (default 0)")
    _training_options(p)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (same options required)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="UAR and confusion matrix of a trained model on a corpus",
                       description="Score a best.pt on a labelled corpus: every utterance, or "
                                   "the validation part of one fold (--fold, with the protocol "
                                   "and seed used in training). Speakers seen in training use "
                                   "their training statistics, others their own.")
    p.add_argument("checkpoint", help="best.pt of a trained model")
    _corpus_arguments(p, n_mels=False)
    _protocol_options(p)
    p.add_argument("--fold", type=int, default=None, help="evaluate this fold's validation set")
    p.add_argument("--seed", type=int, default=0, help="the fold seed used in training")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="time the fused ops and a training step on this machine",
                       description="A quick table: every available implementation of "
                                   "logmel_delta, ssa_attention (forward + backward) and "
                                   "l1_project_ at the shapes of the performance targets, and a "
                                   "training step of each model, with the speed-up over the "
                                   "pure-torch baseline. `make bench` runs the full suite.")
    p.add_argument("--ops", nargs="+", default=["logmel_delta", "ssa_attention", "l1_project_",
                                                "train_step"],
                   choices=("logmel_delta", "ssa_attention", "l1_project_", "train_step"))
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile of the references (slow to compile)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timing per row")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("predict", help="emotion of audio files with a trained model",
                       description="Classify audio files with a checkpoint written by "
                                   "`ssa-fast cv` (<out>/<model>/foldNN/best.pt): prints the "
                                   "emotion, the class probabilities (pooled over segments as "
                                   "in training, --pooling of cv) and per-segment decisions. "
                                   "Features are "
                                   "normalised with the training statistics of --speaker, or "
                                   "with the utterance's own statistics for an unseen speaker. "
                                   "Files of any length are streamed in 60-second blocks "
                                   "(bounded memory).")
    p.add_argument("checkpoint", help="best.pt of a trained model")
    p.add_argument("files", nargs="+", help="audio files")
    p.add_argument("--speaker", default=None, help="the speaker, if seen in training")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--attention-plot", default=None, metavar="DIR",
                   help="SSA models: write each file's attention curves to DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("features", help="compute 3-D log-Mel features of audio files",
                       description="Compute the 3-D log-Mel (static, delta, delta-delta) of each "
                                   "audio file and save it as DIR/<name>.npy with shape "
                                   "(3, frames, n_mels). Unreadable files are reported and "
                                   "skipped.")
    p.add_argument("files", nargs="+", help="audio files (any format soundfile reads)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _feature_options(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("demo", help="the paper's experiment end to end on synthetic speech",
                       description="1. synthesise speech, compute its 3-D log-Mel with the "
                                   "fastest backend, check it against the float64 reference and "
                                   "plot it; 2. synthesise the emotional corpus; 3. K-fold "
                                   "cross-validation of ACRNN, ACRNN-r and SSA-CRNN-r (the "
                                   "`small` preset on the CPU, `paper` on CUDA); 4. the Table-1 "
                                   "result and the figures in OUT/reports. About 10 minutes on "
                                   "2 CPU cores. An interrupted demo continues where it "
                                   "stopped.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--features-only", action="store_true", help="step 1 only")
    p.add_argument("--folds", type=int, default=None, help="override the demo's folds")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.add_argument("--size", choices=("tiny", "small", "medium", "large"), default=None,
                   help="override the corpus size")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "protocol", "") is None:
        args.protocol = "linguistic" if args.corpus in ("atthack", "synthetic") else "random"
    try:
        return args.func(args)
    finally:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
