"""The corpus of ``train``, ``cv`` and ``evaluate``: opened, checked against the options before
the (long) feature extraction, and its features computed once, under torchrun by rank 0 first
(the others read its cache)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import NamedTuple

from ..errors import UserError
from .checks import default_device


def say(*args, **kwargs) -> None:
    """print on rank 0 only (one process prints under torchrun)."""
    from ..distributed import is_main

    if is_main():
        print(*args, **kwargs)


def skipped_summary(skipped) -> str:
    """'N skipped (count reason, ...)', problems first, then the classes left out."""
    from ..data.corpus import is_exclusion, skip_reason

    if not skipped:
        return "0 skipped"
    counts = Counter(skip_reason(item, why) for item, why in skipped)
    order = sorted(counts.items(), key=lambda kv: (is_exclusion(kv[0]), -kv[1], kv[0]))
    return f"{len(skipped)} skipped ({', '.join(f'{n} {why}' for why, n in order)})"


def show_skipped(skipped, n: int, file=sys.stderr) -> None:
    """The first ``n`` skipped items, problems (missing or unreadable files, bad lines) before
    the utterances of classes left out."""
    from ..data.corpus import is_exclusion, skip_reason

    ordered = sorted(skipped, key=lambda s: is_exclusion(skip_reason(*s)))
    for item, why in ordered[:n]:
        print(f"skipped: {item}: {why}", file=file)


def describe(corpus) -> str:
    """The one-line summary of a corpus as read: utterances per class, speakers, skips."""
    counts = Counter(corpus.classes[i] for i in corpus.labels)
    return (f"{corpus.name}: {len(corpus)} utterances, {len(corpus.speakers)} speakers, "
            f"classes {corpus.classes} ({', '.join(f'{c} {counts[c]}' for c in corpus.classes)})"
            f"; {skipped_summary(corpus.skipped)}")


def default_protocol(corpus: str) -> str:
    """--protocol when not given: the corpora with phrase groups split by phrase."""
    return "linguistic" if corpus in ("atthack", "synthetic") else "random"


def open_corpus(kind: str, root: str, *, merge_excited: bool, scripted: bool,
                columns: dict | None, attitudes: tuple[str, ...] | None = None):
    """The corpus of the command line; what was merged while reading it is said on stderr."""
    from ..data import load_corpus
    from ..distributed import is_main

    options = {}
    if kind == "iemocap":
        options = {"merge_excited": merge_excited, "scripted": scripted}
    for option, given in (("merge_excited", merge_excited), ("scripted", scripted)):
        if given and kind != "iemocap":  # not ignored where they mean nothing
            raise UserError(f"--{option.replace('_', '-')}: applies to the iemocap corpus, not "
                            f"{kind!r}")
    if attitudes is not None:
        if kind != "atthack":
            raise UserError(f"--attitudes: applies to the atthack corpus, not {kind!r}")
        options["attitudes"] = attitudes
    if columns is not None:
        if kind != "manifest":
            raise UserError(f"--columns: applies to the manifest corpus, not {kind!r}")
        options["columns"] = columns
    corpus = load_corpus(kind, root, **options)
    if not len(corpus):
        shown = "; ".join(f"{item}: {why}" for item, why in corpus.skipped[:3])
        raise UserError(f"{root}: no usable utterance ({len(corpus.skipped)} skipped"
                        + (f": {shown}" if shown else "") + ")")
    for note in corpus.notes if is_main() else ():
        print(f"note: {note}", file=sys.stderr)
    return corpus


def check_model_options(args, models: list[str]) -> None:
    """The models' options against the models and the data's shape, before any work: a pooling
    that leaves no frame or band (it failed with a traceback after the feature extraction), and
    --constrain-speaker without SSA-CRNN-r (the one model it applies to)."""
    from ..models.presets import get_preset

    pool = args.pool
    if pool is not None:
        if pool[0] > args.segment_frames:
            raise UserError(f"--pool {pool[0]},{pool[1]}: a time pool of {pool[0]} frames is "
                            f"longer than the segments (--segment-frames {args.segment_frames})")
        if pool[1] > args.n_mels:
            raise UserError(f"--pool {pool[0]},{pool[1]}: a frequency pool of {pool[1]} bands "
                            f"is wider than the features (--n-mels {args.n_mels})")
    else:  # the preset's pooling
        t, f = get_preset(args.preset).pool
        if t > args.segment_frames:
            raise UserError(f"--segment-frames {args.segment_frames}: shorter than the time "
                            f"pool of the {args.preset} preset ({t} frames); expected at "
                            f"least {t}")
        if f > args.n_mels:
            raise UserError(f"--n-mels {args.n_mels}: fewer bands than the frequency pool of "
                            f"the {args.preset} preset ({f}); expected at least {f}")
    if args.constrain_speaker and "ssa-crnn-r" not in models:
        raise UserError(f"--constrain-speaker: applies to ssa-crnn-r (its speaker classifier, "
                        f"with the logit scale), not to {', '.join(models)}")


def check_corpus(corpus, args, models: list[str], normalisation: str | None,
                 fold: int | None = None) -> str:
    """Checks of a train / cv command line against the corpus, before any feature or training
    work: at least two classes, the balanced batch size, then what these models need of it
    (train.cv.check_plan: speakers, the fold layout, the fold index, the selection split).
    Returns the normalisation: the one given, or (None) the corpus's default, said on stderr."""
    from ..data import default_normalisation
    from ..train.cv import check_plan

    n = len(corpus.classes)
    check_model_options(args, models)
    present = sorted({r.label for r in corpus})
    if len(present) < 2:
        raise UserError(f"{args.root}: every utterance is labelled {present[0]!r}: "
                        "classifying emotions needs at least 2 classes")
    if args.batch_size % n:
        raise UserError(f"--batch-size {args.batch_size} is not a multiple of the {n} classes "
                        f"{corpus.classes} (batches are balanced by class)")
    if normalisation is None:  # not given: speaker, if speakers are known
        normalisation = default_normalisation(corpus)
        if normalisation != "speaker":
            say(f"note: {corpus.n_without_speaker} utterances have no speaker: "
                f"--normalisation {normalisation}", file=sys.stderr)
    check_plan(corpus, models, protocol=args.protocol, k=args.folds, seed=args.seed,
               normalisation=normalisation, fold=fold, selection=args.selection_split)
    return normalisation


