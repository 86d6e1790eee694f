#!/usr/bin/env bash
# mfh against PyTorch peers on the same generated batches (one file per workload, read by
# both sides), alternating in one run on this machine; then sgemm, memory and ingest.
# Not part of CI.
#   bench/compare.sh [ROUNDS]      (prints the log, then the ratios mfh / peer)
#   DUEL_ROUNDS=N                  rounds of the back-to-back scoring duel (default 6)
#   THREADS=N                      threads on both sides (default 2)
#   MFH_KERNEL=avx512|avx2|portable  force mfh's kernel path (default: the CPU's best)
#   SCALING=1,2,4,8,16             instead of the above: MMoE-ref and MFH-ref on mfh and the
#                                  PyTorch peers (sparse, MFH) at each thread count, then
#                                  mfh's scaling tables and the ratios per count
#   BF16=1                         instead of the above: bf16 against f32 (issue 26), ROUNDS
#                                  rounds at THREADS threads, each MMoE-ref training and
#                                  scoring on mfh f32, mfh bf16 (the CPU's best path), mfh
#                                  bf16 on avx512bf16 where the CPU has it, PyTorch sparse
#                                  f32 and PyTorch sparse under bf16 autocast; then the
#                                  per-round ratios' medians and ranges
# From a fresh clone it makes bench/.venv and installs torch, numpy and pyarrow from PyPI
# (a large download). Offline, give it what it would install:
#   PYTHON=/path/to/python         an interpreter with torch and numpy (pyarrow optional:
#                                  without it the Parquet ingest line is skipped, and said so)
#   MFH_BIN=/path/to/mfh           a release binary built with --features parquet
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
  "$py" -c "import torch, numpy" || { echo "error: PYTHON=$py cannot import torch and numpy" >&2; exit 1; }
else
  venv="$here/.venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import torch, numpy, pyarrow" 2>/dev/null ||
    "$venv/bin/pip" install -q torch numpy pyarrow
  py="$venv/bin/python"
