#!/usr/bin/env bash
# Training from partitioned files on disk and from S3 against training from the same rows
# held in memory (issue 25, the scale run): a generated log (`mfh prepare synthetic`, a
# fixed ID vocabulary of USERS users and ITEMS items at every size) cut into PARTS hourly
# partitions (`logs/hour=H/part-0.csv.gz`), MMoE for one epoch, three ways:
#   memory  the Python package's `mfh.train(data={"train": …, "valid": …})` on pandas
#           frames read beforehand (the call alone is timed);
#   disk    `mfh train` over the partition glob;
#   s3      `mfh train` over the same objects in a local S3 server on loopback: moto
#           (Python), or with S3_SERVER=s3s-fs the s3s-fs crate's server (Rust, serving a
#           folder; installed into target/s3s by `cargo install` when missing).
# Each round runs memory, disk, s3, s3, disk, memory; the figure per way is rows trained
# (the train split) per second of the whole training call (statistics pass, the epoch,
# the final evaluation), the geometric mean of the round's two runs. Also the peak RSS of
# `mfh train` (disk and S3) at each size, from /usr/bin/time.
#
# The valid split (scored at the end of the epoch) is the generator's `part == 1` rows of
# the first hours only, as many hours as keep it near a tenth of the first size's rows
# (all hours at the first size; 5 of 48 at ten times it), so that every size evaluates
# about the same number of rows: exact AUC and GAUC keep every scored row (20 bytes per
# row and behaviour), which is the evaluation's memory, not the stream's. EVAL=share keeps
# the generator's split (a tenth of every size's rows) instead.
#
#   bench/follow_scale.sh                 (SIZES="2000000 20000000", ROUNDS=2)
#
# Overrides: SIZES (row counts, the first is the RSS reference), ROUNDS, EVAL, PARTS (48),
# USERS (100000), ITEMS (20000), MFH_BIN (built with --features parquet,s3), PYENV (a venv
# with the mfh package, moto[server], boto3 and pandas; default target/pyenv, made and
# filled from python/ as python/run_tests.sh does), S3_SERVER (moto or s3s-fs). The S3
# server runs on the same two cores: the s3 way includes its cost of serving the bytes
# (moto's Python costs more of them than s3s-fs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
sizes="${SIZES:-2000000 20000000}"
rounds="${ROUNDS:-2}"
parts="${PARTS:-48}"
users="${USERS:-100000}"
items="${ITEMS:-20000}"
venv="${PYENV:-$root/target/pyenv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/python" -c "import mfh, moto, boto3, pandas" 2>/dev/null \
  || "$venv/bin/pip" install -q "$root/python[test]"
py="$venv/bin/python"
if [ -z "${MFH_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p mfh --features parquet,s3)
fi
mfh="${MFH_BIN:-$root/target/release/mfh}"
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2; exit 1; }
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
server="${S3_SERVER:-moto}"
trap 'kill ${moto:-} ${s3s:-} 2>/dev/null || true' EXIT
case "$server" in
  moto)
    . "$here/moto.sh"
    start_moto "$py" "$work/moto.log"
    ;;
  s3s-fs)
    s3s_bin="${S3S_FS:-$root/target/s3s/bin/s3s-fs}"
    [ -x "$s3s_bin" ] || cargo install -q s3s-fs@0.14.1 --locked --features binary --root "$root/target/s3s"
    mkdir -p "$work/s3root/bench"
    port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$s3s_bin" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench "$work/s3root" >"$work/s3s.log" 2>&1 &
    s3s=$!
    for try in $(seq 101); do
      "$py" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
      [ "$try" -le 100 ] || { echo "error: s3s-fs did not answer on port $port (see $work/s3s.log)" >&2; exit 1; }
      sleep 0.1
    done
    export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
      AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
    ;;
  *) echo "error: S3_SERVER is moto or s3s-fs, not $server" >&2; exit 1 ;;
esac
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $("$mfh" bench sgemm --n 8 --repeats 1 | grep -m1 '^# kernel path')"
echo "# sizes $sizes; $parts partitions; $users users, $items items; $rounds rounds; S3 server $server; work in $work"

