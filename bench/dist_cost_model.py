#!/usr/bin/env python3
"""Cost model of mfh's synchronous data-parallel training (docs/distributed.md), fed
with measured figures: the `distributed.json` of a one-rank and a two-rank run and the
all-reduce / all-to-all timings of `examples/collectives`. Projects the step time,
throughput, scaling efficiency and the time to train 10 B samples on N nodes.

usage: dist_cost_model.py NP1.json NP2.json [N] [SAMPLES] [SKEW_MS]
                          [--fit-s SECONDS] [--bytes-per-row BYTES]

SKEW_MS: time per step the ranks wait for the slowest one (stragglers), added to every
multi-node step; 0 by default (dedicated nodes), the measured loopback runs on a shared
2-vCPU box show tens of ms.
--fit-s: the one-rank run's statistics pass (its "set up in … s (statistics pass S s)"),
over the same train rows as NP1.json's one epoch. At N ranks the pass is striped by file
(each rank fits its own files), so it costs S / rows × SAMPLES / N before the first step;
the table then adds it to the time for SAMPLES.
--bytes-per-row: the stored (compressed) bytes per row of the split. Striped reading still
scans every row of each global batch on every rank, so each node reads every byte; the
table then gives the rate each node must read at.
"""
import json, sys

args, flags = [], {}
argv = iter(sys.argv[1:])
for a in argv:
    if a in ("--fit-s", "--bytes-per-row"):
        flags[a] = float(next(argv))
    else:
        args.append(a)
one = json.load(open(args[0]))
two = json.load(open(args[1]))
N = int(args[2]) if len(args) > 2 else 16
SAMPLES = float(args[3]) if len(args) > 3 else 10e9
SKEW = float(args[4]) if len(args) > 4 else 0.0
FIT_ROW = flags.get("--fit-s", 0.0) / one["rows"]   # seconds per row at one rank
BYTES_ROW = flags.get("--bytes-per-row")

b = one["rows"] / one["steps"]                      # global batch of the measurements
# Reading, per row: the reader thread's scan (read, split cells, split test: every rank
# does it for the whole global batch) and decode (join, hash, parse: striped, only the
# rank's rows), measured by the striped reader at N = 1; older runs only have the time a
# step waited for the reader.
if one.get("decode_ms") and one.get("read_mode") == "striped":
    scan_row = one["scan_ms"] / b
    decode_row = one["decode_ms"] / b
else:
    scan_row, decode_row = 0.0, one["read_ms"] / b
read_row = scan_row + decode_row
compute_row = (one["step_ms"] - one["read_ms"] - one["all_reduce_ms"] - one["all_to_all_ms"]) / b
dense_bytes = two["all_reduce_bytes_per_step"]      # fused gradient buffer
# Embedding traffic a rank sends per step at N = 2 (half of its distinct ids are
# remote), for b / 2 rows per rank; per row and per remote fraction:
a2a_row = two["all_to_all_bytes_per_step"] / (b / 2) / 0.5
calls = 6                                           # 3 all-to-all-v, each counts + data

nets = {
    "25 GbE (2.5 GB/s, 20 µs)": (2.5e9, 20e-6),
    "100 Gb/s InfiniBand (10 GB/s, 2 µs)": (10e9, 2e-6),
}
print(f"measured at N=1: batch {b:.0f}, read {read_row*1e3:.1f} µs/row (scan {scan_row*1e3:.1f}, decode {decode_row*1e3:.1f}), compute {compute_row*1e3:.1f} µs/row")
print(f"measured at N=2: all-reduce {dense_bytes/1e6:.2f} MB/step, all-to-all {two['all_to_all_bytes_per_step']/1e3:.0f} kB/step/rank")
per_rank = b                                        # weak scaling: b rows per rank
single = b / ((read_row + compute_row) * b / 1e3)   # one node, samples/s
print(f"one node: {single:.0f} samples/s; straggler allowance {SKEW:.0f} ms/step")
if FIT_ROW:
    print(f"statistics pass at one rank: {FIT_ROW*1e6:.2f} µs/row (striped by file over the ranks)")
print()
extra = ""
if FIT_ROW:
    extra += " statistics pass |"
if BYTES_ROW:
    extra += " each node reads |"
print(f"| network | reading | N | step ms | all-reduce ms | all-to-all ms | samples/s | efficiency |{extra} {SAMPLES/1e9:g} B samples |")
print("|---" * (9 + extra.count("|")) + "|")
for name, (bw, alpha) in nets.items():
    for striped in (False, True):
        for n in (2, N):
            B = per_rank * n
            read = scan_row * B + decode_row * (per_rank if striped else B)
            comp = compute_row * per_rank
            ar = (2 * (n - 1) / n * dense_bytes / bw + 2 * (n - 1) * alpha) * 1e3
            # Distinct ids per rank grow at most linearly with its rows; (n-1)/n remote.
            a2a = (a2a_row * per_rank * (n - 1) / n / bw + calls * (n - 1) * alpha) * 1e3
            step = read + comp + ar + a2a + SKEW
            tput = B / step * 1e3
            eff = tput / (n * single)
            fit = FIT_ROW * SAMPLES / n
            hours = (SAMPLES / tput + fit) / 3600
            how = "striped by rank" if striped else "whole batch per rank"
            cols = ""
            if FIT_ROW:
                cols += f" {fit / 60:,.0f} min |"
            if BYTES_ROW:
                cols += f" {BYTES_ROW * B / step * 1e3 / 1e6:,.0f} MB/s |"
            print(f"| {name} | {how} | {n} | {step:.0f} | {ar:.1f} | {a2a:.1f} | {tput:,.0f} | {eff:.0%} |{cols} {hours:,.0f} h |")
