"""What the command line refuses before any work, needing no data: paths, devices, option values
that argparse cannot judge alone; and the one-line form of a user error."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

# Exit status: 0 success; 1 some inputs of a multi-file command were reported and skipped (the
# others' results are printed) or an unexpected error (a bug: traceback); 2 a user error (bad
# path, option value, data or checkpoint, missing CUDA, full disk): one line, nothing half done.
EXIT_SKIPPED, EXIT_USER = 1, 2


def warn_user(message: str) -> None:
    """A warning for the user (``_warn.warn``, which imports torch: imported when one is given,
    so that ``--help`` and the options' checks run without torch)."""
    from .._warn import warn

    warn(message)


def check_output(path: str | None, option: str, folder: bool = True) -> None:
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


def check_input(path: str, what: str) -> None:
    if not Path(path).exists():
        raise UserError(f"{what} {path} does not exist")


def default_device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | None) -> None:
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


def cpu_has_native_bf16() -> bool:
    """Whether torch runs bfloat16 convolutions in oneDNN on this CPU, which needs AVX-512 (BW,
    VL and DQ) or AVX-NE-CONVERT on x86 and BF16 on ARM; torch's own test (True where it cannot
    tell). Without, torch takes its generic convolution (aten::_slow_conv2d)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN, or without the query
        return True


def check_bf16(bf16: bool, device: str | None) -> None:
    """``--bf16`` on a CPU where torch has no oneDNN bfloat16 convolution runs, but in torch's
    generic kernel (aten::_slow_conv2d), many times slower than float32: said before the work,
    once (under torchrun by rank 0 alone)."""
    import torch

    from ..distributed import is_main

    if bf16 and torch.device(default_device(device)).type == "cpu" and is_main() and \
            not cpu_has_native_bf16():
        warn_user("--bf16 on this CPU: torch's bfloat16 convolutions need AVX-512 or "
                  "AVX-NE-CONVERT, which it lacks, so they run in a generic kernel; a training "
                  "step measured 11-14x slower than in float32 on an AVX2 CPU "
                  "(benchmarks/RESULTS.md). Leave --bf16 out here: it pays on CUDA GPUs (and "
                  "was 1.7x faster than float32 on a CPU with AVX512-BF16)")


def check_corpus_paths(device: str | None, out: str | None, cache: str, corpus: str, root: str,
                       *, out_is_folder: bool = True) -> None:
    """The paths and device of a command over a corpus (train, cv, evaluate)."""
    check_device(device)
    check_output(out, "--out", folder=out_is_folder)
    check_output(cache, "--cache")
    check_input(root, "manifest" if corpus == "manifest" else "corpus root")


def check_run_folder(out: str, resume: bool, overwrite: bool) -> None:
    """``train``: what to do with a run already in --out is said, not guessed."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite: give one (--resume continues the run in "
                        "--out, --overwrite replaces it)")
    if not resume and not overwrite:
        from .._lock import LOCK_NAME

        folder = Path(out)  # (the lock file of an earlier run is no content)
        if folder.is_dir() and any(p.name != LOCK_NAME for p in folder.iterdir()):
            raise UserError(f"--out {folder} is not empty: add --resume to continue its run, "
                            "--overwrite to replace it, or choose another folder")


def check_features(config, typed: set[str] | None = None) -> None:
    """Warn about feature options that run but hardly do what was meant: mel bands that no FFT
    bin reaches (always at the log floor), and a sample rate other than 16 kHz with the window
    and hop (counted in samples) left at their 16 kHz defaults. ``typed``: the options typed on
    a ``features`` command line (the one command with every feature option); None for train and
    cv (--n-mels only)."""
    from ..features import FeatureConfig

    every_option = typed is not None
    empty = config.empty_bands()
    if empty:
        shown = ", ".join(map(str, empty[:8])) + (", ..." if len(empty) > 8 else "")
        warn_user(f"--n-mels {config.n_mels}: {len(empty)} of the mel bands ({shown}) get no "
                  f"FFT bin ({config.sample_rate / config.n_fft:g} Hz per bin at --n-fft "
                  f"{config.n_fft} and {config.sample_rate} Hz) and stay at the log floor; "
                  "use fewer mel bands" + (" or a larger --n-fft" if every_option else ""))
    d = FeatureConfig()
    untyped = [o for o in ("win_length", "hop_length") if o not in (typed or ())]
    if every_option and config.sample_rate != d.sample_rate and untyped:
        sr, scale = config.sample_rate, config.sample_rate / d.sample_rate
        win, hop = round(d.win_length * scale), round(d.hop_length * scale)
        n_fft = max(config.n_fft, 1 << (win - 1).bit_length())
        fix = f"--win-length {win} --hop-length {hop}" + (
            f" --n-fft {n_fft}" if n_fft != config.n_fft else "")
        warn_user(f"--sample-rate {sr}: the window ({config.win_length} samples) and hop "
                  f"({config.hop_length}) are counted in samples, so frames are "
                  f"{1000 * config.win_length / sr:.3g} ms long every "
                  f"{1000 * config.hop_length / sr:.3g} ms (the defaults mean "
                  f"{1000 * d.win_length / d.sample_rate:g} ms / "
                  f"{1000 * d.hop_length / d.sample_rate:g} ms at {d.sample_rate} Hz); for "
                  f"those give {fix}")


def user_error(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug."""
    from .._atomic import DiskFullError
    from ..errors import BackendUnavailableError

    if isinstance(exc, (UserError, BackendUnavailableError)):
        return str(exc)
    if isinstance(exc, DiskFullError):
        return exc.strerror
    if isinstance(exc, OSError):  # a path that is missing, unreadable, too large, ...
        what = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
        return f"{exc.filename}: {what}" if exc.filename else what
    return None
