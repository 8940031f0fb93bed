"""The Python parts of ``gpu_session/gpu_session.sh`` (see there for the stages).

    python gpu_session/gpu_session.py probe           # -> $SSA_FAST_SESSION_OUT/probe.{md,json}
    python gpu_session/gpu_session.py collect-demo DIR FILE   # the demo's tables -> FILE
    python gpu_session/gpu_session.py collect-cv DIR FILE WALL_S # a cv run's time breakdown
    python gpu_session/gpu_session.py cvpar WORK [K ...]      # K concurrent cv processes on
                                                              # one GPU vs one (default 2 3 4)

``probe`` answers, in about two minutes, whether the GPU path works at all before minutes are
spent on tests and benchmarks: versions, the device's copy bandwidth and bf16 matmul peak (the
ceilings of every floor), one call of each Triton kernel against the float64 reference (relative
error ||out - ref|| / ||ref||, forward and backward), and one bf16-autocast training step of each
model on the Triton backend. With ``SSA_FAST_DRY_RUN=1`` the same code runs on the CPU at tiny
sizes (Triton in its interpreter).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from ssa_fast.bench import SR, dry_run, gpu_bench_device

DRY = dry_run()
OUT = Path(os.environ.get("SSA_FAST_SESSION_OUT", "build/gpu_session"))
PACKAGES = ("triton", "numpy", "scipy", "librosa", "soundfile", "soxr", "audioread", "nnAudio",
            "espeakng_loader", "sklearn", "matplotlib", "pytest", "pytest_benchmark",
            "pytest_timeout", "hypothesis")


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return math.inf
    return float((out - ref).norm() / ref.norm().clamp_min(1e-300))


def versions() -> dict:
    v = {"python": platform.python_version(), "torch": torch.__version__,
         "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    for name in PACKAGES:
        if importlib.util.find_spec(name) is None:
            v[name] = "MISSING"
            continue
        try:
            from importlib.metadata import version

            dist = {"sklearn": "scikit-learn", "pytest_benchmark": "pytest-benchmark",
                    "pytest_timeout": "pytest-timeout", "espeakng_loader": "espeakng-loader"}
            v[name] = version(dist.get(name, name))
        except Exception:  # present but without metadata (e.g. a bare directory on the path)
            v[name] = "present"
    import ssa_fast

    for d in sorted({"cpu", gpu_bench_device() or "cpu"}):
        v[f"ssa_fast backends ({d})"] = ", ".join(ssa_fast.available_backends(d))
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        v["device"] = (f"{p.name}, {p.multi_processor_count} SMs, "
                       f"{p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}")
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                            "clocks.max.sm,power.limit", "--format=csv,noheader"],
                           capture_output=True, text=True)
        v["nvidia-smi"] = q.stdout.strip() or q.stderr.strip()
    if shutil.which("nvcc"):
        q = subprocess.run(["nvcc", "--version"], capture_output=True, text=True)
        v["nvcc"] = q.stdout.strip().splitlines()[-1] if q.stdout.strip() else "?"
    return v


def kernel_checks(device: str) -> list[dict]:
    """One call of each Triton kernel against the float64 reference, on fresh random inputs."""
    from ssa_fast import l1_project_, logmel_delta, ssa_attention
    from ssa_fast.bench import ssa_inputs

    g = torch.Generator().manual_seed(int(time.time()))
    rows = []

    def check(name, tol, fn):
        try:
            err = fn()
            rows.append({"check": name, "rel_err": err, "tol": tol, "ok": err <= tol})
        except Exception as exc:
            rows.append({"check": name, "rel_err": None, "tol": tol, "ok": False,
                         "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]})
            traceback.print_exc()

    seconds, batch = (0.3, 2) if DRY else (3.0, 8)
    x = 0.1 * torch.randn(batch, int(seconds * SR) + 37, generator=g)
    import ssa_fast
    from ssa_fast.bench import logmel_cuda_kernel

    # the one-launch CUDA kernels too (the default one and the opt-in regfft one), where the
    # extension was built with them
    fused = ["triton"] + (["cuda", "cuda_regfft"]
                          if "cuda" in ssa_fast.available_backends(device, "logmel_delta") else [])
    for impl in fused:
        def logmel_check(n_mels, impl=impl):
            with logmel_cuda_kernel(impl == "cuda_regfft"):
                out = logmel_delta(x.to(device), n_mels=n_mels, backend=impl.split("_")[0])
            return _rel(out, logmel_delta(x.double(), n_mels=n_mels, backend="reference"))

        for n_mels in (40, 128):
            check(f"logmel_delta {impl} n_mels={n_mels}", 1e-4,
                  lambda n_mels=n_mels, f=logmel_check: f(n_mels))

    B, T, d = (3, 7, 9) if DRY else (40, 150, 256)
    # The reference runs on the same (rounded) inputs as the kernel, so that the error is the
    # kernel's own (bf16: the outputs' and gradients' rounding to bf16, ~2e-3, over float32 math)
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 1e-2)):
        def ssa_check(dtype=dtype):
            ins = ssa_inputs(B, T, d, "cpu")
            gc = torch.randn(B, 2 * d, generator=g)
            ga = torch.randn(B, 2 * T, generator=g)
            worst = 0.0
            outs = {}
            for impl, dt, dev in (("triton", dtype, device), ("reference", torch.float64, "cpu")):
                leaves = [t.detach().to(dtype).to(dev, dt).requires_grad_(True) for t in ins]
                c, alpha = ssa_attention(*leaves, backend=impl)
                grads = torch.autograd.grad(
                    (c.float() * gc.to(dev)).sum() + (alpha.float() * ga.to(dev)).sum(), leaves)
                outs[impl] = [c, alpha, *grads]
            for a, b in zip(outs["triton"], outs["reference"], strict=True):
                worst = max(worst, _rel(a, b))
            return worst

        check(f"ssa_attention triton fwd+bwd {str(dtype)[6:]} B={B} T={T} d={d}", tol, ssa_check)

    def l1_check():
        from ssa_fast.kernels.l1_project import l1_project_reference_

        w = torch.randn(4, 128, generator=g)
        xin = torch.randn(40, 128, generator=g)
        ref = w.double().clone()
        l1_project_reference_(ref, xin.double())
        out = w.clone().to(device)
        l1_project_(out, xin.to(device), backend="triton")
        return _rel(out, ref)

    check("l1_project_ triton", 1e-6, l1_check)
    return rows


def model_steps(device: str) -> list[dict]:
    """One bf16-autocast training step (twice, the second timed) of each model on Triton."""
    from ssa_fast.bench import sync, train_step_workload

    preset, batch = ("small", 2) if DRY else ("paper", 40)
    rows = []
    for name in ("acrnn", "acrnn-r", "ssa-crnn-r"):
        row = {"check": f"{name} {preset} B={batch} bf16 train step (triton)"}
        try:
            step, _ = train_step_workload(name, preset, batch, device, bf16=True,
                                          channels_last=not DRY, backend="triton",
                                          segment_frames=40 if DRY else 300)
            step()
            sync(device)
            t0 = time.perf_counter()
            loss = float(step())
            sync(device)
            row.update(ms=1e3 * (time.perf_counter() - t0), loss=loss, ok=math.isfinite(loss))
        except Exception as exc:
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            traceback.print_exc()
        rows.append(row)
    return rows


def probe() -> int:
    from ssa_fast.bench import device_ceilings

    device = gpu_bench_device()
    if device is None:
        print("probe: torch sees no CUDA device", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "dry_run": DRY,
              "versions": versions()}
    for k, v in report["versions"].items():
        print(f"{k}: {v}")
    sizes = dict(copy_bytes=1 << 20, matmul_n=64) if DRY else {}
    report["ceilings"] = device_ceilings(device, **sizes)
    print(json.dumps(report["ceilings"]))
    report["kernels"] = kernel_checks(device)
    report["models"] = model_steps(device)
    c = report["ceilings"]
    lines = [f"# GPU session: probe ({report['date']}{', DRY RUN on the CPU' if DRY else ''})", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["versions"].items()]
    lines += ["", f"Ceilings measured now: copy {c['copy_GB_per_s']:,.1f} GB/s (read + write, "
              f"{c['copy_bytes'] / 2**30:.2f} GiB moved per call), bf16 matmul "
              f"{c['bf16_matmul_TFLOP_per_s']:,.1f} TFLOP/s (n = {c['matmul_n']}).", "",
              "| check | rel. error | tolerance | ms | result |", "|---|---:|---:|---:|---|"]
    for r in report["kernels"] + report["models"]:
        err = "" if r.get("rel_err") is None else f"{r['rel_err']:.2e}"
        tol = f"{r['tol']:.0e}" if "tol" in r else ""
        ms = f"{r['ms']:.1f}" if "ms" in r else ""
        lines.append(f"| {r['check']} | {err} | {tol} | {ms} | "
                     f"{'ok' if r['ok'] else 'FAIL ' + r.get('error', '')} |")
    (OUT / "probe.md").write_text("\n".join(lines) + "\n")
    (OUT / "probe.json").write_text(json.dumps(report, indent=1, default=str))
    print("\n".join(lines))
    return 0 if all(r["ok"] for r in report["kernels"] + report["models"]) else 1


def collect_demo(demo_dir: str, out_file: str) -> int:
    """The demo's Markdown tables and JSON summaries (no checkpoints, no figures) in one file."""
    root = Path(demo_dir)
    parts = [f"# GPU session: demo ({time.strftime('%Y-%m-%d %H:%M:%S')})", ""]
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    if not files:
        parts.append(f"{root} holds no files: the demo did not get far (see demo.log)")
    for p in files:
        if p.suffix in (".md", ".json") and p.stat().st_size < 64_000 and "cache" not in p.parts:
            parts += [f"## {p.relative_to(root)}", "", "```", p.read_text().strip(), "```", ""]
    parts += ["## all files", ""] + [f"- {p.relative_to(root)} ({p.stat().st_size} B)"
                                     for p in files[:200]]
    Path(out_file).write_text("\n".join(parts) + "\n")
    return 0


