"""Reports of a cross-validation run: the Table-1-style table (Markdown, CSV), normalised
confusion matrices (Figure 4), attention curves of a sample (Figure 3), t-SNE of the emotion
embeddings (Figure 5) and training curves. Figures are PNG (PNG_DPI), PDF or SVG (vector).
Every file is written atomically; figures a run does not produce are removed, so the folder
never shows figures of an earlier run."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path

import numpy as np

from .._atomic import save_figure, write_text
from ..features.config import FeatureConfig
from ..metrics import mean_normalised
from ..models.presets import get_preset
from ..models.registry import MODELS

FORMATS = ("png", "pdf", "svg")  # figure formats; PDF and SVG are vector graphics
REPORT_FORMATS = (*FORMATS, "none")  # write_reports' choices ("none": the table alone)
PNG_DPI = 200
FIGURES = ("confusion_matrices", "training_curves", "tsne", "attention")
# a first fold with fewer validation segments gets no t-SNE map (t-SNE needs its perplexity, at
# least 2, below the number of points; a handful of points shows nothing anyway)
TSNE_MIN_POINTS = 4
# the time axis of the attention curves when a run does not say otherwise: the default features'
# hop and the time pooling of the default (paper) preset
HOP_SECONDS = FeatureConfig().frame_seconds  # seconds per feature frame
TIME_POOL = get_preset("paper").pool[0]  # feature frames per attention frame
SECONDS_PER_FRAME = HOP_SECONDS * TIME_POOL  # seconds per attention frame


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(mean_ci) -> str:
    mean, half = mean_ci
    return f"{100 * mean:.2f}" + ("" if half != half else f" ± {100 * half:.2f}")


def _fewer_epochs(results: dict) -> str:
    """'' when every fold of every model averaged k epochs for 'last k'; otherwise how many
    each fold of the models that averaged fewer did (a run of fewer epochs, or stopped early)."""
    k = results.get("last_k", 3)
    shown = []
    for v in results["summary"].values():
        n = v.get("last_k_epochs")  # (older results.json: not recorded)
        if n and min(n) < k:
            shown.append(f"{v['name']} {n[0]} in every fold" if len(set(n)) == 1 else
                         f"{v['name']}, fold by fold, {', '.join(map(str, n[:-1]))} and {n[-1]}")
    if not shown:
        return ""
    return (f", or all of a fold's epochs where it ran fewer (epochs averaged: "
            f"{'; '.join(shown)}),")


def _selection_sizes(results: dict) -> str:
    """' (n of m training utterances ...)': the utterances of each fold's selection split out of
    its training utterances (a share of the phrases, for the linguistic protocol, is another
    share of the utterances); '' where the folds do not record them."""
    rows = next(iter(results.get("folds", {}).values()), [])
    try:
        sizes = [(int(r["n_val"]), int(r["n_train"]) + int(r["n_val"])) for r in rows]
    except (KeyError, TypeError):
        return ""
    if not sizes:
        return ""
    if len(set(sizes)) == 1:
        return f" ({sizes[0][0]} of {sizes[0][1]} training utterances in every fold)"
    each = [f"{a} of {b}" for a, b in sizes]
    return f" ({', '.join(each[:-1])} and {each[-1]} training utterances, fold by fold)"


def what_is_reported(results: dict) -> str:
    """The sentence under the table that says which number it shows."""
    k = results.get("last_k", 3)
    config = results.get("config") or {}
    level = config.get("select_by", "utterance")  # (TrainConfig's)
    last = f"'last {k}': mean over the last {k} epochs{_fewer_epochs(results)}"
    if results.get("reported_on") == "test":
        unit = "phrases" if results.get("protocol") == "linguistic" else "utterances"
        return (f"Scored on each fold's held-out test utterances; the epoch was selected by the "
                f"best {level} UAR on a validation split of "
                f"{100 * results['selection']:g}% of the fold's training {unit}"
                f"{_selection_sizes(results)}, never on the test set. {last} on the test set.")
    patience = config.get("patience")
    return (f"Scored on each fold's validation utterances at the epoch with the best {level} "
            "UAR on those same utterances (the paper's protocol; optimistic, since the epoch is "
            f"chosen on the data it is scored on). {last} on the same utterances, "
            + ("with no choice of epoch." if patience is None else
               f"with no epoch picked, though early stopping (patience {patience}) decided on "
               "them where training ended."))


def write_table(results: dict, out_dir: Path) -> str:
    """UAR (%) mean ± 95% CI per model, segment and utterance level, with the last-k-epoch mean,
    WA, macro F1 (utterance level) and the mean per-class recall. Returns the Markdown. A model
    summarised over fewer folds than ``results["k"]`` has its number of folds by its name."""
    s = results["summary"]
    k = results.get("last_k", 3)
    classes = results["classes"]
    lines = [f"Corpus: {results['corpus']}, protocol: {results['protocol']}, "
             f"{results['k']} folds; % (mean ± 95% CI over folds, t-distribution; "
             "per-class recall: mean over folds).",
             what_is_reported(results), "",
             f"| model | segment UAR | utterance UAR | utterance UAR, last {k} | WA | macro F1 | "
             f"recall {' / '.join(classes)} |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [["model", "reported_on", "segment_uar", "segment_ci95", "utterance_uar",
             "utterance_ci95", f"last_{k}_utterance_uar", f"last_{k}_utterance_ci95",
             "utterance_wa", "utterance_wa_ci95", "utterance_macro_f1",
             "utterance_macro_f1_ci95", *(f"recall_{c}" for c in classes), "folds",
             f"last_{k}_epochs"]]
    for v in s.values():
        recall = " / ".join("-" if r is None else f"{100 * r:.0f}" for r in v["utterance_recall"])
        # a model summarised over fewer folds than the run's (summarise of partial results)
        name = v["name"] + (f" ({v['folds']} folds)" if v["folds"] != results["k"] else "")
        lines.append(f"| {name} | {_fmt(v['segment_uar'])} | {_fmt(v['utterance_uar'])} | "
                     f"{_fmt(v['last_k_utterance_uar'])} | {_fmt(v['utterance_wa'])} | "
                     f"{_fmt(v['utterance_macro_f1'])} | {recall} |")
        rows.append([v["name"], results.get("reported_on", "validation"), *v["segment_uar"],
                     *v["utterance_uar"], *v["last_k_utterance_uar"], *v["utterance_wa"],
                     *v["utterance_macro_f1"], *v["utterance_recall"], v["folds"],
                     " ".join(map(str, v.get("last_k_epochs") or []))])
    md = "\n".join(lines) + "\n"
    write_text(out_dir / "table.md", md)
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    write_text(out_dir / "table.csv", buf.getvalue())
    return md


# ---------------------------------------------------------------------------------- figures


def figure_path(out_dir: str | Path, name: str, fmt: str = "png") -> Path:
    """``out_dir / <name>.<fmt>``; a figure suffix already on ``name`` is replaced."""
    if fmt not in FORMATS:
        raise ValueError(f"figure format must be one of {FORMATS}, got {fmt!r}")
    stem = name[:-len(Path(name).suffix)] if Path(name).suffix[1:] in FORMATS else name
    return Path(out_dir) / f"{stem}.{fmt}"


def _style():
    """Font sizes for print; TrueType fonts in PDF (no Type 3, which
    publishers refuse) and text as paths in SVG."""
    import matplotlib

    return matplotlib.rc_context({
        "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 10,
        "pdf.fonttype": 42, "svg.fonttype": "path", "svg.hashsalt": "ssa-fast"})


def _save(fig, path: Path) -> Path:
    """Write ``fig`` atomically (PNG at PNG_DPI, PDF and SVG as vector graphics, without a
    creation date so that the same figure gives the same file) and close it."""
    fmt = path.suffix[1:]
    meta = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
    try:
        save_figure(path, fig, dpi=PNG_DPI, **({} if meta is None else {"metadata": meta}))
    finally:
        _plt().close(fig)
    return path


def _name(model: str, fallback: str | None = None) -> str:
    return MODELS[model].display if model in MODELS else (fallback or model)


def epoch_ticks(n_epochs: int) -> list[int]:
    """Integer tick positions for epochs 1 .. n_epochs (1 always among them)."""
    from matplotlib.ticker import MaxNLocator

    n = max(1, int(n_epochs))
    inside = {int(t) for t in MaxNLocator(nbins=6, integer=True).tick_values(1, n)
              if 1 <= t <= n}
    ticks = sorted(inside | {1})
    if len(ticks) > 2 and ticks[1] - 1 < (ticks[2] - ticks[1]) / 2:  # 1 crowding the next
        ticks.pop(1)
    return ticks


def _epoch_axis(ax, n_epochs: int) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(epoch_ticks(n_epochs)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0.6, max(1, n_epochs) + 0.4)
    ax.set_xlabel("epoch")


def _selected(history: list[dict], key: str) -> int:
    """0-based epoch of the best ``key`` (the first of equals), as training selects it."""
    values = [h[key] for h in history]
    return history[int(np.argmax(values))]["epoch"]


def fold_curves(folds: list[dict], key: str = "utterance_uar") -> dict:
    """What a training-curve panel shows of one model: ``folds`` [(epochs, values)], epochs
    counted from 1 and values in %; ``mean`` (epochs, mean over the folds) at the epochs that
    every fold ran, so that a fold stopping early (``--patience``) does not make the mean jump
    where it leaves; ``cut``: whether some fold ran epochs beyond those; ``selected`` [(epoch,
    value)] of each fold's selected epoch (its ``best_epoch``)."""
    curves, selected, by_epoch = [], [], {}
    for fold in folds:
        h = fold["history"]
        epochs = [int(e["epoch"]) + 1 for e in h]
        values = [100 * e[key] for e in h]
        curves.append((epochs, values))
        for e, v in zip(epochs, values, strict=True):
            by_epoch.setdefault(e, []).append(v)
        best = fold.get("best_epoch")
        best = _selected(h, key) if best is None or best < 0 else int(best)
        if best + 1 in epochs:
            selected.append((best + 1, values[epochs.index(best + 1)]))
    every = sorted(e for e, v in by_epoch.items() if len(v) == len(folds))
    mean = (every, [float(np.mean(by_epoch[e])) for e in every])
    return {"folds": curves, "mean": mean, "cut": len(every) < len(by_epoch),
            "selected": selected}