class Loaded(NamedTuple):
    corpus: object  # data.Corpus, without the utterances whose audio could not be used
    features: list  # one (3, frames, n_mels) tensor per utterance
    device: str
    normalisation: str  # resolved (check_corpus)


def load_with_features(args, models: list[str], fold: int | None = None) -> Loaded:
    """The corpus of a train / cv command line with its (cached) features; prints a one-line
    summary. Under torchrun (one process per rank) rank 0 fills the feature cache first."""
    import torch

    from .. import distributed as dist
    from ..data import corpus_features
    from ..features import FeatureConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device(dist.init_from_env(args.device))
    main = dist.is_main()
    corpus = open_corpus(args.corpus, args.root, merge_excited=args.merge_excited,
                         scripted=args.scripted, columns=args.columns, attitudes=args.attitudes)
    say(describe(corpus))
    read = len(corpus.skipped)
    normalisation = check_corpus(corpus, args, models, args.normalisation, fold)  # before the
    # (long) feature extraction
    if not main:
        dist.barrier()  # rank 0 fills the feature cache first; the others read it
    corpus, feats = corpus_features(corpus, args.cache, features=FeatureConfig(n_mels=args.n_mels),
                                    device=device, progress=not args.quiet and main)
    if main:
        dist.barrier()
        if len(corpus.skipped) > read:  # (audio that could not be used)
            say(f"{corpus.name}: {len(corpus)} utterances left after reading the audio; "
                f"{skipped_summary(corpus.skipped[read:])}")
        show_skipped(corpus.skipped, args.show_skipped)
    return Loaded(corpus, feats, device, normalisation)
