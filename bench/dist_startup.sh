#!/usr/bin/env bash
# Start-up of a distributed run (issue 24): the statistics pass over the train split at
# `mpirun -np 2`, each rank fitting its stripes and the ranks merging them, against every
# rank fitting the whole split (`MFH_DIST_FIT=whole`, the behaviour before striping), and
# one process. MMoE on a generated log (`mfh prepare synthetic`, ROWS rows), one step,
# one thread per rank; ROUNDS interleaved rounds. Prints rank 0's "set up in … s
# (statistics pass … s)" per run, then medians and min–max per mode.
#
#   bench/dist_startup.sh [ROWS] [ROUNDS] [FILES]     (defaults 1000000, 5, 1)
#
# FILES > 1 writes the log as that many hive-style partitions (`parts/hour=HH/`, gzip
# CSV) read through a glob: the statistics pass then stripes by file, so each rank
# opens only its own files (with one file every rank reads every row and decodes its
# share).
#
# Needs OpenMPI and a build with the mpi feature (MFH_BIN overrides):
#   cargo build --profile fastrel -p mfh --features mpi
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MFH_BIN:-target/fastrel/mfh}
ROWS=${1:-1000000}
ROUNDS=${2:-5}
FILES=${3:-1}
W=target/dist-startup/$ROWS
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x "$BIN" ] || { echo "error: $BIN is missing; build it with: cargo build --profile fastrel -p mfh --features mpi" >&2; exit 1; }
if [ ! -f "$W/synthetic.toml" ]; then
  mkdir -p "$W"
  "$BIN" prepare synthetic --rows "$ROWS" --out "$W" >/dev/null 2>&1
fi
sed -e 's/^epochs = 4/epochs = 1\nmax_steps = 1\neval_every = 0\nthreads = 1/' "$W/synthetic.toml" > "$W/startup.toml"
if [ "$FILES" -gt 1 ]; then
  if [ ! -d "$W/parts$FILES" ]; then
    python3 - "$W" "$FILES" <<'PY'
import gzip, os, sys
w, n = sys.argv[1], int(sys.argv[2])
with gzip.open(f"{w}/log.csv.gz", "rt") as f:
    header = f.readline()
    rows = f.readlines()
for k in range(n):
    d = f"{w}/parts{n}/hour={k:02d}"
    os.makedirs(d, exist_ok=True)
    with gzip.open(f"{d}/part-0.csv.gz", "wt", compresslevel=6) as out:
        out.write(header)
        out.writelines(rows[k * len(rows) // n:(k + 1) * len(rows) // n])
PY
  fi
  sed -i "s|^sources = .*|sources = [\"parts$FILES/hour=*/part-*.csv.gz\"]\npartitions = { hour = \"int\" }|" "$W/startup.toml"
fi
echo "# $(grep 'model name' /proc/cpuinfo | head -1 | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $ROWS rows in $FILES file(s); $(uptime | sed 's/.*load/load/')"
log=$(mktemp)
run() { # MODE: one | striped | whole
  local mode=$1 out line
  case $mode in
    one) out=$("$BIN" train --config "$W/startup.toml" --model mmoe --out "$W/out-$mode" --quiet 2>&1) ;;
    striped) out=$(mpirun -np 2 --oversubscribe "$BIN" train --config "$W/startup.toml" --model mmoe --out "$W/out-$mode" --quiet 2>&1) ;;
    whole) out=$(MFH_DIST_FIT=whole mpirun -np 2 --oversubscribe -x MFH_DIST_FIT "$BIN" train --config "$W/startup.toml" --model mmoe --out "$W/out-$mode" --quiet 2>&1) ;;
  esac
  line=$(grep '^training' <<<"$out" | head -1)
  local s=$(sed -n 's/.*set up in \([0-9.]*\) s (statistics pass \([0-9.]*\) s).*/\1 \2/p' <<<"$line")
  [ -n "$s" ] || { echo "error: no set-up time in: $line" >&2; exit 1; }
  echo "$mode $s" | tee -a "$log"
}
for r in $(seq "$ROUNDS"); do
  run one; run whole; run striped
done
python3 - "$log" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for mode in ["one", "whole", "striped"]:
    setup = sorted(float(r[1]) for r in rows if r[0] == mode)
    stats = sorted(float(r[2]) for r in rows if r[0] == mode)
    print(f"{mode:8s} set-up median {statistics.median(setup):.2f} s (min {setup[0]:.2f}, max {setup[-1]:.2f}); "
          f"statistics pass median {statistics.median(stats):.2f} s (min {stats[0]:.2f}, max {stats[-1]:.2f}), {len(setup)} runs")
med = lambda m, i: statistics.median(float(r[i]) for r in rows if r[0] == m)
print(f"statistics pass, whole / striped at 2 ranks: {med('whole', 2) / med('striped', 2):.2f}x; "
      f"set-up: {med('whole', 1) / med('striped', 1):.2f}x")
PY
rm -f "$log"