def _chance_line(ax, n_classes: int):
    return ax.axhline(100 / n_classes, ls=":", lw=1, color="0.35", zorder=1)


def training_curves_figure(results: dict):
    """The figure of :func:`plot_training_curves` (one panel per model)."""
    from matplotlib.lines import Line2D

    plt = _plt()
    models = list(results["folds"])
    n_classes = len(results["classes"])
    fig, axes = plt.subplots(1, len(models), figsize=(2.9 * len(models) + 0.6, 2.9),
                             sharey=True, squeeze=False, layout="constrained")
    n_epochs, cut = 1, False
    for i, (ax, m) in enumerate(zip(axes[0], models, strict=True)):
        data = fold_curves(results["folds"][m])
        cut = cut or data["cut"]
        color = f"C{i}"
        for epochs, values in data["folds"]:
            ax.plot(epochs, values, color=color, lw=0.8, alpha=0.45)
            n_epochs = max(n_epochs, max(epochs, default=1))
        ax.plot(*data["mean"], color=color, lw=2.2,
                marker="o" if len(data["mean"][0]) == 1 else None, ms=4)  # one epoch: a dot
        if data["selected"]:
            ax.plot(*zip(*data["selected"], strict=True), ls="none", marker="o", ms=5,
                    mfc="white", mec=color, mew=1.4, zorder=3)
        _chance_line(ax, n_classes)
        ax.set_title(_name(m, results.get("summary", {}).get(m, {}).get("name")))
        ax.grid(axis="y", lw=0.4, alpha=0.5)
    for ax in axes[0]:
        _epoch_axis(ax, n_epochs)
    k = max(len(f) for f in results["folds"].values())
    axes[0][0].set_ylabel("validation UAR, utterance (%)")
    handles = [Line2D([], [], color="0.3", lw=0.8, alpha=0.6, label=f"each fold ({k})"),
               Line2D([], [], color="0.3", lw=2.2,
                      label="mean over folds (epochs every fold ran)" if cut
                      else "mean over folds"),
               Line2D([], [], ls="none", marker="o", ms=5, mfc="white", mec="0.3", mew=1.4,
                      label="selected epoch"),
               Line2D([], [], ls=":", lw=1, color="0.35",
                      label=f"chance (1/{n_classes} = {100 / n_classes:.0f} %)")]
    fig.legend(handles=handles, loc="outside lower center", frameon=False,
               ncols={1: 1, 2: 2}.get(len(models), 4))  # (the width of the panels)
    return fig


