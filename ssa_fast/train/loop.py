"""One training run of ACRNN, ACRNN-r or SSA-CRNN(-r) on prepared segments (design.md section 7).

Read top to bottom: the configuration, how a model is built, evaluation (segment- and
utterance-level UAR), then the loop itself: balanced batches of 40, NAdam, the joint emotion +
speaker loss for SSA-CRNN, the L1 projection after every optimiser step for the "-r" models,
BatchNorm statistics re-estimated on training batches and validation every epoch, model
selection by validation UAR, a checkpoint after every epoch. Checkpoints carry the identity of
the run that wrote them (see fingerprint.py).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import _backend, _warn
from .. import distributed as dist
from .._atomic import BackgroundWriter, write_text
from ..data.sampler import BalancedBatchSampler
from ..data.segments import Segments
from ..errors import UserError
from ..metrics import confusion_matrix, scores
from ..models import checkpoint, model_spec
from ..models.checkpoint import load as load_checkpoint  # noqa: F401 (ssa_fast.train's)
from ..models.layers import split_batches
from ..models.scoring import score_batch, scoring_batch, utterance_probabilities
from .config import COMPILE_MODES, TrainConfig  # noqa: F401 (this module's names before config.py)
from .fingerprint import NOT_IN_IDENTITY, differences, fingerprint
from .timing import Breakdown


def build_model(cfg: TrainConfig, n_classes: int, n_speakers: int, segment_frames: int,
                n_mels: int) -> torch.nn.Module:
    return model_spec(cfg.model).build(
        n_classes, n_speakers, preset=cfg.preset, segment_frames=segment_frames, n_mels=n_mels,
        backend=cfg.backend, logit_scale=cfg.logit_scale,
        learn_logit_scale=cfg.learn_logit_scale, pool=cfg.pool, dropout=cfg.dropout,
        combine=cfg.combine, ssa_scale=cfg.ssa_scale, constrain_speaker=cfg.constrain_speaker)


class StepResult(NamedTuple):
    loss: torch.Tensor  # the step's loss (detached)
    embedding_l1: torch.Tensor  # mean L1 norm of the classifier's input ||z||_1
    step_ratio: torch.Tensor  # |W_after - W_before|_1 / |W_before|_1 of the classifier, before
    #                           the projection: how far one step moves it, relative to its size


def train_step(step_model, model, opt, x: torch.Tensor, y: torch.Tensor,
               speakers: torch.Tensor | None = None, *, weight: float | None = None,
               speaker_weight: float = 1.0, bf16: bool = False) -> StepResult:
    """One optimiser step, as training runs it (and the benchmarks time it): forward under bf16
    autocast when ``bf16``, weight x (sum of CE(emotion) + speaker_weight x CE(speaker) for
    SSA-CRNN) over the batch, backward, the optimiser's step, the L1 projection of the "-r"
    models. ``step_model`` is ``model`` or its DDP / torch.compile wrapper; ``weight`` defaults
    to 1 / batch (the mean); under torchrun the loop passes world size / global batch, so that
    DDP's gradient average is the global batch mean."""
    weight = 1.0 / len(x) if weight is None else weight
    clf = model.emotion_classifier
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        out = step_model(x)
        loss = F.cross_entropy(out.emotion_logits.float(), y, reduction="sum") * weight
        if speakers is not None and out.speaker_logits is not None:
            loss = loss + speaker_weight * weight * F.cross_entropy(
                out.speaker_logits.float(), speakers, reduction="sum")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    w0 = clf.weight.detach().clone()
    opt.step()
    ratio = (clf.weight.detach() - w0).abs().sum() / w0.abs().sum()
    # the L1 projection of the "-r" models (no-op otherwise), relative to the classifier inputs
    # of the whole batch (under torchrun gathered from every rank)
    model.project_(out, gather=dist.gather_rows)
    return StepResult(loss.detach(), out.z_em.detach().float().abs().sum(dim=1).mean(), ratio)


# what evaluate(keep_outputs=True) adds: per-segment outputs, for the figures
PER_SEGMENT = ("alpha_em", "alpha_sp", "z", "predicted")


