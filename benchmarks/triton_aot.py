"""Compile every Triton kernel of ssa_fast ahead of time for a GPU that is not here (sm_90a, the
H100, by default) and print each specialisation's registers, spills and shared memory.

Why: without a GPU, CI runs the kernels only in Triton's interpreter, which checks semantics but
never lowers them to PTX; a kernel that does not compile for the device, spills badly or asks for
more shared memory than a block may have would first fail on a GPU. Triton compiles for a target
that is absent (``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))``; the wheel
ships ptxas), so this check runs anywhere.

Which specialisations: the library's real launchers (``ssa_core_fwd_triton``,
``ssa_core_bwd_triton``, ``ssa_fused_fwd_triton``, ``ssa_fused_bwd_triton``, the large-batch
``ssa_large_*_triton``, ``logmel_delta_triton``, ``l1_project_triton_``) are called on CPU tensors
of the shapes and dtypes users run, with the kernels replaced by recorders, and the launching
device's multiprocessor count set to the target's (so every T-split variant of SSA appears).
Each recorded launch is turned into Triton's own specialisation (argument types, divisibility-by-16
attributes, integers equal to 1, constexprs, options) by the same binder ``kernel[grid](...)``
uses, deduplicated, and compiled. A kernel of the library that no recorded launch reached fails
the check: the enumeration would be incomplete.

Fails (exit status 1) on a compile error, on shared memory above the per-block limit (227 KB on
an H100) and on an uncovered kernel. Spills are reported, and fatal for the kernels named by
``--no-spills REGEX`` (CI: every kernel, ``.``, under Triton 3.6; under 3.9 one specialisation
of the two-kernel SSA forward spills 4 bytes, benchmarks/RESULTS.md).

    python benchmarks/triton_aot.py                  # every specialisation (~2 min on 2 cores)
    python benchmarks/triton_aot.py --quick          # a sample of 14 (the test in make test)
    pip install --target DIR triton==3.6.0           # the GPU machine's Triton, then:
    PYTHONPATH=DIR python benchmarks/triton_aot.py
    python benchmarks/triton_aot.py --cache DIR      # CI: what an earlier run compiled is kept
    python benchmarks/triton_aot.py --no-spills .   # a spill in any kernel fails
    python benchmarks/triton_aot.py --kernels '^_logmel' --maxnreg 96   # one kernel, capped

With ``--cache DIR``, Triton's own cache lives in ``DIR/triton`` and what ptxas printed for each
compile in ``DIR/ptxas-logs``, both under Triton's cache key of the compile (the kernel's source
and the functions it calls, the specialisation, the options, the target, Triton's own sources
and the ptxas version): a specialisation compiled by an earlier run with the same key is not
compiled again, and its report is what ptxas printed for that very cubin. Anything that changes
the compile changes the key and compiles again. Without it every run compiles everything in a
folder of its own, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

# The kernels must be JIT functions, not the interpreter's wrappers: fixed before Triton is
# imported. (Triton's cache folder is chosen in main(), before anything compiles; the pool's
# processes inherit it.)
os.environ.pop("TRITON_INTERPRET", None)
# Neither is in Triton's cache key, and either would make what --cache keeps another compile's:
# a binary-only cache has no PTX to read back, an override replaces the kernels compiled
for name in ("TRITON_STORE_BINARY_ONLY", "TRITON_KERNEL_OVERRIDE"):
    os.environ.pop(name, None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: E402

from ssa_fast._atomic import write_text  # noqa: E402

SHARED_LIMIT = {90: 227 * 1024, 80: 163 * 1024, 89: 99 * 1024, 100: 227 * 1024}

# Shapes users run. SSA: T = segment_frames // 2 (300-frame segments -> 150; --segment-frames
# changes it), d = 2 x LSTM units (paper 256, small 64; odd and non-power-of-two widths too),
# B from one streamed segment to large inference batches (B = 2 x 132 is where splitting stops).
SSA_B = (1, 2, 8, 40, 100, 264, 512, 4096)
SSA_T = (1, 37, 50, 150, 151, 500)
SSA_D = (64, 65, 100, 128, 129, 200, 256, 257, 384, 511, 512)
# log-Mel: n_mels 40 .. 128, the n_fft of 25 ms / 32 ms / 64 ms windows at 16 kHz, batches with and
# without per-item lengths.
LOGMEL_MELS = (40, 41, 64, 80, 100, 128, 200, 256, 300)
LOGMEL_NFFT = (400, 512, 1024)
LOGMEL_SHAPES = ((1, 16000), (1, 48000 + 37), (32, 48000))
# L1 projection: K classes (or speakers) x n classifier inputs (embedding 128, BLSTM 2d, ACRNN
# linear 768), N the batch; weights in every dtype the triton backend takes.
L1_K = (4, 10, 1000)
L1_N_IN = (64, 128, 768)
L1_BATCH = (1, 40, 4096)
L1_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class Recorder:
    """Stands in for a @triton.jit kernel: ``kernel[grid](*args, **kw)`` records the launch."""

    def __init__(self, fn: JITFunction, launches: list):
        self.fn, self.launches = fn, launches

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append((self.fn, args, kwargs))
        return launch


def _kernel_modules():
    from ssa_fast.kernels.l1_project import triton as l1
    from ssa_fast.kernels.logmel_delta import triton as lm
    from ssa_fast.kernels.ssa_attention import triton as ssa
    from ssa_fast.kernels.ssa_attention import triton_large as ssa_large

    return {"ssa_attention": ssa, "ssa_attention_large": ssa_large, "logmel_delta": lm,
            "l1_project": l1}


def library_kernels() -> dict[str, JITFunction]:
    """Every launchable kernel of the library: module-level JIT functions named ``*_kernel``."""
    return {f"{name}.{attr}": obj for name, mod in _kernel_modules().items()
            for attr, obj in vars(mod).items()
            if isinstance(obj, JITFunction) and attr.endswith("_kernel")}


@contextlib.contextmanager
def recording(sm_count: int):
    """Replace every kernel by a recorder and the launching device's SM count by the target's."""
    launches: list = []
    saved = []
    for mod in _kernel_modules().values():
        for attr, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction) and attr.endswith("_kernel"):
                saved.append((mod, attr, obj))
                setattr(mod, attr, Recorder(obj, launches))
        if hasattr(mod, "sm_count"):
            saved.append((mod, "sm_count", mod.sm_count))
            mod.sm_count = lambda t: sm_count
    try:
        yield launches
    finally:
        for mod, attr, obj in saved:
            setattr(mod, attr, obj)


def _ssa_fused_launches(ssa, B: int, T: int, d: int, quick: bool) -> None:
    """The one-launch SSA kernels as the triton backend calls them: h in float32 and bfloat16
    (bf16-autocast training), weights float32, concat, alpha unused by the loss (training) at
    every shape; at the presets' shapes (T = 150, d = 64 or 256) also the sum combine and alpha's
    gradient contiguous or broadcast (``alpha.sum()``'s). A batch of one (streamed inference)
    runs forward only elsewhere."""
    paper = T == 150 and d in (64, 256)
    weights = [torch.empty(T, dtype=torch.float32)] + [torch.empty(d, d, dtype=torch.float32)
                                                       for _ in range(4)]
    for dtype in ((torch.float32,) if quick else (torch.float32, torch.bfloat16)):
        h = torch.empty(B, T, d, dtype=dtype)
        for combine_sum in ((False, True) if paper and not quick else (False,)):
            c, alpha, saved = ssa.ssa_fused_fwd_triton(h, h, *weights, T ** -0.5, combine_sum)
            if B == 1 and not paper:
                continue
            forms = ((None, torch.empty(B, 2 * T), torch.empty(1, 1).expand(B, 2 * T)) if paper
                     else (None,))
            for dalpha in forms:
                ssa.ssa_fused_bwd_triton(h, h, *weights, saved, alpha, torch.empty_like(c),
                                         dalpha, T ** -0.5, combine_sum)


def _ssa_large_launches(large, B: int, T: int, d: int, quick: bool) -> None:
    """The large-batch SSA kernels (``SSA_FAST_SSA_LARGE=1``, the batches the one-launch kernels
    leave) as SSALargeFunction calls them: h in float32 and bfloat16, alpha's gradient absent
    (training) at every shape; at the presets' shapes also contiguous and broadcast."""
    paper = T == 150 and d in (64, 256)
    w_q, w_k = torch.empty(T), torch.empty(d, d)
    for dtype in ((torch.float32,) if quick else (torch.float32, torch.bfloat16)):
        h = torch.empty(B, T, d, dtype=dtype)
        alpha, saved = large.ssa_large_fwd_triton(h, h, w_q, w_k, w_k, T ** -0.5)
        dp = torch.empty(2, B, d)
        forms = ((None, torch.empty(B, 2 * T), torch.empty(1, 1).expand(B, 2 * T))
                 if paper and not quick else (None,))
        for dalpha in forms:
            _, dqk, g_em = large.ssa_large_bwd_rows_triton(h, h, saved, alpha, dp, dalpha,
                                                           T ** -0.5)
        large.ssa_large_bwd_em_triton(h, saved, alpha, g_em, dp, dqk[0], w_q)


def enumerate_launches(sm_count: int, quick: bool) -> list:
    """Call the real launchers over the shapes above; returns the recorded launches."""
    mods = _kernel_modules()
    from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank

    f32 = torch.float32
    with recording(sm_count) as launches:
        ssa = mods["ssa_attention"]
        for B in ((40, 4096) if quick else SSA_B):  # B=40 splits T, 4096 does not
            for T in ((150,) if quick else SSA_T):
                for d in ((256,) if quick else SSA_D):
                    h = torch.empty(B, T, d, dtype=f32)
                    v = torch.empty(B, d, dtype=f32)
                    a = torch.empty(B, 2 * T, dtype=f32)
                    ssa.ssa_core_fwd_triton(h, h, v, v, T ** -0.5)
                    ssa.ssa_core_bwd_triton(h, h, v, v, a, v, v, v, v, a, T ** -0.5)
                    if ssa.fused_launch(h) is not None:  # the one-launch kernels' batches
                        _ssa_fused_launches(ssa, B, T, d, quick)
                    else:  # the large-batch path's
                        _ssa_large_launches(mods["ssa_attention_large"], B, T, d, quick)
        lm = mods["logmel_delta"]
        for M in ((40,) if quick else LOGMEL_MELS):
            for n_fft in ((512,) if quick else LOGMEL_NFFT):
                window = analysis_window("hamming", min(400, n_fft), n_fft).float()
                with warnings.catch_warnings():  # (200 filters or more leave some empty:
                    warnings.simplefilter("ignore")  # only the shapes matter here)
                    fb = mel_filterbank(16000, n_fft, M).float()
                for B, N in (LOGMEL_SHAPES[:1] if quick else LOGMEL_SHAPES):
                    x = torch.zeros(B, N)
                    for lengths in (None, torch.full((B,), N - 160, dtype=torch.int64)):
                        lm.logmel_delta_triton(x, lengths, window, fb, 160, True, 1e-10)
        l1 = mods["l1_project"]
        for dtype in (L1_DTYPES[:2] if quick else L1_DTYPES):
            for K in ((4,) if quick else L1_K):
                for n in ((128,) if quick else L1_N_IN):
                    for N in ((40,) if quick else L1_BATCH):
                        w = torch.zeros(K, n, dtype=dtype)
                        l1.l1_project_triton_(w, torch.zeros(N, n, dtype=dtype))
    return launches


def specialise(fn: JITFunction, args, kwargs, backend):
    """Triton's own specialisation of one launch: (options, signature, constexprs, attrs)."""
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **kwargs)
    return fn._pack_args(backend, kwargs, bound, spec, options)


_PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
}


REPORTS = "SSA_FAST_AOT_REPORTS"  # (environment: the folder of ptxas's logs, set by main)


def _compile(src, target, options) -> tuple:
    """(compiled kernel, what ptxas printed: nothing when Triton's cache held the kernel)."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        kernel = triton.compile(src, target=target, options=options.__dict__)
    return kernel, log.getvalue()


def compile_one(fn: JITFunction, options, signature, constexprs, attrs, target) -> dict:
    """Compile for ``target`` and read ptxas's resource report of the kernel: the one ptxas
    printed, or for a kernel Triton's cache held, the one stored under the same cache key by the
    run that compiled it (compiled again when that run stored none). What is stored is ptxas's
    own text, read here as it would be printed now."""
    from triton import knobs

    knobs.nvidia.dump_ptxas_log = True
    src = ASTSource(fn, signature, constexprs, attrs)
    t0 = time.perf_counter()
    kernel, text = _compile(src, target, options)
    stored = Path(os.environ[REPORTS]) / f"{kernel.hash}.log"
    cached = False
    if not _PTXAS["registers"].search(text):  # Triton's cache held the kernel: ptxas did not run
        if stored.is_file():
            text, cached = stored.read_text(encoding="utf-8"), True
        else:  # (kept by a run that stored no log: compile it again)
            knobs.compilation.always_compile = True
            try:
                kernel, text = _compile(src, target, options)
            finally:
                knobs.compilation.always_compile = False
    if not cached:
        if not _PTXAS["registers"].search(text):
            raise RuntimeError(f"ptxas printed no resource report: {text[-300:]!r}")
        write_text(stored, text)  # (whole or absent)
    row = {k: int(m.group(1)) if (m := rx.search(text)) else None for k, rx in _PTXAS.items()}
    row["cached"] = cached
    row["shared"] = int(kernel.metadata.shared)
    row["num_warps"] = int(kernel.metadata.num_warps)
    row["ptx_target"] = re.search(r"\.target\s+(\S+)", kernel.asm["ptx"]).group(1)
    row["cubin_bytes"] = len(kernel.asm["cubin"])
    row["compile_s"] = time.perf_counter() - t0
    return row


_JOBS: list = []


def _init_jobs(arch: int, sm_count: int, quick: bool, kernels: str | None = None,
               maxnreg: int | None = None) -> int:
    """Fill _JOBS with the distinct specialisations (same order in every process), of the
    kernels whose name matches `kernels` (None: all), under a register ceiling `maxnreg` (None:
    the launch's own); returns the number of launches recorded."""
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    launches = enumerate_launches(sm_count, quick)
    unique: dict[str, tuple] = {}
    for fn, a, kw in launches:
        if kernels and not re.search(kernels, fn.__name__):
            continue
        options, signature, constexprs, attrs = specialise(fn, a, kw, backend)
        if maxnreg:
            options = dataclasses.replace(options, maxnreg=maxnreg)
        key = repr((fn.__name__, sorted(signature.items()), sorted(constexprs.items()),
                    sorted((k, repr(v)) for k, v in attrs.items()),
                    sorted(options.__dict__.items())))
        unique.setdefault(key, (fn, options, signature, constexprs, attrs, target))
    _JOBS[:] = list(unique.values())
    return len(launches)


def _compile_job(i: int):
    """(row, None) or (None, error message) for the i-th specialisation."""
    fn, options, signature, constexprs, attrs, target = _JOBS[i]
    what = describe(fn, signature, constexprs, attrs)
    try:
        row = compile_one(fn, options, signature, constexprs, attrs, target)
    except Exception as exc:  # a compile error of any kind fails the check
        return None, (f"{fn.__name__} [{what}]: compile error: "
                      f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
    row.update(kernel=fn.__name__, specialisation=what)
    return row, None


def describe(fn: JITFunction, signature: dict, constexprs: dict, attrs: dict) -> str:
    names = fn.arg_names
    consts = ", ".join(f"{names[k[0]]}={v}" for k, v in sorted(constexprs.items())
                       if v is not None and signature[names[k[0]]] == "constexpr")
    ints_one = [names[k[0]] for k, v in constexprs.items() if signature[names[k[0]]] != "constexpr"]
    ptrs = sorted({t for t in signature.values() if t.startswith("*")})
    div16 = [names[k[0]] for k, a in attrs.items()
             if a and not signature[names[k[0]]].startswith("*")]
    parts = [consts, "ptr " + "/".join(ptrs)]
    if div16:
        parts.append("%16: " + ",".join(div16))
    if ints_one:
        parts.append("=1: " + ",".join(ints_one))
    return "; ".join(p for p in parts if p)


def _print_rows(rows) -> None:
    print(f"{'kernel':<22} {'regs':>4} {'spill st/ld':>11} {'stack':>5} {'shared':>7} "
          f"{'warps':>5} {'s':>5}  specialisation")
    for r in sorted(rows, key=lambda r: (r["kernel"], r["specialisation"])):
        spill = f"{r['spill_stores']}/{r['spill_loads']}"
        print(f"{r['kernel']:<22} {r['registers']!s:>4} {spill:>11} {r['stack']!s:>5} "
              f"{r['shared']:>7} {r['num_warps']:>5} {r['compile_s']:>5.1f}  {r['specialisation']}")


def _pattern(text: str) -> str:
    """A regular expression given on the command line, checked (kept as text: it travels to
    the compile processes)."""
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {exc}") from None
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (default 90)")
    ap.add_argument("--sm-count", type=int, default=132, help="the launching device's "
                    "multiprocessors, which decide SSA's T splits (default 132, an H100 SXM)")
    ap.add_argument("--quick", action="store_true",
                    help="a sample: paper-preset SSA split, unsplit, in one launch per "
                         "direction and on the large-batch path, log-Mel with 40 bands, L1 in "
                         "float32 and bfloat16 (the CI test; about 40 s of CPU)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel compiles (default: the CPU count)")
    ap.add_argument("--json", default=None, help="also write every row to this file")
    ap.add_argument("--summary", action="store_true",
                    help="print one line per kernel (and failures), not one per specialisation")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="keep Triton's cache and the ptxas reports in DIR: a specialisation "
                         "compiled by an earlier run under the same cache key is not compiled "
                         "again (default: compile everything, in a folder removed at the end)")
    ap.add_argument("--no-spills", default=None, metavar="REGEX", type=re.compile,
                    help="fail when a specialisation of a kernel whose name matches REGEX "
                         "spills registers (default: spills are reported only)")
    ap.add_argument("--kernels", default=None, metavar="REGEX", type=_pattern,
                    help="only the kernels whose name matches REGEX (default: all)")
    ap.add_argument("--maxnreg", default=None, type=int, metavar="N",
                    help="compile every specialisation under a ceiling of N registers per "
                         "thread (PTX .maxnreg), e.g. to see what a ceiling would spill "
                         "(default: each launch's own)")
    args = ap.parse_args(argv)
    names = sorted(fn.__name__ for fn in library_kernels().values())
    if args.kernels and not any(re.search(args.kernels, name) for name in names):
        ap.error(f"--kernels {args.kernels!r} matches no kernel of the library (have "
                 f"{', '.join(names)})")
    work = os.path.abspath(args.cache) if args.cache else \
        tempfile.mkdtemp(prefix="ssa_fast_triton_aot_")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(work, "triton")
    os.environ[REPORTS] = os.path.join(work, "ptxas-logs")  # (the logs; "ptxas" held numbers)
    try:
        return _run(args)
    finally:
        if not args.cache:
            shutil.rmtree(work, ignore_errors=True)


def _run(args) -> int:
    t0 = time.perf_counter()
    jobs_args = (args.arch, args.sm_count, args.quick, args.kernels, args.maxnreg)
    launches = _init_jobs(*jobs_args)
    print(f"Triton {triton.__version__}, torch {torch.__version__}, target sm_{args.arch}: "
          f"{launches} launches recorded, {len(_JOBS)} distinct specialisations")
    limit = SHARED_LIMIT.get(args.arch, 48 * 1024)
    jobs = max(1, min(args.jobs, len(_JOBS)))
    if jobs > 1:  # ptxas and the MLIR passes of different kernels in parallel
        import multiprocessing

        # spawn, not fork: a forked copy of this process (torch, LLVM) can be refused memory
        with multiprocessing.get_context("spawn").Pool(
                jobs, initializer=_init_jobs, initargs=jobs_args
        ) as pool:
            results = pool.map(_compile_job, range(len(_JOBS)), chunksize=1)
    else:
        results = [_compile_job(i) for i in range(len(_JOBS))]
    rows, failures = [], []
    for row, error in results:
        if error:
            failures.append(error)
            continue
        rows.append(row)
        what = row["specialisation"]
        if row["shared"] > limit:
            failures.append(f"{row['kernel']} [{what}]: {row['shared']} bytes of shared memory > "
                            f"{limit} per block")
        if args.no_spills and args.no_spills.search(row["kernel"]) and (
                row["spill_stores"] or row["spill_loads"]):
            failures.append(f"{row['kernel']} [{what}]: spills {row['spill_stores']} bytes "
                            f"(stores) / {row['spill_loads']} (loads) with "
                            f"{row['registers']} registers")

    launched = {job[0].__name__ for job in _JOBS}
    for name, fn in library_kernels().items():
        wanted = not args.kernels or re.search(args.kernels, fn.__name__)
        if wanted and fn.__name__ not in launched:
            failures.append(f"{name}: no launch of the library reached it (the enumeration "
                            "misses a launcher)")

    if not args.summary:
        _print_rows(rows)
    by_kernel: dict[str, list] = {}
    for r in rows:
        by_kernel.setdefault(r["kernel"], []).append(r)
    for k, rs in sorted(by_kernel.items()):
        spills = sum(1 for r in rs if (r["spill_stores"] or 0) > 0)
        print(f"{k}: {len(rs)} specialisations, registers {min(r['registers'] for r in rs)}.."
              f"{max(r['registers'] for r in rs)}, max shared {max(r['shared'] for r in rs)} B, "
              f"{spills} with spills, PTX target {rs[0]['ptx_target']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"triton": triton.__version__, "arch": args.arch, "rows": rows,
                       "failures": failures}, fh, indent=1)
    held = sum(r["cached"] for r in rows)
    print(f"{len(rows)} compiled in {time.perf_counter() - t0:.1f} s"
          + (f" ({held} of them held by the cache, with their ptxas reports)" if held else ""))
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
