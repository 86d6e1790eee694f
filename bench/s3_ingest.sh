#!/usr/bin/env bash
# Reading from S3 against reading the same file from disk (issue 25): the raw KuaiRand log
# as gzip CSV and as snappy Parquet, `mfh bench ingest` (one reader thread: read, filter,
# hash, transform into batches) on the local file and on the same bytes in a local S3
# server (moto's server mode, started here on loopback), ROUNDS interleaved rounds: each
# round runs local, S3, S3, local (three timed passes each, after a warm-up) for each
# format. Prints each round's rates (the geometric mean of its two runs per place) and the
# S3 / local ratio, then per format the median and min–max ratio.
#
#   bench/s3_ingest.sh [ROUNDS]      (default 3)
#
# From a fresh clone it makes bench/.venv with pyarrow, moto[server] and boto3, and builds
# a release mfh with --features parquet,s3. Overrides:
#   MFH_BIN=/path/to/mfh   a binary built with --features parquet,s3
#   PYTHON=/path/to/python an interpreter with pyarrow, moto[server] and boto3
# Needs the bundled log: data/kuairand-pure/log_standard_pure_20220425_20220506.csv.gz.
# moto is a Python server: the S3 figures include its cost of serving the bytes, which a
# real store does elsewhere; they bound what streaming costs mfh from below, not above.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
rounds="${1:-3}"
if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
else
  [ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
  "$here/.venv/bin/python" -c "import pyarrow, moto, boto3" 2>/dev/null \
    || "$here/.venv/bin/pip" install -q pyarrow "moto[server]>=5" boto3
  py="$here/.venv/bin/python"
fi
if [ -z "${MFH_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p mfh --features parquet,s3)
fi
mfh="${MFH_BIN:-$root/target/release/mfh}"
[ -f "$root/target/kuairand-log.parquet" ] || "$py" "$here/make_parquet.py"
log="$root/data/kuairand-pure/log_standard_pure_20220425_20220506.csv.gz"
work=$(mktemp -d)
trap 'kill ${moto:-} 2>/dev/null; rm -rf "$work"' EXIT
. "$here/moto.sh"
start_moto "$py" "$work/moto.log"
"$py" - "$port" "$log" "$root/target/kuairand-log.parquet" <<'PY'
import sys
import boto3
port, csv, pq = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
s3.create_bucket(Bucket="bench")
s3.upload_file(csv, "bench", "log/log.csv.gz")
s3.upload_file(pq, "bench", "log/log.parquet")
PY
# The bench configs with their source on disk (as given, made absolute) and in the bucket.
for f in kuairand-log kuairand-log-parquet; do
  src=$(sed -n 's/^sources = \["\(.*\)"\]$/\1/p' "$here/$f.toml")
  [ -n "$src" ] || { echo "error: no one-file sources line in $here/$f.toml" >&2; exit 1; }
  sed "s|^sources = .*|sources = [\"$here/$src\"]|" "$here/$f.toml" >"$work/$f-local.toml"
done
sed 's|^sources = .*|sources = ["s3://bench/log/log.csv.gz"]|' "$here/kuairand-log.toml" >"$work/kuairand-log-s3.toml"
sed 's|^sources = .*|sources = ["s3://bench/log/log.parquet"]|' "$here/kuairand-log-parquet.toml" >"$work/kuairand-log-parquet-s3.toml"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $("$mfh" bench sgemm --n 8 --repeats 1 | grep -m1 '^# kernel path')"
rate() {
  local out
  out=$("$mfh" bench ingest --config "$work/$1.toml" --repeats 3 2>"$work/err" | sed -n 's/.*median \([0-9]*\) rows\/s.*/\1/p')
  [ -n "$out" ] || { echo "error: mfh bench ingest --config $1 printed no median:" >&2; cat "$work/err" >&2; exit 1; }
  echo "$out"
}
declare -A ratios
for r in $(seq "$rounds"); do
  for f in kuairand-log kuairand-log-parquet; do
    l1=$(rate "$f-local"); s1=$(rate "$f-s3"); s2=$(rate "$f-s3"); l2=$(rate "$f-local")
    local_rate=$(python3 -c "print(round(($l1 * $l2) ** 0.5))")
    s3_rate=$(python3 -c "print(round(($s1 * $s2) ** 0.5))")
    ratio=$(python3 -c "print(f'{$s3_rate / $local_rate:.3f}')")
    ratios[$f]="${ratios[$f]:-} $ratio"
    echo "round $r, $f: local $local_rate rows/s, S3 $s3_rate rows/s, S3 / local $ratio"
  done
done
for f in kuairand-log kuairand-log-parquet; do
  python3 - "$f" ${ratios[$f]} <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[2:])
print(f"{sys.argv[1]}: S3 / local median {statistics.median(r):.3f} (min {r[0]:.3f}, max {r[-1]:.3f}, {len(r)} rounds)")
PY
done