@torch.no_grad()
def evaluate(model, segs: Segments, cfg: TrainConfig, n_classes: int, *,
             keep_outputs: bool = False) -> dict:
    """Segment- and utterance-level UAR, WA, macro F1, per-class recall and confusion matrices
    (and, with keep_outputs, the attention weights and emotion embeddings of every segment, for
    the figures)."""
    model.eval()
    parts: dict[str, list] = {}
    # under torchrun every rank scores a contiguous share of the segments; outputs are gathered
    W, r = dist.world_size(), dist.rank()
    shard = W > 1 and len(segs) >= W  # (every share non-empty; else each rank scores all)
    lo, hi = (len(segs) * r // W, len(segs) * (r + 1) // W) if shard else (0, len(segs))
    step = scoring_batch(cfg.device, cfg.eval_batch)
    for i in range(lo, hi, step):
        score_batch(model, segs.x[i:min(i + step, hi)], parts,
                    keep_outputs=keep_outputs, bf16=cfg.bf16)

    def gathered(key):
        if key not in parts:
            return None
        t = torch.cat(parts[key])
        return dist.gather_rows(t.to(cfg.device)).cpu() if shard else t

    logp = gathered("logp")
    spk_pred = gathered("speaker")
    y = segs.label
    seg_cm = confusion_matrix(y.numpy(), logp.argmax(1).numpy(), n_classes)
    utt_ids, inverse = torch.unique(segs.utterance, return_inverse=True)
    pooled = utterance_probabilities(logp, inverse, len(utt_ids), cfg.pooling)
    utt_y = torch.zeros(len(utt_ids), dtype=torch.long).scatter_(0, inverse, y)
    utt_cm = confusion_matrix(utt_y.numpy(), pooled.argmax(1).numpy(), n_classes)
    out = {**scores(seg_cm, "segment"), **scores(utt_cm, "utterance"),
           "loss": float(F.nll_loss(logp, y)), "segment_cm": seg_cm.tolist(),
           "utterance_cm": utt_cm.tolist()}
    known = segs.speaker >= 0
    if spk_pred is not None and bool(known.any()):  # SSA-CRNN: how well C_sp knows the speakers
        hit = spk_pred[known] == segs.speaker[known]
        out["speaker_accuracy"] = float(hit.float().mean())
    if keep_outputs:
        out["alpha_em"] = gathered("alpha_em")
        out["alpha_sp"] = gathered("alpha_sp")
        out["z"] = gathered("z")
        out["predicted"] = logp.argmax(1)  # each segment's predicted class
    return out


def set_deterministic() -> None:
    """Deterministic algorithms everywhere (an error for an op that has none)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@torch.no_grad()
def recalibrate_batchnorm(model, segs: Segments, batches, cfg: TrainConfig) -> int:
    """Replace the running statistics of every BatchNorm by their average over ``batches``
    (lists of segment indices into ``segs``, training data); returns the number of batches used.

    Why: eval-mode validation uses the running statistics, an exponential average over the
    epoch's batches taken while the weights moved. With few steps per epoch they lag the
    weights so much that validation scores fall far below what the same weights give with
    matching statistics (measured with 4 steps per epoch: ACRNN-r at chance, 0.25 UAR, in 7 of
    8 epochs, against 0.25-0.38 re-estimated; README), and selecting an epoch on that noisy
    curve rewards luck. The statistics are a cumulative average
    (momentum None) of the per-batch statistics, computed with the rest of the model in eval
    mode (no dropout, no L1-projection bookkeeping, no random numbers drawn, so a resumed run
    stays identical). Each forward pass stops once every BatchNorm has seen the batch (the
    LSTMs and heads after it cannot change the statistics; a quarter of the forward time on
    the CPU). Under torchrun every rank runs its slice of each batch and SyncBatchNorm1d
    averages over the whole batch, as in training.
    """
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    batches = list(batches)
    if not bns or not batches:
        return 0
    W, rank = dist.world_size(), dist.rank()
    was_training = model.training
    model.eval()
    momenta = [bn.momentum for bn in bns]
    seen: set[int] = set()

    def stop_after_the_last(module, _inputs, _output):
        seen.add(id(module))
        if len(seen) == len(bns):
            raise _StatisticsTaken

    hooks = [bn.register_forward_hook(stop_after_the_last) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for batch in batches:
            x = segs.x[batch[rank::W]].to(cfg.device)
            seen.clear()
            try:
                with torch.autocast(x.device.type, torch.bfloat16, enabled=cfg.bf16):
                    model(x)
            except _StatisticsTaken:
                pass
    finally:
        for hook in hooks:
            hook.remove()
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.train(was_training)
    return len(batches)


class _StatisticsTaken(Exception):
    """Ends a recalibration forward pass after the last BatchNorm (recalibrate_batchnorm)."""


LOG_COLUMNS = ("epoch", "train_loss", "segment_uar", "utterance_uar", "utterance_wa",
               "utterance_macro_f1", "loss", "speaker_accuracy", "test_segment_uar",
               "test_utterance_uar", "embedding_l1", "step_ratio", "logit_scale")


def _write_metrics_log(history: list[dict], path: Path) -> None:
    """metrics.csv: one row per finished epoch (rewritten whole, so a resumed run has no gaps)."""
    cols = [c for c in LOG_COLUMNS if any(h.get(c) is not None for h in history)]
    lines = [",".join(cols)]
    for h in history:
        lines.append(",".join("" if h.get(c) is None else
                              str(h[c] + 1 if c == "epoch" else round(h[c], 6)) for c in cols))
    write_text(path, "\n".join(lines) + "\n")


def compile_mode(compile: bool | str, device: torch.device, world_size: int = 1) -> str | None:
    """The torch.compile mode a training step runs with (None: eager).

    "auto" (``compile=True``) takes the mode measured fastest on the device, and stays eager
    where no mode beat eager (benchmarks/RESULTS.md, "compile modes"): on one CUDA device
    CUDA graphs ("reduce-overhead": 19.0 ms a step against 23.0 eager and 26.4-26.9 for the
    default mode, paper preset, bf16, H200); under torchrun and on the CPU eager, as no mode
    was measured faster there.
    """
    if compile is False:
        return None
    mode = "auto" if compile is True else compile
    if mode != "auto":
        return mode
    if device.type == "cuda" and world_size == 1:
        return "reduce-overhead"
    return None


def _step_model(model, cfg: TrainConfig):
    """What the steps call: the model, wrapped in DDP under torchrun (see ssa_fast.distributed
    for why this equals the 1-process run) and in torch.compile with ``cfg.compile``. The
    fused ops' backends are settled first, outside any traced region."""
    device = next(model.parameters()).device
    _backend.prepare(device)
    step_model = model
    if dist.world_size() > 1:
        dist.convert_batchnorm(model)
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    mode = compile_mode(cfg.compile, device, dist.world_size())
    if mode == "regional":  # each trunk (convolutions .. BatchNorm) compiled on its own
        from ..models.layers import CRNNTrunk

        for m in model.modules():
            if isinstance(m, CRNNTrunk):
                m.compile()
        return step_model
    if mode is not None:
        return torch.compile(step_model, mode=None if mode == "default" else mode)
    return step_model


def _best_epoch_on_disk(best: Path, stamp: dict) -> int | None:
    """The epoch ``best`` holds when it is a checkpoint of this run (``stamp``), else None."""
    try:
        state = checkpoint.load(best)
    except Exception:  # noqa: BLE001 - missing or unreadable: no epoch
        return None
    return state.get("epoch") if state.get("fingerprint") == stamp["fingerprint"] else None


def _resumed_options(config: dict) -> dict:
    """The options of a config (a dict, as checkpoints store it) that a resumed run must share
    with the run that wrote it: as its identity holds them (:meth:`TrainConfig.as_used`, without
    NOT_IN_IDENTITY), not the evaluation batch or the options its model ignores."""
    try:
        config = asdict(TrainConfig.from_dict(config).as_used())
    except (ValueError, TypeError):  # options or a model this version does not know: as written
        pass
    return {k: v for k, v in config.items() if k not in NOT_IN_IDENTITY}


def _read_resumable(last: Path, cfg: TrainConfig, stamp: dict) -> checkpoint.Last:
    """``last.pt`` of this run; one of another configuration or identity is refused, naming
    what differs, and a file that is not a last checkpoint in one line."""
    try:
        state = checkpoint.read_last(last)
        if not isinstance(state.config, dict):
            raise TypeError("no training configuration")
    except Exception as exc:  # noqa: BLE001 - unreadable, truncated, or another torch file
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise UserError(f"{last} is not a last checkpoint of a training run ({why}); delete "
                        "it to train afresh") from None
    identity = stamp["identity"]
    ours = asdict(cfg)
    if (_resumed_options(state.config) != _resumed_options(ours)
            or state.fingerprint != stamp["fingerprint"]):
        changed = differences(state.identity, identity) if identity else []
        changed = changed or differences(_resumed_options(state.config), _resumed_options(ours))
        raise UserError(f"{last} was written with another configuration "
                        f"({'; '.join(changed)}); refusing to resume (delete it or use "
                        "the same options)")
    return state


def _resume(state: checkpoint.Last, model, opt):
    """Load ``last.pt``'s ``state`` into the model and optimiser (and torch's RNG, and on a GPU
    its device's: the dropout masks after a resume are those of the uninterrupted run); (first
    epoch to run, best score, best epoch, history)."""
    model.load_state_dict(state.model)
    opt.load_state_dict(state.optimizer)
    torch.set_rng_state(state.torch_rng)
    device = next(model.parameters()).device
    if state.cuda_rng is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state.cuda_rng, device)
    return state.epoch + 1, state.best_metric, state.best_epoch, state.history


