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
import warnings
from pathlib import Path

import numpy as np

from .data.splits import PROTOCOLS
from .errors import UserError

# Exit status: 0 success; 1 some inputs of a multi-file command were reported and skipped (the
# others' results are printed) or an unexpected error (a bug: traceback); 2 a user error (bad
# path, option value, data or checkpoint, missing CUDA, full disk): one line, nothing half done.
EXIT_SKIPPED, EXIT_USER = 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with the command line's error format: one line naming the option, status 2."""

    def error(self, message):
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    """argparse type: an integer >= low (option values are checked before any work starts)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_above(low: float, inclusive: bool = False):
    """argparse type: a finite float > low (>= low with inclusive)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (np.isfinite(value) and (value >= low if inclusive else value > low)):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {'>=' if inclusive else '>'} {low:g}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


_COUNT, _POSITIVE, _NATURAL = _int_at_least(1), _float_above(0.0), _int_at_least(0)


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (0: off)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _check_output(path: str | None, option: str, folder: bool = True) -> None:
    """Refuse an output path that cannot be created (a regular file in the way, a folder where a
    file is wanted, an unwritable parent) before any expensive work starts."""
    import os

    if path is None:
        return
    p = Path(path)
    if p.exists() and folder != p.is_dir():
        raise UserError(f"{option} {path}: is {'a file' if folder else 'a folder'}, expected "
                        f"{'a folder' if folder else 'a file name'}")
    parent = p if folder else p.parent
    for q in [parent, *parent.parents]:
        if q.exists():
            if not q.is_dir():
                raise UserError(f"{option} {path}: {q} is a file, not a folder")
            if not os.access(q, os.W_OK | os.X_OK):
                raise UserError(f"{option} {path}: the folder {q} is not writable")
            return


def _check_input(path: str, what: str) -> None:
    if not Path(path).exists():
        raise UserError(f"{what} {path} does not exist")


def _check_device(device: str | None) -> None:
    """Refuse a device this machine does not have (instead of an assertion deep inside torch)."""
    import torch

    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r}: not a torch device (expected cpu, cuda or "
                        "cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise UserError(f"--device {device}: CUDA is not available ({why}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA "
                            "device(s) are visible")
    elif dev.type != "cpu":
        raise UserError(f"--device {device}: expected cpu, cuda or cuda:N")


def _check_args(args) -> None:
    """Every check that needs no data: options, devices, input and output paths."""
    _check_device(getattr(args, "device", None))
    for option in ("out", "cache"):
        value = getattr(args, option, None)
        folder = not (option == "out" and args.command in ("evaluate", "predict"))
        _check_output(value, f"--{option}", folder=folder)
    _check_output(getattr(args, "attention_plot", None), "--attention-plot")
    if hasattr(args, "root"):
        _check_input(args.root, "manifest" if args.corpus == "manifest" else "corpus root")
    if getattr(args, "checkpoint", None):
        _check_input(args.checkpoint, "checkpoint")
    fold, folds = getattr(args, "fold", None), getattr(args, "folds", None)
    if fold is not None and folds is not None and fold >= folds:
        raise UserError(f"--fold must be in [0, {folds}) for {folds} folds, got {fold}")
    _check_features(args)
    if args.command == "train" and args.resume and args.overwrite:
        raise UserError("--resume and --overwrite: give one (--resume continues the run in "
                        "--out, --overwrite replaces it)")
    if args.command == "cv":
        from .train.parallel import check_jobs, slurm_share

        check_jobs(args.jobs, _device(getattr(args, "device", None)))
        if args.shard is None:
            slurm_share()  # a Slurm array's variables are checked before any work too
    if args.command == "train" and not args.resume and not args.overwrite:
        out = Path(args.out)
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"--out {out} is not empty: add --resume to continue its run, "
                            "--overwrite to replace it, or choose another folder")


def _feature_config(args):
    """The FeatureConfig of the command line's feature options (``features``: all of them;
    ``train`` / ``cv``: --n-mels); None for a command without them."""
    from .features import FeatureConfig

    if args.command != "features":
        return _features(args) if hasattr(args, "n_mels") else None
    try:
        return FeatureConfig(**_feature_kwargs(args))
    except ValueError as exc:
        raise UserError(f"feature options: {exc}") from None


def _check_features(args) -> None:
    """Refuse impossible feature options; warn about those that run but hardly do what was
    meant: mel bands that no FFT bin reaches (always at the log floor), and for ``features`` a
    sample rate other than 16 kHz with the window and hop (counted in samples) left at their
    16 kHz defaults."""
    config = _feature_config(args)
    if config is None:
        return
    from .features import FeatureConfig

    empty = config.empty_bands()
    if empty:
        shown = ", ".join(map(str, empty[:8])) + (", ..." if len(empty) > 8 else "")
        warnings.warn(f"--n-mels {config.n_mels}: {len(empty)} of the mel bands ({shown}) get no "
                      f"FFT bin ({config.sample_rate / config.n_fft:g} Hz per bin at --n-fft "
                      f"{config.n_fft} and {config.sample_rate} Hz) and stay at the log floor; "
                      "use fewer mel bands" + (" or a larger --n-fft"
                                               if args.command == "features" else ""),
                      stacklevel=2)
    d = FeatureConfig()
    untyped = [o for o in ("win_length", "hop_length") if o not in getattr(args, "typed", ())]
    if args.command == "features" and config.sample_rate != d.sample_rate and untyped:
        sr, scale = config.sample_rate, config.sample_rate / d.sample_rate
        win, hop = round(d.win_length * scale), round(d.hop_length * scale)
        n_fft = max(config.n_fft, 1 << (win - 1).bit_length())
        fix = f"--win-length {win} --hop-length {hop}" + (
            f" --n-fft {n_fft}" if n_fft != config.n_fft else "")
        warnings.warn(f"--sample-rate {sr}: the window ({config.win_length} samples) and hop "
                      f"({config.hop_length}) are counted in samples, so frames are "
                      f"{1000 * config.win_length / sr:.3g} ms long every "
                      f"{1000 * config.hop_length / sr:.3g} ms (the defaults mean "
                      f"{1000 * d.win_length / d.sample_rate:g} ms / "
                      f"{1000 * d.hop_length / d.sample_rate:g} ms at {d.sample_rate} Hz); for "
                      f"those give {fix}", stacklevel=2)


