#!/usr/bin/env bash
# Parquet against gzip CSV ingest (issue 24): the raw KuaiRand log in both formats, the
# same config and one reader thread (`mfh bench ingest`: read, filter, hash, transform
# into batches), ROUNDS interleaved rounds so that both formats see the same machine state:
# each round runs CSV, Parquet, Parquet, CSV (three timed passes each, after a warm-up), so
# that a drift of the machine's speed within a round weighs on both formats alike. Prints
# each round's rates (the geometric mean of its two runs per format) and their ratio, then
# the median and min–max ratio.
#
#   bench/parquet_ingest.sh [ROUNDS]      (default 5)
#
# From a fresh clone it makes bench/.venv with pyarrow (for bench/make_parquet.py) and
# builds a release mfh with --features parquet. Overrides:
#   MFH_BIN=/path/to/mfh   a binary built with --features parquet
#   PYTHON=/path/to/python an interpreter with pyarrow
# Needs the bundled log: data/kuairand-pure/log_standard_pure_20220425_20220506.csv.gz.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
rounds="${1:-5}"
if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
else
  [ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
  "$here/.venv/bin/python" -c "import pyarrow" 2>/dev/null || "$here/.venv/bin/pip" install -q pyarrow
  py="$here/.venv/bin/python"
fi
if [ -z "${MFH_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p mfh --features parquet)
fi
mfh="${MFH_BIN:-$root/target/release/mfh}"
[ -f "$root/target/kuairand-log.parquet" ] || "$py" "$here/make_parquet.py"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $("$mfh" bench sgemm --n 8 --repeats 1 | grep -m1 '^# kernel path')"
ratios=()
for r in $(seq "$rounds"); do
  rate() {
    local out
    out=$("$mfh" bench ingest --config "$here/$1.toml" --repeats 3 2>/dev/null | sed -n 's/.*median \([0-9]*\) rows\/s.*/\1/p')
    [ -n "$out" ] || { echo "error: mfh bench ingest --config $here/$1.toml printed no median" >&2; exit 1; }
    echo "$out"
  }
  c1=$(rate kuairand-log)
  p1=$(rate kuairand-log-parquet)
  p2=$(rate kuairand-log-parquet)
  c2=$(rate kuairand-log)
  csv=$(python3 -c "print(round(($c1 * $c2) ** 0.5))")
  pq=$(python3 -c "print(round(($p1 * $p2) ** 0.5))")
  ratio=$(python3 -c "print(f'{$pq / $csv:.3f}')")
  ratios+=("$ratio")
  echo "round $r: gzip CSV $csv rows/s, Parquet $pq rows/s, Parquet / CSV $ratio"
done
python3 - "${ratios[@]}" <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[1:])
print(f"Parquet / gzip CSV: median {statistics.median(r):.3f} (min {r[0]:.3f}, max {r[-1]:.3f}, {len(r)} rounds)")
PY
