"""`ssa-fast` command line.

    ssa-fast synth --out DIR [--size small]       the synthetic corpus (espeak-ng), WAV + manifest
    ssa-fast cv CORPUS ROOT --out DIR             K-fold cross-validation of the models, Table 1
    ssa-fast predict CHECKPOINT WAV [WAV ...]     emotion of audio files with a trained model
    ssa-fast features WAV [WAV ...] --out DIR     3-D log-Mel of audio files, one .npy each
    ssa-fast demo [--out DIR]                     synthesise speech, extract features, plot them

parser.py builds every command's options (one function a command); commands.py holds one
function a command, which checks what needs no data first (checks.py), then works; corpus.py
opens the corpus of train / cv / evaluate and computes its features (under torchrun too);
naming.py names output files. main(), here, is the one error boundary.
"""

from __future__ import annotations

import sys
import warnings

from .._malloc import keep_freed_memory
from ..errors import UserError
from .checks import EXIT_SKIPPED, EXIT_USER, user_error
from .naming import output_names as _output_names  # noqa: F401 (its name before the package)
from .parser import build_parser

__all__ = ["EXIT_SKIPPED", "EXIT_USER", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. The one error boundary: a user error (UserError, a missing or
    unwritable path, a full disk) prints one line ``ssa-fast <cmd>: error: ...`` and returns 2;
    anything else is a bug and keeps its traceback. ``--debug`` shows every traceback.
    Ctrl-C ends with one line and status 130 (what was written so far is complete: every file
    is written atomically, and ``--resume`` / a rerun of ``cv`` continues)."""
    from .. import config_file
    from .corpus import default_protocol

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # --config FILE: the command's defaults; an option typed twice: refused
        typed = config_file.apply(parser, argv)
    except UserError as exc:
        print(f"ssa-fast: error: {exc}", file=sys.stderr)
        return EXIT_USER
    args = parser.parse_args(argv)
    keep_freed_memory()  # (a step's buffers stay in the process: _malloc.py)
    args.typed = typed
    args.argv = argv  # (the workers of cv --jobs run the same command line)
    if args.command in ("train", "cv"):
        if args.protocol is None:
            args.protocol = default_protocol(args.corpus)
        args.resolved_config = config_file.resolved(args, parser, argv)
    prog = f"ssa-fast {args.command}"
    try:
        with warnings.catch_warnings():
            if not args.debug:  # warnings as one line each, like the errors
                warnings.showwarning = lambda message, *_, **__: print(
                    f"{prog}: warning: {message}", file=sys.stderr)
            return args.func(args)
    except Exception as exc:
        message = None if args.debug else user_error(exc)
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
        if "torch" in sys.modules:  # (a command that needed no torch did not import it)
            import torch.distributed

            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