fi
# MFH_BIN=path uses an already built release binary (it must have the parquet feature).
if [ -z "${MFH_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p mfh --features parquet)
fi
mfh="${MFH_BIN:-$root/target/release/mfh}"
for w in mmoe-ref mfh-ref mfh-ref-2x2; do
  "$mfh" bench gen --workload "$w" --out "$root/target/$w.bin" > /dev/null
done
# MFH-ref is slow on the PyTorch side: fewer, shorter windows.
mfh_win=(--windows 5 --steps-per-window 5)
peer_win=(--windows 5 --steps 5)
flags() {
  local have=() f
  for f in avx2 fma avx512f avx512bw avx512vl avx512_bf16 amx_bf16 amx_tile; do
    if grep -m1 '^flags' /proc/cpuinfo | grep -qw "$f"; then have+=("$f"); else have+=("no-$f"); fi
  done
  echo "${have[*]}"
}
# The machine, the CPU flags that matter, mfh's binary and kernel choice, PyTorch.
header() {
  echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $1"
  echo "# CPU flags: $(flags)"
  echo "# mfh: $("$mfh" --version 2>/dev/null || echo "$mfh"), MFH_KERNEL=${MFH_KERNEL:-auto}"
  "$py" -c "import torch; print(f'# torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}')"
}
if [ -n "${SCALING:-}" ]; then
  log="$root/target/scaling.log"
  {
  header "thread counts $SCALING"
  "$mfh" bench train --threads "$SCALING" --data "$root/target/mmoe-ref.bin"
  "$mfh" bench train --workload mfh-ref --threads "$SCALING" "${mfh_win[@]}" --data "$root/target/mfh-ref.bin"
  for t in ${SCALING//,/ }; do
    "$py" "$here/peers/torch_mmoe_ref.py" --data "$root/target/mmoe-ref.bin" --variant sparse --threads "$t"
    "$py" "$here/peers/torch_mfh_ref.py" --data "$root/target/mfh-ref.bin" --threads "$t" "${peer_win[@]}"
  done
  } | tee "$log"
  echo
  echo "## mfh / PyTorch per thread count (medians)"
  python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def rows(workload):
    m = re.search(workload + r" scaling.*?\n\|[^\n]*\n\|[^\n]*\n((?:\|[^\n]*\n)+)", text, re.S)
    out = {}
    for line in (m.group(1).splitlines() if m else []):
        c = [x.strip() for x in line.strip("|").split("|")]
        out[int(c[0])] = (float(c[1]), float(c[3]))
    return out
def peer(pattern):
    out = {}
    for t, body in re.findall(pattern + r"[^\n]*?, (\d+) threads[^\n]*\n((?:training|inference)[^\n]*\n(?:inference[^\n]*\n)?)", text):
        tr = re.search(r"training: median (\d+)", body)
        inf = re.search(r"inference \(batch 1024\): median (\d+)", body)
        out[int(t)] = (float(tr.group(1)) if tr else float("nan"), float(inf.group(1)) if inf else float("nan"))
    return out
mmoe, mfhr = rows("MMoE-ref"), rows("MFH-ref")
sparse, tmfh = peer(r"MMoE-ref \(sparse embeddings\)"), peer(r"torch [^\n]*MFH-ref")
print("| threads | MMoE-ref training / torch sparse | inference / torch sparse | MFH-ref training / torch MFH |")
print("|---:|---:|---:|---:|")
for t in sorted(mmoe):
    a, b, c = mmoe[t], sparse.get(t, (float("nan"),) * 2), tmfh.get(t, (float("nan"),) * 2)
    m = mfhr.get(t, (float("nan"),) * 2)
    print(f"| {t} | {a[0] / b[0]:.2f}× | {a[1] / b[1]:.2f}× | {m[0] / c[0]:.2f}× |")
PY
  exit 0
fi
if [ -n "${BF16:-}" ]; then
  rounds="${1:-3}"
  threads="${THREADS:-2}"
  log="$root/target/bf16.log"
  data=(--threads "$threads" --data "$root/target/mmoe-ref.bin")
  has_dp=$("$mfh" bench sgemm --n 8 --repeats 1 | grep -c 'runs [a-z0-9, ]*avx512bf16' || true)
  {
  header "$threads threads, bf16 against f32"
  "$mfh" bench sgemm --threads "$threads" --n 1024 --bf16 --shapes --peak
  for r in $(seq 1 "$rounds"); do
    echo "## round $r"
    "$mfh" bench train "${data[@]}" --precision f32 | grep -E "training|inference" | sed 's/^/mfh f32 /'
    "$mfh" bench train "${data[@]}" --precision bf16 | grep -E "training|inference" | sed 's/^/mfh bf16 /'
    if [ "$has_dp" != 0 ]; then
      MFH_KERNEL=avx512bf16 "$mfh" bench train "${data[@]}" --precision bf16 | grep -E "training|inference" | sed 's/^/mfh avx512bf16 /'
    fi
    "$py" "$here/peers/torch_mmoe_ref.py" --data "$root/target/mmoe-ref.bin" --variant sparse --threads "$threads" | grep -E "training|inference" | sed 's/^/torch f32 /'
    "$py" "$here/peers/torch_mmoe_ref.py" --data "$root/target/mmoe-ref.bin" --variant sparse --threads "$threads" --bf16 | grep -E "training|inference" | sed 's/^/torch bf16 /'
  done
  } | tee "$log"
  echo
  echo "## bf16 ratios per round (median, min–max over $rounds rounds)"
  python3 - "$log" <<'PY'
import re, statistics, sys
text = open(sys.argv[1]).read()
def per_round(who, what):
    out = []
    for body in text.split("## round ")[1:]:
        pat = rf"^{who} " + (r"MMoE-ref training: median (\d+)" if what == "train" else r"MMoE-ref inference \(batch 1024\): median (\d+)")
        if who.startswith("torch"):
            pat = rf"^{who} " + (r"training: median (\d+)" if what == "train" else r"inference \(batch 1024\): median (\d+)")
        m = re.search(pat, body, re.M)
        out.append(float(m.group(1)) if m else float("nan"))
    return out
def ratio(a, b, label, target):
    r = [x / y for x, y in zip(a, b)]
    if not r or any(v != v for v in r):
        print(f"{label}: not measured")
        return
    print(f"{label}: {statistics.median(r):.2f}× (min {min(r):.2f}, max {max(r):.2f}){target}")
f32t, bft, dpt = per_round("mfh f32", "train"), per_round("mfh bf16", "train"), per_round("mfh avx512bf16", "train")
f32i, bfi, dpi = per_round("mfh f32", "infer"), per_round("mfh bf16", "infer"), per_round("mfh avx512bf16", "infer")
tt, tbt = per_round("torch f32", "train"), per_round("torch bf16", "train")
ti, tbi = per_round("torch f32", "infer"), per_round("torch bf16", "infer")
ratio(bft, f32t, "MMoE-ref training, mfh bf16 / mfh f32", "  (target ≥ 1.6× on AMX)")
ratio(bft, tbt, "MMoE-ref training, mfh bf16 / torch bf16 autocast", "  (target ≥ 2×)")
ratio(bfi, f32i, "MMoE-ref inference, mfh bf16 / mfh f32", "  (target ≥ 2× on AMX)")
ratio(bfi, tbi, "MMoE-ref inference, mfh bf16 / torch bf16 autocast", "")
ratio(dpt, f32t, "MMoE-ref training, mfh avx512bf16 (forced) / mfh f32", "  (target ≥ 1.3×)")
ratio(dpi, f32i, "MMoE-ref inference, mfh avx512bf16 (forced) / mfh f32", "")
ratio(tbt, tt, "PyTorch training, bf16 autocast / f32", "")
ratio(f32t, tt, "MMoE-ref training, mfh f32 / torch f32", "")
PY
  exit 0
fi
rounds="${1:-2}"
duel="${DUEL_ROUNDS:-6}"
log="$root/target/compare.log"
threads="${THREADS:-2}"
{
header "$threads threads"
"$mfh" bench sgemm --threads "$threads"
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  "$mfh" bench train --threads "$threads" --data "$root/target/mmoe-ref.bin" | grep -E "kernel path|training|inference|MMoE-ref:|dense compute"
  "$py" "$here/peers/torch_mmoe_ref.py" --data "$root/target/mmoe-ref.bin" --variant sparse --threads "$threads"
  "$py" "$here/peers/torch_mmoe_ref.py" --data "$root/target/mmoe-ref.bin" --variant dense --threads "$threads"
  "$mfh" bench train --workload mfh-ref --threads "$threads" "${mfh_win[@]}" --data "$root/target/mfh-ref.bin" | grep -E "training|inference|MFH-ref"
  "$mfh" bench train --workload mfh-ref-2x2 --threads "$threads" "${mfh_win[@]}" --data "$root/target/mfh-ref-2x2.bin" | grep -E "training|inference|MFH-ref"
  "$py" "$here/peers/torch_mfh_ref.py" --data "$root/target/mfh-ref.bin" --threads "$threads" "${peer_win[@]}"
done
# Scoring alone, mfh and the sparse peer back to back in each round: this box's speed
# drifts by up to 2× over tens of seconds, so each round's ratio is taken between runs
# seconds apart, and the ratio is reported as the median over the rounds.
echo "## inference duel: MMoE-ref scoring, mfh then torch sparse, $duel rounds"
for r in $(seq 1 "$duel"); do
  "$mfh" bench train --infer-only --threads "$threads" --data "$root/target/mmoe-ref.bin" | grep -E "inference" | sed 's/^/duel mfh /'
  "$py" "$here/peers/torch_mmoe_ref.py" --data "$root/target/mmoe-ref.bin" --variant sparse --threads "$threads" --infer-only | grep inference | sed 's/^/duel torch /'
done
echo "## memory: MMoE-ref with every embedding row created"
"$mfh" bench train --threads "$threads" --all-rows --windows 3 --data "$root/target/mmoe-ref.bin" | grep -E "created|embedding rows"
echo "## ingest: the raw KuaiRand log, one reader thread, no joins"
"$mfh" bench ingest --config "$here/kuairand-log.toml" 2>/dev/null
if [ -f "$here/kuairand-log-parquet.toml" ]; then
  if "$py" -c "import pyarrow" 2>/dev/null; then
    "$py" "$here/make_parquet.py" > /dev/null
    "$mfh" bench ingest --config "$here/kuairand-log-parquet.toml" 2>/dev/null
  else
    echo "Parquet ingest skipped: $py has no pyarrow"
  fi
fi
} | tee "$log"
echo
echo "## ratios (medians, mfh / peer, same run)"
python3 - "$log" <<'PY'
import re, statistics, sys
text = open(sys.argv[1]).read()
def med(pattern):
    v = [float(x) for x in re.findall(pattern, text, re.M)]
    return statistics.median(v) if v else float("nan")
num = r"median (\d+) samples/s"
rows = {
    "MMoE-ref training": med(r"MMoE-ref training: " + num),
    "MMoE-ref inference": med(r"^MMoE-ref inference \(batch 1024\): " + num),
    "torch sparse training": med(r"\(sparse embeddings\)[^\n]*\ntraining: " + num),
    "torch sparse inference": med(r"\(sparse embeddings\)[^\n]*\n[^\n]*\ninference \(batch 1024\): " + num),
    "torch dense training": med(r"\(dense embeddings\)[^\n]*\ntraining: " + num),
    "torch dense inference": med(r"\(dense embeddings\)[^\n]*\n[^\n]*\ninference \(batch 1024\): " + num),
    "MFH-ref training": med(r"MFH-ref training: " + num),
    "MFH-ref 2x2 training": med(r"MFH-ref 2×2 training: " + num),
    "torch MFH-ref training": med(r"torch [^\n]*MFH-ref[^\n]*\ntraining: " + num),
}
# The issue's "sgemm throughput" is the gemm crate's; mfh's own kernel is shown beside it.
sgemm = med(r"sgemm [^:]*\(gemm crate\)[^:]*: median (\d+) GFLOP/s")
own = med(r"sgemm [^:]*\(mfh kernel\)[^:]*: median (\d+) GFLOP/s")
dense = med(r"dense compute: ([\d.]+) GFLOP/s")
r = rows
paths = sorted(set(re.findall(r"# kernel path (\w+)", text)))
print(f"mfh kernel paths that ran: {', '.join(paths) or 'unknown'}")
print(f"MMoE-ref training / torch sparse:   {r['MMoE-ref training'] / r['torch sparse training']:.2f}×  (target ≥ 1.6×)")
print(f"MMoE-ref training / torch dense:    {r['MMoE-ref training'] / r['torch dense training']:.2f}×  (target ≥ 4×)")
print(f"MMoE-ref inference / torch sparse:  {r['MMoE-ref inference'] / r['torch sparse inference']:.2f}×  (target ≥ 1.2×)")
print(f"MMoE-ref inference / torch dense:   {r['MMoE-ref inference'] / r['torch dense inference']:.2f}×")
mine = [float(x) for x in re.findall(r"duel mfh [^\n]*median (\d+) samples/s", text)]
peer = [float(x) for x in re.findall(r"duel torch [^\n]*median (\d+) samples/s", text)]
if mine and len(mine) == len(peer):
    ratios = sorted(a / b for a, b in zip(mine, peer))
    print(f"MMoE-ref inference duel, mfh / torch sparse per round: median {statistics.median(ratios):.2f}× "
          f"(min {ratios[0]:.2f}, max {ratios[-1]:.2f}, {len(ratios)} rounds; target ≥ 1.2×)")
print(f"MFH-ref training / torch MFH:       {r['MFH-ref training'] / r['torch MFH-ref training']:.2f}×  (target ≥ 3×)")
print(f"MFH-ref time per sample, 16 cells / 4 cells: {r['MFH-ref 2x2 training'] / r['MFH-ref training']:.2f}×  (target ≤ 1.5×)")
print(f"dense compute / max(own, gemm crate) sgemm: {dense / max(sgemm, own):.0%}  (target ≥ 70 %)")
print(f"dense compute / gemm crate sgemm:   {dense / sgemm:.0%};  / mfh's own sgemm: {dense / own:.0%}")
PY
