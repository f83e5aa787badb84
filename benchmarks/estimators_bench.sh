#!/usr/bin/env bash
# Estimator benchmark on the real response data: the exact commands behind benchmarks/results/estimators.md.
# Usage: benchmarks/estimators_bench.sh [DATA_DIR]   (default ../shared/data; skips cleanly when absent)
# Runs one data set at a time (1 torch thread): ~40 minutes on a loaded 2-core machine.
# METHODS=a,b re-runs only those methods and merges their rows into the existing JSON/PNG
# (benchmarks/estimators_merge.py); METABENCH_SETS / PSN_BLOCKS / SKIP_SMALL=1 restrict the data sets.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # scikit-learn's boosting: 1 thread like torch
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
OUT=benchmarks/results
FM="${FRUGALMERGE:-env PYTHONPATH=src FRUGALMERGE_THREADS=1 python -m frugalmerge.cli}"
PY="${PYTHON:-python}"
# bench NAME ARGS...: one benchmark, written to $OUT/estimators_NAME.json|png (merged when METHODS is set).
bench() {
  local name="$1"; shift
  if [ -n "${METHODS:-}" ]; then
    $FM estimators bench "$@" --methods "$METHODS" --json "$OUT/.partial_$name.json"
    $PY benchmarks/estimators_merge.py "$OUT/estimators_$name.json" "$OUT/.partial_$name.json" \
      --plot "$OUT/estimators_$name.png"
    rm -f "$OUT/.partial_$name.json"
  else
    $FM estimators bench "$@" --json "$OUT/estimators_$name.json" --plot "$OUT/estimators_$name.png"
  fi
}
if [ ! -d "$DATA" ]; then echo "skip: $DATA not found"; exit 0; fi
mkdir -p "$OUT"
for ds in ${METABENCH_SETS:-arc gsm8k mmlu}; do
  f="$DATA/metabench_reduced/$ds.npz"
  [ -f "$f" ] || { echo "skip: $f"; continue; }
  bench "$ds" "$f" --k 10,30,50,all --folds 5 --seed 0
done
if [ "${SKIP_SMALL:-0}" = 1 ]; then exit 0; fi
if [ -d "$DATA/minilongbench" ]; then
  bench minilongbench "$DATA/minilongbench" --k 10,30,100,300 --folds 5 --seed 0
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
    bench "psn_$slug" "$DATA/psn_irt_opencompass#$block" --k 10,30,100 --folds 4 --seed 0
  done <<< "$blocks"
fi
