#!/usr/bin/env bash
# The `cli` stage of gpu_session.sh: the command line as a user runs it on a GPU, each command a
# real process on a small generated corpus, the slowest (torch.compile, reruns) last. Every
# command is run even when one fails; its exit status, time and (on failure) the end of its
# stderr go to the summary.
#
#   bash gpu_session/gpu_cli.sh WORKDIR SUMMARY.md
#
# With SSA_FAST_DRY_RUN=1 the same commands run on the CPU (--device cpu), one epoch each instead
# of two and on 4 phrases instead of 6 (the plumbing is the test there), but for the compiled
# training run.
set -uo pipefail
W=${1:?WORKDIR}
SUMMARY=${2:?SUMMARY.md}
PY=${PYTHON:-python3}
DEV=cuda
E=2
PHRASES=6
# (bf16 convolutions are 11-14x slower than float32 on a CPU without AVX-512: fewer phrases)
[ "${SSA_FAST_DRY_RUN:-0}" = 1 ] && DEV=cpu E=1 PHRASES=4
rm -rf "$W" && mkdir -p "$W"
fails=0
{
  echo "# GPU session: the CLI on $DEV ($(date '+%Y-%m-%d %H:%M:%S'))"
  echo
  echo "| command | exit | seconds | notes |"
  echo "|---|---:|---:|---|"
} >"$SUMMARY"

# step NAME EXPECT ARGS...: run `python -m ssa_fast.cli ARGS`, expect exit status EXPECT.
step() {
  local name=$1 expect=$2; shift 2
  local t0=$SECONDS rc note=""
  echo "== $name: ssa-fast $*"
  "$PY" -m ssa_fast.cli "$@" >"$W/$name.out" 2>"$W/$name.err"
  rc=$?
  tail -5 "$W/$name.out"
  if [ "$rc" -ne "$expect" ]; then
    fails=$((fails + 1))
    note="FAIL (expected $expect): $(grep -v '^\s*$' "$W/$name.err" | tail -3 | tr '\n|' ' /' | cut -c1-400)"
    echo "$note"
  else
    note=$(grep -v '^\s*$' "$W/$name.out" | tail -1 | tr '|' '/' | cut -c1-160)
  fi
  echo "| \`$name\` | $rc | $((SECONDS - t0)) | $note |" >>"$SUMMARY"
}

C="$W/corpus"
common=(--preset small --batch-size 8 --segment-frames 100 --cache "$W/cache" --device "$DEV"
        --quiet)
step synth 0 synth --out "$C" --size tiny --phrases "$PHRASES" --quiet
step train_bf16 0 train synthetic "$C" --out "$W/bf16" --model ssa-crnn-r --folds 2 --fold 1 \
  --epochs "$E" --bf16 "${common[@]}"
step evaluate 0 evaluate "$W/bf16/best.pt" synthetic "$C" --fold 1 --cache "$W/cache" \
  --device "$DEV" --quiet
wav=$(find "$C" -name '*.wav' | sort | head -1)
step predict 0 predict "$W/bf16/best.pt" "$wav" --json --attention-plot "$W/att" --device "$DEV" \
  --quiet
step features 0 features "$wav" --out "$W/feats" --device "$DEV" --quiet
step cv_bf16 0 cv synthetic "$C" --out "$W/cv" --folds 2 --epochs "$E" --bf16 "${common[@]}"
# (the dry run leaves out the compiled run: minutes of inductor on a CPU, and
# tests/test_cli_precision.py runs `train --compile` on the CPU already)
[ "$DEV" = cpu ] || step train_bf16_compile 0 train synthetic "$C" --out "$W/bfc" \
  --model ssa-crnn-r --folds 2 --fold 1 --epochs "$E" --bf16 --compile "${common[@]}"
step resume 0 train synthetic "$C" --out "$W/bf16" --model ssa-crnn-r --folds 2 --fold 1 \
  --epochs "$E" --bf16 --resume "${common[@]}"
step cv_again 0 cv synthetic "$C" --out "$W/cv" --folds 2 --epochs "$E" --bf16 "${common[@]}"
[ -f "$W/cv/reports/table.md" ] && { echo; echo '```'; cat "$W/cv/reports/table.md"; echo '```'; } >>"$SUMMARY"
echo "$fails command(s) failed" | tee -a "$SUMMARY"
[ "$fails" -eq 0 ]