def _user_error(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug."""
    from ._atomic import DiskFullError
    from ._backend import BackendUnavailableError

    if isinstance(exc, (UserError, BackendUnavailableError)):
        return str(exc)
    if isinstance(exc, DiskFullError):
        return exc.strerror
    if isinstance(exc, OSError):  # a path that is missing, unreadable, too large, ...
        what = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
        return f"{exc.filename}: {what}" if exc.filename else what
    return None


def _feature_options(p: argparse.ArgumentParser) -> None:
    from .features import FeatureConfig

    d = FeatureConfig()  # the defaults, stated once there
    g = p.add_argument_group("features (design.md section 2 defaults)")
    g.add_argument("--sample-rate", type=_COUNT, default=d.sample_rate,
                   help="resample audio to this rate")
    g.add_argument("--n-fft", type=_COUNT, default=d.n_fft)
    g.add_argument("--win-length", type=_COUNT, default=d.win_length)
    g.add_argument("--hop-length", type=_COUNT, default=d.hop_length)
    g.add_argument("--n-mels", type=_COUNT, default=d.n_mels)
    g.add_argument("--fmin", type=_float_above(0.0, inclusive=True), default=d.fmin)
    g.add_argument("--fmax", type=_POSITIVE, default=d.fmax, help="default: sample_rate / 2")
    g.add_argument("--window", choices=("hamming", "hann"), default=d.window)
    g.add_argument("--htk", action="store_true", help="HTK mel scale instead of Slaney")
    g.add_argument("--backend", choices=("reference", "cpp", "triton"), default=None,
                   help="implementation (default: fastest available for the device)")


def _feature_kwargs(args) -> dict:
    return dict(sample_rate=args.sample_rate, n_fft=args.n_fft, win_length=args.win_length,
                hop_length=args.hop_length, n_mels=args.n_mels, fmin=args.fmin, fmax=args.fmax,
                window=args.window, htk=args.htk)


def _output_names(files: list[str], suffix: str) -> dict[str, Path]:
    """Each distinct input file -> its output name (relative to the output folder), never shared.

    ``<stem><suffix>`` when no other input has that stem; inputs sharing a stem keep their path
    relative to the inputs' common folder (``a/x.wav b/x.wav`` -> ``a/x.npy``, ``b/x.npy``), with
    their own suffix when that is still ambiguous (``x.wav x.flac`` -> ``x.wav.npy``,
    ``x.flac.npy``). The same file named twice is one input."""
    import os
    from collections import defaultdict

    unique: dict[str, str] = {}
    for f in files:
        unique.setdefault(os.path.realpath(f), f)
    by_stem = defaultdict(list)
    for real, f in unique.items():
        by_stem[Path(f).stem].append(real)
    names: dict[str, Path] = {}
    for stem, reals in by_stem.items():
        if len(reals) == 1:
            names[reals[0]] = Path(stem + suffix)
            continue
        common = os.path.commonpath([os.path.dirname(r) for r in reals])
        rel = [Path(os.path.relpath(r, common)) for r in reals]
        plain = [r.with_suffix(suffix) for r in rel]
        for real, r, q in zip(reals, rel, plain, strict=True):
            names[real] = q if plain.count(q) == 1 else r.with_name(r.name + suffix)
    taken: set[Path] = set()
    out = {}
    for real, name in names.items():  # a last guard: x.wav.flac next to x.wav and x.flac
        base, i = name, 1
        while name in taken:
            name, i = base.with_name(f"{base.stem}-{i}{base.suffix}"), i + 1
        taken.add(name)
        out[unique[real]] = name
    return {f: out[f] for f in unique.values()}


def _save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through memory: on a name it would append ".npy" to the temporary name, and on
    a file it uses ndarray.tofile, whose error on a full disk carries no errno."""
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    with open(path, "wb") as fh:
        fh.write(buf.getbuffer())


def cmd_features(args) -> int:
    import torch
    from tqdm import tqdm

    from ._atomic import atomic_write, sweep_stale
    from .audio import AudioError, load

    config = _feature_config(args)
    out = Path(args.out)
    names = _output_names(args.files, ".npy")
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)
    device = torch.device(args.device)
    front_end = config.module(args.backend).to(device)
    written, skipped = 0, []
    for path, name in tqdm(names.items(), desc="features", unit="file",
                           disable=True if args.quiet else None):
        try:
            y = load(path, args.sample_rate)
        except AudioError as exc:  # reported and skipped; the other files still run
            skipped.append(str(exc))
            continue
        feats = front_end(torch.from_numpy(y).to(device))
        array = feats.cpu().numpy()
        atomic_write(out / name, lambda tmp, a=array: _save_npy(tmp, a))
        written += 1
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    repeated = len(args.files) - len(names)
    print(f"wrote {written} feature files to {out}"
          + (f"; skipped {len(skipped)}" if skipped else "")
          + (f"; {repeated} repeated input(s) computed once" if repeated else ""))
    return EXIT_SKIPPED if skipped else 0


def cmd_demo(args) -> int:
    from .demo import feature_check, run_demo

    if args.features_only:
        feature_check(args.out)
        return 0
    run_demo(args.out, folds=args.folds, epochs=args.epochs, size=args.size, lr=args.lr,
             preset=args.preset, progress=not args.quiet)
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