def plot_training_curves(results: dict, out_dir: Path, *, fmt: str = "png") -> Path:
    """Validation UAR per epoch of every fold (thin), their mean (bold; only at the epochs every
    fold ran, and the legend says so when a fold ran more), each fold's selected epoch (circle)
    and chance level (dotted), one panel per model:
    ``out_dir / training_curves.<fmt>``."""
    path = figure_path(out_dir, "training_curves", fmt)
    with _style():
        return _save(training_curves_figure(results), path)


def history_figure(history: list[dict], title: str = "", *, best_epoch: int | None = None,
                   n_classes: int | None = None):
    """The figure of :func:`plot_history`."""
    plt = _plt()
    epochs = [int(e["epoch"]) + 1 for e in history]
    n_epochs = max(epochs, default=1)
    if best_epoch is None or best_epoch < 0:
        best_epoch = _selected(history, "utterance_uar") if history else None
    if n_classes is None and history and history[0].get("utterance_recall") is not None:
        n_classes = len(history[0]["utterance_recall"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 2.8), layout="constrained")
    a1.plot(epochs, [e["train_loss"] for e in history], marker=".", color="0.25")
    a1.set_ylabel("training loss (cross-entropy)")
    curves = [("segment_uar", "validation, segment", "C0", "-"),
              ("utterance_uar", "validation, utterance", "C1", "-"),
              ("test_segment_uar", "test, segment", "C0", "--"),
              ("test_utterance_uar", "test, utterance", "C1", "--")]
    for key, label, color, ls in curves:
        if any(e.get(key) is not None for e in history):
            a2.plot(epochs, [np.nan if e.get(key) is None else 100 * e[key] for e in history],
                    marker=".", color=color, ls=ls, label=label)
    if best_epoch is not None and best_epoch + 1 in epochs:
        e = epochs.index(best_epoch + 1)
        a2.plot(best_epoch + 1, 100 * history[e]["utterance_uar"], ls="none", marker="o",
                ms=7, mfc="none", mec="black", mew=1.2, label="selected epoch")
    if n_classes:
        _chance_line(a2, n_classes).set_label(f"chance (1/{n_classes})")
    a2.set_ylabel("UAR (%)")
    a2.legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    for ax in (a1, a2):
        _epoch_axis(ax, n_epochs)
        ax.grid(axis="y", lw=0.4, alpha=0.5)
    if title:
        fig.suptitle(_name(title))
    return fig


