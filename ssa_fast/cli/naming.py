"""The names of output files: one per distinct input, never shared (``features``' arrays,
``predict``'s attention plots)."""

from __future__ import annotations

from pathlib import Path


def output_names(files: list[str], suffix: str) -> dict[str, Path]:
    """Each distinct input file -> its output name (relative to the output folder), never shared.

    ``<stem><suffix>`` when no other input has that stem; inputs sharing a stem keep their path
    relative to the inputs' common folder (``a/x.wav b/x.wav`` -> ``a/x.npy``, ``b/x.npy``), with
    their own suffix when that is still ambiguous (``x.wav x.flac`` -> ``x.wav.npy``,
    ``x.flac.npy``). The same file named twice (or through a link) is one input; names come
    from the paths as given, not from where links point."""
    import os
    from collections import defaultdict

    unique: dict[str, str] = {}  # (the real path only tells the same file named twice apart)
    for f in files:
        unique.setdefault(os.path.realpath(f), f)
    # names come from the paths as given (absolute): a link's target names another file, and
    # a/x.wav, b/x.wav as links got their targets' names instead of a/x.npy, b/x.npy
    by_stem = defaultdict(list)
    for f in unique.values():
        by_stem[Path(f).stem].append(f)
    first, then = {}, {}  # a stem of its own, then the names of shared stems
    for stem, given in by_stem.items():
        if len(given) == 1:
            first[given[0]] = Path(stem + suffix)
            continue
        absolute = [os.path.abspath(f) for f in given]
        common = os.path.commonpath([os.path.dirname(a) for a in absolute])
        rel = [Path(os.path.relpath(a, common)) for a in absolute]
        plain = [r.with_suffix(suffix) for r in rel]
        for f, r, q in zip(given, rel, plain, strict=True):
            then[f] = q if plain.count(q) == 1 else r.with_name(r.name + suffix)
    taken: set[Path] = set()
    out = {}
    # a last guard (x.wav.flac next to x.wav and x.flac): the documented name of a stem of its
    # own is never renumbered, a shared stem's name is (it took the other's name in input order)
    for f, name in [*first.items(), *then.items()]:
        base, i = name, 1
        while name in taken:
            name, i = base.with_name(f"{base.stem}-{i}{base.suffix}"), i + 1
        taken.add(name)
        out[f] = name
    return {f: out[f] for f in unique.values()}
