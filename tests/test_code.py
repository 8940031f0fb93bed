"""The digest of the code that computes results (ssa_fast/_code.py), which run identities and
feature-cache keys hold: a result computed by other code is recomputed, never reused.

- an edit of code in the computing stages changes the digest; comments, docstrings, layout, the
  package's location and code outside those stages do not;
- every module the computing stages import computes inside the digest (or is named as not
  computing): a stage that starts importing new code cannot leave it out unnoticed;
- the compiled extension carries the digest of the sources it was built from, which matches the
  checkout's csrc/ (a stale build would not);
- the feature cache's file changes with the front end's code (and `cv` recomputes a fold whose
  identity names other code: tests/train/test_bookkeeping.py).
"""

import ast
import hashlib
import shutil
from pathlib import Path

import pytest

from ssa_fast import _code
from ssa_fast.data import load_corpus
from ssa_fast.data.cache import cache_path
from ssa_fast.features.config import FeatureConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package's Python sources in another folder."""
    copy = tmp_path / "elsewhere" / "ssa_fast"
    shutil.copytree(_code.PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code)


def test_an_edit_of_computing_code_changes_the_digest_comments_and_layout_do_not(package_copy):
    here = _code.python_digest(_code.TRAINING)
    assert _code.python_digest(_code.TRAINING, package_copy) == here  # location does not count

    reference = package_copy / "kernels" / "ssa_attention" / "reference.py"
    text = reference.read_text()
    tree = ast.parse(text)
    doc = ast.get_docstring(tree, clean=False)
    # a comment, a docstring and the layout: the same code
    _edit(reference, doc, doc + "\n\nMore words about the formula.")
    reference.write_text("# a new comment\n\n\n" + reference.read_text().replace(
        "\n\n\ndef ", "\n\n\n\n# another comment\ndef ", 1))
    assert reference.read_text() != text
    assert _code.python_digest(_code.TRAINING, package_copy) == here
    # code outside the computing stages: the same
    _append(package_copy / "cli" / "parser.py", "def _new_helper():\n    return 1\n")
    _append(package_copy / "reports" / "experiment.py", "X = 2\n")
    assert _code.python_digest(_code.TRAINING, package_copy) == here

    # one changed constant in a kernel's reference: another digest, for runs and features
    features = _code.python_digest(_code.FEATURES, package_copy)
    logmel = package_copy / "kernels" / "logmel_delta" / "reference.py"
    source = logmel.read_text()
    tree = ast.parse(source)
    const = next(n for n in ast.walk(tree) if isinstance(n, ast.Constant)
                 and isinstance(n.value, float))
    line = source.splitlines()[const.lineno - 1]
    changed = line[:const.col_offset] + repr(const.value * 2) + line[const.end_col_offset:]
    _edit(logmel, line, changed)
    assert _code.python_digest(_code.TRAINING, package_copy) != here
    assert _code.python_digest(_code.FEATURES, package_copy) != features

    # the training loop counts for runs, not for features; a new file counts
    _append(package_copy / "train" / "loop.py", "Y = 3\n")
    edited = _code.python_digest(_code.TRAINING, package_copy)
    assert _code.python_digest(_code.FEATURES, package_copy) != features  # (the kernel only)
    (package_copy / "models" / "extra.py").write_text("Z = 1\n")
    assert _code.python_digest(_code.TRAINING, package_copy) != edited


def _imported_files(path: Path) -> set[str]:
    """Files of the package that ``path`` imports (relative imports and ssa_fast.*)."""
    package = path.relative_to(_code.PACKAGE).parent.parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(package[:len(package) - (node.level - 1)])
            module = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "ssa_fast":
            module = node.module.split(".")[1:]
        else:
            continue
        for name in [None] + [a.name for a in node.names]:
            parts = module + ([name] if name else [])
            if not parts:  # (the package's __init__: re-exports only)
                continue
            for candidate in ("/".join(parts) + ".py", "/".join(parts + ["__init__.py"])):
                if (_code.PACKAGE / candidate).is_file():
                    out.add(candidate)
    return out