def _features(args):
    """The feature parameters of a train / cv / evaluate command line."""
    from .features import FeatureConfig

    return FeatureConfig(n_mels=args.n_mels)


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
    _check_corpus(args, corpus)  # before the (long) feature extraction
    if not main:
        dist.barrier()  # rank 0 fills the feature cache first; the others read it
    corpus, feats = corpus_features(corpus, args.cache, features=_features(args), device=device,
                                    progress=not args.quiet and main)
    if main:
        dist.barrier()
        for item, why in corpus.skipped[: args.show_skipped]:
            print(f"skipped: {item}: {why}", file=sys.stderr)
    return corpus, feats, device


def _device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def _open_corpus(args):
    """The corpus of the command line; what was merged while reading it is said on stderr."""
    from .data import load_corpus
    from .distributed import is_main

    options = {}
    if args.corpus == "iemocap":
        options = {"merge_excited": args.merge_excited, "scripted": args.scripted}
    for option in ("merge_excited", "scripted"):  # not ignored where they mean nothing
        if getattr(args, option, False) and args.corpus != "iemocap":
            raise UserError(f"--{option.replace('_', '-')}: applies to the iemocap corpus, not "
                            f"{args.corpus!r}")
    if getattr(args, "columns", None) is not None:
        if args.corpus != "manifest":
            raise UserError(f"--columns: applies to the manifest corpus, not {args.corpus!r}")
        options["columns"] = args.columns
    corpus = load_corpus(args.corpus, args.root, **options)
    if not len(corpus):
        shown = "; ".join(f"{item}: {why}" for item, why in corpus.skipped[:3])
        raise UserError(f"{args.root}: no usable utterance ({len(corpus.skipped)} skipped"
                        + (f": {shown}" if shown else "") + ")")
    for note in corpus.notes if is_main() else ():
        print(f"note: {note}", file=sys.stderr)
    return corpus


def _check_corpus(args, corpus) -> None:
    """Checks of the options against the corpus, before any feature or training work: the
    balanced batch size, the fold index and the fold layout (every class trained and validated
    in every fold)."""
    from .train import make_folds

    n = len(corpus.classes)
    present = sorted({r.label for r in corpus})
    if args.command in ("train", "cv") and len(present) < 2:
        raise UserError(f"{args.root}: every utterance is labelled {present[0]!r}: "
                        "classifying emotions needs at least 2 classes")
    batch = getattr(args, "batch_size", None)
    if batch is not None and batch % n:
        raise UserError(f"--batch-size {batch} is not a multiple of the {n} classes "
                        f"{corpus.classes} (batches are balanced by class)")
    from .data import check_speakers, default_normalisation

    if getattr(args, "normalisation", "") is None:  # not given: speaker, if speakers are known
        args.normalisation = default_normalisation(corpus)
        if args.normalisation != "speaker":
            _say(f"note: {corpus.n_without_speaker} utterances have no speaker: "
                 f"--normalisation {args.normalisation}", file=sys.stderr)
    check_speakers(corpus, getattr(args, "models", None) or [getattr(args, "model", "")],
                   getattr(args, "normalisation", None), getattr(args, "protocol", None))
    if getattr(args, "protocol", None) is None or getattr(args, "folds", None) is None:
        return
    folds = make_folds(corpus, args.protocol, args.folds, args.seed)
    fold = getattr(args, "fold", None)
    if fold is not None and not 0 <= fold < len(folds):
        raise UserError(f"--fold must be in [0, {len(folds)}) for {len(folds)} folds "
                        f"({args.protocol}), got {fold}")
    if getattr(args, "selection_split", 0.0):  # every fold it will run can be split so
        from .train.cv import selection_split

        for f in range(len(folds)) if fold is None else [fold]:
            selection_split(corpus, folds[f][0], args.protocol, args.selection_split,
                            args.seed, f)


def _say(*args, **kwargs) -> None:
    """print on rank 0 only (one process prints under torchrun)."""
    from .distributed import is_main

    if is_main():
        print(*args, **kwargs)


def _train_config(args, device: str, model: str = "ssa-crnn-r"):
    from .train import TrainConfig

    return TrainConfig(model=model, preset=args.preset, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                       seed=args.seed, device=device, bf16=args.bf16,
                       compile=args.compile_mode or args.compile,
                       pooling=args.pooling, speaker_weight=args.speaker_weight,
                       deterministic=args.deterministic, bn_batches=args.bn_batches,
                       logit_scale=args.logit_scale,
                       learn_logit_scale=args.learn_logit_scale)


def _cv_share(args) -> tuple[int, int] | None:
    """The share of the runs this cv trains: --shard, or a Slurm job array's task (said on
    stderr); None: every run, and the results are assembled."""
    from .train.parallel import slurm_share

    if args.shard is not None:
        return args.shard
    share = slurm_share()
    if share is not None:
        _say(f"share {share[0]}/{share[1]} of the runs from the Slurm job array "
             "(SLURM_ARRAY_TASK_ID); --shard overrides it", file=sys.stderr)
    return share


