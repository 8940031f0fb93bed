"""The two checkpoints of a training run and the one place their keys are named: ``best.pt``
(the selected model and what prediction needs) and ``last.pt`` (what resuming needs). Built here
for training to write, checked, upgraded and read here for training (resume, reused folds) and
prediction alike; train/ and predict/ both import this, neither imports the other.

Checkpoints hold tensors and plain Python values only: they are read with ``weights_only=True``
and written atomically by the caller (_atomic.py; the training loop's background writer).

Layout versions. Files carry no version number (one would change every file written so far):
the keys a file holds tell its version, and :func:`read_best` upgrades older files to the
current one.

1. ``best.pt``: config, model, epoch, metrics, model_config, bundle (classes, speakers,
   normaliser, segment_frames, feature_params: ``{"n_mels": ...}`` at most); ``last.pt``:
   config, model, optimizer, epoch, best_metric, best_epoch, history, torch_rng.
2. Both + the run's provenance (see train/fingerprint.py): identity and fingerprint (None for a
   run trained without one), train_utterances (the listing keys of its training utterances);
   feature_params holds every FeatureConfig field.
3. Both + used_utterances ({kind: keys} of every utterance the run used); a last.pt of a run
   on a GPU may hold cuda_rng (its device generator's state: the dropout masks of a resume).
4. Both + epoch_utterances ({kind: keys} of the utterances that chose the run's epoch and are
   not among used_utterances: its fold's validation utterances when it was trained without a
   selection split, none with one), so that ``evaluate`` tells them through any listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .._digest import fingerprint
from ..features.config import FeatureConfig

VERSION = 4  # the layout written now (above); a new one needs its upgrade in read_best

# (what prediction cannot do without; "speakers" and "feature_params" have defaults)
REQUIRED_BUNDLE_KEYS = ("classes", "normaliser", "segment_frames")


def load(path: str | Path) -> dict:
    """Checkpoints hold tensors and plain Python values only: loaded with weights_only=True."""
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- writing

def make_bundle(classes: list[str], speakers: list[str], normaliser: dict, segment_frames: int,
                feature_params: dict | None = None) -> dict:
    """What a trained model needs for prediction, stored in its best.pt: class and speaker names,
    the normaliser's ``state_dict()``, the segment length and the features' ``to_dict()``."""
    return {"classes": classes, "speakers": speakers, "normaliser": normaliser,
            "segment_frames": segment_frames, "feature_params": feature_params or {}}


def make_stamp(provenance: dict | None, fingerprint) -> dict:
    """The provenance both checkpoints store: ``provenance``'s keys (identity, train_utterances,
    used_utterances, epoch_utterances) with the identity (None without one) and its
    ``fingerprint``."""
    return {**(provenance or {}), "identity": (provenance or {}).get("identity"),
            "fingerprint": fingerprint}


def best_state(config: dict, model: torch.nn.Module, epoch: int, metrics: dict,
               bundle: dict | None, stamp: dict) -> dict:
    """The dict saved as best.pt: the selected epoch's weights, ``config`` (the TrainConfig as a
    dict), its validation metrics (without the confusion matrices), the model's constructor
    config, the ``bundle`` (:func:`make_bundle`) and the ``stamp`` (:func:`make_stamp`)."""
    return {"config": config, "model": model.state_dict(), "epoch": epoch,
            "metrics": {k: v for k, v in metrics.items() if not k.endswith("_cm")},
            "model_config": model.config, "bundle": bundle or {}, **stamp}


def last_state(config: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               epoch: int, best_metric: float, best_epoch: int, history: list[dict],
               stamp: dict, cuda_rng: torch.Tensor | None = None) -> dict:
    """The dict saved as last.pt after ``epoch``: everything resuming needs (weights, optimiser,
    torch's RNG state now, the selection so far and the history) and the ``stamp``; with
    ``cuda_rng`` (a run on a GPU: the state of its device's generator, which draws its dropout
    masks) that too."""
    state = {"config": config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "epoch": epoch, "best_metric": best_metric, "best_epoch": best_epoch,
             "history": history, "torch_rng": torch.get_rng_state(), **stamp}
    if cuda_rng is not None:
        state["cuda_rng"] = cuda_rng
    return state


# ---------------------------------------------------------------- reading

@dataclass
class Best:
    """A ``best.pt`` as read by :func:`read_best`, upgraded to the current version."""
    model_config: dict  # the model's constructor config (models.model_from_config)
    model: dict  # its state_dict
    config: dict  # the TrainConfig it was trained with, as a dict
    classes: list[str]
    speakers: list[str]  # [] in files that did not store them
    normaliser: dict  # Normaliser.state_dict()
    segment_frames: int
    feature_params: dict  # FeatureConfig.to_dict(): every field (version 1: the defaults')
    pooling: str  # the utterance pooling ("mean" in files whose config did not name one)
    epoch: int | None
    metrics: dict | None
    # the provenance (version 2); None in older files, used_utterances (version 3) falls back
    # to {"listing": train_utterances}, which is what version 2 files could be checked against
    identity: dict | None
    fingerprint: str | None
    train_utterances: list[str] | None
    used_utterances: dict | None
    epoch_utterances: dict | None  # (version 4; None in older files: not known)


def read_best(path: str | Path) -> Best:
    """Read a model checkpoint written by ``ssa-fast train`` / ``cv``; FileNotFoundError for a
    missing file, a one-line ValueError naming the file for one that does not load or lacks
    what prediction needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = load(path)
    except Exception as exc:  # pickle / zip errors of a file that is not a checkpoint
        first = (str(exc).splitlines() or [""])[0][:200]  # (a 0-byte file: an empty message)
        raise ValueError(f"{path}: not a checkpoint that loads with weights_only=True "
                         f"({type(exc).__name__}: {first})") from exc
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a model checkpoint (a {type(ckpt).__name__})")
    bundle = ckpt.get("bundle") or {}
    missing = [k for k in REQUIRED_BUNDLE_KEYS if k not in bundle]
    if "model_config" not in ckpt or missing:
        raise ValueError(f"{path}: not a model checkpoint written by `ssa-fast train` or "
                         f"`ssa-fast cv` (a best.pt); missing {missing or ['model_config']}")
    train_utterances = ckpt.get("train_utterances")
    used = ckpt.get("used_utterances") or (
        None if train_utterances is None else {"listing": train_utterances})
    try:
        features = FeatureConfig.from_dict(bundle.get("feature_params")).to_dict()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the checkpoint's feature parameters do not load ({exc})") \
            from None
    problems = inconsistencies(ckpt, features)
    if problems:
        raise ValueError(f"{path}: an inconsistent checkpoint ({'; '.join(problems)}): edited, or "
                         "put together from two runs; use the best.pt its run wrote")
    return Best(model_config=ckpt["model_config"], model=ckpt["model"], config=ckpt["config"],
                classes=list(bundle["classes"]), speakers=list(bundle.get("speakers", [])),
                normaliser=bundle["normaliser"], segment_frames=int(bundle["segment_frames"]),
                feature_params=features,
                pooling=ckpt["config"].get("pooling", "mean"), epoch=ckpt.get("epoch"),
                metrics=ckpt.get("metrics"), identity=ckpt.get("identity"),
                fingerprint=ckpt.get("fingerprint"), train_utterances=train_utterances,
                used_utterances=used, epoch_utterances=ckpt.get("epoch_utterances"))


def inconsistencies(ckpt: dict, features: dict) -> list[str]:
    """What a ``best.pt``'s parts say differently of the one run that should have written them
    (``features``: its feature parameters, every field): the classes and the model's outputs,
    the mel bands of the features, the model and the normalisation statistics, the segment
    length, the pooling, and the run's identity (layout 2 on) against what is stored."""
    from .constants import POOLINGS

    bundle, model = ckpt["bundle"], ckpt["model_config"]
    out = []

    def differ(what: str, a, b) -> None:
        if a is not None and b is not None and a != b:
            out.append(f"{what}: {a!r} against {b!r}")

    outputs = model.get("n_emotions", model.get("n_classes"))
    differ("classes against the model's outputs", len(bundle["classes"]), outputs)
    differ("the features' mel bands against the model's", features["n_mels"],
           model.get("n_mels"))
    differ("the segment length against the model's", bundle["segment_frames"],
           model.get("segment_frames"))
    pooling = (ckpt.get("config") or {}).get("pooling", "mean")
    if pooling not in POOLINGS:
        out.append(f"pooling {pooling!r} (one of {', '.join(POOLINGS)})")
    for speaker, stats in (bundle["normaliser"].get("stats") or {}).items():
        mean = stats.get("mean") if isinstance(stats, dict) else None
        if isinstance(mean, torch.Tensor) and mean.shape[-1:] != (features["n_mels"],):
            out.append(f"the normalisation statistics of {speaker!r} have "
                       f"{tuple(mean.shape)[-1:]} mel bands against the features' "
                       f"{features['n_mels']}")
            break
    data = (ckpt.get("identity") or {}).get("data") or {}
    if data.get("features") is not None:
        stored = FeatureConfig.from_dict(data["features"]).to_dict()
        for key in stored:
            differ(f"feature {key} against the run's", features[key], stored[key])
    differ("the segment length against the run's", bundle["segment_frames"],
           data.get("segment_frames"))
    differ("the normalisation against the run's", bundle["normaliser"].get("mode"),
           data.get("normalisation"))
    identity = ckpt.get("identity")
    if isinstance(identity, dict):
        # (a class list reordered or renamed labels every output with another class)
        differ("the classes against the run's", list(bundle["classes"]),
               (identity.get("corpus") or {}).get("classes"))
        stored = ckpt.get("fingerprint")
        if stored is not None and stored != fingerprint(identity):
            out.append(f"the run's identity against its fingerprint {stored} (edited, or "
                       "taken from another run)")
    return out


@dataclass
class Last:
    """A ``last.pt`` as read by :func:`read_last`."""
    config: dict
    model: dict
    optimizer: dict
    torch_rng: torch.Tensor
    epoch: int  # the last epoch trained
    best_metric: float
    best_epoch: int
    history: list[dict]
    identity: dict | None  # None in version 1 files
    fingerprint: str | None
    cuda_rng: torch.Tensor | None = None  # the GPU generator's state (runs on a GPU)


def read_last(path: str | Path) -> Last:
    """Read a ``last.pt`` (unchecked: resuming compares its config and fingerprint with the
    run's before using it)."""
    state = load(path)
    return Last(config=state["config"], model=state["model"], optimizer=state["optimizer"],
                torch_rng=state["torch_rng"], epoch=state["epoch"],
                best_metric=state["best_metric"], best_epoch=state["best_epoch"],
                history=state["history"], identity=state.get("identity"),
                fingerprint=state.get("fingerprint"), cuda_rng=state.get("cuda_rng"))


def weights(path: str | Path) -> dict:
    """The model's state_dict stored in a checkpoint (best.pt or last.pt)."""
    return load(path)["model"]


def fingerprint_of(path: str | Path):
    """The fingerprint of the run that wrote a checkpoint (None in version 1 files)."""
    return load(path).get("fingerprint")
