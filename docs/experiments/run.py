"""The experiments of docs/experiments/README.md: each runs `ssa-fast cv` as a user would, once per
(variant, seed), then `analyse` turns the results into the README's tables and figures.

    python docs/experiments/run.py e1 --corpus C --work W       # mechanism (literal vs scaled)
    python docs/experiments/run.py e3 --corpus C --work W       # the paper's lr 1e-4
    python docs/experiments/run.py e2 --corpus L --work W       # headroom (a larger corpus)
    python docs/experiments/run.py loso --corpus L --work W     # speaker-independent
    python docs/experiments/run.py analyse --work W --out docs/experiments

C is `ssa-fast synth --size small --out C` (the demo's corpus); L a larger one (README). Every
run goes to W/<experiment>/<variant>/seed<s>/ and is reused by a rerun when it finished with the
same settings (the cv fingerprint). Runs are sequential; --threads sets torch's threads. `analyse`
reads every W/<experiment>/*/seed*/<model>/fold*/result.json, whatever the folder between (runs
split over several processes go to folders of their own) and names a row by its model and logit
scale (1: "literal").
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

# (variant name, models, logit scale): one `ssa-fast cv` call per variant and seed. The scaled
# variant's unconstrained models ignore the scale.
SCALE = 300.0
VARIANTS = {
    "scaled": (["acrnn", "acrnn-r", "ssa-crnn", "ssa-crnn-r"], SCALE),
    "literal": (["acrnn-r", "ssa-crnn-r"], 1.0),
    "table1": (["acrnn", "acrnn-r", "ssa-crnn-r"], SCALE),  # the paper's three models
}
EXPERIMENTS = {
    # name: (variants, seeds, folds, protocol, extra cv options)
    "e1": (["scaled", "literal"], [0, 1, 2], 3, "linguistic", ["--lr", "1e-3"]),
    "e3": (["table1"], [0], 3, "linguistic", ["--lr", "1e-4"]),
    "e2": (["scaled", "literal"], [0, 1], 3, "linguistic", ["--lr", "1e-3"]),
    "loso": (["scaled"], [0], None, "loso", ["--lr", "1e-3"]),
}
NAMES = {"acrnn": "ACRNN", "acrnn-r": "ACRNN-r", "ssa-crnn": "SSA-CRNN",
         "ssa-crnn-r": "SSA-CRNN-r"}


def run(args) -> int:
    variants, seeds, folds, protocol, extra = EXPERIMENTS[args.experiment]
    if args.seeds:
        seeds = args.seeds
    if folds is None:  # loso: one fold per speaker
        manifest = Path(args.corpus) / "manifest.csv"
        speakers = {line.split(",")[1] for line in manifest.read_text().splitlines()[1:]}
        folds = len(speakers)
    for v in args.variants or variants:
        models, scale = VARIANTS[v]
        for s in seeds:
            out = Path(args.work) / args.experiment / v / f"seed{s}"
            cache = args.cache or str(Path(args.work) / "cache")
            cmd = [sys.executable, "-m", "ssa_fast.cli", "cv", "synthetic", args.corpus,
                   "--cache", cache, "--out", str(out), "--models", *models,
                   "--protocol", protocol, "--folds", str(folds), "--preset", "small",
                   "--epochs", str(args.epochs), "--seed", str(s), "--logit-scale", str(scale),
                   "--threads", str(args.threads), "--quiet", *extra]
            print("ssa-fast", " ".join(cmd[3:]), flush=True)
            subprocess.run(cmd, check=True)
    return 0


# ---- analysis ----------------------------------------------------------------------------------

def t95(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.nan


def mean_ci(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), t95(v.size) * float(v.std(ddof=1)) / math.sqrt(v.size) \
        if v.size > 1 else math.nan


def load(work: Path, experiment: str, last_k: int, epochs: int | None = None) -> dict:
    """{row name: {(seed, fold): {"best": ..., "last_k": ..., "history": [...]}}} from every
    finished fold (its result.json), so that a partial run can be looked at too.

    ``epochs``: every run as if it had stopped after that many epochs (runs with fewer are left
    out). Nothing in training depends on the number of epochs to come (no schedule: the first
    15 epochs of a 30-epoch run are those of a 15-epoch run), so the selected epoch is the first
    best of the first ``epochs`` of the history, the training loop's own rule; for a run kept
    whole that is checked against its stored result."""
    rows: dict[str, dict] = {}
    for res in sorted((work / experiment).glob("*/seed*/*/fold*/result.json")):
        model, seed_dir = res.parent.parent.name, res.parent.parent.parent
        seed = int(seed_dir.name[4:])
        r = json.loads(res.read_text())
        scale = r["identity"]["train"]["logit_scale"]
        literal = model.endswith("-r") and scale == 1.0  # eq. 8 as written
        name = NAMES[model] + (" (literal)" if literal else
                               f" (scale {scale:g})" if model.endswith("-r") else "")
        hist = r["history"]
        if epochs is not None:
            if len(hist) < epochs:
                continue
            hist = hist[:epochs]
        uar = [h["utterance_uar"] for h in hist]
        best = int(np.argmax(uar))  # the first best, as the training loop keeps it
        if len(hist) == len(r["history"]) and (best != r["best_epoch"]
                                               or uar[best] != r["utterance_uar"]):
            raise ValueError(f"{res}: its history does not give its selected epoch")
        rows.setdefault(name, {})[(seed, r["fold"])] = {
            "best": uar[best], "best_epoch": best + 1,
            "last_k": float(np.mean(uar[-last_k:])), "history": hist}
    order = ["ACRNN", f"ACRNN-r (scale {SCALE:g})", "ACRNN-r (literal)", "SSA-CRNN",
             f"SSA-CRNN-r (scale {SCALE:g})", "SSA-CRNN-r (literal)"]
    return {k: rows[k] for k in sorted(rows, key=lambda k: order.index(k) if k in order else 99)}


def pm(mean: float, half: float, sign: bool = False) -> str:
    """"mean ± half" in percent ("mean (1 run)" without a CI)."""
    m = f"{100 * mean:+.1f}" if sign else f"{100 * mean:.1f}"
    return f"{m} (one run)" if math.isnan(half) else f"{m} ± {100 * half:.1f}"


def table(rows: dict, pairs: list[tuple[str, str]], last_k: int) -> str:
    lines = ["| model | runs | UAR, selected epoch | UAR, mean of last "
             f"{last_k} epochs | selected epoch |", "|---|---:|---:|---:|---:|"]
    for name, runs in rows.items():
        b = mean_ci([r["best"] for r in runs.values()])
        k = mean_ci([r["last_k"] for r in runs.values()])
        e = np.mean([r["best_epoch"] for r in runs.values()])
        lines.append(f"| {name} | {len(runs)} | {pm(*b)} | {pm(*k)} | {e:.1f} |")
    lines += ["", "Paired differences (same seed and fold; mean ± 95% CI, t over pairs; "
              "percentage points):", "", "| difference | pairs | selected epoch | last "
              f"{last_k} epochs | pairs > 0 |", "|---|---:|---:|---:|---:|"]
    for a, b in pairs:
        if a not in rows or b not in rows:
            continue
        keys = sorted(set(rows[a]) & set(rows[b]))
        d = [rows[a][k]["best"] - rows[b][k]["best"] for k in keys]
        dk = [rows[a][k]["last_k"] - rows[b][k]["last_k"] for k in keys]
        m, h = mean_ci(d)
        mk, hk = mean_ci(dk)
        pos = sum(x > 0 for x in d)
        lines.append(f"| {a} − {b} | {len(keys)} | {pm(m, h, True)} | {pm(mk, hk, True)} | "
                     f"{pos}/{len(keys)} |")
    return "\n".join(lines) + "\n"


def plot(rows: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("utterance_uar", "validation UAR (utterance)"),
            ("embedding_l1", "classifier input ‖z‖₁ (training mean)"),
            ("step_ratio", "optimiser step / ‖W‖₁ (classifier)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (name, runs) in enumerate(rows.items()):
        colour = f"C{i}"
        for ax, (key, label) in zip(axes, keys, strict=True):
            curves = [[h.get(key) for h in r["history"]] for r in runs.values()]
            if any(v is None for c in curves for v in c):
                continue
            n = min(len(c) for c in curves)
            a = np.array([c[:n] for c in curves], dtype=float)
            epochs = np.arange(1, n + 1)
            ax.plot(epochs, a.mean(0), color=colour, label=name)
            ax.fill_between(epochs, a.min(0), a.max(0), color=colour, alpha=0.12, lw=0)
            ax.set_title(label)
    axes[0].axhline(0.25, color="grey", ls=":", lw=1, label="chance")
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PAIRS = {
    "e1": [("ACRNN-r (scale 300)", "ACRNN"), ("SSA-CRNN-r (scale 300)", "ACRNN-r (scale 300)"),
           ("SSA-CRNN-r (scale 300)", "ACRNN"), ("SSA-CRNN-r (scale 300)", "SSA-CRNN"),
           ("ACRNN-r (scale 300)", "ACRNN-r (literal)"),
           ("SSA-CRNN-r (scale 300)", "SSA-CRNN-r (literal)")],
}
PAIRS["e2"] = PAIRS["e1"]
PAIRS["e3"] = PAIRS["e1"][:4]
PAIRS["loso"] = PAIRS["e1"][:4]
# the epochs at which an experiment's runs are tabled, each a table of its own (the first also
# takes the longer runs, cut there); one table of whole runs where not given
TABLE_EPOCHS = {"e2": [15, 30]}


def analyse(args) -> int:
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for experiment in EXPERIMENTS:
        for i, epochs in enumerate(TABLE_EPOCHS.get(experiment, [None])):
            rows = load(work, experiment, args.last_k, epochs)
            if not rows:
                continue
            stem = experiment if i == 0 else f"{experiment}_{epochs}ep"
            text = table(rows, PAIRS[experiment], args.last_k)
            (out / f"{stem}_table.md").write_text(text)
            plot(rows, out / f"{stem}_curves.png", f"{experiment.upper()}"
                 + (f", first {epochs} epochs" if epochs else "")
                 + ": mean over runs, band = min..max")
            print(f"## {stem}\n\n{text}")
    lr = lr_table(work, args.last_k)
    if lr:
        (out / "e3_lr_table.md").write_text(lr)
        print(f"## e3: lr 1e-4 against 1e-3\n\n{lr}")
    return 0


def lr_table(work: Path, last_k: int) -> str:
    """E3: per model, UAR at lr 1e-4 (E3) minus UAR at lr 1e-3 (E1), same seed and fold."""
    slow, fast = load(work, "e3", last_k), load(work, "e1", last_k)
    lines = ["| model | pairs | lr 1e-4 | lr 1e-3 | difference, selected epoch | difference, "
             f"last {last_k} epochs |", "|---|---:|---:|---:|---:|---:|"]
    for name, runs in slow.items():
        keys = sorted(set(runs) & set(fast.get(name, {})))
        if not keys:
            continue
        a = [runs[k]["best"] for k in keys]
        b = [fast[name][k]["best"] for k in keys]
        d = mean_ci(np.subtract(a, b))
        dk = mean_ci([runs[k]["last_k"] - fast[name][k]["last_k"] for k in keys])
        lines.append(f"| {name} | {len(keys)} | {100 * np.mean(a):.1f} | {100 * np.mean(b):.1f} "
                     f"| {pm(*d, True)} | {pm(*dk, True)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="experiment", required=True)
    for name in EXPERIMENTS:
        p = sub.add_parser(name)
        p.add_argument("--corpus", required=True)
        p.add_argument("--work", required=True)
        p.add_argument("--cache", default=None)
        p.add_argument("--epochs", type=int, default=15)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--seeds", type=int, nargs="*", default=None)
        p.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), default=None)
    p = sub.add_parser("analyse")
    p.add_argument("--work", required=True)
    p.add_argument("--out", default=str(Path(__file__).parent))
    p.add_argument("--last-k", type=int, default=3)
    args = ap.parse_args(argv)
    return analyse(args) if args.experiment == "analyse" else run(args)


if __name__ == "__main__":
    sys.exit(main())