def _cv_workers(args, corpus, cfg, share, plan: dict) -> int:
    """cv --jobs N: the runs in N worker processes (train/parallel.py); 0 when all succeeded."""
    from .train.cv import plan_runs
    from .train.parallel import run_workers

    runs = plan_runs(corpus, args.models, cfg, args.out, **plan)
    jobs = min(args.jobs, len(runs[share[0]::share[1]] if share else runs))
    failed = run_workers(args.argv, runs, args.out, jobs=jobs, device=cfg.device, share=share,
                         threads=args.threads, progress=not args.quiet,
                         say=lambda text: print(text, file=sys.stderr, flush=True))
    for text in failed:
        print(f"ssa-fast cv: {text}", file=sys.stderr)
    if failed:
        print(f"ssa-fast cv: {len(failed)} of {jobs} workers failed; the other workers' runs "
              "are complete: the same command again trains what is missing and reuses the "
              "rest", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def cmd_cv(args) -> int:
    from ._atomic import write_json
    from .distributed import is_main
    from .reports import write_reports
    from .train import cross_validate
    from .train.cv import without_figures_data
    from .train.parallel import follow_parent
    from .train.timing import Breakdown, describe

    follow_parent()  # (a worker of cv --jobs)
    share = _cv_share(args)
    timing = Breakdown(_device(args.device))
    with timing.phase("features"):
        corpus, feats, device = _load_corpus(args)  # the feature cache is filled once, here
    if share is None:  # (a share's process leaves the run's record to the assembling one)
        _save_config(args)
    cfg = _train_config(args, device)
    plan = dict(protocol=args.protocol, k=args.folds, normalisation=args.normalisation,
                segment_frames=args.segment_frames, train_hop=args.train_hop,
                feature_params=_features(args).to_dict(), selection=args.selection_split)
    resume = not args.restart
    if args.jobs > 1:
        with timing.phase("workers"):  # (their own breakdowns are in their runs' result.json)
            status = _cv_workers(args, corpus, cfg, share, plan)
        if status or share is not None:
            return status
        resume = True  # the workers trained (or restarted) every run: assemble them
    results = cross_validate(corpus, feats, args.models, cfg, args.out, resume=resume,
                             progress=not args.quiet, last_k=args.last_k, share=share,
                             timing=timing, **plan)
    if share is not None:
        _say(f"share {share[0]}/{share[1]}: trained {len(results['trained'])}, reused "
             f"{len(results['reused'])}"
             + (f", skipped {len(results['busy'])} (being trained elsewhere)"
                if results["busy"] else "")
             + " of its runs; `ssa-fast cv` with the same options and no --shard assembles "
               "the table when every share is done")
        _say(describe(timing.as_dict()), file=sys.stderr)
        return 0
    if not is_main():
        return 0
    with timing.phase("reports"):
        paths = write_reports(results, Path(args.out) / "reports", fmt=args.figure_format)
    results["timing"] = timing.as_dict()  # the whole command's, reports included
    write_json(Path(args.out) / "results.json", without_figures_data(results), indent=1)
    _say(paths["table"].read_text())
    _say("reports: " + ", ".join(str(p) for p in paths.values()))
    _say(describe(results["timing"]), file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    from .distributed import is_main
    from .reports.experiment import plot_history
    from .train.cv import RUN_FILES, train_fold
    from .train.timing import Breakdown, describe

    timing = Breakdown(_device(args.device))
    with timing.phase("features"):
        corpus, feats, device = _load_corpus(args)
    _check_corpus(args, corpus)  # again: unreadable audio files may have left the corpus
    cfg = _train_config(args, device, args.model)
    out = Path(args.out)

    def start() -> None:  # once the run is checked (a --resume matches): nothing written before
        if args.overwrite and is_main():  # the files of the run it replaces (see _check_args)
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        _save_config(args)

    res = train_fold(corpus, feats, cfg, out, protocol=args.protocol, k=args.folds,
                     fold=args.fold, selection=args.selection_split,
                     normalisation=args.normalisation, segment_frames=args.segment_frames,
                     train_hop=args.train_hop, feature_params=_features(args).to_dict(),
                     resume=args.resume, progress=not args.quiet, announce=_say,
                     on_epoch_end=None if args.quiet else _print_epoch, on_start=start)
    if not is_main():
        return 0
    png = plot_history(res["history"], out / "training_curves.png", title=cfg.model,
                       best_epoch=res["best_epoch"], n_classes=len(corpus.classes))
    _say(f"selected epoch {res['best_epoch'] + 1}: validation UAR segment "
         f"{100 * res['segment_uar']:.2f} %, utterance {100 * res['utterance_uar']:.2f} %"
         + ("" if "test" not in res else f"; test UAR segment "
            f"{100 * res['test']['segment_uar']:.2f} %, utterance "
            f"{100 * res['test']['utterance_uar']:.2f} %"))
    _say(f"model -> {out / 'best.pt'}; curves -> {png}")
    timing.merge(res["timing"])
    _say(describe(timing.as_dict()), file=sys.stderr)
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

    from .data import corpus_features, match_classes
    from .train.cv import split_fold
    from .train.evaluation import evaluation_subset, fold_layout_to_score, score

    device = _device(args.device)
    tm = _load_checkpoint(args.checkpoint, device)
    layout = {"protocol": getattr(args, "protocol", None), "k": getattr(args, "folds", None),
              "seed": getattr(args, "seed", None)}  # absent: the checkpoint's
    if args.fold is None and tm.fold_layout:  # they choose a fold's layout: not ignored
        from .train.fingerprint import describe_layout

        option = {"protocol": "--protocol", "k": "--folds", "seed": "--seed"}
        wrong = [f"{option[key]} {value}" for key, value in layout.items()
                 if value is not None and value != tm.fold_layout[key]]
        if wrong:
            raise UserError(f"{' '.join(wrong)}: choose the fold layout of --fold, and without "
                            "--fold every utterance is scored; the checkpoint was trained on "
                            f"{describe_layout(tm.fold_layout)}")
    if args.fold is not None:  # another fold layout is refused before any audio is read
        fold_layout = fold_layout_to_score(tm, args.fold, **layout)
    corpus = _open_corpus(args)
    shown_notes = len(corpus.notes)
    corpus, unknown = match_classes(corpus, tm.classes)  # case, normal form: the model's names
    if unknown:
        shown = ", ".join(f"{label!r} ({n} utterance{'s' * (n != 1)})"
                          for label, n in unknown.items())
        raise UserError(f"{args.root}: label{'s' * (len(unknown) > 1)} {shown} "
                        f"{'are' if len(unknown) > 1 else 'is'} not among the classes of "
                        f"{args.checkpoint} ({', '.join(tm.classes)}): leave those utterances "
                        "out of the corpus to score the others")
    for note in corpus.notes[shown_notes:]:
        print(f"note: {note}", file=sys.stderr)
    if args.fold is not None:  # the fold's split on this corpus: refused here, not after
        split_fold(corpus, fold_layout["protocol"], fold_layout["k"], args.fold,
                   fold_layout["seed"], fold_layout.get("selection") or 0.0)
    corpus, feats = corpus_features(corpus, args.cache, features=tm.features, device=device,
                                    progress=not args.quiet)
    idx, where, notes = evaluation_subset(  # the checkpoint's fold layout, no training data
        tm, corpus, fold=args.fold, **layout, include_training=args.include_training,
        warn=lambda text: warnings.warn(text, stacklevel=2))
    res = score(tm, [feats[i] for i in idx], [corpus.classes[corpus.labels[i]] for i in idx],
                [corpus[i].speaker for i in idx])
    res.update(checkpoint=str(args.checkpoint), corpus=corpus.name, subset=where, **notes)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{corpus.name}, {where}: {res['n_utterances']} utterances, "
              f"{res['n_segments']} segments")
        print(f"UAR: segment {100 * res['segment_uar']:.2f} %, utterance "
              f"{100 * res['utterance_uar']:.2f} %; utterance WA {100 * res['utterance_wa']:.2f}"
              f" %, macro F1 {100 * res['utterance_macro_f1']:.2f} %")
        print("utterance confusion matrix (rows: true " + ", ".join(tm.classes) + "):")
        for name, row in zip(tm.classes, res["utterance_cm"], strict=True):
            print(f"  {name:>8} " + " ".join(f"{v:5d}" for v in row))
    if args.out:
        from ._atomic import write_json

        write_json(args.out, res, indent=1)
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


def _load_checkpoint(path: str, device: str = "cpu"):
    """load_trained, with a file that is not a usable model checkpoint as a user error."""
    from .predict.engine import load_trained

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise UserError(f"{path}: an empty file (0 bytes), expected a model checkpoint (best.pt "
                        "of `ssa-fast train` or `ssa-fast cv`)")
    try:
        return load_trained(path, device)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # content of the file
        msg = str(exc) if isinstance(exc, ValueError) else \
            f"{path}: not a usable model checkpoint ({type(exc).__name__}: " \
            f"{(str(exc).splitlines() or [''])[0][:200]})"
        raise UserError(msg) from exc


def cmd_predict(args) -> int:
    import json
    import time

    from ._atomic import sweep_stale
    from .predict import EmotionClassifier
    from .predict.inputs import expand_inputs
    from .predict.output import PredictionsFile, checkpoint_id

    if args.resume and not args.out:
        raise UserError("--resume: needs --out (the predictions file to continue)")
    clf = EmotionClassifier(_load_checkpoint(args.checkpoint, _device(args.device)))
    if args.speaker and args.speaker not in clf.speakers:
        print(f"speaker {args.speaker!r} was not in training: per-utterance normalisation",
              file=sys.stderr)
    entries, problems = expand_inputs(args.inputs, args.columns, args.speaker)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if not entries:
        raise UserError(f"no audio files in {' '.join(args.inputs)}")
    out = (PredictionsFile(args.out, clf.classes, checkpoint_id(args.checkpoint), args.resume)
           if args.out else None)
    todo = [e for e in entries if out is None or e.path not in out.done]
    if out is not None and out.done:
        print(f"--resume: {len(entries) - len(todo)} of the {len(entries)} files are in "
              f"{out.partial if out.partial.exists() else out.out} already", file=sys.stderr)
    plots = bool(args.attention_plot and clf.is_ssa)
    names = _output_names([e.path for e in todo], ".png") if plots else {}
    if args.attention_plot and not clf.is_ssa:
        print(f"--attention-plot: {args.checkpoint} is not an SSA model (no attention); no "
              "figures written", file=sys.stderr)
    if plots:
        sweep_stale(args.attention_plot)
    results: list[dict] = []
    counts = {"ok": 0, "too short": 0, "silent": 0, "failed": 0}
    hours, t0, finished = 0.0, time.perf_counter(), False
    try:
        for pred in clf.classify_entries(todo, batch_size=args.batch_size,
                                         num_workers=args.workers, bf16=args.bf16,
                                         attention=plots, progress=not args.quiet,
                                         progress_blocks=not args.quiet):
            counts[pred.status] += 1
            if pred.status == "failed":  # reported and skipped; the other files still run
                print(f"skipped: {pred.reason}", file=sys.stderr)
                continue
            hours += (pred.duration or 0.0) / 3600
            if out is not None:
                out.write(pred)
            res = {"file": pred.file, "status": pred.status, "emotion": pred.label,
                   "probabilities": pred.probabilities, "duration": pred.duration,
                   "segments": [s.label for s in pred.segments], "reason": pred.reason}
            if plots and pred.classified:
                res["attention_plot"] = str(Path(args.attention_plot) / names[pred.file])
                clf.plot_attention(pred, res["attention_plot"])
            if args.json:
                results.append(res)
            elif out is None and pred.classified:
                top = ", ".join(f"{c} {p:.2f}" for c, p in res["probabilities"].items())
                print(f"{pred.file}: {res['emotion']}  ({top}; {len(res['segments'])} "
                      "segment(s))", flush=True)
            elif out is None:
                print(f"{pred.file}: not classified ({pred.status}: {pred.reason})",
                      flush=True)
        finished = True
    finally:
        if out is not None:
            kept = out.close(finished)
            if not finished:
                print(f"{len(out.done)} predictions kept in {kept} (--resume continues)",
                      file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
    seconds = time.perf_counter() - t0
    unlabelled = counts["too short"] + counts["silent"]
    if not args.quiet or unlabelled or counts["failed"]:
        print(f"{len(todo)} files, {hours:.3f} h of audio in {seconds:.1f} s: {counts['ok']} "
              f"classified, {counts['too short']} too short, {counts['silent']} silent (not "
              f"classified), {counts['failed']} failed"
              + (f", {len(problems)} input(s) naming no file" if problems else "")
              + (f"; predictions in {out.out}" if out is not None else ""), file=sys.stderr)
    return EXIT_SKIPPED if counts["failed"] or unlabelled or problems else 0


def _corpus_arguments(p: argparse.ArgumentParser, n_mels: bool = True) -> None:
    p.add_argument("corpus", choices=("synthetic", "iemocap", "atthack", "manifest", "folder"))
    p.add_argument("root", help="corpus folder (the manifest file for 'manifest'; for "
                                "'folder' ROOT/<label>/*.wav or ROOT/<label>/<speaker>/*.wav)")
    g = p.add_argument_group("corpus")
    g.add_argument("--columns", type=_columns, default=None, metavar="FIELD=COLUMN,...",
                   help="manifest: the columns holding path, label, speaker, phrase, e.g. "
                        "path=file,label=emotion,speaker=spk (default: their own names; "
                        "speaker and phrase are optional)")
    if n_mels:
        from .features import FeatureConfig

        g.add_argument("--n-mels", type=_COUNT, default=FeatureConfig.n_mels)
    g.add_argument("--merge-excited", action="store_true", help="IEMOCAP: exc -> hap")
    g.add_argument("--scripted", action="store_true", help="IEMOCAP: scripted dialogs too")
    g.add_argument("--cache", default=".ssa_fast_cache", help="feature cache folder")
    g.add_argument("--show-skipped", type=_NATURAL, default=20, help="skipped files to list")
    g.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _share(text: str) -> tuple[int, int]:
    """argparse type of --shard."""
    from .train.parallel import parse_share

    try:
        return parse_share(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _columns(text: str) -> dict[str, str]:
    """argparse type of --columns."""
    from .data import parse_columns

    try:
        return parse_columns(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _protocol_options(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
    """--protocol, --folds (and for evaluate --seed); evaluate takes the checkpoint's values
    when they are left out (argparse.SUPPRESS: an option not given is absent from args)."""
    g = p.add_argument_group("protocol")
    if from_checkpoint:
        g.add_argument("--protocol", choices=PROTOCOLS,
                       default=argparse.SUPPRESS, help="default: the checkpoint's")
        g.add_argument("--folds", type=_int_at_least(2), default=argparse.SUPPRESS,
                       help="default: the checkpoint's")
        g.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                       help="the fold seed (default: the checkpoint's)")
        return
    g.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="default: linguistic for atthack and synthetic, random otherwise; "
                        "loso: one speaker per fold; loso-session: IEMOCAP, one session per "
                        "fold (5 folds)")
    g.add_argument("--folds", type=_int_at_least(2), default=10)


def _training_options(p: argparse.ArgumentParser) -> None:
    from .models import PRESETS
    from .train import TrainConfig
    from .train.loop import COMPILE_MODES

    d = TrainConfig()  # the defaults of the Python API, stated once there
    g = p.add_argument_group("training (design.md section 7 defaults)")
    g.add_argument("--preset", choices=sorted(PRESETS), default=d.preset)
    g.add_argument("--epochs", type=_COUNT, default=d.epochs)
    g.add_argument("--batch-size", type=_COUNT, default=d.batch_size,
                   help="a multiple of the number of classes (balanced batches)")
    g.add_argument("--lr", type=_POSITIVE, default=d.lr)
    g.add_argument("--speaker-weight", type=_float_above(0.0, inclusive=True),
                   default=d.speaker_weight,
                   help="lambda of the speaker loss (SSA-CRNN)")
    g.add_argument("--logit-scale", type=_POSITIVE, default=d.logit_scale, metavar="S",
                   help="the '-r' models: multiply the L1-constrained classifier's logits by S; "
                        "1 is the paper's eq. 8 literally, whose logits stay within ~1/K and "
                        "barely learn (docs/experiments/README.md)")
    g.add_argument("--learn-logit-scale", action="store_true",
                   help="learn the logit scale, starting from --logit-scale")
    g.add_argument("--patience", type=_COUNT, default=d.patience,
                   help="early stopping (epochs)")
    g.add_argument("--pooling", choices=("mean", "max"), default=d.pooling,
                   help="utterance decision: mean of segment log-probs or max posterior")
    g.add_argument("--normalisation", choices=("speaker", "global", "utterance"),
                   default=None, help="default: speaker, or utterance when some utterances "
                                      "have no speaker")
    g.add_argument("--segment-frames", type=_COUNT, default=300)
    g.add_argument("--train-hop", type=_COUNT, default=None, help="overlapping training segments")
    g.add_argument("--bn-batches", type=_NATURAL, default=d.bn_batches,
                   help="before every validation, re-estimate the BatchNorm statistics on this "
                        "many training batches (at most one epoch's); 0: keep the running "
                        "averages")
    g.add_argument("--selection-split", type=_fraction, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of each fold's training utterances (its "
                        "phrases for the linguistic protocol) to select the epoch; the fold's "
                        "held-out utterances become a test set, which the results report. "
                        "Default 0: the paper's protocol, the epoch selected on the "
                        "utterances it is reported on")
    g.add_argument("--threads", type=_COUNT, default=None)
    g.add_argument("--bf16", action="store_true",
                   help="bf16 autocast on the CPU or CUDA (convolutions, LSTMs and linear "
                        "layers in bfloat16; the fused ops and the loss in float32)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training step in the mode measured fastest on the "
                        "device: CUDA graphs on one GPU (19.0 ms a step against 23.0 eager, "
                        "paper preset, bf16, H200); on the CPU and under torchrun no mode beat "
                        "eager, so the step stays eager there (benchmarks/RESULTS.md). The "
                        "first batches pay the compile time; each LSTM runs eagerly between "
                        "compiled graphs")
    g.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                   help="compile in this mode whatever was measured (implies --compile): "
                        "default (inductor), reduce-overhead (inductor + CUDA graphs), "
                        "regional (each CRNN trunk compiled on its own)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic CUDA algorithms (reproducible GPU runs; slower)")
    g.add_argument("--seed", type=int, default=d.seed)


def _add_synth(sub) -> None:
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
    p.add_argument("--speakers", type=_COUNT, help="override the number of speakers (max 12)")
    p.add_argument("--phrases", type=_COUNT, help="override the number of phrases (max 104)")
    p.add_argument("--repetitions", type=_COUNT, help="override repetitions per phrase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=_COUNT, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def _add_cv(sub) -> None:
    from .models.registry import MODEL_NAMES, PAPER_MODELS

    p = sub.add_parser("cv", help="K-fold cross-validation of ACRNN / ACRNN-r / SSA-CRNN-r",
                       description="The paper's protocol: features (cached), per-fold speaker "
                                   "normalisation, balanced batches, NAdam, model selection by "
                                   "validation UAR; writes per-fold checkpoints, results.json "
                                   "and reports/ (table.md, table.csv, confusion matrices, "
                                   "attention curves, t-SNE, training curves). Every fold "
                                   "result stores a fingerprint of what produced it (corpus "
                                   "files, protocol, folds, seed, model, training and feature "
                                   "options): a rerun into the same --out reuses a finished "
                                   "fold only when its fingerprint matches, and recomputes it "
                                   "otherwise, with a warning naming the options that changed; "
                                   "an unreadable result is recomputed too. Interrupted runs "
                                   "continue where they stopped unless --restart. The table "
                                   "says which number it shows.")
    _corpus_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", nargs="+", default=list(PAPER_MODELS), choices=MODEL_NAMES)
    _protocol_options(p)
    _training_options(p)
    p.add_argument("--restart", action="store_true",
                   help="recompute every fold, even those finished with the same settings")
    p.add_argument("--last-k", type=_COUNT, default=3,
                   help="the table's mean over the last K epochs (default 3)")
    p.add_argument("--figure-format", choices=("png", "pdf", "svg"), default="png",
                   help="the figures of reports/ (PDF and SVG are vector graphics)")
    g = p.add_argument_group("parallel runs (README: Folds in parallel and on a cluster)")
    g.add_argument("--jobs", type=_COUNT, default=1, metavar="N",
                   help="train N (model, fold) runs at once in worker processes: one per "
                        "visible GPU on CUDA, or N CPU processes with cores // N threads each "
                        "(--threads overrides); their logs go to OUT/logs/")
    g.add_argument("--shard", type=_share, default=None, metavar="I/N",
                   help="train only share I of N (I from 0 to N-1) of the runs and write no "
                        "table; a cv with the same options and no --shard assembles it. Inside "
                        "a Slurm job array the share is SLURM_ARRAY_TASK_ID - "
                        "SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT unless --shard is given")
    p.set_defaults(func=cmd_cv)


def _add_train(sub) -> None:
    from .models.registry import MODEL_NAMES
    from .train import TrainConfig

    p = sub.add_parser("train", help="train one model on one fold of a corpus",
                       description="Train one model on the training part of one fold (--fold) "
                                   "of the chosen protocol and validate on the rest every "
                                   "epoch. Writes OUT/best.pt (the selected model, with the "
                                   "class names, normaliser and feature parameters that "
                                   "`predict` and `evaluate` need), OUT/last.pt (for --resume), "
                                   "OUT/result.json and OUT/training_curves.png.")
    _corpus_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default=TrainConfig.model, choices=MODEL_NAMES)
    _protocol_options(p)
    p.add_argument("--fold", type=_NATURAL, default=0, help="which fold validates (default 0)")
    _training_options(p)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (same options required)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty OUT (otherwise refused)")
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="UAR and confusion matrix of a trained model on a corpus",
                       description="Score a best.pt on a labelled corpus: every utterance, or "
                                   "the validation part of one fold (--fold; its test part for "
                                   "a model trained with --selection-split). The fold layout "
                                   "is the checkpoint's: --protocol, --folds and --seed "
                                   "default to it, and other values are refused (exit 2), "
                                   "since their validation sets would hold training "
                                   "utterances. Utterances the checkpoint was trained on, or "
                                   "chose its epoch on, are left out, with a warning saying "
                                   "how many, unless --include-training; they are recognised "
                                   "by their file and their audio, however the corpus lists "
                                   "them. The corpus's labels must be classes of the "
                                   "checkpoint (up to case and Unicode normal form). Speakers "
                                   "seen in training use their training statistics, others "
                                   "their own.")
    p.add_argument("checkpoint", help="best.pt of a trained model")
    _corpus_arguments(p, n_mels=False)
    _protocol_options(p, from_checkpoint=True)
    p.add_argument("--fold", type=_NATURAL, default=None,
                   help="evaluate this fold's validation set")
    p.add_argument("--include-training", action="store_true",
                   help="also score utterances the checkpoint was trained on (with a warning)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.set_defaults(func=cmd_evaluate)


def _add_bench(sub) -> None:
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
    p.add_argument("--budget", type=_POSITIVE, default=2.0, help="seconds of timing per row")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=_COUNT, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_bench)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="emotion of audio files with a trained model",
                       description="Classify audio files with a checkpoint written by "
                                   "`ssa-fast cv` (<out>/<model>/foldNN/best.pt): the emotion, "
                                   "the class probabilities (pooled over segments as in "
                                   "training, --pooling of cv) and per-segment decisions. "
                                   "Features are normalised with the training statistics of "
                                   "--speaker (or of a manifest's speaker column), or with the "
                                   "utterance's own statistics for an unseen speaker. Files are "
                                   "decoded in --workers processes and the segments of many "
                                   "files scored together (--batch-size); files longer than 5 "
                                   "minutes are streamed in 60-second blocks (bounded memory). "
                                   "Audio shorter than 0.25 s or digitally silent is not "
                                   "classified (status 'too short' / 'silent'). A file that "
                                   "cannot be read is reported and skipped; exit status 1 when "
                                   "any file failed or was not classified.")
    p.add_argument("checkpoint", help="best.pt of a trained model")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (their audio files, recursively), manifests "
                        "(.csv / .json with a path column, see --columns; an optional speaker "
                        "column) or list files (.txt / .lst / .list, one path a line)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the predictions to FILE (.jsonl or .csv) as they come (into "
                        "FILE.partial, renamed to FILE at the end): per file its status, "
                        "label, probabilities, duration and segments (start, end, label)")
    p.add_argument("--resume", action="store_true",
                   help="continue --out: classify only the files not in it (refused when it "
                        "was written with another checkpoint)")
    p.add_argument("--batch-size", type=_COUNT, default=128,
                   help="segments per forward pass, of many files together (default 128)")
    p.add_argument("--workers", type=_NATURAL, default=None,
                   help="processes decoding and resampling audio (default: the CPU cores but "
                        "one, at most 8; 0: in the main process)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the model (check on your data that the labels match "
                        "fp32)")
    p.add_argument("--columns", type=_columns, default=None, metavar="FIELD=COLUMN,...",
                   help="manifest inputs: the columns holding path and speaker, e.g. "
                        "path=file,speaker=spk")
    p.add_argument("--speaker", default=None, help="the speaker, if seen in training")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--attention-plot", default=None, metavar="DIR",
                   help="SSA models: write each file's attention curves to DIR/<stem>.png "
                        "(named like the output of `features`)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no summary line "
                                                        "unless a file failed or was not "
                                                        "classified")
    p.set_defaults(func=cmd_predict)


