#!/usr/bin/env bash
# Seven daily warm starts over the bundled KuaiRand slice, against cold starts with the
# same budget (one epoch of the day), each judged on the next day's valid AUC (mean over
# behaviours, pooled). Embedding tables capped at MAX_ROWS rows.
#   bench/warm_start.sh [MAX_ROWS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cap="${1:-3000}"
mfh="$root/target/release/mfh"
(cd "$root" && cargo build --release -q -p mfh)
work="$root/target/warm_start"
rm -rf "$work" && mkdir -p "$work"
"$mfh" prepare kuairand --raw "$root/data/kuairand-pure" --out "$work/data" > /dev/null
base="$work/data/kuairand.toml"
day_cfg() { # name train-date valid-date
  sed -e "s|^train = { where = .*|train = { where = \"date == $2\" }|" \
      -e "s|^valid = { where = .*|valid = { where = \"date == $3\" }|" \
      -e "s|^epochs = 4|epochs = 1|" \
      -e "s|^embedding = { optimizer = \"adagrad\", lr = 0.05 }|embedding = { optimizer = \"adagrad\", lr = 0.05, max_rows = $cap, evict_every = 50 }|" \
      "$base" > "$work/data/$1.toml"
  grep -q "max_rows = $cap" "$work/data/$1.toml"
}
auc() { python3 -c "
import json,sys
m=json.load(open(sys.argv[1]+'/metrics.json'))
a=[r['value'] for r in m if r['cell']=='all' and r['metric']=='auc']
print(f'{sum(a)/len(a):.4f}')" "$1"; }
maxrows() { "$mfh" inspect --model-dir "$1" | awk '/^embedding tables:/{t=1;next} t&&/total:/{t=0} t{if($3>m)m=$3} END{print m}'; }
# The prepared slice holds 2022-04-28 … 2022-05-06.
days=(20220428 20220429 20220430 20220501 20220502 20220503 20220504 20220505 20220506)
day_cfg d0 "${days[0]}" "${days[1]}"
"$mfh" train --config "$work/data/d0.toml" --model mmoe --out "$work/warm0" --quiet > /dev/null 2>&1
echo "| train day | judged on | warm AUC | cold AUC | warm − cold | largest table (rows, cap $cap) |"
echo "|---|---|---|---|---|---|"
for i in $(seq 1 7); do
  day_cfg "d$i" "${days[$i]}" "${days[$((i+1))]}"
  "$mfh" train --config "$work/data/d$i.toml" --model mmoe --out "$work/warm$i" --init-from "$work/warm$((i-1))" --quiet > /dev/null 2>&1
  "$mfh" train --config "$work/data/d$i.toml" --model mmoe --out "$work/cold$i" --quiet > /dev/null 2>&1
  w=$(auc "$work/warm$i"); c=$(auc "$work/cold$i")
  echo "| ${days[$i]} | ${days[$((i+1))]} | $w | $c | $(python3 -c "print(f'{$w-$c:+.4f}')") | $(maxrows "$work/warm$i") |"
done
