#!/usr/bin/env bash
# MMoE-ref training and inference throughput, mfh against PyTorch peers on the same
# generated batches (one file both read), alternating in one run on this machine. Installs torch into bench/.venv on demand (a large download). Not part of CI.
#   bench/compare.sh [ROUNDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/pip" install -q torch numpy
(cd "$root" && cargo build --release -q -p mfh)
rounds="${1:-2}"
data="$root/target/mmoe_ref.bin"
"$root/target/release/mfh" bench gen --out "$data" > /dev/null
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  "$root/target/release/mfh" bench train --threads 2 --data "$data" | grep -E "training|inference|MMoE-ref:"
  "$venv/bin/python" "$here/peers/torch_mmoe_ref.py" --data "$data" --variant sparse --threads 2
  "$venv/bin/python" "$here/peers/torch_mmoe_ref.py" --data "$data" --variant dense --threads 2
done
