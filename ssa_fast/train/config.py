"""`TrainConfig`: the options of a training run, with their defaults, stated once (design.md
section 7). The command line shows these defaults, the Python API takes them, and a run's
identity (``fingerprint.py``) stores the config as its model uses it (:meth:`as_used`).
Torch-free: the command line's parser reads it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from ..models.constants import POOLINGS
from ..models.registry import MODEL_NAMES, model_spec

# torch.compile modes of the training step: "default" (inductor), "reduce-overhead" (inductor
# and CUDA graphs), "regional" (each CRNN trunk compiled on its own, the rest eager); "auto" is
# the mode measured fastest on the device (loop.compile_mode)
COMPILE_MODES = ("auto", "default", "reduce-overhead", "regional")


@dataclass
class TrainConfig:
    model: str = "ssa-crnn-r"  # one of models.MODEL_NAMES
    preset: str = "paper"  # the paper's sizes; "small" for CPU demos and tests
    epochs: int = 30
    batch_size: int = 40  # emotionally balanced: batch_size / n_classes per class
    lr: float = 1e-4
    beta1: float = 0.9
    speaker_weight: float = 1.0  # lambda in CE(emotion) + lambda CE(speaker) [choice]
    # "-r" models: the constrained classifier's logits times this. 1 is eq. 8 literally, whose
    # logits stay within ~1/K so that the loss never saturates and the "-r" models do not learn
    # (docs/experiments/README.md, E1); 300 [choice, from E1]. Learned from this start if asked
    logit_scale: float = 300.0
    learn_logit_scale: bool = False
    # [choice] options of the models (design.md sections 4-5); None: the preset's
    pool: tuple[int, int] | None = None  # the max-pooling (time, frequency): (2, 2); the paper
    #                                      names (2, 4) as an option
    dropout: float | None = None  # after the linear layer; the presets have none
    combine: str = "concat"  # SSA: c_em and c_sp side by side (c in R^2d, the paper's text) or
    #                          "sum" (c_em + c_sp in R^d, eq. 6 as printed)
    ssa_scale: float | None = None  # SSA: the attention scores' scale (None: 1 / sqrt(T))
    constrain_speaker: bool = False  # SSA-CRNN-r: the speaker classifier L1-constrained too
    pooling: str = "mean"  # utterance decision: mean of segment log-probs | "max" posterior
    select_by: str = "utterance"  # validation UAR used for model selection [choice]
    patience: int | None = None  # early stopping after this many epochs without improvement
    # BatchNorm running statistics re-estimated before every validation from this many training
    # batches (at most one epoch's); 0 keeps the running averages (loop.recalibrate_batchnorm).
    # 5 batches of 40 segments give each statistic ~30000 frames (150 per segment, paper preset)
    bn_batches: int = 5
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False  # bf16 autocast on the training device (CPU or CUDA)
    # torch.compile of the training step: False (eager), True ("auto": the mode measured
    # fastest on the device, or eager where none beat it: loop.compile_mode) or one of
    # COMPILE_MODES; each LSTM runs eagerly between compiled graphs
    compile: bool | str = False
    # Reproducible CUDA runs: deterministic algorithms (torch.use_deterministic_algorithms,
    # cuDNN benchmark off, CUBLAS_WORKSPACE_CONFIG); slower. CPU runs with one thread are
    # reproducible for a seed without it (tested); multi-threaded CPU runs were not compared.
    deterministic: bool = False
    backend: str | None = None  # kernel backend for the fused ops
    # segments per forward pass in validation; None: models.scoring.scoring_batch's (32 on the
    # CPU, 128 on a GPU); the scores do not depend on it
    eval_batch: int | None = None
    extra: dict = field(default_factory=dict)  # free-form notes stored with checkpoints

    def __post_init__(self):
        if self.model not in MODEL_NAMES:
            raise ValueError(f"model must be one of {MODEL_NAMES}, got {self.model!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.select_by not in ("utterance", "segment"):
            raise ValueError(f"select_by must be 'utterance' or 'segment', got {self.select_by!r}")
        for name in ("epochs", "batch_size"):  # (0 epochs returned an earlier run's best.pt)
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.patience is not None and not self.patience >= 1:
            raise ValueError(f"patience must be None or >= 1, got {self.patience}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.bn_batches < 0:
            raise ValueError(f"bn_batches must be >= 0, got {self.bn_batches}")
        if self.eval_batch is not None and not self.eval_batch >= 1:
            raise ValueError(f"eval_batch must be None or >= 1, got {self.eval_batch}")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale}")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, "
                             f"got {self.compile!r}")

    def as_used(self) -> TrainConfig:
        """This config with the options its model does not use at their defaults: what a
        run's identity holds, so that another ``--ssa-scale`` retrains the SSA models only."""
        ignored = model_spec(self.model).ignored_options()
        return replace(self, **{f.name: f.default for f in fields(self) if f.name in ignored})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training options: {sorted(unknown)}")
        return cls(**d)