def plot_history(history: list[dict], path: str | Path, title: str = "", *, fmt: str = "png",
                 best_epoch: int | None = None, n_classes: int | None = None) -> Path:
    """One training run: training loss and UAR (segment, utterance; test ones when recorded)
    per epoch, written to ``path`` with the suffix ``.<fmt>``. ``title``: a model id is shown
    by its display name. ``best_epoch`` (0-based, the run's ``best_epoch``) is marked; without
    it, the epoch of the best validation utterance UAR (the default selection). The chance
    line's 1 / ``n_classes`` defaults to the number of per-class recalls in the history."""
    path = Path(path)
    path = figure_path(path.parent, path.name, fmt)
    with _style():
        return _save(history_figure(history, title, best_epoch=best_epoch,
                                    n_classes=n_classes), path)


def reported_part(results: dict, row: dict) -> dict:
    """The part of a fold's result that the table reports: its test set with a selection split,
    otherwise the fold itself (its validation set)."""
    return row["test"] if results.get("reported_on") == "test" else row


def fold_mean_confusion(results: dict, model: str) -> np.ndarray:
    """The utterance-level confusion matrix the figure shows for ``model``: the mean over its
    folds of each fold's row-normalised matrix (on the reported set), whose diagonal is the
    table's per-class recall (and averages to the table's UAR where every fold holds every
    class)."""
    return mean_normalised([reported_part(results, r)["utterance_cm"]
                            for r in results["folds"][model]])


