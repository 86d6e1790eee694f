#!/usr/bin/env bash
# `mpirun -np 2` on the scale run's data (issue 25): the hourly partitions that
# bench/follow_scale.sh wrote for SIZE rows (its WORK folder), MMoE for one epoch, three
# ways per round:
#   one    one process, 2 threads (what follow_scale.sh's disk way runs);
#   dist1  the distributed loop on one rank, 1 thread (MFH_DIST=1): its distributed.json
#          gives the per-row reading and compute costs of the cost model;
#   np2    two ranks, 1 thread each (`mpirun -np 2 --oversubscribe`), reading striped.
# Prints each run's wall time, set-up and statistics pass (rank 0's training line),
# samples/s and peak RSS per process; then np2 / one per round (median, min–max) and the
# projection to 16 nodes (bench/dist_cost_model.py) with the measured statistics pass and
# the stored bytes per row.
#
#   WORK=/tmp/fs bench/follow_scale.sh            (writes WORK/SIZE/files.run.toml)
#   WORK=/tmp/fs bench/dist_scale.sh [SIZE] [ROUNDS]    (defaults 20000000, 1)
#
# Needs OpenMPI and a build with the mpi feature (MFH_BIN overrides):
#   cargo build --profile fastrel -p mfh --features mpi
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MFH_BIN:-target/fastrel/mfh}
SIZE=${1:-20000000}
ROUNDS=${2:-1}
[ -n "${WORK:-}" ] || { echo "error: set WORK to bench/follow_scale.sh's folder" >&2; exit 1; }
D="$WORK/$SIZE"
CONFIG="$D/files.run.toml"
[ -f "$CONFIG" ] || { echo "error: $CONFIG is missing: run WORK=$WORK SIZES=\"... $SIZE\" bench/follow_scale.sh first" >&2; exit 1; }
[ -x "$BIN" ] || { echo "error: $BIN is missing; build it with: cargo build --profile fastrel -p mfh --features mpi" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT="$WORK/dist-$SIZE"
mkdir -p "$OUT"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $SIZE rows ($CONFIG); $ROUNDS rounds; $(uptime | sed 's/.*load/load/')"
declare -A samples fit
for r in $(seq "$ROUNDS"); do
  for m in one dist1 np2; do
    o="$OUT/$m.$r"
    rm -rf "$o"
    case $m in
      one) cmd=("$BIN" train --threads 2) ;;
      dist1) cmd=(mpirun -np 1 -x MFH_DIST=1 "$BIN" train --threads 1) ;;
      np2) cmd=(mpirun -np 2 --oversubscribe "$BIN" train --threads 1) ;;
    esac
    /usr/bin/time -f "%e %M" -o "$o.time" "${cmd[@]}" --config "$CONFIG" --model mmoe --out "$o" --seed 1 --quiet >"$o.out" 2>"$o.err" \
      || { echo "error: $m failed:" >&2; tail -5 "$o.err" >&2; exit 1; }
    setup=$(grep -ho 'set up in [0-9.]* s (statistics pass [0-9.]* s)' "$o.err" "$o.out" | head -1)
    rate=$(grep -ho '[0-9]* samples/s' "$o.out" "$o.err" | head -1)
    [ -n "$setup" ] && [ -n "$rate" ] || { echo "error: no training line in $o.err / $o.out" >&2; exit 1; }
    echo "$m round $r: wall $(cut -d' ' -f1 "$o.time") s; $setup; $rate; peak RSS $(( $(cut -d' ' -f2 "$o.time") / 1024 )) MiB per process"
    samples[$m.$r]=${rate%% *}
    fit[$m.$r]=$(sed 's/.*statistics pass \([0-9.]*\) s.*/\1/' <<<"$setup")
  done
done
ratios=""
for r in $(seq "$ROUNDS"); do ratios="$ratios $(python3 -c "print(${samples[np2.$r]} / ${samples[one.$r]})")"; done
python3 - $ratios <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[1:])
print(f"np2 / one (samples/s): median {statistics.median(r):.3f} (min {r[0]:.3f}, max {r[-1]:.3f}, {len(r)} rounds)")
PY
# The projection from the last round's runs; the stored bytes per row of the partitions.
bytes=$(du -sb "$D/logs" | cut -f1)
echo "stored: $bytes bytes of gzip CSV for $SIZE rows"
python3 bench/dist_cost_model.py "$OUT/dist1.$ROUNDS/distributed.json" "$OUT/np2.$ROUNDS/distributed.json" 16 10e9 \
  --fit-s "${fit[dist1.$ROUNDS]}" --bytes-per-row "$(python3 -c "print($bytes / $SIZE)")"