def collect_cv(cv_dir: str, out_file: str, wall_s: str) -> int:
    """A cv run's wall time, time breakdown, table and training throughput (segments/s inside
    the training steps and end to end) in one Markdown file."""
    root = Path(cv_dir)
    lines = [f"# GPU session: {root.name} ({time.strftime('%Y-%m-%d %H:%M:%S')})", ""]
    results = root / "results.json"
    if not results.is_file():
        lines.append(f"no {results}: the run did not finish (see its log)")
        Path(out_file).write_text("\n".join(lines) + "\n")
        return 1
    res = json.loads(results.read_text())
    timing = res.get("timing", {})
    total = timing.get("total_s", 0.0)
    segments = sum(r.get("n_train_segments", 0) * len(r.get("history", []))
                   for rows in res["folds"].values() for r in rows if not r.get("reused"))
    steps = timing.get("phases", {}).get("training steps", 0.0)
    lines += [f"wall time of the command: {wall_s} s; in the command's breakdown {total:.1f} s",
              f"training segments seen: {segments}; {segments / max(steps, 1e-9):,.0f} "
              f"segments/s inside the training steps, {segments / max(total, 1e-9):,.0f} "
              "end to end", "", "| phase | s | share |", "|---|---:|---:|"]
    phases = dict(timing.get("phases", {}), other=timing.get("other_s", 0.0))
    for name, sec in phases.items():
        lines.append(f"| {name} | {sec:.1f} | {100 * sec / max(total, 1e-9):.1f}% |")
    table = root / "reports" / "table.md"
    if table.is_file():
        lines += ["", table.read_text().strip()]
    Path(out_file).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def cvpar(work: str, ks: list[int]) -> int:
    """Throughput of K concurrent cross-validation processes on one GPU against one process:
    the same runs (one model, several folds) divided into K shares (``cv --shard i/K``), started
    together; wall time per K, in $SSA_FAST_SESSION_OUT/cvpar.{md,json}. ``cv --jobs`` keeps one
    process per GPU unless this shows that more raise throughput."""
    work_dir = Path(work)
    corpus, cache = work_dir / "synth", work_dir / "cache"
    size, folds, epochs, preset = (("tiny", 2, 1, "small") if DRY else
                                   ("small", int(os.environ.get("CVPAR_FOLDS", 4)),
                                    int(os.environ.get("CVPAR_EPOCHS", 5)), "paper"))
    cli = [sys.executable, "-m", "ssa_fast.cli"]
    if not (corpus / "manifest.csv").is_file():
        subprocess.run([*cli, "synth", "--out", str(corpus), "--size", size, "--quiet"],
                       check=True)
    common = ["cv", "synthetic", str(corpus), "--models", "ssa-crnn-r", "--folds", str(folds),
              "--preset", preset, "--epochs", str(epochs), "--cache", str(cache), "--quiet"]
    if not DRY:
        common.append("--bf16")
    # the feature cache first, so that no timed process extracts features
    subprocess.run([*cli, *common, "--out", str(work_dir / "warm"), "--epochs", "1",
                    "--shard", f"0/{folds}"], check=True)
    rows = []
    for k in [1, *ks]:
        out = work_dir / f"k{k}"
        t0 = time.perf_counter()
        procs = [subprocess.Popen([*cli, *common, "--out", str(out), "--shard", f"{i}/{k}"],
                                  stdout=subprocess.DEVNULL) for i in range(k)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        rows.append({"k": k, "runs": folds, "wall_s": wall, "ok": codes == [0] * k})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["wall_s"]
    lines = [f"# GPU session: cvpar ({time.strftime('%Y-%m-%d %H:%M:%S')}"
             f"{', DRY RUN on the CPU' if DRY else ''})", "",
             f"{folds} runs of ssa-crnn-r ({preset} preset, {epochs} epochs, synth {size}), "
             "divided into K shares run at once on one device (each a process: start-up, "
             "corpus from the cache, training).", "",
             "| K processes | wall s | runs/min | vs K=1 | status |", "|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['k']} | {r['wall_s']:.1f} | {60 * r['runs'] / r['wall_s']:.2f} | "
                     f"{base / r['wall_s']:.2f}x | {'ok' if r['ok'] else 'FAILED'} |")
    (OUT / "cvpar.md").write_text("\n".join(lines) + "\n")
    (OUT / "cvpar.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "cvpar":
        sys.exit(cvpar(sys.argv[2], [int(k) for k in sys.argv[3:]] or [2, 3, 4]))
    if len(sys.argv) >= 2 and sys.argv[1] == "probe":
        sys.exit(probe())
    if len(sys.argv) == 4 and sys.argv[1] == "collect-demo":
        sys.exit(collect_demo(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 5 and sys.argv[1] == "collect-cv":
        sys.exit(collect_cv(sys.argv[2], sys.argv[3], sys.argv[4]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
