#!/usr/bin/env bash
# Serving load figures (issues 7, 20 and 21): prepares the bundled KuaiRand slice, trains
# MFH and MMoE (unless WORK/mfh, WORK/mmoe exist), then `mfh bench infer` (compute per
# batch of CANDIDATES rows; with --one-user, one user's request scored as served, with
# factoring only and row by row, for both models; loadgen's in-process decode + score of
# the same three ways for MMoE) and crates/serve/examples/loadgen.rs against MFH: 1 user × CANDIDATES
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
if [ ! -f "$work/mmoe/model.json" ]; then
  "$mfh" train --config "$work/data/kuairand.toml" --model mmoe --out "$work/mmoe" --quiet
fi
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The compute the latency is compared with: the forward of a batch of N rows in-process.
"$mfh" bench infer --model-dir "$work/mfh" --config "$work/data/kuairand.toml" --batch "$n"
for m in mmoe mfh; do
  "$mfh" bench infer --model-dir "$work/$m" --config "$work/data/kuairand.toml" --batch "$n" \
    --one-user video_id --threads 1
done
target/fastrel/examples/loadgen "$work/mmoe" "$n" 0
target/fastrel/examples/loadgen "$work/mfh" "$n" "$secs"
venv=$work/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tritonclient[grpc]>=2.40" numpy
fi
"$venv/bin/python" bench/grpc_storm.py "$mfh" "$work/mfh" 10000