class _TrainingData(NamedTuple):
    """The training segments as the steps read them: on a CUDA device when they fit (gathered
    there, batch by batch, with no host round trip), else on the host."""
    x: torch.Tensor  # (S, 3, T, M)
    label: torch.Tensor  # (S,)
    speaker: torch.Tensor  # (S,)


def resident(x: torch.Tensor, device: torch.device, fraction: float = 0.25) -> torch.Tensor:
    """``x`` on ``device`` when it is a CUDA device and ``x`` takes at most ``fraction`` of its
    free memory (IEMOCAP's 7 h are about 1.2 GB of float32 features), else ``x`` itself."""
    if device.type != "cuda" or x.device == device:
        return x
    free, _ = torch.cuda.mem_get_info(device)
    if x.numel() * x.element_size() > fraction * free:
        return x
    return x.to(device, non_blocking=x.is_pinned())


def _training_data(segs: Segments, device: torch.device) -> _TrainingData:
    x = resident(segs.x, device)
    if x.device != device:  # streamed from the host: pinned, so that each copy is asynchronous
        return _TrainingData(x.pin_memory() if device.type == "cuda" else x, segs.label,
                             segs.speaker)
    return _TrainingData(x, segs.label.to(device), segs.speaker.to(device))


class _LogLine:
    """Inside an epoch, for a log file (no progress bar there): a line at most every
    ``SSA_FAST_LOG_INTERVAL`` seconds (default 60; 0 writes one before every step), so a long
    epoch (minutes a step at the paper's shape on a CPU) shows that it moves and how far."""

    def __init__(self, desc: str, n_steps: int):
        raw = os.environ.get("SSA_FAST_LOG_INTERVAL", "60")
        try:
            self.interval = float(raw)
        except ValueError:
            self.interval = float("nan")
        if not self.interval >= 0:
            _warn.warn(f"SSA_FAST_LOG_INTERVAL={raw!r} is not a number of seconds >= 0; "
                       "using 60")
            self.interval = 60.0
        self.desc, self.n_steps = desc, n_steps
        self.start = self.last = time.monotonic()

    def maybe(self, done: int) -> None:
        now = time.monotonic()
        if done == 0 or now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / done * (self.n_steps - done)
        print(f"{self.desc}: step {done}/{self.n_steps}, {_duration(elapsed)} "
              f"(about {_duration(left)} left in the epoch)", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _train_epoch(step_model, model, opt, sampler, data: _TrainingData, cfg: TrainConfig,
                 epoch: int, progress: bool, timing: Breakdown) -> tuple[float, dict]:
    """One epoch of steps: (mean training loss, diagnostics: the classifier's mean input L1 norm
    ||z||_1, the mean step / |W| and the logit scale of a constrained classifier). Nothing in
    the loop waits for the device: the epoch's batches go to it as one index table, and the
    losses are read back once, at the end."""

    from tqdm import tqdm

    W, rank = dist.world_size(), dist.rank()
    device = torch.device(cfg.device)
    model.train()
    losses, z_l1, step_ratio = [], [], []
    # every rank draws the same balanced batches and trains on its slice of each; the sum over
    # the slice / global size x W makes DDP's gradient average the global batch mean
    batches = torch.as_tensor(list(sampler), dtype=torch.long)
    weight = W / batches.shape[1]  # W / global batch size
    split_batches(model, batches.shape[1], rank, W)  # (dropout: each row its one-process mask)
    batches = batches[:, rank::W]
    on_device = data.x.device == device  # (on the CPU always: the same path as a GPU's)
    if on_device and device.type == "cuda":
        batches = batches.pin_memory().to(device, non_blocking=True)
    gathering = 0.0
    desc = f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}"
    log = _LogLine(desc, len(batches)) if progress and not sys.stderr.isatty() else None
    # (disable=None: tqdm draws bars on a terminal only, so logs hold no escape codes)
    for step_number, idx in enumerate(tqdm(batches, desc=desc, unit="batch", leave=False,
                                           disable=None if progress else True)):
        if log is not None:
            log.maybe(step_number)
        t0 = time.perf_counter()
        x = data.x[idx]
        y, s = data.label[idx], data.speaker[idx] if model.speaker_attentive else None
        if not on_device:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            s = None if s is None else s.to(device, non_blocking=True)
        if device.type == "cpu":  # (on a GPU the gather is queued work, timed with the steps)
            gathering += time.perf_counter() - t0
        step = train_step(step_model, model, opt, x, y, s, weight=weight,
                          speaker_weight=cfg.speaker_weight, bf16=cfg.bf16)
        losses.append(step.loss / W)
        z_l1.append(step.embedding_l1 / W)
        step_ratio.append(step.step_ratio)
    train_loss = dist.all_reduce_sum(torch.stack(losses).sum()).item() / len(losses)
    clf = model.emotion_classifier
    timing.add("batch gathering", gathering)
    timing.add("training steps", -gathering)  # (the caller times the whole loop as steps)
    return train_loss, dict(
        embedding_l1=dist.all_reduce_sum(torch.stack(z_l1).mean()).item(),
        step_ratio=torch.stack(step_ratio).mean().item(),
        logit_scale=clf.logit_scale if clf.l1_constraint else None)

