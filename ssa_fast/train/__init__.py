"""Training, evaluation, cross-validation and metrics (design.md section 7).

Names are imported on first use: the command line reads ``TrainConfig``'s defaults without
torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["confusion_matrix", "mean_ci95", "normalised", "uar"], "ssa_fast.metrics"),
    **dict.fromkeys(["PROTOCOLS", "cross_validate", "make_folds", "prepare_fold", "split_fold"],
                    ".cv"),
    "TrainConfig": ".config",
    **dict.fromkeys(["build_model", "evaluate", "load_checkpoint", "recalibrate_batchnorm",
                     "score_batch", "train", "utterance_probabilities"], ".loop"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
