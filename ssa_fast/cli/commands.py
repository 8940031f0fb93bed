"""One function per command: its checks that need no data first (checks.py), then its work.
Each returns the exit status (checks.py); ``main`` turns user errors into one line."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from .checks import (
    EXIT_SKIPPED,
    EXIT_USER,
    check_bf16,
    check_corpus_paths,
    check_device,
    check_features,
    check_input,
    check_output,
    check_run_folder,
    default_device,
    warn_user,
)
from .corpus import check_corpus, describe, load_with_features, open_corpus, say, show_skipped
from .naming import output_names

# -- synth, demo, bench ---------------------------------------------------------------------------


def cmd_synth(args) -> int:
    import json

    from ..data.synthetic import synthesize_corpus

    check_output(args.out, "--out")
    manifest = synthesize_corpus(args.out, args.size, speakers=args.speakers,
                                 phrases=args.phrases, repetitions=args.repetitions,
                                 seed=args.seed, jobs=args.jobs, progress=not args.quiet)
    meta = json.loads((manifest.parent / "synthetic.json").read_text())
    print(f"wrote {len(meta['utterances'])} utterances ({meta['hours'] * 60:.1f} min of audio) "
          f"-> {manifest}")
    return 0


def cmd_demo(args) -> int:
    from ..demo import feature_check, run_demo

    check_output(args.out, "--out")
    if args.features_only:
        feature_check(args.out)
        return 0
    run_demo(args.out, folds=args.folds, epochs=args.epochs, size=args.size, lr=args.lr,
             preset=args.preset, progress=not args.quiet)
    return 0


def cmd_bench(args) -> int:
    import torch

    from ..bench import OPS, format_rows, quick_bench

    check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device(args.device)
    rows = quick_bench(device, ops=args.ops or OPS, compile=args.compile, budget_s=args.budget,
                       progress=not args.quiet)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; median milliseconds")
    print(format_rows(rows))
    print("full suite with floors and peers: make bench (pytest benchmarks --benchmark-only)")
    return 0


# -- features -------------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through memory: on a name it would append ".npy" to the temporary name, and on
    a file it uses ndarray.tofile, whose error on a full disk carries no errno."""
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    with open(path, "wb") as fh:
        fh.write(buf.getbuffer())


def cmd_features(args) -> int:
    import torch
    from tqdm import tqdm

    from .._atomic import atomic_write, sweep_stale
    from ..audio import AudioError, load
    from ..features import FeatureConfig

    check_device(args.device)
    check_output(args.out, "--out")
    try:
        config = FeatureConfig(
            sample_rate=args.sample_rate, n_fft=args.n_fft, win_length=args.win_length,
            hop_length=args.hop_length, n_mels=args.n_mels, fmin=args.fmin, fmax=args.fmax,
            window=args.window, htk=args.htk)
    except ValueError as exc:
        raise UserError(f"feature options: {exc}") from None
    check_features(config, typed=args.typed)

    out = Path(args.out)
    names = output_names(args.files, ".npy")
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)
    device = torch.device(args.device)
    front_end = config.module(args.backend).to(device)
    written, skipped = 0, []
    for path, name in tqdm(names.items(), desc="features", unit="file",
                           disable=True if args.quiet else None):
        try:
            y = load(path, args.sample_rate)
        except AudioError as exc:  # reported and skipped; the other files still run
            skipped.append(str(exc))
            continue
        feats = front_end(torch.from_numpy(y).to(device))
        array = feats.cpu().numpy()
        atomic_write(out / name, lambda tmp, a=array: _save_npy(tmp, a))
        written += 1
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    repeated = len(args.files) - len(names)
    print(f"wrote {written} feature files to {out}"
          + (f"; skipped {len(skipped)}" if skipped else "")
          + (f"; {repeated} repeated input(s) computed once" if repeated else ""))
    return EXIT_SKIPPED if skipped else 0


# -- cv and train ---------------------------------------------------------------------------------


