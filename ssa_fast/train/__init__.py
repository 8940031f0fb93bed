"""Training, evaluation, cross-validation and metrics (design.md section 7)."""

from ..metrics import confusion_matrix, mean_ci95, normalised, uar
from .cv import PROTOCOLS, cross_validate, make_folds, prepare_fold, split_fold
from .loop import (
    TrainConfig,
    build_model,
    evaluate,
    load_checkpoint,
    recalibrate_batchnorm,
    score_batch,
    train,
    utterance_probabilities,
)

__all__ = ["PROTOCOLS", "TrainConfig", "build_model", "confusion_matrix",
           "cross_validate", "evaluate", "load_checkpoint", "make_folds", "mean_ci95",
           "normalised", "prepare_fold", "recalibrate_batchnorm", "score_batch", "split_fold",
           "train", "uar", "utterance_probabilities"]
