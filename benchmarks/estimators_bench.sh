#!/usr/bin/env bash
# Estimator benchmark on the real response data: the exact commands behind benchmarks/results/estimators.md.
# Usage: benchmarks/estimators_bench.sh [DATA_DIR]   (default ../shared/data; skips cleanly when absent)
# Runs one data set at a time (1 torch thread): ~40 minutes on a loaded 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
OUT=benchmarks/results
FM="${FRUGALMERGE:-env PYTHONPATH=src FRUGALMERGE_THREADS=1 python -m frugalmerge.cli}"
if [ ! -d "$DATA" ]; then echo "skip: $DATA not found"; exit 0; fi
mkdir -p "$OUT"
for ds in ${METABENCH_SETS:-arc gsm8k mmlu}; do
  f="$DATA/metabench_reduced/$ds.npz"
  [ -f "$f" ] || { echo "skip: $f"; continue; }
  $FM estimators bench "$f" --k 10,30,50,all --folds 5 --seed 0 \
    --json "$OUT/estimators_$ds.json" --plot "$OUT/estimators_$ds.png"
done
if [ -d "$DATA/minilongbench" ]; then
  $FM estimators bench "$DATA/minilongbench" --k 10,30,100,300 --folds 5 --seed 0 \
    --json "$OUT/estimators_minilongbench.json" --plot "$OUT/estimators_minilongbench.png"
fi
if [ -d "$DATA/psn_irt_opencompass" ]; then
  # 12 models: 4-fold CV leaves 9 training models per fold (the estimators' small-n regime).
  # Every column block of blocks.json (11 benchmarks); PSN_BLOCKS (one block name per line) runs a selection.
  if [ -n "${PSN_BLOCKS:-}" ]; then
    blocks="$PSN_BLOCKS"
  else
    blocks=$(python -c 'import json,sys; print("\n".join(k for k in json.load(open(sys.argv[1])) if not k.startswith("_")))' \
      "$DATA/psn_irt_opencompass/blocks.json")
  fi
  while IFS= read -r block; do
    [ -n "$block" ] || continue
    slug=$(echo "$block" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\{1,\}/_/g')
    $FM estimators bench "$DATA/psn_irt_opencompass#$block" --k 10,30,100 --folds 4 --seed 0 \
      --json "$OUT/estimators_psn_$slug.json" --plot "$OUT/estimators_psn_$slug.png"
  done <<< "$blocks"
fi
