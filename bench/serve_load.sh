#!/usr/bin/env bash
# Serving load figures (issues 7 and 20): prepares the bundled KuaiRand slice, trains the
# MFH model (unless WORK/mfh exists), then `mfh bench infer` (compute per batch of
# CANDIDATES rows) and crates/serve/examples/loadgen.rs against it: 1 user × CANDIDATES
# candidates over loopback :regress (1, 2 and 4 clients, SECONDS each, then 1 and 4 again
# for the ratio), the in-process decode / forward time of the same rows, 64 concurrent
# 16 MiB requests (answers, peak RSS against the stated bound, /v2/health/live latency
# meanwhile) and 10,000 malformed requests; then 10,000 malformed gRPC requests with
# Triton's client (bench/grpc_storm.py, in a venv made here).
#   bench/serve_load.sh [WORK=target/serve-bench] [CANDIDATES=500] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/serve-bench}
n=${2:-500}
secs=${3:-10}
cargo build --profile fastrel -p mfh -p mfh-serve --features mfh/serve,mfh/grpc --bins --examples
mfh=target/fastrel/mfh
if [ ! -f "$work/mfh/model.json" ]; then
  "$mfh" prepare kuairand --raw data/kuairand-pure --out "$work/data"
  "$mfh" train --config "$work/data/kuairand.toml" --model mfh --out "$work/mfh" --quiet
fi
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The compute the latency is compared with: the forward of a batch of N rows in-process.
"$mfh" bench infer --model-dir "$work/mfh" --config "$work/data/kuairand.toml" --batch "$n"
target/fastrel/examples/loadgen "$work/mfh" "$n" "$secs"
venv=$work/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tritonclient[grpc]>=2.40" numpy
fi
"$venv/bin/python" bench/grpc_storm.py "$mfh" "$work/mfh" 10000
