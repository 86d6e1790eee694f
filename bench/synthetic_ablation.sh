#!/usr/bin/env bash
# Ablations of MFH (issue 22) on one study of bench/synthetic_study.sh: each variant is
# MFH's tuned section with one change — its trees, its fusion, its sizes, its units or its
# learning rates — plus PLE's tuned section with one extraction level instead of two;
# every variant is trained over SEEDS seeds beside MFH and PLE with their tuned settings,
# and reported per cell as the study is.
#   bench/synthetic_ablation.sh [STUDY=target/study/1000000/strength-1.5] [SEEDS=3]
# STUDY is a folder the study wrote with MFH and PLE tuned in it (its data/ and tuned/):
# e.g. `bench/synthetic_study.sh 1000000 3 8 mfh,ple 1.5` first. Writes
# STUDY/data/synthetic-ablation.toml, STUDY/ablation/{tuned,cmp}; the table on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
study="$(cd "${1:-$root/target/study/1000000/strength-1.5}" && pwd)"
seeds="${2:-3}"
for f in data/synthetic.toml tuned/mfh/best.toml tuned/ple/best.toml; do
  if [ ! -f "$study/$f" ]; then
    echo "no $study/$f: run bench/synthetic_study.sh with mfh and ple first" >&2
    exit 1
  fi
done
(cd "$root" && cargo build --profile fastrel -q -p mfh)
mfh="$root/target/fastrel/mfh"
out="$study/ablation"
rm -rf "$out/tuned"
mkdir -p "$out/tuned"
# The variants' sections (after the study's config, whose data paths are relative to
# its folder) and each one's tuned folder, holding the learning rates it trains with.
models=$(python3 - "$study" "$out" <<'PY'
import json, os, sys, tomllib

study, out = sys.argv[1], sys.argv[2]
cfg = tomllib.load(open(f"{study}/data/synthetic.toml", "rb"))

def tuned(model):
    """The model's section and train keys with its tuned overrides applied."""
    o = tomllib.load(open(f"{study}/tuned/{model}/best.toml", "rb"))["overrides"]
    section = json.loads(json.dumps(cfg["models"][model]))
    rates = {}
    for key, v in o.items():
        parts = key.split(".")
        if parts[0] == "train":
            rates[key] = v
            continue
        if parts[:2] != ["models", model]:
            sys.exit(f"{study}/tuned/{model}/best.toml: unexpected key {key}")
        t = section
        for p in parts[2:-1]:
            t = t.setdefault(p, {})
        t[parts[-1]] = v
    return section, rates

def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
    sys.exit(f"cannot write {v!r}")

mfh, mfh_rates = tuned("mfh")
ple, ple_rates = tuned("ple")
copy = lambda s: json.loads(json.dumps(s))
variants = {}
v = copy(mfh); v["trees"] = [["behaviour", "user", "item"], ["item", "behaviour", "user"]]
variants["mfh_nouser"] = ("MFH without its user-first tree", v, mfh_rates)
v = copy(mfh); v["trees"] = [["behaviour", "user", "item"]]
variants["mfh_btree"] = ("MFH with its behaviour-first tree only", v, mfh_rates)
v = copy(mfh); v["fusion"] = "concat"
variants["mfh_concat"] = ("MFH fusing its leaves by concatenation", v, mfh_rates)
v = copy(mfh)
v["level1"]["expert_layers"] = ple["expert_layers"]
v["level1"]["shared_experts"] = ple["shared_experts"]
v["level2"]["expert_layers"] = ple["expert_layers"][-1:]
variants["mfh_narrow"] = ("MFH with PLE's expert widths and shared experts", v, mfh_rates)
v = copy(mfh); v["level2"]["shared_experts"] = v["level2"].get("shared_experts", 2) + 1
variants["mfh_wide2"] = ("MFH with one more shared expert under each value", v, mfh_rates)
v = copy(mfh); v["level1"]["type"] = "ple"; v["level1"]["levels"] = 2
variants["mfh_pleunit"] = ("MFH with two-level PLE units at level 1", v, mfh_rates)
variants["mfh_plelr"] = ("MFH with PLE's learning rates", copy(mfh), ple_rates)
v = copy(ple); v["levels"] = 1
variants["ple_one_level"] = ("PLE with one extraction level", v, ple_rates)

text = open(f"{study}/data/synthetic.toml").read()
text += "\n# Ablations (bench/synthetic_ablation.sh): tuned MFH or PLE with one change each.\n"
for name, (what, section, rates) in variants.items():
    text += f"\n# {what}.\n[models.{name}]\n"
    text += "".join(f"{k} = {value(x)}\n" for k, x in section.items())
    os.makedirs(f"{out}/tuned/{name}")
    with open(f"{out}/tuned/{name}/best.toml", "w") as f:
        f.write("[overrides]\n" + "".join(f'"{k}" = {value(x)}\n' for k, x in rates.items()))
with open(f"{study}/data/synthetic-ablation.toml", "w") as f:
    f.write(text)
print(",".join(["ple", "mfh"] + list(variants)))
PY
)
for m in mfh ple; do
  mkdir -p "$out/tuned/$m"
  cp "$study/tuned/$m/best.toml" "$out/tuned/$m/"
done
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $study, $seeds seeds: $models"
start=$(date +%s)
"$mfh" compare --config "$study/data/synthetic-ablation.toml" --models "$models" \
  --seeds "$seeds" --tuned "$out/tuned" --out "$out/cmp" --quiet > /dev/null 2>&1
echo "## compared in $(( $(date +%s) - start )) s; $out/cmp/table.md"
python3 "$root/bench/synthetic_table.py" "$out/cmp" "$models"