def train(cfg: TrainConfig, train_segs: Segments, val_segs: Segments, *, n_classes: int,
          n_speakers: int, out_dir: str | Path, resume: bool = False, progress: bool = True,
          on_epoch_end=None, bundle: dict | None = None, provenance: dict | None = None,
          test_segs: Segments | None = None, on_start=None) -> dict:
    """Train one model; returns the selected epoch's validation metrics, the history and the
    time breakdown (``timing``, see timing.py).

    ``out_dir`` receives ``last.pt`` (everything needed to resume) and ``best.pt`` (the selected
    model with its config and ``bundle``: class names, normaliser... for prediction), written by
    a background thread while training goes on (each atomically, in order; all are on disk
    when this returns). With ``resume``, training continues from ``last.pt`` and ends exactly as
    an uninterrupted run; a ``last.pt`` of another configuration or identity is refused.
    ``provenance`` ({"identity": ..., "train_utterances": [...], "used_utterances": {...}},
    see fingerprint.py) is stored in both checkpoints with the identity's fingerprint.
    ``test_segs``, a held-out test set, is scored every epoch (recorded as ``test_*`` in the
    history) and, for the selected model, returned as ``"test"``; it plays no part in the
    selection. ``on_epoch_end(epoch, metrics)`` is called after each epoch's checkpoint;
    ``on_start()`` once the run is checked (a ``last.pt`` to resume matches), before anything
    is written to ``out_dir``.
    On a CUDA device the segments live on the device when they fit (:func:`resident`), batches
    are gathered there, and cuDNN picks its algorithms once per shape (unless
    ``cfg.deterministic``).
    """
    out_dir = Path(out_dir)
    device = torch.device(cfg.device)
    timing = Breakdown(device)
    writer = BackgroundWriter()
    try:
        return _train(cfg, train_segs, val_segs, n_classes, n_speakers, out_dir, resume,
                      progress, on_epoch_end, bundle, provenance, test_segs, device, timing,
                      writer, on_start)
    finally:
        writer.close()