def _add_features(sub) -> None:
    p = sub.add_parser("features", help="compute 3-D log-Mel features of audio files",
                       description="Compute the 3-D log-Mel (static, delta, delta-delta) of each "
                                   "audio file and save it as DIR/<stem>.npy with shape "
                                   "(3, frames, n_mels); files that share a stem keep their "
                                   "path relative to their common folder (a/x.wav b/x.wav -> "
                                   "DIR/a/x.npy, DIR/b/x.npy). Unusable files are reported and "
                                   "skipped (exit status 1).")
    p.add_argument("files", nargs="+", help="audio files (any format soundfile reads)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _feature_options(p)
    p.set_defaults(func=cmd_features)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the paper's experiment end to end on synthetic speech",
                       description="1. synthesise speech, compute its 3-D log-Mel with the "
                                   "fastest backend, check it against the float64 reference and "
                                   "plot it; 2. synthesise the emotional corpus; 3. K-fold "
                                   "cross-validation of ACRNN, ACRNN-r and SSA-CRNN-r (the "
                                   "`small` preset on the CPU, `paper` on CUDA), and one '-r' "
                                   "model with eq. 8's literal logit scale; 4. the Table-1 "
                                   "result and the figures in OUT/reports. About 10 minutes on "
                                   "2 CPU cores. An interrupted demo continues where it "
                                   "stopped.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--features-only", action="store_true", help="step 1 only")
    p.add_argument("--folds", type=_int_at_least(2), default=None,
                   help="override the demo's folds")
    p.add_argument("--epochs", type=_COUNT, default=None, help="override the demo's epochs")
    p.add_argument("--size", choices=("tiny", "small", "medium", "large"), default=None,
                   help="override the corpus size")
    p.add_argument("--lr", type=_POSITIVE, default=None, help="override the demo's lr")
    p.add_argument("--preset", choices=("small", "paper"), default=None,
                   help="override the demo's model preset")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="ssa-fast", description="Speaker-attentive speech emotion recognition (SSA-CRNN).")
    parser.add_argument("--version", action="version", version=f"ssa-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_cv, _add_train, _add_evaluate, _add_bench, _add_predict,
                _add_features, _add_demo):  # one function per subcommand, in --help's order
        add(sub)
    for name, p in sub.choices.items():
        p.add_argument("--debug", action="store_true",
                       help="show the traceback of an error (otherwise one line, status 2)")
        if name in ("train", "cv"):
            p.add_argument("--config", metavar="FILE",
                           help="options from a JSON, YAML or TOML file (names as on this "
                                "command line, or a run's config.json); options typed here "
                                "win. The resolved options are saved to OUT/config.json "
                                "(--resume, --overwrite and --restart are typed each time)")
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default (unless it says it already or has none)."""
    from .config_file import subparser

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices:
                _show_defaults(subparser(parser, command))
            continue
        d = action.default
        if (not action.option_strings or d is None or d is False or d == argparse.SUPPRESS
                or action.help == argparse.SUPPRESS or "default" in (action.help or "")):
            continue
        shown = " ".join(map(str, d)) if isinstance(d, list | tuple) else "%(default)s"
        action.help = f"{action.help} (default: {shown})" if action.help else \
            f"default: {shown}"


def _save_config(args) -> None:
    """OUT/config.json of a train or cv run: every resolved option (``--config`` reads it)."""
    from ._atomic import write_json
    from .distributed import is_main

    if is_main() and getattr(args, "resolved_config", None):
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", args.resolved_config, indent=1)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. The one error boundary: a user error (UserError, a missing or
    unwritable path, a full disk) prints one line ``ssa-fast <cmd>: error: ...`` and returns 2;
    anything else is a bug and keeps its traceback. ``--debug`` shows every traceback.
    Ctrl-C ends with one line and status 130 (what was written so far is complete: every file
    is written atomically, and ``--resume`` / a rerun of ``cv`` continues)."""
    from . import config_file

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # --config FILE: the command's defaults; an option typed twice: refused
        typed = config_file.apply(parser, argv)
    except UserError as exc:
        print(f"ssa-fast: error: {exc}", file=sys.stderr)
        return EXIT_USER
    args = parser.parse_args(argv)
    args.typed = typed
    args.argv = argv  # (the workers of cv --jobs run the same command line)
    if getattr(args, "protocol", "") is None:
        args.protocol = "linguistic" if args.corpus in ("atthack", "synthetic") else "random"
    if args.command in ("train", "cv"):
        args.resolved_config = config_file.resolved(args, parser, argv)
    prog = f"ssa-fast {args.command}"
    try:
        with warnings.catch_warnings():
            if not args.debug:  # warnings as one line each, like the errors
                warnings.showwarning = lambda message, *_, **__: print(
                    f"{prog}: warning: {message}", file=sys.stderr)
            _check_args(args)
            return args.func(args)
    except Exception as exc:
        message = None if args.debug else _user_error(exc)
        if message is None:
            raise
        print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
