#!/usr/bin/env bash
# The bundled KuaiRand comparison with every model tuned on the same budget (issue 22):
# `mfh tune` for each model section over its `[tune.NAME]` space (TRIALS settings,
# successive halving over 2 rungs, eta 2, the last rung three epochs of the train split),
# selected on `valid1`; then `mfh compare --tuned` over SEEDS seeds, reported on `valid2`,
# with the LightGBM row (bench/peers/run_lightgbm.sh, PyPI in bench/.venv).
#   bench/kuairand_tuned.sh [SEEDS=3] [TRIALS=8] [MODELS=single,sb,mmoe,cgc,ple,hmtl,mfh,pepnet,stem]
# Output: target/kr-tuned/{data,tuned,cmp}; cmp/table.md is the whole table.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seeds="${1:-3}"
trials="${2:-8}"
models="${3:-single,sb,mmoe,cgc,ple,hmtl,mfh,pepnet,stem}"
(cd "$root" && cargo build --profile fastrel -q -p mfh)
mfh="$root/target/fastrel/mfh"
work="$root/target/kr-tuned"
mkdir -p "$work"
if [ ! -f "$work/data/kuairand.toml" ]; then
  "$mfh" prepare kuairand --raw "$root/data/kuairand-pure" --out "$work/data"
fi
cfg="$work/data/kuairand.toml"
# Three epochs of the 127,902 train rows at batch 512.
max_steps=749
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $trials trials per model, last rung $max_steps steps, $seeds seeds"
start=$(date +%s)
for m in ${models//,/ }; do
  "$mfh" tune --config "$cfg" --model "$m" --trials "$trials" --rungs 2 --eta 2 \
    --max-steps "$max_steps" --out "$work/tuned/$m" --quiet 2>/dev/null | grep -E '^best|^  '
done
echo "# tuned in $(( $(date +%s) - start )) s"
"$mfh" compare --config "$cfg" --models "$models" --seeds "$seeds" --tuned "$work/tuned" \
  --out "$work/cmp" --quiet > /dev/null 2>&1
"$root/bench/peers/run_lightgbm.sh" "$cfg" "$work/cmp" "$seeds"
# Again: the finished runs are kept and the LightGBM row joins the table.
"$mfh" compare --config "$cfg" --models "$models" --seeds "$seeds" --tuned "$work/tuned" \
  --out "$work/cmp" --quiet 2>/dev/null | sed -n '/^## auc: click/,/^## gauc/p'
echo "# done in $(( $(date +%s) - start )) s; $work/cmp/table.md"
for m in ${models//,/ }; do
  python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(f\"budget {t['model']}: {t['budget_steps']} steps over {t['trials']} trials\")" "$work/tuned/$m/tune.json"
done