@pytest.mark.parametrize("parts", [_code.TRAINING, _code.FEATURES], ids=["training", "features"])
def test_the_digest_covers_every_module_the_computing_stages_import(parts):
    covered = {p.relative_to(_code.PACKAGE).as_posix() for p in _code._files(_code.PACKAGE, parts)}
    assert "kernels/logmel_delta/reference.py" in covered
    missing = {}
    for rel in sorted(covered):
        for imported in _imported_files(_code.PACKAGE / rel) - covered:
            if imported not in _code.NOT_COMPUTING:
                missing.setdefault(rel, []).append(imported)
    assert not missing, f"computing modules import code outside the digest: {missing}"


def _csrc_digest(csrc: Path) -> str:
    """CMakeLists.txt's digest, written again: 'path sha256' lines of every source, sorted."""
    files = sorted((p for p in csrc.rglob("*") if p.suffix in (".cpp", ".h", ".cu", ".cuh")),
                   key=lambda p: p.relative_to(csrc).as_posix())
    lines = "".join(f"{p.relative_to(csrc).as_posix()} "
                    f"{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_the_extension_carries_the_digest_of_the_sources_it_was_built_from():
    import ssa_fast._C as ext

    assert len(ext.source_digest) == 64
    assert _code.native_digest() == ext.source_digest
    # (make test builds the checkout's sources: a build of other sources would differ)
    assert ext.source_digest == _csrc_digest(ROOT / "csrc")


def test_the_feature_cache_file_changes_with_the_front_ends_code(package_copy, monkeypatch,
                                                                 tmp_path):
    rows = ["path,speaker,label"]
    for i in range(3):
        (tmp_path / f"u{i}.wav").write_bytes(b"RIFF" + bytes(i))  # (the key reads no audio)
        rows.append(f"u{i}.wav,s{i},{'ab'[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    corpus = load_corpus("manifest", tmp_path / "m.csv")
    features = FeatureConfig()
    before = cache_path(corpus, tmp_path, features)
    assert cache_path(corpus, tmp_path, features) == before
    monkeypatch.setattr(_code, "PACKAGE", package_copy)
    _code.code_digest.cache_clear()
    try:
        _append(package_copy / "train" / "loop.py", "Y = 3\n")
        assert cache_path(corpus, tmp_path, features) == before  # training code: the same
        _code.code_digest.cache_clear()
        _append(package_copy / "audio" / "io.py", "W = 4\n")
        assert cache_path(corpus, tmp_path, features) != before
    finally:
        _code.code_digest.cache_clear()


def test_the_code_text_is_the_source_as_written_without_comments_and_docstrings():
    """The text hashed is the source's own (not a syntax tree written back, which differs
    between Python versions: 3.10, 3.11 and 3.12 gave three digests of one checkout), so any
    Python reading the same sources gives the same digest."""
    source = ('"""Module doc \u00e9."""\nimport x  # a comment \u00e9\n\ndef f(a):\n'
              '    """Doc\n    more."""\n    s = f\'{a!r:>{3}}\'  # trailing\n'
              '    return "# not a comment"\n\n\nclass C:\n    \'\'\'Only a docstring.\'\'\'\n')
    assert _code.source_text(source) == ("import x\ndef f(a):\n    s = f'{a!r:>{3}}'\n"
                                         '    return "# not a comment"\nclass C:')


def test_the_digest_is_the_same_under_every_python_found(tmp_path):
    """The digest of the package's sources under each other CPython 3.10+ on this machine (the
    ones a cluster's nodes might run) equals this one's."""
    import shutil as sh
    import subprocess
    import sys

    found = {sh.which(f"python3.{minor}") for minor in range(10, 15)}
    found |= set(map(str, Path("/root/.pyenv/versions").glob("3.1[0-4]*/bin/python3")))

    def runs(python: str) -> bool:  # (a shim of an interpreter that is not installed does not)
        probe = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 10))"],
                               capture_output=True, text=True, timeout=60)
        return probe.returncode == 0 and probe.stdout.strip() == "True"

    others = sorted(p for p in found if p and Path(p).resolve() != Path(sys.executable).resolve()
                    and runs(p))
    script = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('c', "
              f"{str(_code.PACKAGE / '_code.py')!r}); m = importlib.util.module_from_spec(s); "
              "s.loader.exec_module(m); print(m.python_digest(m.TRAINING))")
    here = _code.python_digest(_code.TRAINING)
    if not others:
        pytest.skip("no other CPython 3.10+ on this machine")
    for python in others:
        out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (python, out.stderr[-1000:])
        assert out.stdout.strip() == here, python


