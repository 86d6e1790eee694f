#!/usr/bin/env bash
# The planted-structure study (issue 22): on logs from `mfh prepare synthetic`, each model
# tuned with the same budget (`mfh tune`: TRIALS settings, successive halving over 2 rungs,
# eta 2, the last rung MAX_STEPS steps), then compared over SEEDS seeds with its tuned
# settings (`mfh compare --tuned`), with weak and strong facet-specific parts. The
# comparison's table.md holds per-cell AUC and each model's share of the oracle AUC.
#   bench/synthetic_study.sh [TRAIN_ROWS=100000] [SEEDS=3] [TRIALS=8] [MODELS=single,mmoe,ple,hmtl,mfh,pepnet,stem] [STRENGTHS="0.3 1.5"] [TUNED_AT]
# With TUNED_AT (a smaller TRAIN_ROWS), no tuning at TRAIN_ROWS: each model takes the
# settings its tuning at TUNED_AT rows picked (run that study first), in cmp-tuned-at-TUNED_AT.
# Output: target/study/TRAIN_ROWS/strength-S/{data,tuned,cmp}; a summary on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
train_rows="${1:-100000}"
seeds="${2:-3}"
trials="${3:-8}"
models="${4:-single,mmoe,ple,hmtl,mfh,pepnet,stem}"
strengths="${5:-0.3 1.5}"
tuned_at="${6:-}"
(cd "$root" && cargo build --profile fastrel -q -p mfh)
mfh="$root/target/fastrel/mfh"
# The generator's train split is 80 % of the rows.
rows=$(( train_rows * 5 / 4 ))
# Three epochs of the train split at batch 512 for the last rung.
max_steps=$(( train_rows * 3 / 512 ))
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# $train_rows training rows ($rows generated), $seeds seeds, $trials trials per model, last rung $max_steps steps; models $models"
for s in $strengths; do
  work="$root/target/study/$train_rows/strength-$s"
  mkdir -p "$work"
  # Prepared again when missing, or when its config predates a model asked for.
  stale=0
  for m in ${models//,/ }; do
    grep -q "^\[models\.$m\]" "$work/data/synthetic.toml" 2>/dev/null || stale=1
  done
  if [ ! -f "$work/data/synthetic.json" ] || [ "$stale" = 1 ]; then
    rm -rf "$work/data"
    "$mfh" prepare synthetic --rows "$rows" --facet-strength "$s" --seed 1 --out "$work/data"
  fi
  cfg="$work/data/synthetic.toml"
  start=$(date +%s)
  tuned="$work/tuned"
  cmp="$work/cmp"
  if [ -n "$tuned_at" ]; then
    tuned="$root/target/study/$tuned_at/strength-$s/tuned"
    cmp="$work/cmp-tuned-at-$tuned_at"
    for m in ${models//,/ }; do
      [ -f "$tuned/$m/best.toml" ] || { echo "error: no $tuned/$m/best.toml: run the study at $tuned_at rows first" >&2; exit 1; }
    done
  else
    for m in ${models//,/ }; do
      "$mfh" tune --config "$cfg" --model "$m" --trials "$trials" --rungs 2 --eta 2 \
        --max-steps "$max_steps" --out "$tuned/$m" --quiet 2>/dev/null | grep -E '^best|^  '
    done
  fi
  "$mfh" compare --config "$cfg" --models "$models" --seeds "$seeds" --tuned "$tuned" \
    --out "$cmp" --quiet > /dev/null 2>&1
  echo "## facet strength $s: ${tuned_at:+settings tuned at $tuned_at rows; }tuned and compared in $(( $(date +%s) - start )) s; $cmp/table.md"
  python3 "$root/bench/synthetic_table.py" "$cmp" "$models"
  for m in ${models//,/ }; do
    python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(f\"budget {t['model']}: {t['budget_steps']} steps over {t['trials']} trials\")" "$tuned/$m/tune.json"
  done
done
