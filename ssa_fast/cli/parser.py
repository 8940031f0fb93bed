"""The options of every command: argparse types that check values before any work, the option
groups commands share, one function per command (in --help's order) and build_parser."""

from __future__ import annotations

import argparse

import numpy as np

from ..data.splits import PROTOCOLS
from ..errors import UserError
from . import commands
from .checks import EXIT_USER


class _Parser(argparse.ArgumentParser):
    """argparse with the command line's error format: one line naming the option, status 2;
    options are read as spelled, never as abbreviations (``cv --fold 2`` was ``--folds 2``, a
    2-fold cross-validation, where the user meant one fold)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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


def _pool(text: str) -> tuple[int, int]:
    """argparse type: 'T,F', two integers >= 1 (a max-pooling's kernel)."""
    parts = text.replace(" ", "").split(",")
    try:
        pool = tuple(int(p) for p in parts)
    except ValueError:
        pool = ()
    if len(pool) != 2 or min(pool) < 1:
        raise argparse.ArgumentTypeError(f"expected two integers >= 1 as T,F (e.g. 2,4), got "
                                         f"{text!r}")
    return pool


_pool.__name__ = "T,F"


class _Later:
    """The choices of an option, read from ``module.name`` when argparse first looks at them
    (to check a value or to write the command's help): a module that imports torch, which
    ``ssa-fast --help`` and the other commands do not need."""

    def __init__(self, module: str, name: str):
        self.where = module, name

    def _values(self) -> tuple:
        from importlib import import_module

        module, name = self.where
        return tuple(getattr(import_module(module, __package__), name))

    def __contains__(self, value) -> bool:
        return value in self._values()

    def __iter__(self):
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (0: off)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value



def _feature_options(p: argparse.ArgumentParser) -> None:
    from ..features import FeatureConfig

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
        from ..features import FeatureConfig

        g.add_argument("--n-mels", type=_COUNT, default=FeatureConfig.n_mels)
    g.add_argument("--merge-excited", action="store_true", help="IEMOCAP: exc -> hap")
    g.add_argument("--scripted", action="store_true", help="IEMOCAP: scripted dialogs too")
    g.add_argument("--attitudes", type=_attitudes, default=None, metavar="A1,A2,A3,A4",
                   help="Att-HACK: the names of the attitudes a1..a4, which no source found "
                        "confirms (default: friendly,seductive,dominant,distant)")
    g.add_argument("--cache", default=".ssa_fast_cache", help="feature cache folder")
    g.add_argument("--show-skipped", type=_NATURAL, default=20, help="skipped files to list")
    g.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _share(text: str) -> tuple[int, int]:
    """argparse type of --shard."""
    from ..train.parallel import parse_share

    try:
        return parse_share(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _attitudes(text: str) -> tuple[str, ...]:
    """argparse type of --attitudes: four distinct names."""
    names = tuple(n.strip() for n in text.split(","))
    if len(names) != 4 or not all(names) or len(set(names)) != 4:
        raise argparse.ArgumentTypeError(f"expected four distinct names for a1..a4, comma "
                                         f"separated, got {text!r}")
    return names


def _columns(text: str) -> dict[str, str]:
    """argparse type of --columns."""
    from ..data import parse_columns

    try:
        return parse_columns(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _protocol_options(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
    """--protocol, --folds (and for evaluate --seed); evaluate takes the checkpoint's values
    when they are left out (None)."""
    g = p.add_argument_group("protocol")
    if from_checkpoint:
        g.add_argument("--protocol", choices=PROTOCOLS, default=None,
                       help="default: the checkpoint's")
        g.add_argument("--folds", type=_int_at_least(2), default=None,
                       help="default: the checkpoint's")
        g.add_argument("--seed", type=_int_at_least(0), default=None,
                       help="the fold seed (default: the checkpoint's)")
        return
    g.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="default: linguistic for atthack and synthetic, random otherwise; "
                        "loso: one speaker per fold (the first --folds speakers: fewer folds "
                        "than speakers leave the others out, with a warning); loso-session: "
                        "IEMOCAP, one session per fold (5 folds)")
    g.add_argument("--folds", type=_int_at_least(2), default=10)


def _training_options(p: argparse.ArgumentParser) -> None:
    from ..data.constants import NORMALISATIONS, SEGMENT_FRAMES
    from ..models.constants import POOLINGS
    from ..models.presets import PRESETS
    from ..train.config import COMPILE_MODES, TrainConfig

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
    g.add_argument("--pool", type=_pool, default=d.pool, metavar="T,F",
                   help="the models' max-pooling in time and frequency (default: the preset's, "
                        "2,2; the paper names 2,4 as an option)")
    g.add_argument("--dropout", type=_fraction, default=d.dropout, metavar="P",
                   help="dropout after the models' linear layer (default: none)")
    g.add_argument("--combine", choices=("concat", "sum"), default=d.combine,
                   help="SSA: c_em and c_sp side by side (c in R^2d, the paper's text) or summed "
                        "(c in R^d, eq. 6 as printed)")
    g.add_argument("--ssa-scale", type=_POSITIVE, default=d.ssa_scale, metavar="S",
                   help="SSA: the attention scores' scale (default 1/sqrt(T))")
    g.add_argument("--constrain-speaker", action="store_true",
                   help="SSA-CRNN-r: L1-constrain the speaker classifier too (with the logit "
                        "scale; other models are not changed)")
    g.add_argument("--select-by", choices=("utterance", "segment"), default=d.select_by,
                   help="the validation UAR that selects the epoch (and early stopping): of "
                        "utterances (default) or of segments")
    g.add_argument("--patience", type=_COUNT, default=d.patience,
                   help="early stopping (epochs)")
    g.add_argument("--pooling", choices=POOLINGS, default=d.pooling,
                   help="utterance decision: mean of segment log-probs or max posterior")
    g.add_argument("--normalisation", choices=NORMALISATIONS,
                   default=None, help="default: speaker, or utterance when some utterances "
                                      "have no speaker")
    g.add_argument("--segment-frames", type=_COUNT, default=SEGMENT_FRAMES)
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
                        "layers in bfloat16; the fused ops and the loss in float32). On a CPU "
                        "with AVX512-BF16 the demo's three models trained 1.7x faster than in "
                        "float32, the same ordering within the CIs; on an AVX2 CPU (no "
                        "AVX-512) a training step was 11-14x slower than in float32 (torch's "
                        "generic convolution kernel; benchmarks/RESULTS.md), and the command "
                        "says so")
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
    g.add_argument("--seed", type=_int_at_least(0), default=d.seed)


def _add_synth(sub) -> None:
    from ..data.synthetic import SIZES

    p = sub.add_parser("synth", help="synthesise the synthetic emotional-speech corpus",
                       description="Synthesise speech with espeak-ng for several voices "
                                   "(speakers) and 4 emotions expressed by prosody in a "
                                   "speaker-dependent way; writes DIR/wav/*.wav (16 kHz), "
                                   "DIR/manifest.csv and DIR/synthetic.json. Synthetic speech, "
                                   "not real emotional speech. Deterministic for a seed.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", default="small", choices=tuple(SIZES),
                   help="tiny: 2 speakers x 2 phrases (tests); small: 6 x 20 (~8 min, the "
                        "demo); medium: 8 x 100; large: 10 x 100 x 3 repetitions (~4 h)")
    p.add_argument("--speakers", type=_COUNT, help="override the number of speakers (max 12)")
    p.add_argument("--phrases", type=_COUNT, help="override the number of phrases (max 104)")
    p.add_argument("--repetitions", type=_COUNT, help="override repetitions per phrase")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--jobs", type=_COUNT, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_synth)


def _add_cv(sub) -> None:
    from ..models.registry import MODEL_NAMES, PAPER_MODELS
    from ..reports.experiment import REPORT_FORMATS

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
    p.add_argument("--figure-format", choices=REPORT_FORMATS, default="png",
                   help="the figures of reports/ (PDF and SVG are vector graphics); none: the "
                        "table alone, about 2 s sooner on a CPU (a sweep of many small runs), "
                        "figures of an earlier run removed")
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
    p.set_defaults(func=commands.cmd_cv)


def _add_train(sub) -> None:
    from ..models.registry import MODEL_NAMES
    from ..train.config import TrainConfig

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
    p.set_defaults(func=commands.cmd_train)


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
    p.set_defaults(func=commands.cmd_evaluate)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time the fused ops and a training step on this machine",
                       description="A quick table: every available implementation of "
                                   "logmel_delta, ssa_attention (forward + backward) and "
                                   "l1_project_ at the shapes of the performance targets, and a "
                                   "training step of each model, with the speed-up over the "
                                   "pure-torch baseline. `make bench` runs the full suite.")
    p.add_argument("--ops", nargs="+", default=None, choices=_Later("..bench", "OPS"),
                   metavar="OP", help="the workloads to time, of %(choices)s (default: all)")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile of the references (slow to compile)")
    p.add_argument("--budget", type=_POSITIVE, default=2.0, help="seconds of timing per row")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=_COUNT, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=commands.cmd_bench)


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
    p.add_argument("--batch-size", type=_COUNT, default=None,
                   help="segments per forward pass, of many files together (default 32 on "
                        "the CPU, where larger batches are slower, and 128 on a GPU)")
    p.add_argument("--workers", type=_NATURAL, default=None,
                   help="processes decoding and resampling audio (default: the CPU cores but "
                        "one, at most 8; 0: in the main process)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the model (check on your data that the labels match "
                        "fp32); on a CPU without AVX-512 many times slower than fp32, and the "
                        "command says so")
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
    p.set_defaults(func=commands.cmd_predict)


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
    p.set_defaults(func=commands.cmd_features)


def _add_demo(sub) -> None:
    from ..data.synthetic import SIZES

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
    p.add_argument("--size", choices=tuple(SIZES), default=None,
                   help="override the corpus size")
    p.add_argument("--lr", type=_POSITIVE, default=None, help="override the demo's lr")
    p.add_argument("--preset", choices=("small", "paper"), default=None,
                   help="override the demo's model preset")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=commands.cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

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
    from ..config_file import subparser

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