def test_editor_files_beside_the_sources_do_not_count(package_copy):
    """An editor's lock (Emacs' .#loop.py, a dangling link) or backup beside a source: not
    read (the lock made every run and cache lookup fail)."""
    here = _code.python_digest(_code.TRAINING, package_copy)
    (package_copy / "train" / ".#loop.py").symlink_to("user@host.1234:1700000000")
    (package_copy / "train" / ".loop.py").write_text("X = 1\n")
    assert _code.python_digest(_code.TRAINING, package_copy) == here


TRICKY_SOURCES = [
    'if"#":  # after a string glued to a keyword\n    x = r"\\"#"  # a raw string\'s quote\n',
    "s = '''a # not\n' # still not\n''' + \"\"\"#\"\"\"  # yes\n",
    "b = (br'#'  # one\n     rb\"x\\\\\"  # two\n     )\nc = f'{a!r:>{w}}#'  # \u00e9 three\n",
    "d = 'a\\\nb # not'  # a string over a backslash-newline\n#\n    # indented\n",
    "e = u'\u00e9' '#'  # concatenated\n\x0cf = 1  # after a form feed\n",
    "def g():\n    '''doc # not'''\n    return {'#': 1}['#']  # last\n",
    # docstrings of definitions inside every kind of statement list
    "if a:\n    def f(): 'f'\nelse:\n    class C:\n        'C'\n        def m(self):\n"
    "            'm'\n            class D: 'D'\ntry:\n    def t(): 't'\nexcept E:\n"
    "    def h(): 'h'\nelse:\n    def o(): 'o'\nfinally:\n    async def z(): 'z'\n"
    "for i in x:\n    with y:\n        def w(): 'w'\nwhile 1:\n    pass\nelse:\n"
    "    def we(): 'we'\nmatch v:\n    case 1:\n        def mc(): 'mc'\n",
]


def _sources_to_compare() -> list[str]:
    """The sources above, the package's and the tests', and (before Python 3.12, whose own
    modules may nest quotes in f-strings) the standard library's modules."""
    import sys

    files = sorted(_code.PACKAGE.rglob("*.py")) + sorted(ROOT.joinpath("tests").rglob("*.py"))
    if sys.version_info < (3, 12):
        files += sorted(Path(ast.__file__).parent.glob("*.py"))
    return TRICKY_SOURCES + [p.read_text(encoding="utf-8") for p in files]


def test_the_comment_scan_finds_what_the_tokenizer_finds():
    """Before Python 3.12 a scan for strings and comments stands for the tokenizer, whose
    pure-Python version took most of the digest's 0.21 s at every training process's start:
    the same comment spans on sources made to confuse it, on every source of the package and
    the tests, and on the standard library's modules (3.12 nests quotes in f-strings: there the
    tokenizer runs)."""
    sources = _sources_to_compare()
    assert len(sources) > 200
    for source in sources:
        assert list(_code._comments_by_scan(source)) == \
            list(_code._comments_by_tokenizer(source)), source[:200]
    assert [c for c, _ in _code._comments_by_scan(TRICKY_SOURCES[0])] == [(1, 8), (2, 16)]


def test_every_docstring_is_found_without_walking_expressions():
    """The docstrings left out are those a walk of the whole syntax tree finds, found by
    walking statement lists alone."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for source in _sources_to_compare():
        tree = ast.parse(source)
        walked = {(d.lineno, d.col_offset) for n in ast.walk(tree) if isinstance(n, kinds)
                  and ast.get_docstring(n, clean=False) is not None for d in n.body[:1]}
        assert {(d.lineno, d.col_offset) for d in _code._docstrings(tree)} == walked, source[:200]
    assert len(list(_code._docstrings(ast.parse(TRICKY_SOURCES[-1])))) == 11
