"""The names of output files: one per distinct input, never shared (``features``' arrays,
``predict``'s attention plots)."""

from __future__ import annotations

from pathlib import Path


def output_names(files: list[str], suffix: str) -> dict[str, Path]:
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