def confusions_figure(results: dict):
    """The figure of :func:`plot_confusions`."""
    plt = _plt()
    s = results["summary"]
    classes = results["classes"]
    long_names = max(map(len, classes)) > 4
    size = 1.1 + 0.42 * len(classes) + (0.3 if long_names else 0)
    width = size * len(s) + 0.8
    counts = {v["folds"] for v in s.values()}
    folds = f"the {counts.pop()} folds" if len(counts) == 1 else "the folds"
    held = "Held-out test" if results.get("reported_on") == "test" else "Validation"
    what = textwrap.wrap(f"{held} utterances: mean over {folds} of each fold's row-normalised "
                         "matrix. Diagonal: the table's per-class recall; UAR: the table's "
                         "(mean ± 95% CI over folds).", int(width * 12),
                         break_on_hyphens=False)
    fig, axes = plt.subplots(1, len(s), figsize=(width, size + 0.4 + 0.17 * len(what)),
                             layout="constrained", squeeze=False)
    image = None
    for ax, (m, v) in zip(axes[0], s.items(), strict=True):
        cm = fold_mean_confusion(results, m)
        image = ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, "-" if np.isnan(cm[i, j]) else f"{cm[i, j]:.2f}", ha="center",
                        va="center", fontsize=7, color="white" if cm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45 if long_names else 0,
                      ha="right" if long_names else "center")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{_name(m, v.get('name'))}\nUAR {_fmt(v['utterance_uar'])} %")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="fraction of the true class")
    fig.suptitle("\n".join(what), fontsize="medium")
    return fig


def plot_confusions(results: dict, out_dir: Path, *, fmt: str = "png") -> Path:
    """Utterance-level confusion matrices, rows normalised (Figure 4): per model the mean over
    folds of each fold's matrix on the reported set (validation, or test with a selection
    split), so that its diagonal is the table's per-class recall (averaging to the table's UAR
    where every fold holds every class): ``out_dir / confusion_matrices.<fmt>``."""
    path = figure_path(out_dir, "confusion_matrices", fmt)
    with _style():
        return _save(confusions_figure(results), path)


def _fold_text(fold: int | None, n_folds: int | None) -> str:
    """'fold 0 of 3': counted from 0, as ``train --fold`` and the fold00 folders count."""
    if fold is None:
        return ""
    return f"fold {fold}" + ("" if n_folds is None else f" of {n_folds}")


def attention_segment(d: dict) -> int:
    """The segment an attention figure shows: the first of the longest ones."""
    lengths = d.get("lengths")
    if lengths is None:
        return 0
    return int(np.argmax(np.asarray(lengths)))


