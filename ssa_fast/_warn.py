"""Warnings that point at the line of the caller's code that led to them.

``warnings.warn`` names the frame ``stacklevel`` calls up, a count each warning site guessed and
that was wrong wherever one public function reaches the site through another (``logmel_delta``
through ``logmel_delta_with_bank``, a module's ``forward`` through ``nn.Module.__call__``). Here
the frames inside this package and inside torch are skipped instead, so the warning names the
first line outside both: the user's script, test or notebook cell (Python 3.12's
``skip_file_prefixes`` does the same; this package still runs on 3.10).
"""

from __future__ import annotations

import os
import sys
import warnings

import torch

_INSIDE = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
           os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)


def _outside_level() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called in :func:`_emit` that names the first
    frame, from :func:`_emit`'s caller up, outside this package and torch."""
    level, frame = 2, sys._getframe(2)  # (2: _emit's caller, seen from warnings.warn in _emit)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INSIDE):
        frame = frame.f_back
        level += 1
    return level


def _emit(message: str, category: type[Warning]) -> None:
    warnings.warn(message, category, stacklevel=_outside_level())


# While torch.compile traces a caller the warning is a graph break that runs eagerly (dynamo
# traces neither warnings.warn nor sys._getframe, and would add a warning of its own about the
# latter); torch._disable_dynamo imports dynamo at its first call only, so plain calls stay plain.
_emit_eagerly = torch._disable_dynamo(_emit)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first caller outside ssa_fast
    and torch (the outermost frame when every frame is inside)."""
    (_emit_eagerly if torch.compiler.is_compiling() else _emit)(message, category)