for n in $sizes; do
  d="$work/$n"
  if [ ! -f "$d/files.toml" ]; then
    "$mfh" prepare synthetic --rows "$n" --users "$users" --items "$items" --out "$d" >/dev/null
    # The log cut into hourly partitions, rows in order, and the configs for disk and S3.
    "$py" - "$d" "$parts" "$n" <<'PY'
import gzip, sys, re
from pathlib import Path
d, parts, n = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with gzip.open(d / "log.csv.gz", "rt") as f:
    header = f.readline()
    lines = f.readlines()
per = -(-len(lines) // parts)
for h in range(parts):
    p = d / "logs" / f"hour={h:04d}" / "part-0.csv.gz"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(gzip.compress((header + "".join(lines[h * per:(h + 1) * per])).encode(), 1))
text = (d / "synthetic.toml").read_text()
text = text.replace('sources = ["log.csv.gz"]',
                    'sources = ["logs/hour=*/part-0.csv.gz"]\npartitions = { hour = "int" }')
text = re.sub(r"epochs = \d+\n", "epochs = 1\n", text)
(d / "files.toml").write_text(text)
text = text.replace('"logs/hour=', f'"s3://bench/{n}/logs/hour=')
for t in ("users.csv.gz", "items.csv.gz"):
    text = text.replace(f'path = "{t}"', f'path = "s3://bench/{n}/{t}"')
(d / "s3.toml").write_text(text)
(d / "log.csv.gz").unlink()
PY
  fi
  # The objects, uploaded to this run's server (moto keeps them in memory only, so a WORK
  # folder from an earlier run is uploaded again; s3s-fs serves bucket `bench` from the
  # folder s3root/bench, where they are linked).
  if [ "$server" = s3s-fs ]; then
    (cd "$d" && for p in logs/hour=*/part-0.csv.gz users.csv.gz items.csv.gz; do
      mkdir -p "$work/s3root/bench/$n/$(dirname "$p")"
      ln -f "$p" "$work/s3root/bench/$n/$p"
    done)
    continue
  fi
  "$py" - "$d" "$port" "$n" <<'PY'
import sys
from pathlib import Path
import boto3
d, port, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
try:
    s3.create_bucket(Bucket="bench")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
for p in sorted(d.glob("logs/hour=*/part-0.csv.gz")) + [d / "users.csv.gz", d / "items.csv.gz"]:
    s3.upload_file(str(p), "bench", f"{n}/{p.relative_to(d).as_posix()}")
PY
done

# One run: prints "ROWS SECONDS PEAK_KIB".
train_rows() { sed -n 's/.* on \([0-9]*\) rows × .*/\1/p' "$1" | head -1; }
# Rows scored in the valid split (the pooled click AUC record of the model's metrics).
valid_rows() {
  python3 -c 'import json, sys; print(next(r["n"] for r in json.load(open(sys.argv[1])) if r["cell"] == "all" and r["metric"] == "auc"))' "$1/metrics.json"
}
run_cli() {  # config out
  rm -rf "$2"
  /usr/bin/time -f "%e %M" -o "$2.time" "$mfh" train --config "$1" --model mmoe --out "$2" --seed 1 --threads 2 2>"$2.err" >/dev/null \
    || { echo "error: mfh train --config $1 failed:" >&2; tail -5 "$2.err" >&2; exit 1; }
  echo "$(train_rows "$2.err") $(cat "$2.time")"
}
run_memory() {  # dir out hours
  rm -rf "$2"
  "$py" - "$1" "$2" "$3" <<'PY'
import sys, time
from pathlib import Path
import pandas as pd
import mfh
d, out, hours = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
frames = []
for p in sorted(d.glob("logs/hour=*/part-0.csv.gz")):
    f = pd.read_csv(p)
    f["hour"] = int(p.parent.name.split("=")[1])
    frames.append(f)
log = pd.concat(frames, ignore_index=True)
data = {"train": log[log.part == 0], "valid": log[(log.part == 1) & (log.hour < hours)]}
cfg = mfh.Config(d / "files.run.toml")
t = time.perf_counter()
mfh.train(cfg, model="mmoe", out=out, seed=1, threads=2, progress=False, data=data)
print(len(data["train"]), f"{time.perf_counter() - t:.2f}", 0)
PY
}
n0=${sizes%% *}
declare -A rss rss_s3
for n in $sizes; do
  d="$work/$n"
  # The valid split: the first `hours` hours of `part == 1` (module comment).
  hours=$(( (parts * n0 + n - 1) / n ))
  [ "${EVAL:-fixed}" = share ] && hours=$parts
  for c in files s3; do
    sed "s/^valid = { where = \"part == 1\" }/valid = { where = \"part == 1 and hour < $hours\" }/" "$d/$c.toml" >"$d/$c.run.toml"
    grep -q "hour < $hours" "$d/$c.run.toml" || { echo "error: no valid split line to restrict in $d/$c.toml" >&2; exit 1; }
  done
  declare -A acc=()
  for r in $(seq "$rounds"); do
    # Each run's raw figures as it ends (rows, seconds, peak KiB), so a cut-short run
    # still leaves them.
    say() { echo "  $n rows, round $r, $1: $2" >&2; }
    m1=$(run_memory "$d" "$work/m" "$hours"); say memory "$m1"
    l1=$(run_cli "$d/files.run.toml" "$work/l"); say disk "$l1"
    s1=$(run_cli "$d/s3.run.toml" "$work/s"); say S3 "$s1"
    s2=$(run_cli "$d/s3.run.toml" "$work/s"); say S3 "$s2"
    l2=$(run_cli "$d/files.run.toml" "$work/l"); say disk "$l2"
    m2=$(run_memory "$d" "$work/m" "$hours"); say memory "$m2"
    line=$(python3 - "$m1" "$m2" "$l1" "$l2" "$s1" "$s2" <<'PY'
import sys
runs = [list(map(float, a.split())) for a in sys.argv[1:]]
rate = lambda a, b: ((a[0] / a[1]) * (b[0] / b[1])) ** 0.5
m, l, s = rate(*runs[0:2]), rate(*runs[2:4]), rate(*runs[4:6])
peak = max(runs[2][2], runs[3][2]) / 1024
peak_s3 = max(runs[4][2], runs[5][2]) / 1024
print(f"{int(runs[2][0])} {m:.0f} {l:.0f} {s:.0f} {l / m:.3f} {s / m:.3f} {peak:.0f} {peak_s3:.0f}")
PY
)
    read -r rows m l s lr sr peak peak_s3 <<<"$line"
    echo "$n rows, round $r: train split $rows rows, valid split $(valid_rows "$work/l") rows (hours < $hours); rows/s memory $m, disk $l, S3 $s; disk / memory $lr, S3 / memory $sr; peak RSS disk $peak MiB, S3 $peak_s3 MiB"
    acc[disk]="${acc[disk]:-} $lr"; acc[s3]="${acc[s3]:-} $sr"
    rss[$n]=$(python3 -c "print(max(${rss[$n]:-0}, $peak))")
    rss_s3[$n]=$(python3 -c "print(max(${rss_s3[$n]:-0}, $peak_s3))")
  done
  for w in disk s3; do
    python3 - "$n" "$w" ${acc[$w]} <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[3:])
print(f"{sys.argv[1]} rows: {sys.argv[2]} / memory median {statistics.median(r):.3f} (min {r[0]:.3f}, max {r[-1]:.3f}, {len(r)} rounds)")
PY
  done
  unset acc
done
for n in $sizes; do
  echo "peak RSS of mfh train, $n rows: disk ${rss[$n]} MiB ($(python3 -c "print(f'{${rss[$n]} / ${rss[$n0]}:.3f}')") × the $n0-row run's), S3 ${rss_s3[$n]} MiB ($(python3 -c "print(f'{${rss_s3[$n]} / ${rss_s3[$n0]}:.3f}')") ×)"
done