def _train_config(args, device: str, model: str = "ssa-crnn-r"):
    from ..train import TrainConfig

    return TrainConfig(model=model, preset=args.preset, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                       seed=args.seed, device=device, bf16=args.bf16,
                       compile=args.compile_mode or args.compile,
                       pooling=args.pooling, speaker_weight=args.speaker_weight,
                       deterministic=args.deterministic, bn_batches=args.bn_batches,
                       logit_scale=args.logit_scale,
                       learn_logit_scale=args.learn_logit_scale, pool=args.pool,
                       dropout=args.dropout, combine=args.combine, ssa_scale=args.ssa_scale,
                       constrain_speaker=args.constrain_speaker, select_by=args.select_by)


def _save_config(out: str, resolved_config: dict) -> None:
    """OUT/config.json of a train or cv run: every resolved option (``--config`` reads it)."""
    from .._atomic import write_json
    from ..distributed import is_main

    if is_main():
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "config.json", resolved_config, indent=1)


def _withdraw_results(out: str, share) -> None:
    """Remove OUT/results.json and the reports before a cv trains anything, and again each time
    it replaces a finished run of other settings: they describe the folds of an earlier run,
    which this one may replace, and an interrupted or failed run (or a share, which writes no
    table) must not leave a table beside folds it no longer describes. The cv that assembles
    the runs writes them again."""
    from ..distributed import is_main
    from ..reports import report_files

    if not is_main():
        return
    gone = [p for p in [Path(out) / "results.json", *report_files(Path(out) / "reports")]
            if p.is_file()]
    for p in gone:
        p.unlink(missing_ok=True)
    if gone and share is not None:
        say(f"removed {Path(out) / 'results.json'} and the reports of the earlier run: the cv "
            "that assembles the runs writes them again", file=sys.stderr)


