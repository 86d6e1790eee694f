#!/usr/bin/env bash
# bf16 against f32 on the bundled KuaiRand slice (issue 26): `mfh compare` over SEEDS seeds
# with the config as prepared (train.precision f32) and with `precision = "bf16"` added
# to its [train] table; then, per model and behaviour, the pooled AUC's mean and seed sd in
# each precision and whether the bf16 mean lies within one f32 sd of the f32 mean.
#   bench/bf16_auc.sh [SEEDS=3] [MODELS=mmoe,ple,mfh]
# Output: target/bf16-auc/{data,f32,bf16}; a table on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seeds="${1:-3}"
models="${2:-mmoe,ple,mfh}"
(cd "$root" && cargo build --profile fastrel -q -p mfh)
mfh="$root/target/fastrel/mfh"
work="$root/target/bf16-auc"
mkdir -p "$work"
if [ ! -f "$work/data/kuairand.toml" ]; then
  "$mfh" prepare kuairand --raw "$root/data/kuairand-pure" --out "$work/data" > /dev/null
fi
cfg="$work/data/kuairand.toml"
bf="$work/data/kuairand-bf16.toml"
python3 - "$cfg" "$bf" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
if not re.search(r"^\[train\]\s*$", text, re.M):
    sys.exit(f"{sys.argv[1]}: no [train] table")
if re.search(r"^precision\s*=", text, re.M):
    sys.exit(f"{sys.argv[1]}: already sets a precision")
open(sys.argv[2], "w").write(re.sub(r"^\[train\]\s*$", '[train]\nprecision = "bf16"', text, count=1, flags=re.M))
PY
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $("$mfh" bench sgemm --n 8 --repeats 1 | head -1)"
for p in f32 bf16; do
  c="$cfg"; [ "$p" = bf16 ] && c="$bf"
  start=$(date +%s)
  "$mfh" compare --config "$c" --models "$models" --seeds "$seeds" --out "$work/$p" --quiet > /dev/null 2>&1
  echo "# $p: $models × $seeds seeds in $(( $(date +%s) - start )) s"
done
python3 - "$work" "$models" <<'PY'
import json, statistics, sys
work, models = sys.argv[1], sys.argv[2].split(",")
def pooled(p):
    out = {}
    for r in json.load(open(f"{work}/{p}/results.json")):
        if r["cell"] == "all" and r["metric"] == "auc" and r["value"] is not None:
            out.setdefault((r["model"], r["behaviour"]), []).append(r["value"])
    return out
f32, bf = pooled("f32"), pooled("bf16")
print("| model | behaviour | f32 AUC mean ± sd | bf16 AUC mean ± sd | bf16 − f32 | within one f32 sd |")
print("|---|---|---:|---:|---:|---|")
fails = 0
for key in sorted(f32):
    a, b = f32[key], bf.get(key, [])
    if len(a) < 2 or len(a) != len(b):
        sys.exit(f"{key}: {len(a)} f32 and {len(b)} bf16 seeds")
    ma, sa, mb, sb = statistics.mean(a), statistics.stdev(a), statistics.mean(b), statistics.stdev(b)
    ok = abs(mb - ma) <= sa
    fails += not ok
    print(f"| {key[0]} | {key[1]} | {ma:.4f} ± {sa:.4f} | {mb:.4f} ± {sb:.4f} | {mb - ma:+.4f} | {'yes' if ok else 'no'} |")
print(f"\n{len(f32) - fails} of {len(f32)} within one f32 sd")
PY
