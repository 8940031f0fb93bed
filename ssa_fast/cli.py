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
import time
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


DEMO_SENTENCES = [
    ("en-us", "Speech emotion recognition listens to how something is said, not only what."),
    ("en+f3", "The same rise in pitch can mean joy for one speaker and anger for another."),
    ("en-us+m3", "That is why the model attends to who is speaking."),
]


def _median_ms(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def cmd_demo(args) -> int:
    import soundfile as sf
    import torch

    from . import _backend
    from .audio import resample, synthesize
    from .kernels.logmel_delta import logmel_delta
    from .reports import plot_logmel_delta

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sr = 16000

    print("1. synthesising speech with espeak-ng (three voices)")
    pieces = []
    for voice, text in DEMO_SENTENCES:
        y, sr_in = synthesize(text, voice)
        pieces += [resample(y, sr_in, sr), np.zeros(sr // 4, np.float32)]
    wave = np.concatenate(pieces)
    wav_path = out / "demo_utterance.wav"
    sf.write(wav_path, wave, sr)
    print(f"   {len(wave) / sr:.2f} s of speech -> {wav_path}")

    backend = _backend.resolve("logmel_delta", device)
    x = torch.from_numpy(wave).to(device)
    print(f"2. 3-D log-Mel on {device.type} with the '{backend}' backend "
          f"(available: {', '.join(_backend.available_backends(device))})")
    feats = logmel_delta(x, backend=backend)
    ref = logmel_delta(x.double(), backend="reference")
    err = (feats.double() - ref).abs().amax(dim=(1, 2)).tolist()
    print(f"   features {tuple(feats.shape)}; max |{backend} - float64 reference| per channel: "
          + ", ".join(f"{e:.1e}" for e in err))

    lengths = [len(p) for p in pieces[0::2]]
    batch = torch.zeros(len(lengths), max(lengths), device=device)
    for i, p in enumerate(pieces[0::2]):
        batch[i, : len(p)] = torch.from_numpy(p)
    bfeats, frames = logmel_delta(batch, lengths=torch.tensor(lengths), backend=backend)
    alone = [logmel_delta(batch[i, :n], backend=backend) for i, n in enumerate(lengths)]
    worst = max(float((bfeats[i, :, :t] - a).abs().max()) for i, (t, a) in
                enumerate(zip(frames.tolist(), alone, strict=True)))
    print(f"   ragged batch of {len(lengths)} sentences: batched == one-by-one to {worst:.1e}")

    t_fast = _median_ms(lambda: logmel_delta(x, backend=backend))
    t_ref = _median_ms(lambda: logmel_delta(x, backend="reference"))
    line = (f"3. timing ({torch.get_num_threads()} threads): {backend} {t_fast:.2f} ms, "
            f"reference {t_ref:.2f} ms")
    try:
        import librosa

        t_lib = _median_ms(lambda: librosa.feature.melspectrogram(
            y=wave, sr=sr, n_fft=512, hop_length=160, win_length=400, window="hamming",
            n_mels=40))
        line += f", librosa (mel only) {t_lib:.2f} ms"
    except ImportError:
        pass
    print(line + f"; {len(wave) / sr / 3600 / (t_fast / 1e3):.1f} hours of audio per second")

    png = plot_logmel_delta(feats, out / "demo_logmel_delta.png", waveform=wave, sample_rate=sr,
                            title="3-D log-Mel of a synthesised utterance (ssa_fast.logmel_delta)")
    print(f"4. figure -> {png}")
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


def cmd_cv(args) -> int:
    import torch

    from .data import corpus_features, load_corpus
    from .reports import write_reports
    from .train import TrainConfig, cross_validate

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = {}
    if args.corpus == "iemocap":
        options = {"merge_excited": args.merge_excited, "scripted": args.scripted}
    corpus = load_corpus(args.corpus, args.root, **options)
    print(f"{corpus.name}: {len(corpus)} utterances, {len(corpus.speakers)} speakers, "
          f"classes {corpus.classes}; {len(corpus.skipped)} skipped")
    corpus, feats = corpus_features(corpus, args.cache, device=device, progress=not args.quiet,
                                    n_mels=args.n_mels)
    for item, why in corpus.skipped[: args.show_skipped]:
        print(f"skipped: {item}: {why}", file=sys.stderr)
    cfg = TrainConfig(preset=args.preset, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, patience=args.patience, seed=args.seed, device=device,
                      bf16=args.bf16, compile=args.compile, pooling=args.pooling)
    results = cross_validate(corpus, feats, args.models, cfg, args.out, protocol=args.protocol,
                             k=args.folds, normalisation=args.normalisation,
                             segment_frames=args.segment_frames, train_hop=args.train_hop,
                             resume=not args.restart, progress=not args.quiet,
                             feature_params={"n_mels": args.n_mels})
    paths = write_reports(results, Path(args.out) / "reports")
    print(paths["table"].read_text())
    print("reports: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_predict(args) -> int:
    import json

    import torch

    from .audio import AudioError, load
    from .data.segments import Normaliser, make_segments
    from .kernels.logmel_delta import logmel_delta
    from .models import SSACRNN, model_from_config
    from .train import load_checkpoint, utterance_probabilities

    ckpt = load_checkpoint(args.checkpoint)
    bundle = ckpt.get("bundle") or {}
    if "classes" not in bundle or "normaliser" not in bundle:
        print(f"{args.checkpoint}: not a model checkpoint written by `ssa-fast cv` (best.pt)",
              file=sys.stderr)
        return 2
    model = model_from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    classes = bundle["classes"]
    norm = Normaliser.from_state_dict(bundle["normaliser"])
    known = args.speaker if args.speaker in norm.stats else None
    if args.speaker and known is None:
        print(f"speaker {args.speaker!r} was not in training: per-utterance normalisation",
              file=sys.stderr)
    results, status = [], 0
    for path in args.files:
        try:
            y = load(path, 16000)
        except AudioError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            status = 1
            continue
        feats = logmel_delta(torch.from_numpy(y), **bundle.get("feature_params", {}))
        segs = make_segments([feats], [0], [known or "?"], norm, {},
                             segment_frames=bundle["segment_frames"])
        with torch.no_grad():
            out = model(segs.x)
        logits = out.emotion_logits if isinstance(model, SSACRNN) else out
        logp = torch.log_softmax(logits, dim=-1)
        probs = utterance_probabilities(logp, torch.zeros(len(logp), dtype=torch.long), 1,
                                        ckpt["config"]["pooling"])[0]
        res = {"file": str(path), "emotion": classes[int(probs.argmax())],
               "probabilities": dict(zip(classes, map(float, probs), strict=True)),
               "segments": [classes[int(i)] for i in logp.argmax(dim=1)]}
        results.append(res)
        if args.attention_plot and isinstance(model, SSACRNN):
            from .reports.experiment import plot_attention

            out_dir = Path(args.attention_plot)
            out_dir.mkdir(parents=True, exist_ok=True)
            data = {"ssa": {"alpha_em": out.alpha_em, "alpha_sp": out.alpha_sp,
                            "labels": logp.argmax(dim=1), "lengths": segs.lengths}}
            plot_attention(data, out_dir, classes).rename(out_dir / (Path(path).stem + ".png"))
        if not args.json:
            top = ", ".join(f"{c} {p:.2f}" for c, p in res["probabilities"].items())
            print(f"{path}: {res['emotion']}  ({top}; {len(res['segments'])} segment(s))")
    if args.json:
        print(json.dumps(results, indent=1))
    return status


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
    p.add_argument("corpus", choices=("synthetic", "iemocap", "atthack", "manifest"))
    p.add_argument("root", help="corpus folder (the manifest file for 'manifest')")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", nargs="+", default=["acrnn", "acrnn-r", "ssa-crnn-r"],
                   choices=("acrnn", "acrnn-r", "ssa-crnn", "ssa-crnn-r"))
    p.add_argument("--protocol", choices=("random", "linguistic", "loso"), default=None,
                   help="default: linguistic for atthack and synthetic, random otherwise")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--preset", choices=("paper", "small"), default="paper")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=None, help="early stopping (epochs)")
    p.add_argument("--pooling", choices=("mean", "max"), default="mean",
                   help="utterance decision: mean of segment log-probs or max posterior")
    p.add_argument("--normalisation", choices=("speaker", "global", "utterance"),
                   default="speaker")
    p.add_argument("--segment-frames", type=int, default=300)
    p.add_argument("--train-hop", type=int, default=None, help="overlapping training segments")
    p.add_argument("--n-mels", type=int, default=40)
    p.add_argument("--merge-excited", action="store_true", help="IEMOCAP: exc -> hap")
    p.add_argument("--scripted", action="store_true", help="IEMOCAP: scripted dialogs too")
    p.add_argument("--cache", default=".ssa_fast_cache", help="feature cache folder")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restart", action="store_true", help="ignore finished folds/checkpoints")
    p.add_argument("--show-skipped", type=int, default=20, help="skipped files to list")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("predict", help="emotion of audio files with a trained model",
                       description="Classify audio files with a checkpoint written by "
                                   "`ssa-fast cv` (<out>/<model>/foldNN/best.pt): prints the "
                                   "emotion, the class probabilities (pooled over segments as "
                                   "in training, --pooling of cv) and per-segment decisions. "
                                   "Features are "
                                   "normalised with the training statistics of --speaker, or "
                                   "with the utterance's own statistics for an unseen speaker.")
    p.add_argument("checkpoint", help="best.pt of a trained model")
    p.add_argument("files", nargs="+", help="audio files")
    p.add_argument("--speaker", default=None, help="the speaker, if seen in training")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--attention-plot", default=None, metavar="DIR",
                   help="SSA models: write each file's attention curves to DIR")
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

    p = sub.add_parser("demo", help="synthesise speech, extract features, check and plot them",
                       description="Synthesise an utterance with espeak-ng, compute its 3-D "
                                   "log-Mel with the fastest backend, check it against the "
                                   "float64 reference, time it, and write a PNG of the three "
                                   "channels.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "cv" and args.protocol is None:
        args.protocol = "linguistic" if args.corpus in ("atthack", "synthetic") else "random"
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