def _cv_share(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    """The share of the runs this cv trains: --shard, or a Slurm job array's task (said on
    stderr); None: every run, and the results are assembled."""
    from ..train.parallel import slurm_share

    if shard is not None:  # (typed, even 0/1: a share, which leaves the table to a plain cv)
        return shard
    share = slurm_share()
    if share == (0, 1):  # a one-task array: every run, and the table
        return None
    if share is not None:
        say(f"share {share[0]}/{share[1]} of the runs from the Slurm job array "
            "(SLURM_ARRAY_TASK_ID); --shard overrides it", file=sys.stderr)
    return share


def _cv_workers(args, corpus, cfg, share, plan: dict) -> tuple[int, set, bool]:
    """cv --jobs N: the runs in at most N worker processes (train/parallel.py), no more than
    the runs left to train need (parallel.worker_count). Returns (the status: 0 when every
    worker succeeded; the (fold, model) of the runs finished before the workers started, which
    the assembly reuses, as opposed to those the workers trained; True when no worker started
    because every run of the share is finished: this process then reuses them itself)."""
    from ..train.cv import finished_result, plan_runs
    from ..train.parallel import cpu_cores, run_workers, worker_count

    runs = plan_runs(corpus, args.models, cfg, args.out, **plan)
    done = set() if args.restart else {(r.fold, r.model) for r in runs
                                       if finished_result(r) is not None}
    mine = runs[share[0]::share[1]] if share else runs
    if not mine:  # (a job array larger than the plan: its last tasks have nothing to do)
        say(f"share {share[0]}/{share[1]} has none of the {len(runs)} runs: nothing to train",
            file=sys.stderr)
        return 0, done, False
    # no more workers than the runs left need, and none when every run is finished: this
    # process reuses them, each checked under its lock
    jobs = worker_count([k for k, r in enumerate(mine) if (r.fold, r.model) not in done],
                        args.jobs)
    if jobs == 0:
        return 0, done, True
    # on the CPU each worker computes with the threads of N workers however many start: the
    # thread count changes a run's numbers, which must not depend on what was left to train
    threads = args.threads or max(1, cpu_cores() // min(args.jobs, len(mine)))
    failed = run_workers(args.argv, runs, args.out, jobs=jobs, device=cfg.device, share=share,
                         threads=threads, progress=not args.quiet,
                         say=lambda text: print(text, file=sys.stderr, flush=True))
    for text in failed:
        print(f"ssa-fast cv: {text}", file=sys.stderr)
    if failed:
        others = ("the other workers' runs are complete: " if len(failed) < jobs else "")
        print(f"ssa-fast cv: {len(failed)} of {jobs} worker{'s' * (jobs > 1)} failed; {others}"
              "the same command again trains what is missing and reuses the rest"
              + (" (without --restart, which would train every run again)"
                 if args.restart else ""), file=sys.stderr)
        return EXIT_SKIPPED, done, False
    return 0, done, False


def cmd_cv(args) -> int:
    from .._atomic import write_json
    from ..distributed import is_main
    from ..features import FeatureConfig
    from ..reports import write_reports
    from ..train import cross_validate
    from ..train.cv import replaced_since, without_figures_data
    from ..train.parallel import check_jobs, follow_parent, slurm_share
    from ..train.timing import Breakdown, describe

    check_corpus_paths(args.device, args.out, args.cache, args.corpus, args.root)
    features = FeatureConfig(n_mels=args.n_mels)
    check_features(features)
    check_bf16(args.bf16, args.device)
    check_jobs(args.jobs, default_device(args.device))
    if args.shard is None:
        slurm_share()  # a Slurm array's variables are checked before any work too

    follow_parent()  # (a worker of cv --jobs)
    share = _cv_share(args.shard)
    timing = Breakdown(default_device(args.device))
    with timing.phase("features"):
        loaded = load_with_features(args, args.models)  # the feature cache is filled once, here
    _withdraw_results(args.out, share)
    if share is None:  # (a share's process leaves the run's record to the assembling one)
        _save_config(args.out, args.resolved_config)
    cfg = _train_config(args, loaded.device)
    plan = dict(protocol=args.protocol, k=args.folds, normalisation=loaded.normalisation,
                segment_frames=args.segment_frames, train_hop=args.train_hop,
                feature_params=features.to_dict(), selection=args.selection_split)
    resume = not args.restart
    if args.jobs > 1:
        with timing.phase("workers"):  # (their own breakdowns are in their runs' result.json)
            status, done_before, reuse_here = _cv_workers(args, loaded.corpus, cfg, share,
                                                          plan)
        if status or (share is not None and not reuse_here):
            return status
        resume = True  # the workers trained (or restarted) every run: assemble them
    results = cross_validate(loaded.corpus, loaded.features, args.models, cfg, args.out,
                             resume=resume, progress=not args.quiet, last_k=args.last_k,
                             share=share, timing=timing, figures=args.figure_format != "none",
                             on_replace=lambda: _withdraw_results(args.out, None),
                             **plan)
    if args.jobs > 1 and share is None and not reuse_here:
        # reused by the assembly, but trained by the workers (when no worker started,
        # cross_validate's own flags stand: it reused, or trained, each run itself)
        for model, rows in results["folds"].items():
            for row in rows:
                row["reused"] = (row["fold"], model) in done_before
    if share is not None:
        say(f"share {share[0]}/{share[1]}: trained {len(results['trained'])}, reused "
            f"{len(results['reused'])}"
            + (f", skipped {len(results['busy'])} (being trained elsewhere)"
               if results["busy"] else "")
            + " of its runs; `ssa-fast cv` with the same options and no --shard assembles "
              "the table when every share is done")
        say(describe(timing.as_dict()), file=sys.stderr)
        return 0
    if not is_main():
        return 0
    with timing.phase("reports"):
        paths = write_reports(results, Path(args.out) / "reports", fmt=args.figure_format)
    results["timing"] = timing.as_dict()  # the whole command's, reports included
    _save_config(args.out, args.resolved_config)  # (again: another cv may have written its own)
    write_json(Path(args.out) / "results.json", without_figures_data(results), indent=1)
    replaced = replaced_since(args.out, results)  # (another process, while these were written)
    if replaced is not None:
        _withdraw_results(args.out, None)
        raise UserError(replaced)
    say(paths["table"].read_text())
    say("reports: " + ", ".join(str(p) for p in paths.values()))
    say(describe(results["timing"]), file=sys.stderr)
    return 0


def _withdraw_enclosing_cv(run_dir: Path) -> None:
    """``train --overwrite`` of a cv's fold folder (CV/<model>/foldNN): the table of that cv
    (CV/results.json and CV/reports) reports the run being replaced, whose files are gone; it is
    removed, and said (a `cv` with the cv's options assembles it again, retraining that fold
    if its settings differ). Before, the table stayed, describing a run that no longer existed."""
    import json

    from ..train.cv import run_folder

    here = run_dir.resolve()
    cv_dir, model = here.parent.parent, here.parent.name
    try:
        rows = json.loads((cv_dir / "results.json").read_text())["folds"][model]
        listed = any(run_folder(cv_dir, model, int(r["fold"])) == here for r in rows)
    except (OSError, ValueError, KeyError, TypeError):
        return
    if listed:
        _withdraw_results(str(cv_dir), None)
        say(f"--overwrite: {run_dir} is a fold of the cross-validation in {cv_dir}: its table "
            f"(results.json and reports/) reported the run replaced here and was removed; `cv` "
            "with that run's options writes it again", file=sys.stderr)


def _print_epoch(epoch: int, m: dict) -> None:
    from tqdm import tqdm

    from ..distributed import is_main

    if is_main():
        tqdm.write(f"epoch {epoch + 1}: train loss {m['train_loss']:.4f}, validation UAR "
                   f"segment {100 * m['segment_uar']:.2f} %, utterance "
                   f"{100 * m['utterance_uar']:.2f} %")


def cmd_train(args) -> int:
    from .._atomic import sweep_stale
    from .._lock import folder_lock, holder
    from ..distributed import broadcast, is_main
    from ..features import FeatureConfig
    from ..reports.experiment import plot_history
    from ..train.cv import RUN_FILES, check_fold, train_fold
    from ..train.timing import Breakdown, describe

    check_corpus_paths(args.device, args.out, args.cache, args.corpus, args.root)
    check_fold(args.fold, args.folds)
    features = FeatureConfig(n_mels=args.n_mels)
    check_features(features)
    check_run_folder(args.out, args.resume, args.overwrite)
    check_bf16(args.bf16, args.device)

    timing = Breakdown(default_device(args.device))
    with timing.phase("features"):
        corpus, feats, device, normalisation = load_with_features(args, [args.model], args.fold)
    # again: unreadable audio files may have left the corpus
    check_corpus(corpus, args, [args.model], normalisation, args.fold)
    cfg = _train_config(args, device, args.model)
    out = Path(args.out)

    held = contextlib.ExitStack()  # --out's lock, from the first write to the end

    def start() -> None:  # once the run is checked (a --resume matches): nothing written before
        refusal = None
        if is_main():
            # (a cv training this run in its folder holds the same lock)
            if not held.enter_context(folder_lock(out, wait=False)):
                refusal = (f"--out {out}: {holder(out)} is training in it (a train or cv "
                           "run); wait for it to end, or choose another folder")
            else:
                if args.overwrite:  # the files of the run it replaces (check_run_folder)
                    for name in RUN_FILES:
                        (out / name).unlink(missing_ok=True)
                    _withdraw_enclosing_cv(out)
                sweep_stale(out, recursive=False)  # (temporary files of a killed run)
        # under torchrun every rank follows rank 0's refusal (the others failed at their next
        # collective with a traceback); rank 0 says it, the others end with the same status
        refusal = broadcast(refusal)
        if refusal is not None:
            if is_main():
                raise UserError(refusal)
            raise SystemExit(EXIT_USER)
        _save_config(args.out, args.resolved_config)

    with held:
        res = train_fold(corpus, feats, cfg, out, protocol=args.protocol, k=args.folds,
                         fold=args.fold, selection=args.selection_split,
                         normalisation=normalisation, segment_frames=args.segment_frames,
                         train_hop=args.train_hop, feature_params=features.to_dict(),
                         resume=args.resume, progress=not args.quiet, announce=say,
                         on_epoch_end=None if args.quiet else _print_epoch, on_start=start)
        if not is_main():
            return 0
        png = plot_history(res["history"], out / "training_curves.png", title=cfg.model,
                           best_epoch=res["best_epoch"], n_classes=len(corpus.classes))
    say(f"selected epoch {res['best_epoch'] + 1}: validation UAR segment "
        f"{100 * res['segment_uar']:.2f} %, utterance {100 * res['utterance_uar']:.2f} %"
        + ("" if "test" not in res else f"; test UAR segment "
           f"{100 * res['test']['segment_uar']:.2f} %, utterance "
           f"{100 * res['test']['utterance_uar']:.2f} %"))
    say(f"model -> {out / 'best.pt'}; curves -> {png}")
    timing.merge(res["timing"])
    say(describe(timing.as_dict()), file=sys.stderr)
    return 0


# -- evaluate and predict: a trained model ------------------------------------------------------


def _load_trained(path: str, device: str = "cpu"):
    """load_trained, with a file that is not a usable model checkpoint as a user error."""
    from ..predict.engine import load_trained

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise UserError(f"{path}: an empty file (0 bytes), expected a model checkpoint (best.pt "
                        "of `ssa-fast train` or `ssa-fast cv`)")
    try:
        return load_trained(path, device)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # content of the file
        msg = str(exc) if isinstance(exc, ValueError) else \
            f"{path}: not a usable model checkpoint ({type(exc).__name__}: " \
            f"{(str(exc).splitlines() or [''])[0][:200]})"
        raise UserError(msg) from exc


def _refuse_layout_without_fold(layout: dict, trained_layout: dict) -> None:
    """evaluate without --fold scores every utterance: --protocol, --folds or --seed other
    than the checkpoint's would be ignored, so they are refused."""
    from ..train.fingerprint import describe_layout

    option = {"protocol": "--protocol", "k": "--folds", "seed": "--seed"}
    wrong = [f"{option[key]} {value}" for key, value in layout.items()
             if value is not None and value != trained_layout[key]]
    if wrong:
        raise UserError(f"{' '.join(wrong)}: choose the fold layout of --fold, and without "
                        "--fold every utterance is scored; the checkpoint was trained on "
                        f"{describe_layout(trained_layout)}")


def _print_scores(res: dict, what: str, classes: list[str]) -> None:
    print(f"{what}: {res['n_utterances']} utterances, {res['n_segments']} segments")
    print(f"UAR: segment {100 * res['segment_uar']:.2f} %, utterance "
          f"{100 * res['utterance_uar']:.2f} %; utterance WA {100 * res['utterance_wa']:.2f}"
          f" %, macro F1 {100 * res['utterance_macro_f1']:.2f} %")
    print("utterance confusion matrix (rows: true " + ", ".join(classes) + "):")
    for name, row in zip(classes, res["utterance_cm"], strict=True):
        print(f"  {name:>8} " + " ".join(f"{v:5d}" for v in row))


# what a corpus reader's option changes in the classes, said when evaluate reads the corpus
# otherwise than training did
_OPTION_MEANS = {"merge_excited": "'hap' is happy and excited with it, happy alone without",
                 "scripted": "the scripted dialogs are read with it, improvised ones only without",
                 "attitudes": "the names given to a1..a4, in order"}


def _say_other_corpus_options(trained, corpus) -> None:
    """Warn when ``corpus`` is the one the checkpoint was trained on, read with other options
    that change what its classes are (IEMOCAP's --merge-excited, --scripted; Att-HACK's
    --attitudes)."""
    before = ((trained.identity or {}).get("corpus") or {})
    if before.get("name") != corpus.name or not before.get("options") or not corpus.options:
        return
    for key in sorted(set(before["options"]) | set(corpus.options)):
        was, now = before["options"].get(key), corpus.options.get(key)
        if was == now:
            continue
        if isinstance(was, bool) or isinstance(now, bool) or was is None or now is None:
            how = (f"read {'with' if was else 'without'} it, this corpus is read "
                   f"{'with' if now else 'without'} it")
        else:
            how = f"read with {was}, this corpus with {now}"
        warn_user(f"--{key.replace('_', '-')}: the checkpoint was trained on {corpus.name} "
                  f"{how} ({_OPTION_MEANS.get(key, key)})")


def cmd_evaluate(args) -> int:
    import json

    from ..data import corpus_features, match_classes
    from ..train.cv import check_fold, split_fold
    from ..train.evaluation import evaluation_subset, fold_layout_to_score, score

    check_corpus_paths(args.device, args.out, args.cache, args.corpus, args.root,
                       out_is_folder=False)
    check_input(args.checkpoint, "checkpoint")
    if args.fold is not None and args.folds is not None:
        check_fold(args.fold, args.folds)

    device = default_device(args.device)
    trained = _load_trained(args.checkpoint, device)
    layout = {"protocol": args.protocol, "k": args.folds, "seed": args.seed}  # None: its own
    if args.fold is None and trained.fold_layout:  # they choose a fold's layout: not ignored
        _refuse_layout_without_fold(layout, trained.fold_layout)
    if args.fold is not None:  # another fold layout is refused before any audio is read
        fold_layout = fold_layout_to_score(trained, args.fold, **layout)
    corpus = open_corpus(args.corpus, args.root, merge_excited=args.merge_excited,
                         scripted=args.scripted, columns=args.columns,
                         attitudes=args.attitudes)
    _say_other_corpus_options(trained, corpus)
    shown_notes = len(corpus.notes)
    corpus, unknown = match_classes(corpus, trained.classes)  # case, normal form: the model's
    if unknown:
        shown = ", ".join(f"{label!r} ({n} utterance{'s' * (n != 1)})"
                          for label, n in unknown.items())
        raise UserError(f"{args.root}: label{'s' * (len(unknown) > 1)} {shown} "
                        f"{'are' if len(unknown) > 1 else 'is'} not among the classes of "
                        f"{args.checkpoint} ({', '.join(trained.classes)}): leave those "
                        "utterances out of the corpus to score the others")
    for note in corpus.notes[shown_notes:]:
        print(f"note: {note}", file=sys.stderr)
    if args.fold is not None:  # the fold's split on this corpus: refused here, not after
        split_fold(corpus, fold_layout["protocol"], fold_layout["k"], args.fold,
                   fold_layout["seed"], fold_layout.get("selection") or 0.0, check=False)
    corpus, feats = corpus_features(corpus, args.cache, features=trained.features, device=device,
                                    progress=not args.quiet)
    print(describe(corpus), file=sys.stderr)  # (stdout: the scores, JSON with --json)
    show_skipped(corpus.skipped, args.show_skipped)
    idx, where, notes = evaluation_subset(  # the checkpoint's fold layout, no training data
        trained, corpus, fold=args.fold, **layout, include_training=args.include_training,
        warn=warn_user)
    res = score(trained, [feats[i] for i in idx],
                [corpus.classes[corpus.labels[i]] for i in idx], [corpus[i].speaker for i in idx],
                files=[corpus[i].path for i in idx])
    res.update(checkpoint=str(args.checkpoint), corpus=corpus.name, classes=trained.classes,
               subset=where, **notes)
    nameless = sum(not corpus[i].speaker for i in idx)
    if nameless and trained.normaliser.mode == "speaker":
        warn_user(f"{nameless} of the {len(idx)} utterances scored name no speaker (a listing "
                  "without speakers?): normalised with their own statistics, where the "
                  "checkpoint normalises a training speaker's utterances with that speaker's "
                  "training statistics; list their speakers to score them as in training")
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        _print_scores(res, f"{corpus.name}, {where}", trained.classes)
    if args.out:
        from .._atomic import write_json

        write_json(args.out, res, indent=1)
    return 0


def _prediction(pred) -> dict:
    """One file's prediction as ``predict --json`` prints it."""
    return {"file": pred.file, "status": pred.status, "emotion": pred.label,
            "probabilities": pred.probabilities, "duration": pred.duration,
            "segments": [s.label for s in pred.segments], "reason": pred.reason}


def _print_prediction(res: dict) -> None:
    if res["status"] == "ok":
        top = ", ".join(f"{c} {p:.2f}" for c, p in res["probabilities"].items())
        print(f"{res['file']}: {res['emotion']}  ({top}; {len(res['segments'])} segment(s))",
              flush=True)
    else:
        print(f"{res['file']}: not classified ({res['status']}: {res['reason']})", flush=True)


def _statistics(normalisation: str | None, speaker: str | None) -> str:
    if normalisation == "speaker":
        return (f"the training statistics of speaker {speaker!r}" if speaker
                else "the training statistics of a speaker")
    return {"global": "the statistics of every training utterance",
            "utterance": "its own statistics"}.get(normalisation, f"{normalisation!r}")


def _same_normalisation(source, done: dict, entries, keys, clf) -> None:
    """Refuse a resume whose files already in ``source`` (``done``: same_file_key -> how it was
    normalised, from PredictionsFile.made; ``keys``: the entries' same_file_key) this run would
    normalise otherwise (another --speaker, or a manifest's speaker column added, dropped or
    changed): one file holds the numbers of one setting. (Records of a version that did not
    name the speaker are checked for the kind of statistics alone.)"""
    for e, key in zip(entries, keys, strict=True):
        was = done.get(key)
        if was is None:
            continue
        now = clf.statistics_for(e.speaker)
        if was[0] != now[0] or (was[1] is not None and was[1] != now[1]):
            raise UserError(
                f"--resume: {source} holds {e.path} normalised with "
                f"{_statistics(*was)}; this run would normalise it with {_statistics(*now)} "
                "(--speaker, or a manifest's speaker column): resume with the same speakers, or "
                "use another --out")


def cmd_predict(args) -> int:
    import json
    import time

    from .._atomic import sweep_stale
    from ..data.corpus import nfc, same_file_key
    from ..predict import EmotionClassifier
    from ..predict.inputs import expand_inputs
    from ..predict.output import PredictionsFile, checkpoint_id

    check_device(args.device)
    check_output(args.out, "--out", folder=False)
    check_output(args.attention_plot, "--attention-plot")
    check_input(args.checkpoint, "checkpoint")

    if args.resume and not args.out:
        raise UserError("--resume: needs --out (the predictions file to continue)")
    check_bf16(args.bf16, args.device)
    clf = EmotionClassifier(_load_trained(args.checkpoint, default_device(args.device)))
    unused = clf.unused_speaker(args.speaker)  # (--speaker: a name that normalises nothing)
    if unused is not None:
        print(f"--{unused}", file=sys.stderr)
    entries, problems = expand_inputs(args.inputs, args.columns, args.speaker)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    for why in clf.unused_speakers(entries, besides=nfc(args.speaker)).values():  # a manifest's
        print(f"a manifest's {why}", file=sys.stderr)
    matched = clf.matched_speakers(entries, besides=nfc(args.speaker))
    if matched:
        shown = ", ".join(f"{s} ({n} file{'s' if n > 1 else ''})"
                          for s, n in list(matched.items())[:8])
        print(f"a manifest's speakers normalised with the training statistics of the speaker of "
              f"that name: {shown}{', ...' if len(matched) > 8 else ''} (another corpus's "
              "speaker named like a training speaker would take theirs)", file=sys.stderr)
    if not entries:
        raise UserError(f"no audio files in {' '.join(args.inputs)}")
    # a file in the predictions already, however it was named then (an absolute path, a list
    # file's ../, a link): the same file as the duplicates within a run are (same_file_key)
    keys = [same_file_key(e.path) for e in entries]
    done: dict = {}  # (filled on resuming, before anything is written, and checked)

    def keep_to_normalisation(source, made) -> None:
        done.update((same_file_key(f), how) for f, how in made.items())
        _same_normalisation(source, done, entries, keys, clf)

    out = (PredictionsFile(args.out, clf.classes, checkpoint_id(args.checkpoint), args.resume,
                           bf16=args.bf16, check_made=keep_to_normalisation)
           if args.out else None)
    todo = [e for e, key in zip(entries, keys, strict=True) if key not in done]
    if out is not None and out.changed:
        shown = ", ".join(out.changed[:8]) + (", ..." if len(out.changed) > 8 else "")
        n = len(out.changed)
        print(f"--resume: {n} record{'s were' if n > 1 else ' was'} of files changed since (size "
              f"or modification time): dropped, their files classified again where the inputs "
              f"name them: {shown}", file=sys.stderr)
    if out is not None and out.done:
        print(f"--resume: {len(entries) - len(todo)} of the {len(entries)} files are in "
              f"{out.partial if out.partial.exists() else out.out} already", file=sys.stderr)
    if out is not None and out.code_unknown:
        print(f"--resume: {out.code_unknown} records (of an older version) do not name the code "
              "that made them: kept as they are (if that version's prediction code differed "
              "from this one's, so may their numbers)", file=sys.stderr)
    if out is not None and out.named_only:
        print(f"--resume: {out.named_only} records (of an older version) name their files "
              "without an absolute path: matched from this working directory, which must be "
              "the one they were made in", file=sys.stderr)
    plots = bool(args.attention_plot and clf.is_ssa)
    # (named over every file of the inputs, as a run from the start names them: a resumed
    # run's x.wav must not take the plot name of another folder's x.wav done earlier)
    names = output_names([e.path for e in entries], ".png") if plots else {}
    if args.attention_plot and not clf.is_ssa:
        print(f"--attention-plot: {args.checkpoint} is not an SSA model (no attention); no "
              "figures written", file=sys.stderr)
    if plots:
        sweep_stale(args.attention_plot)
    results: list[dict] = []
    counts = {"ok": 0, "too short": 0, "silent": 0, "failed": 0}
    hours, t0, finished = 0.0, time.perf_counter(), False
    try:
        for pred in clf.classify_entries(todo, batch_size=args.batch_size,
                                         num_workers=args.workers, bf16=args.bf16,
                                         attention=plots, progress=not args.quiet,
                                         progress_blocks=not args.quiet):
            counts[pred.status] += 1
            if pred.status == "failed":  # reported and skipped; the other files still run
                print(f"skipped: {pred.reason}", file=sys.stderr)
                continue
            hours += (pred.duration or 0.0) / 3600
            if out is not None:
                out.write(pred)
            res = _prediction(pred)
            if plots and pred.classified:
                res["attention_plot"] = str(Path(args.attention_plot) / names[pred.file])
                clf.plot_attention(pred, res["attention_plot"])
            if args.json:
                results.append(res)
            elif out is None:
                _print_prediction(res)
        finished = True
    finally:
        if out is not None:
            kept = out.close(finished)
            if not finished:
                print(f"{len(out.done)} predictions kept in {kept} (--resume continues)",
                      file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
    seconds = time.perf_counter() - t0
    unlabelled = counts["too short"] + counts["silent"]
    if not args.quiet or unlabelled or counts["failed"]:
        print(f"{len(todo)} files, {hours:.3f} h of audio in {seconds:.1f} s: {counts['ok']} "
              f"classified, {counts['too short']} too short, {counts['silent']} silent (not "
              f"classified), {counts['failed']} failed"
              + (f", {len(problems)} input(s) naming no file" if problems else "")
              + (f"; predictions in {out.out}" if out is not None else ""), file=sys.stderr)
    return EXIT_SKIPPED if counts["failed"] or unlabelled or problems else 0
