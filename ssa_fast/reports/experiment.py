"""Reports of a cross-validation run: the Table-1-style table (Markdown, CSV), normalised
confusion matrices (Figure 4), attention curves of a sample (Figure 3), t-SNE of the emotion
embeddings (Figure 5) and training curves. Every file is written atomically; figures a run does
not produce are removed, so the folder never shows figures of an earlier run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .._atomic import save_figure, write_text

DISPLAY_NAMES = {"acrnn": "ACRNN", "acrnn-r": "ACRNN-r", "ssa-crnn": "SSA-CRNN",
                 "ssa-crnn-r": "SSA-CRNN-r"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(mean_ci) -> str:
    mean, half = mean_ci
    return f"{100 * mean:.2f}" + ("" if half != half else f" ± {100 * half:.2f}")


def what_is_reported(results: dict) -> str:
    """The sentence under the table that says which number it shows."""
    k = results.get("last_k", 3)
    if results.get("reported_on") == "test":
        return (f"Scored on each fold's held-out test utterances; the epoch was selected by the "
                f"best utterance UAR on a validation split of "
                f"{100 * results['selection']:g}% of the fold's training utterances, never on "
                f"the test set. 'last {k}': mean over the last {k} epochs on the test set.")
    return ("Scored on each fold's validation utterances at the epoch with the best utterance "
            "UAR on those same utterances (the paper's protocol; optimistic, since the epoch is "
            f"chosen on the data it is scored on). 'last {k}': mean over the last {k} epochs on "
            "the same utterances, with no choice of epoch.")


def write_table(results: dict, out_dir: Path) -> str:
    """UAR (%) mean ± 95% CI per model, segment and utterance level, with the last-k-epoch mean,
    WA, macro F1 (utterance level) and the mean per-class recall. Returns the Markdown."""
    s = results["summary"]
    k = results.get("last_k", 3)
    classes = results["classes"]
    lines = [f"Corpus: {results['corpus']}, protocol: {results['protocol']}, "
             f"{results['k']} folds; % (mean ± 95% CI over folds, t-distribution).",
             what_is_reported(results), "",
             f"| model | segment UAR | utterance UAR | utterance UAR, last {k} | WA | macro F1 | "
             f"recall {' / '.join(classes)} |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [["model", "reported_on", "segment_uar", "segment_ci95", "utterance_uar",
             "utterance_ci95", f"last_{k}_utterance_uar", f"last_{k}_utterance_ci95",
             "utterance_wa", "utterance_wa_ci95", "utterance_macro_f1",
             "utterance_macro_f1_ci95", *(f"recall_{c}" for c in classes), "folds"]]
    for v in s.values():
        recall = " / ".join("-" if r is None else f"{100 * r:.0f}" for r in v["utterance_recall"])
        lines.append(f"| {v['name']} | {_fmt(v['segment_uar'])} | {_fmt(v['utterance_uar'])} | "
                     f"{_fmt(v['last_k_utterance_uar'])} | {_fmt(v['utterance_wa'])} | "
                     f"{_fmt(v['utterance_macro_f1'])} | {recall} |")
        rows.append([v["name"], results.get("reported_on", "validation"), *v["segment_uar"],
                     *v["utterance_uar"], *v["last_k_utterance_uar"], *v["utterance_wa"],
                     *v["utterance_macro_f1"], *v["utterance_recall"], v["folds"]])
    md = "\n".join(lines) + "\n"
    write_text(out_dir / "table.md", md)
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    write_text(out_dir / "table.csv", buf.getvalue())
    return md


def plot_confusions(results: dict, out_dir: Path) -> Path:
    from ..train.metrics import normalised

    plt = _plt()
    s = results["summary"]
    classes = results["classes"]
    fig, axes = plt.subplots(1, len(s), figsize=(3.6 * len(s), 3.4), constrained_layout=True,
                             squeeze=False)
    for ax, v in zip(axes[0], s.values(), strict=True):
        cm = normalised(np.asarray(v["utterance_cm"]))
        ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center",
                        color="white" if cm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_title(f"{v['name']}\nUAR {_fmt(v['utterance_uar'])}%", fontsize=9)
    axes[0][0].set_ylabel("true")
    path = out_dir / "confusion_matrices.png"
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


def plot_attention(figures_data: dict, out_dir: Path, classes: list[str],
                   name: str = "attention.png") -> Path | None:
    """alpha_em and alpha_sp over the frames of one full-length validation segment, written
    (atomically) to ``out_dir / name``."""
    ssa = [m for m, d in figures_data.items() if d.get("alpha_sp") is not None]
    if not ssa:
        return None
    d = figures_data[ssa[-1]]
    full = np.flatnonzero(d["lengths"].numpy() == d["lengths"].max().item())
    i = int(full[0]) if len(full) else 0
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3), constrained_layout=True)
    a_em, a_sp = d["alpha_em"][i].numpy(), d["alpha_sp"][i].numpy()
    t = np.arange(len(a_em)) * 0.02  # pooled frames of 20 ms
    ax.plot(t, a_em, label=f"alpha_em (sum {a_em.sum():.2f})")
    ax.plot(t, a_sp, label=f"alpha_sp (sum {a_sp.sum():.2f})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("attention weight")
    ax.set_title(f"SSA attention of a validation segment (true: {classes[int(d['labels'][i])]})")
    ax.legend()
    path = Path(out_dir) / name
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


def plot_tsne(figures_data: dict, out_dir: Path, classes: list[str], seed: int = 0) -> Path:
    from sklearn.manifold import TSNE

    plt = _plt()
    n = len(figures_data)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.8), constrained_layout=True, squeeze=False)
    for ax, (m, d) in zip(axes[0], figures_data.items(), strict=True):
        z = d["z"].numpy()
        labels = d["labels"].numpy()
        perplexity = max(2.0, min(30.0, (len(z) - 1) / 3))
        emb = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(z)
        for c, name in enumerate(classes):
            sel = labels == c
            ax.scatter(emb[sel, 0], emb[sel, 1], s=8, label=name)
        ax.set_title(f"{DISPLAY_NAMES.get(m, m)}: emotion embeddings (t-SNE)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(markerscale=2, fontsize=8)
    path = out_dir / "tsne.png"
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


def plot_training_curves(results: dict, out_dir: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    for i, (m, folds) in enumerate(results["folds"].items()):
        for j, fold in enumerate(folds):
            h = fold["history"]
            ax.plot([e["epoch"] + 1 for e in h], [100 * e["utterance_uar"] for e in h],
                    color=f"C{i}", alpha=0.5, label=results["summary"][m]["name"] if j == 0
                    else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation UAR % (utterance)")
    ax.legend()
    path = out_dir / "training_curves.png"
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    """One training run: training loss and validation UAR (segment, utterance) per epoch."""
    plt = _plt()
    path = Path(path)
    epochs = [e["epoch"] + 1 for e in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    a1.plot(epochs, [e["train_loss"] for e in history], marker=".")
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    for key, label in (("segment_uar", "segment"), ("utterance_uar", "utterance")):
        a2.plot(epochs, [100 * e[key] for e in history], marker=".", label=label)
    a2.set_xlabel("epoch")
    a2.set_ylabel("validation UAR %")
    a2.legend()
    if title:
        fig.suptitle(title)
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


def write_reports(results: dict, out_dir: str | Path) -> dict:
    """All reports of a cross-validation run; returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(results, out_dir)
    paths = {"table": out_dir / "table.md", "csv": out_dir / "table.csv",
             "confusion": plot_confusions(results, out_dir),
             "curves": plot_training_curves(results, out_dir)}
    figures = results.get("figures_data") or {}
    if figures:
        paths["tsne"] = plot_tsne(figures, out_dir, results["classes"])
        att = plot_attention(figures, out_dir, results["classes"])
        if att is not None:
            paths["attention"] = att
    for name in ("tsne.png", "attention.png"):  # not made by this run: not left from another
        if out_dir / name not in paths.values():
            (out_dir / name).unlink(missing_ok=True)
    return paths
