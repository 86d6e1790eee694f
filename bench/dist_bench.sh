#!/usr/bin/env bash
# Distributed training on loopback (issue 9): MMoE on the bundled KuaiRand slice, global
# batch 1024, 100 steps, 1 thread per rank; one process, the distributed loop on one
# rank, two ranks reading striped and reading whole batches; then the collectives alone and the cost model (docs/distributed.md).
# Needs OpenMPI and a build with the mpi feature:
#   cargo build --profile fastrel -p mfh --features mpi
#   cargo build --profile fastrel -p mfh-distributed --features mpi --example collectives
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MFH_BIN:-target/fastrel/mfh}
COLL=${COLL_BIN:-target/fastrel/examples/collectives}
W=${1:-target/dist-bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$W"
[ -f "$W/kr/kuairand.toml" ] || "$BIN" prepare kuairand --raw data/kuairand-pure --out "$W/kr" >/dev/null
sed -e 's/^epochs = 4/epochs = 1\nmax_steps = 100\nthreads = 1/' -e 's/^eval_every = 125/eval_every = 0/' \
    -e 's/^batch_size = 512/batch_size = 1024/' "$W/kr/kuairand.toml" > "$W/kr/bench.toml"
uptime
"$BIN" train --config "$W/kr/bench.toml" --model mmoe --out "$W/np1" --quiet 2>/dev/null | tail -1
MFH_DIST=1 mpirun -np 1 -x MFH_DIST "$BIN" train --config "$W/kr/bench.toml" --model mmoe --out "$W/d1" --quiet 2>&1 | grep '^distributed:'
# Two ranks reading striped (each decodes its half of every batch), then as before
# striping (each decodes the whole batch and keeps its half).
mpirun -np 2 --oversubscribe "$BIN" train --config "$W/kr/bench.toml" --model mmoe --out "$W/d2" --quiet 2>&1 | grep '^distributed:'
MFH_DIST_READ=whole mpirun -np 2 --oversubscribe -x MFH_DIST_READ "$BIN" train --config "$W/kr/bench.toml" --model mmoe --out "$W/d2whole" --quiet 2>&1 | grep '^distributed:'
mpirun -np 2 --oversubscribe "$COLL" 453341 112000 300
uptime
python3 bench/dist_cost_model.py "$W/d1/distributed.json" "$W/d2/distributed.json" 16 10e9