def _train(cfg, train_segs, val_segs, n_classes, n_speakers, out_dir, resume, progress,
           on_epoch_end, bundle, provenance, test_segs, device, timing, writer,
           on_start) -> dict:
    with timing.phase("startup"):
        if cfg.deterministic:
            set_deterministic()
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotuned once per shape
        torch.manual_seed(cfg.seed)
        segment_frames, n_mels = train_segs.x.shape[2], train_segs.x.shape[3]
        model = build_model(cfg, n_classes, n_speakers, segment_frames, n_mels).to(device)
        if device.type == "cuda" and cfg.bf16:  # bf16 convolutions: channels-last (RESULTS.md)
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.NAdam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        sampler = BalancedBatchSampler(train_segs.label.numpy(), cfg.batch_size,
                                       n_classes=n_classes, seed=cfg.seed)
        main = dist.is_main()
        step_model = _step_model(model, cfg)
        progress = progress and main
        identity = (provenance or {}).get("identity")
        stamp = checkpoint.make_stamp(provenance, identity and fingerprint(identity))
        start, best, best_epoch, history = 0, -1.0, -1, []
        last = out_dir / "last.pt"
        rewrite_best = False
        if resume and last.is_file():
            state = _read_resumable(last, cfg, stamp)
            on_disk = _best_epoch_on_disk(out_dir / "best.pt", stamp)
            if on_disk != state.best_epoch and state.best_epoch not in (-1, state.epoch):
                # best.pt does not hold the best epoch, and the resumed model is another's
                if main:
                    _warn.warn(f"{out_dir / 'best.pt'} does not hold the best epoch that "
                               f"{last} names (a run killed between the two writes by an "
                               "older version): starting this run afresh")
            else:
                start, best, best_epoch, history = _resume(state, model, opt)
                # killed after last.pt and before best.pt of its epoch: that epoch was the
                # best, and the model resumed is its state, the one best.pt was to hold
                rewrite_best = best_epoch == start - 1 and on_disk != best_epoch
        if on_start is not None:
            on_start()
        out_dir.mkdir(parents=True, exist_ok=True)
        if rewrite_best and main:
            metrics = next(m for m in history if m["epoch"] == best_epoch)
            writer.save_torch(out_dir / "best.pt", checkpoint.best_state(
                asdict(cfg), model, best_epoch, metrics, bundle, stamp))
    with timing.phase("data"):  # the fold's segments to the device, once
        data = _training_data(train_segs, device)
        val_segs = replace(val_segs, x=resident(val_segs.x, device))
        if test_segs is not None:
            test_segs = replace(test_segs, x=resident(test_segs.x, device))

    selected = None  # (validation with outputs, test) of the selected epoch, if run here
    # a resumed run that --patience had already stopped (killed after its last epoch's
    # checkpoints) ends as it did: it trained on, and its scores changed
    stopped = (cfg.patience is not None and start > 0
               and (start - 1) - best_epoch >= cfg.patience)
    diverged_epoch = None  # (the epoch, from 1, whose loss was not finite: training stopped)
    for epoch in range(start, start if stopped else cfg.epochs):
        sampler.set_epoch(epoch)
        with timing.phase("training steps"):
            train_loss, diagnostics = _train_epoch(step_model, model, opt, sampler, data, cfg,
                                                   epoch, progress, timing)
        if cfg.bn_batches:  # the statistics of this epoch's weights (same batches, no RNG)
            with timing.phase("BatchNorm re-estimation"):
                recalibrate_batchnorm(model, replace(train_segs, x=data.x),
                                      itertools.islice(sampler, cfg.bn_batches), cfg)
        with timing.phase("validation"):
            # (with the per-segment outputs the figures need: those of the selected epoch are
            # the run's final evaluation, not recomputed)
            scored = evaluate(model, val_segs, cfg, n_classes, keep_outputs=True)
            metrics = {k: v for k, v in scored.items() if k not in PER_SEGMENT}
            metrics.update(epoch=epoch, train_loss=train_loss, **diagnostics)
            test = None
            if test_segs is not None:  # recorded only: selection never looks at it
                test = evaluate(model, test_segs, cfg, n_classes)
                metrics.update(test_segment_uar=test["segment_uar"],
                               test_utterance_uar=test["utterance_uar"])
        if not (math.isfinite(train_loss) and math.isfinite(metrics["loss"])):
            # diverged: the weights are not finite, and their "predictions" (the argmax of NaN,
            # always the first class) score exactly chance, which could beat an earlier epoch
            # below it; nothing of this epoch is kept (a resume diverges here again)
            diverged = (f"{cfg.model}: training diverged in epoch {epoch + 1} (training loss "
                        f"{train_loss:.4g}, validation loss {metrics['loss']:.4g}); try a lower "
                        f"--lr (now {cfg.lr:g})" + (" or leave out --bf16" if cfg.bf16 else ""))
            if best_epoch < 0:
                raise UserError(diverged + ": no epoch before it to keep")
            if main:
                _warn.warn(f"{diverged}: stopped, the selected epoch is {best_epoch + 1}")
            diverged_epoch = epoch + 1
            break
        history.append(metrics)
        score = metrics[f"{cfg.select_by}_uar"]
        improved = score > best
        if improved:
            best, best_epoch = score, epoch
            selected = (scored, test)
        if main:  # checkpoints and the metrics log are written once, by rank 0
            with timing.phase("checkpoints"):  # (the hand-over; the writes run beside training)
                _write_metrics_log(history, out_dir / "metrics.csv")
                # last.pt first: a kill between the two writes leaves a best.pt behind it,
                # which a resume rewrites from last.pt's model (the same state), never one
                # ahead of it, whose epoch the resumed run would not have in its history
                writer.save_torch(last, checkpoint.last_state(
                    asdict(cfg), model, opt, epoch, best, best_epoch, history, stamp,
                    torch.cuda.get_rng_state(device) if device.type == "cuda" else None))
                if improved:
                    writer.save_torch(out_dir / "best.pt", checkpoint.best_state(
                        asdict(cfg), model, epoch, metrics, bundle, stamp))
        dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        elif progress and not sys.stderr.isatty():  # a log file: one line an epoch, no bars
            print(f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, "
                  f"validation UAR {100 * metrics['utterance_uar']:.2f} %", file=sys.stderr,
                  flush=True)
        if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            break
    with timing.phase("checkpoints"):  # every write on disk before best.pt is read back
        writer.wait()
        dist.barrier()
    with timing.phase("final evaluation"):
        # best.pt holds the weights and the BatchNorm statistics its validation score was
        # measured with; their scores were taken then, unless the run resumed after that epoch
        model.load_state_dict(checkpoint.weights(out_dir / "best.pt"))
        if selected is None:
            selected = (evaluate(model, val_segs, cfg, n_classes, keep_outputs=True),
                        None if test_segs is None else evaluate(model, test_segs, cfg,
                                                                 n_classes))
        final, test = dict(selected[0]), selected[1]
        final.update(best_epoch=best_epoch, history=history, fingerprint=stamp["fingerprint"])
        if diverged_epoch is not None:
            final["diverged_epoch"] = diverged_epoch
        if test is not None:
            final["test"] = test
    final["timing"] = timing.as_dict()
    return {"model": model, **final}