def attention_figure(figures_data: dict, classes: list[str], *, fold: int | None = None,
                     n_folds: int | None = None, seconds_per_frame: float = SECONDS_PER_FRAME,
                     hop_seconds: float = HOP_SECONDS):
    """The figure of :func:`plot_attention`, or None without an SSA model."""
    ssa = [m for m, d in figures_data.items() if d.get("alpha_sp") is not None]
    if not ssa:
        return None
    plt = _plt()
    i = attention_segment(figures_data[ssa[-1]])
    fig, axes = plt.subplots(len(ssa), 1, figsize=(7, 0.4 + 2.2 * len(ssa)), sharex=True,
                             squeeze=False, layout="constrained")
    where = _fold_text(fold, n_folds)
    for ax, m in zip(axes[:, 0], ssa, strict=True):
        d = figures_data[m]
        a_em, a_sp = np.asarray(d["alpha_em"][i]), np.asarray(d["alpha_sp"][i])
        n = len(a_em)
        end = n * seconds_per_frame
        if d.get("lengths") is None:
            valid, speech = n, end
        else:  # valid feature frames -> attention frames holding any of them
            speech = min(end, int(np.asarray(d["lengths"])[i]) * hop_seconds)
            valid = min(n, int(np.ceil(speech / seconds_per_frame - 1e-6)))
        t = (np.arange(valid) + 0.5) * seconds_per_frame  # the centre of each attention frame
        ax.plot(t, a_em[:valid], color="C0", lw=1.2,
                label=r"$\alpha_{\mathrm{em}}$ (emotion)")
        ax.plot(t, a_sp[:valid], color="C3", lw=1.2, label=r"$\alpha_{\mathrm{sp}}$ (speaker)")
        if speech < end:
            ax.axvspan(speech, end, color="0.88", lw=0,
                       label="zero padding (not drawn)")
        ax.set_xlim(0, end)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("attention weight")
        what = []
        if d.get("labels") is not None:
            what.append(f"true: {classes[int(d['labels'][i])]}")
        if d.get("predicted") is not None:
            what.append(f"predicted: {classes[int(d['predicted'][i])]}")
        head = f"{_name(m)}, {where}" if where else _name(m)
        seg = "validation segment" if where else "segment"
        ax.set_title(f"{head}: {seg} {i + 1}" + (f" ({', '.join(what)})" if what else ""))
    axes[-1, 0].set_xlabel("time in the segment (s)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    return fig


def plot_attention(figures_data: dict, out_dir: Path, classes: list[str],
                   name: str = "attention", *, fmt: str = "png", fold: int | None = None,
                   n_folds: int | None = None, seconds_per_frame: float = SECONDS_PER_FRAME,
                   hop_seconds: float = HOP_SECONDS) -> Path | None:
    """alpha_em and alpha_sp over one segment (the first of the longest), one panel per SSA
    model of ``figures_data`` ({model id: {"alpha_em", "alpha_sp": (S, T') attention,
    "lengths": (S,) valid feature frames, optional "labels" (true) and "predicted" class
    indices}}), written to ``out_dir / <name>.<fmt>``; None without an SSA model.

    The curves stop at the segment's valid length: its zero padding is shaded, not drawn.
    ``seconds_per_frame``: seconds per attention frame (default SECONDS_PER_FRAME: hop 160
    samples at 16 kHz = 10 ms per feature frame, times the time pooling 2 of the presets);
    ``hop_seconds``: seconds per feature frame, the unit of "lengths". ``fold`` (0-based) and
    ``n_folds`` name the cross-validation fold in the title."""
    path = figure_path(out_dir, name, fmt)
    with _style():
        fig = attention_figure(figures_data, classes, fold=fold, n_folds=n_folds,
                               seconds_per_frame=seconds_per_frame, hop_seconds=hop_seconds)
        return None if fig is None else _save(fig, path)


def class_colours(n: int) -> list:
    """``n`` distinct colours, one per class: matplotlib's 10 (C0..C9, tab10) up to 10 classes;
    up to 20 those and then their light variants (tab20: class c + 10 is a lighter class c);
    beyond, ``n`` colours along the turbo colour map (the default cycle repeats after 10:
    C10 is C0)."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](c) for c in range(n)]
    if n <= 20:
        tab20 = matplotlib.colormaps["tab20"]
        return [tab20(2 * c if c < 10 else 2 * (c - 10) + 1) for c in range(n)]
    return [tuple(c) for c in matplotlib.colormaps["turbo"](np.linspace(0.03, 0.97, n))]


def tsne_figure(figures_data: dict, classes: list[str], seed: int = 0, *, fold: int = 0,
                n_folds: int | None = None):
    """The figure of :func:`plot_tsne`."""
    from matplotlib.lines import Line2D
    from sklearn.manifold import TSNE

    plt = _plt()
    colours = class_colours(len(classes))
    n = len(figures_data)
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n + 0.2, 3.3), squeeze=False,
                             layout="constrained")
    for ax, (m, d) in zip(axes[0], figures_data.items(), strict=True):
        z = np.asarray(d["z"])
        labels = np.asarray(d["labels"])
        perplexity = max(2.0, min(30.0, (len(z) - 1) / 3))
        emb = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(z)
        for c in range(len(classes)):  # class c has the same colour in every panel
            sel = labels == c
            ax.scatter(emb[sel, 0], emb[sel, 1], s=6, color=colours[c], alpha=0.8, lw=0)
        ax.set_title(_name(m))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE of the emotion embeddings: validation segments of "
                 f"{_fold_text(fold, n_folds)}")
    handles = [Line2D([], [], ls="none", marker="o", ms=5, color=colours[c], label=name)
               for c, name in enumerate(classes)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(classes), 8),
               frameon=False)
    return fig


def plot_tsne(figures_data: dict, out_dir: Path, classes: list[str], seed: int = 0, *,
              fmt: str = "png", fold: int = 0, n_folds: int | None = None) -> Path:
    """t-SNE of the emotion embeddings of fold ``fold``'s (0-based; cross_validate keeps the
    first) validation segments, one panel per model (Figure 5): ``out_dir / tsne.<fmt>``."""
    path = figure_path(out_dir, "tsne", fmt)
    with _style():
        return _save(tsne_figure(figures_data, classes, seed, fold=fold, n_folds=n_folds), path)


def run_frame_seconds(results: dict) -> tuple[float, float]:
    """(seconds per feature frame, seconds per attention frame) of a run: the hop of its
    features (results["identity"]["data"]["features"], a FeatureConfig), times the time pooling
    its model ran with: ``--pool`` (results["config"]["pool"]) where given, else its preset's
    (results["config"]["preset"]); the defaults where a run does not say."""
    feats = (results.get("identity") or {}).get("data", {}).get("features") or {}
    try:
        hop = FeatureConfig.from_dict(feats).frame_seconds
    except (ValueError, TypeError):  # an unreadable record: the default features
        hop = HOP_SECONDS
    pool = TIME_POOL
    config = results.get("config") or {}
    preset = config.get("preset")
    given = config.get("pool")
    if isinstance(given, (list, tuple)) and given and isinstance(given[0], int) \
            and given[0] > 0:  # (--pool: the model's own pooling, whatever its preset)
        pool = given[0]
    elif preset is not None:
        try:
            pool = get_preset(preset).pool[0]
        except (ValueError, TypeError):  # an unknown preset: the default pooling
            pass
    return hop, hop * pool


def report_files(out_dir: str | Path) -> list[Path]:
    """Every file :func:`write_reports` may write into ``out_dir`` (any figure format)."""
    out_dir = Path(out_dir)
    return [out_dir / "table.md", out_dir / "table.csv",
            *(figure_path(out_dir, name, fmt) for name in FIGURES for fmt in FORMATS)]


def _figures(results: dict, out_dir: Path, fmt: str) -> dict:
    """The figures of a cross-validation run as ``fmt``: {name: path}."""
    paths = {"confusion": plot_confusions(results, out_dir, fmt=fmt),
             "curves": plot_training_curves(results, out_dir, fmt=fmt)}
    figures = results.get("figures_data") or {}
    if figures:  # cross_validate keeps the first fold's validation outputs
        k = results.get("k")
        if min(len(d["z"]) for d in figures.values()) >= TSNE_MIN_POINTS:
            paths["tsne"] = plot_tsne(figures, out_dir, results["classes"], fmt=fmt, fold=0,
                                      n_folds=k)
        hop, per_frame = run_frame_seconds(results)
        att = plot_attention(figures, out_dir, results["classes"], fmt=fmt, fold=0, n_folds=k,
                             seconds_per_frame=per_frame, hop_seconds=hop)
        if att is not None:
            paths["attention"] = att
    return paths


def write_reports(results: dict, out_dir: str | Path, fmt: str = "png") -> dict:
    """All reports of a cross-validation run, figures as ``fmt`` ("png", "pdf" or "svg"; "none":
    the table alone); returns {name: path}. Figures of any format that this run did not write
    are removed."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"figure format must be one of {REPORT_FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(results, out_dir)
    paths = {"table": out_dir / "table.md", "csv": out_dir / "table.csv",
             **(_figures(results, out_dir, fmt) if fmt != "none" else {})}
    for name in FIGURES:  # not made by this run: not left from another
        for other in FORMATS:
            p = figure_path(out_dir, name, other)
            if p not in paths.values():
                p.unlink(missing_ok=True)
    return paths
