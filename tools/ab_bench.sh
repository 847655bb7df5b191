#!/bin/bash
# Compares g2w-run builds on a noisy machine: runs `--bench` with each binary in turn, ROUNDS
# times (interleaved, so every build sees the same slow and fast minutes), and prints the medians
# of pp tok/s, pp % of peak, tg tok/s and tg % of bandwidth per binary. Dev-time only.
#
#   cp .build/release/g2w-run /tmp/g2w-run-old      # before a change; rebuild, then:
#   PP=512 TG=128 REPS=2 tools/ab_bench.sh 6 tools/out/gpt2-124M-f16.g2w /tmp/g2w-run-old .build/release/g2w-run
set -euo pipefail
if [ $# -lt 3 ]; then echo "usage: [PP=512] [TG=128] [REPS=2] $0 ROUNDS MODEL.g2w BINARY..." >&2; exit 2; fi
rounds=$1; model=$2; shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do
  i=0
  for b in "$@"; do
    "$b" --bench --model "$model" --reps "${REPS:-2}" --pp "${PP:-512}" --tg "${TG:-128}" --json 2>/dev/null |
      python3 -c "import json,sys; d=json.load(sys.stdin); print(d['pp']['tok_s'], d['pp']['peak_fraction']*100, d['tg']['tok_s'], d['tg']['bandwidth_fraction']*100)" >> "$out/$i"
    i=$((i + 1))
  done
done
i=0
for b in "$@"; do
  python3 - "$b" "$out/$i" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
cols = list(zip(*rows))
m = [statistics.median(c) for c in cols]
print(f"{sys.argv[1]}: pp {m[0]:.1f} tok/s ({m[1]:.1f} % of peak), tg {m[2]:.1f} tok/s ({m[3]:.1f} % of bandwidth); "
      f"{len(rows)} runs, pp runs {' '.join(f'{x:.0f}' for x in cols[0])}")
PY
  i=$((i + 1))
done
