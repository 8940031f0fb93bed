"""Turn pytest-benchmark JSON into the Markdown tables of RESULTS.md.

    python benchmarks/report.py bench.json

Each group becomes a table, fastest row first: implementation, median time, spread (IQR),
throughput where recorded (hours of audio, GB/s at the minimum bytes, segments, model FLOPs per
second), the physical floor and the fraction of it reached, the median relative to the group's
fastest row, and "fused speed-up": how many times faster the library's fastest fused backend
(cuda, triton or cpp) of the group is than the row (> 1: the fused kernel wins against that
peer; the targets of design.md section 9 are stated in these ratios).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def _throughput(info: dict) -> str:
    if "segments_per_s" in info:
        return f"{info['segments_per_s']:,.0f} segments/s"
    if "audio_h_per_s" in info:
        return f"{info['audio_h_per_s']:,.1f} h audio/s"
    if "GB_per_s_at_min_bytes" in info:
        return f"{info['GB_per_s_at_min_bytes']:,.1f} GB/s (min bytes)"
    if "model_tflops" in info:
        return f"{info['model_tflops'] * 1e3:,.1f} model GFLOP/s"
    return ""


def _floor(info: dict) -> str:
    """Floor (bytes / copy bandwidth or FLOPs / bf16 peak, whichever binds) and the fraction of it
    reached; for a training step the fraction is the model-FLOPs utilisation."""
    if "floor_ms" not in info:
        return " | "
    return f"{info['floor_ms']:.4f} ({info['bound']}) | {100 * info['fraction_of_floor']:.1f} %"


def _impl_name(bench: dict) -> str:
    params = bench.get("params") or {}
    return str(params.get("impl") or params.get("config") or params.get("name")
               or bench["name"])


FUSED = ("cuda", "triton", "cpp")


def tables(data: dict) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"] or b["name"]].append(b)
    lines = []
    machine = data.get("machine_info", {})
    lines.append(f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor'))}, "
                 f"{data.get('datetime', '')[:10]}")
    c = machine.get("ceilings")
    if c:
        lines.append(f"Ceilings measured in this run on {c['device']}: copy "
                     f"{c['copy_GB_per_s']:,.0f} GB/s (read + write), bf16 matmul "
                     f"{c['bf16_matmul_TFLOP_per_s']:,.1f} TFLOP/s (n = {c['matmul_n']})")
    for group, rows in groups.items():
        rows.sort(key=lambda b: b["stats"]["median"])
        best = rows[0]
        fused = [b for b in rows if _impl_name(b) in FUSED]
        lines += ["", f"### {group}", "",
                  "| impl | median ms | IQR ms | throughput | floor ms (bound) | of floor | "
                  "vs fastest | fused speed-up | device |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for b in rows:
            st, info = b["stats"], b.get("extra_info", {})
            up = f"{st['median'] / fused[0]['stats']['median']:.2f}x" if fused else ""
            lines.append(
                f"| {_impl_name(b)} | {st['median'] * 1e3:.3f} | {st['iqr'] * 1e3:.3f} | "
                f"{_throughput(info)} | {_floor(info)} | "
                f"{st['median'] / best['stats']['median']:.2f}x | {up} | "
                f"{info.get('device', '')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file")
    args = ap.parse_args()
    with open(args.json_file) as fh:
        print(tables(json.load(fh)))


if __name__ == "__main__":
    main()
