"""Which code computed a result: a digest of the sources that compute numbers.

A run's identity (``train/fingerprint.py``) and a feature-cache key (``data/cache.py``) hold the
digest of the code that computes them, so that what another version of that code computed (after
an upgrade, or an edit of a checkout) is recomputed, never reused as if this code had computed it.

The digest covers:

- the Python sources of the stages that compute the numbers (:data:`FEATURES` for features,
  :data:`TRAINING` for a run), each as written without its comments, docstrings and blank lines
  (:func:`source_text`): those do not count, every other edit does;
- the sources the compiled extension was built from (``ssa_fast._C.source_digest``, computed by
  CMake over ``csrc/``; ``none`` when the extension is not loaded and the pure-torch or Triton
  kernels run).

The command line, the reports and the prediction code are left out: they do not change a fold's
numbers. A file's path inside the package is part of the digest, its location on disk is not, so
every installation of the same sources (the nodes of a cluster) has the same digest.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import re
import sys
import tokenize
from collections.abc import Iterator, Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

# the feature front end: reading, decoding and resampling a corpus' audio, the log-Mel and its
# kernels, the choice of backend, and the cache's batching of files (the synthetic corpus: its
# listing reads its class names)
FEATURES = ("audio", "features", "kernels", "_backend.py", "data/corpus.py", "data/synthetic.py",
            "data/cache.py")
# a training run: the above, the corpus listing, splits, segments and normalisation, the models,
# the training loop, distributed training, evaluation (with the prediction engine's scoring) and
# metrics
TRAINING = FEATURES + ("data", "models", "train", "distributed.py", "predict/engine.py",
                       "metrics.py")
# a prediction: the feature front end, segments and normalisation, the models and their scoring,
# and the prediction engine (reading the inputs, batching, a file's probabilities from its
# segments'); not how the records are written
PREDICTION = FEATURES + ("data", "models", "predict/engine.py", "predict/__init__.py",
                         "predict/inputs.py")
# what the modules above import and may leave out: errors, warnings, files, locks, processes,
# the packages' imports on first use
NOT_COMPUTING = ("errors.py", "_warn.py", "_atomic.py", "_lock.py", "_process.py", "_install.py",
                 "_code.py", "_digest.py", "_lazy.py")


# (statement lists that may hold a definition: if/for/while/with/try/match bodies and handlers)
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def _definitions(body: list) -> Iterator[ast.AST]:
    """The classes and functions defined in a statement list, outside other definitions (no
    expression holds a statement, so the statements alone are walked)."""
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        else:
            for field in _BODIES:
                yield from _definitions(getattr(node, field, ()))


def _docstrings(tree: ast.Module) -> Iterator[ast.Expr]:
    todo: list[ast.AST] = [tree]
    while todo:
        body = todo.pop().body
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            yield body[0]
        todo.extend(_definitions(body))


# A string literal (any prefix, quotes and escapes) or a comment, whichever starts first. In
# Python before 3.12 a quote or a # outside both cannot occur, so scanning for the two finds the
# comments that the tokenizer would, at a fraction of its time (its pure-Python version took
# most of the digest's 0.21 s, computed at every training process's start). 3.12 reads f-strings
# that nest the same quotes, so there its own tokenizer (written in C) decides.
_STRING_OR_COMMENT = re.compile(r"""
    [rRbBuUfF]{0,2} (?: \'\'\'(?:[^'\\]|\\.|'(?!''))*\'\'\'
                      | \"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
                      | '(?:[^'\\\n]|\\.)*'
                      | "(?:[^"\\\n]|\\.)*" )
    | (?P<comment> \#[^\r\n]* )
    """, re.VERBOSE | re.DOTALL)


def _comments_by_tokenizer(source: str) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """(line, column) start and end of every comment, columns in characters."""
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start, tok.end


def _comments_by_scan(source: str) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """The same, for Python before 3.12 (the spans the tokenizer gives: tests/test_code.py)."""
    line, line_start, seen = 1, 0, 0  # (the line of position ``seen``, and where it starts)
    for m in _STRING_OR_COMMENT.finditer(source):
        if m.lastgroup == "comment":
            start = m.start()
            line += source.count("\n", seen, start)
            line_start, seen = source.rfind("\n", 0, start) + 1, start
            yield (line, start - line_start), (line, m.end() - line_start)


_comments = _comments_by_tokenizer if sys.version_info >= (3, 12) else _comments_by_scan


@functools.lru_cache(maxsize=1024)  # (FEATURES' files are also TRAINING's; keyed on the text)
def source_text(source: str) -> str:
    """``source`` as written, without its comments, docstrings, blank lines and trailing
    spaces: the code's own text, which every Python version reads the same (a syntax tree
    written back, ``ast.unparse``, differs between versions: 3.10, 3.11 and 3.12 gave three
    digests of one checkout)."""
    lines = source.splitlines()
    spans = []  # (line, column) ranges to leave out; columns in characters

    def chars(line: int, byte_col: int) -> int:  # (ast counts UTF-8 bytes)
        return len(lines[line - 1].encode()[:byte_col].decode(errors="ignore"))

    for doc in _docstrings(ast.parse(source)):
        spans.append(((doc.lineno, chars(doc.lineno, doc.col_offset)),
                      (doc.end_lineno, chars(doc.end_lineno, doc.end_col_offset))))
    spans.extend(_comments(source))
    cuts: dict[int, list[tuple[int, int]]] = {}  # line -> (start, end) columns to cut
    for (l0, c0), (l1, c1) in spans:
        for n in range(l0, l1 + 1):
            cuts.setdefault(n, []).append((c0 if n == l0 else 0,
                                           c1 if n == l1 else len(lines[n - 1])))
    kept = []
    for n, line in enumerate(lines, 1):
        for start, end in sorted(cuts.get(n, ()), reverse=True):  # (right to left)
            line = line[:start] + line[end:]
        if line.strip():
            kept.append(line.rstrip())
    return "\n".join(kept)


def _files(root: Path, parts: Sequence[str]) -> list[Path]:
    out: set[Path] = set()
    for part in parts:
        path = root / part
        if path.is_dir():  # (not an editor's lock or backup: a dot name, a dangling link)
            out.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts
                       and not p.name.startswith(".") and p.is_file())
        elif path.is_file():
            out.add(path)
    return sorted(out)


def python_digest(parts: Sequence[str], root: Path | None = None) -> str:
    """A digest of the Python sources ``parts`` (folders and files under ``root``, by default
    the package's folder)."""
    root = PACKAGE if root is None else root
    h = hashlib.sha256()
    for path in _files(root, parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(source_text(path.read_text(encoding="utf-8")).encode() + b"\0")
    return h.hexdigest()


def native_digest() -> str:
    """The digest of the sources ``ssa_fast._C`` was built from, or ``none`` when it is not
    loaded (``unknown`` for an extension built before it carried one)."""
    from ._backend import extension_status

    if not extension_status()[0]:
        return "none"
    import ssa_fast._C as ext

    return getattr(ext, "source_digest", "") or "unknown"


@functools.cache
def code_digest(parts: tuple[str, ...] = TRAINING) -> str:
    """16 hex digits over the Python sources ``parts`` and the extension's sources (read once
    per process)."""
    blob = f"{python_digest(parts)} {native_digest()}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
