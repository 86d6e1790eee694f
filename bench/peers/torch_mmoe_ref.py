#!/usr/bin/env python3
"""PyTorch peers for the MMoE-ref workload, for side-by-side training throughput.

MMoE-ref: batch 1024; 26 categorical fields × dim 16 over 100,000 IDs each (skewed) plus
13 dense features → 429 inputs; 8 experts 429→256→128 (ReLU); 4 binary tasks with softmax
gates over the experts and 128→64→1 towers; Adam for dense parameters.

Variants:
  dense  — nn.Embedding with dense gradients, one Adam over everything (what most
           torch-rechub users run);
  sparse — nn.Embedding(sparse=True) with SparseAdam for the tables, Adam for the rest
           (the best plain PyTorch offers).
Experts are batched (stacked weights, one batched matmul per layer), so no peer is
written to lose. Prints median and min–max samples/s over timed windows after warm-up.

    mfh bench gen --out mmoe_ref.bin
    bench/.venv/bin/python bench/peers/torch_mmoe_ref.py --data mmoe_ref.bin --variant sparse
"""
import argparse
import contextlib
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

FIELDS, DIM, DENSE, VOCAB, TASKS, BATCH = 26, 16, 13, 100_000, 4, 1024


class BatchedExperts(nn.Module):
    """E experts of identical shape as stacked weights: x → [E, n, d_out]."""

    def __init__(self, n_in, widths, n_experts):
        super().__init__()
        dims = [n_in] + widths
        self.w = nn.ParameterList()
        self.b = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            w = torch.empty(n_experts, a, b)
            for e in range(n_experts):
                nn.init.kaiming_uniform_(w[e].T, nonlinearity="relu")
            self.w.append(nn.Parameter(w))
            self.b.append(nn.Parameter(torch.zeros(n_experts, 1, b)))

    def forward(self, x):
        h = torch.relu(torch.matmul(x.unsqueeze(0), self.w[0]) + self.b[0])
        for w, b in zip(list(self.w)[1:], list(self.b)[1:]):
            h = torch.relu(torch.bmm(h, w) + b)
        return h


class Mmoe(nn.Module):
    def __init__(self, sparse):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(VOCAB, DIM, sparse=sparse) for _ in range(FIELDS))
        n_in = FIELDS * DIM + DENSE
        self.experts = BatchedExperts(n_in, [256, 128], 8)
        self.gates = nn.Linear(n_in, 8 * TASKS)
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1)) for _ in range(TASKS))

    def forward(self, ids, dense):
        x = torch.cat([e(ids[:, f]) for f, e in enumerate(self.emb)] + [dense], dim=1)
        experts = self.experts(x)  # [E, n, 128]
        gates = torch.softmax(self.gates(x).view(-1, TASKS, 8), dim=2)  # [n, T, E]
        mixed = torch.einsum("nte,end->tnd", gates, experts)
        return torch.cat([t(mixed[i]) for i, t in enumerate(self.towers)], dim=1)


HEADER = ("batches", "batch_size", "fields", "dense", "behaviours", "user_groups", "item_groups", "vocab")


def read_v2(path):
    """A file written by `mfh bench gen` (format v2, little-endian): `MFHBENC2`, 8 × u64
    (batches, batch size, fields, dense, behaviours, user groups, item groups, vocab), then
    per batch ids u32 [bs × fields], dense f32 [bs × dense], labels f32 [bs × behaviours],
    user group u32 [bs], item group u32 [bs]. Returns (header dict, [(ids int64, dense,
    labels, user int64, item int64)]) as torch tensors: the same bytes mfh trains on."""
    raw = open(path, "rb").read()
    if raw[:8] != b"MFHBENC2":
        sys.exit(f"{path}: not a file written by `mfh bench gen` (format v2)")
    h = dict(zip(HEADER, (int(v) for v in np.frombuffer(raw, dtype="<u8", count=8, offset=8))))
    bs, nf, nd, nb = h["batch_size"], h["fields"], h["dense"], h["behaviours"]
    out, pos = [], 72

    def take(dtype, count):
        nonlocal pos
        a = np.frombuffer(raw, dtype=dtype, count=count, offset=pos)
        pos += 4 * count
        return a

    for _ in range(h["batches"]):
        ids = take("<u4", bs * nf).reshape(bs, nf).astype(np.int64)
        dense = take("<f4", bs * nd).reshape(bs, nd).copy()
        labels = take("<f4", bs * nb).reshape(bs, nb).copy()
        user = take("<u4", bs).astype(np.int64)
        item = take("<u4", bs).astype(np.int64)
        out.append(tuple(torch.from_numpy(a) for a in (ids, dense, labels, user, item)))
    if pos != len(raw):
        sys.exit(f"{path}: {len(raw) - pos} bytes left over after {h['batches']} batches")
    return h, out


def batches(path):
    """The MMoE-ref batches `mfh bench gen` wrote: (ids, dense, labels)."""
    h, data = read_v2(path)
    got = (h["batch_size"], h["fields"], h["dense"], h["behaviours"], h["user_groups"], h["item_groups"])
    assert got == (BATCH, FIELDS, DENSE, TASKS, 1, 1), f"unexpected shape {h}"
    assert h["vocab"] <= VOCAB, f"vocab {h['vocab']} > {VOCAB}"
    return [(ids, dense, labels) for ids, dense, labels, _, _ in data]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="file written by `mfh bench gen`")
    ap.add_argument("--variant", choices=["dense", "sparse"], default="sparse")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--infer-only", action="store_true", help="time scoring only (after the warm-up steps)")
    ap.add_argument("--bf16", action="store_true",
                    help="forward passes (and the loss) under torch.autocast('cpu', dtype=torch.bfloat16)")
    args = ap.parse_args()
    # Mixed precision as PyTorch users get it: products in bf16 under autocast, f32
    # parameters and optimiser state; a no-op context without --bf16.
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    model = Mmoe(args.variant == "sparse")
    emb_params = list(model.emb.parameters())
    other = [p for n, p in model.named_parameters() if not n.startswith("emb.")]
    if args.variant == "sparse":
        opts = [torch.optim.SparseAdam(emb_params, lr=1e-3), torch.optim.Adam(other, lr=1e-3)]
    else:
        opts = [torch.optim.Adam(model.parameters(), lr=1e-3)]
    loss_fn = nn.BCEWithLogitsLoss()
    data = batches(args.data)
    step = 0

    def run(k):
        nonlocal step
        for _ in range(k):
            ids, dense, y = data[step % len(data)]
            for o in opts:
                o.zero_grad(set_to_none=True)
            with cast():
                loss = loss_fn(model(ids, dense), y)
            loss.backward()
            for o in opts:
                o.step()
            step += 1

    run(args.steps)  # warm-up
    rates = []
    for _ in range(0 if args.infer_only else args.windows):
        t = time.perf_counter()
        run(args.steps)
        rates.append(args.steps * BATCH / (time.perf_counter() - t))
    model.eval()
    with torch.no_grad(), cast():
        # Scoring cycles through the batches, as mfh's does (the same ids, so the same
        # embedding rows are touched on both sides).
        for k in range(5):
            model(*data[k % len(data)][:2])
        inf = []
        k = 0
        for _ in range(args.windows):
            t = time.perf_counter()
            for _ in range(args.steps):
                ids, dense, _ = data[k % len(data)]
                model(ids, dense)
                k += 1
            inf.append(args.steps * BATCH / (time.perf_counter() - t))
    n_params = sum(p.numel() for p in other)
    prec = ", bf16 autocast" if args.bf16 else ""
    print(f"torch {torch.__version__} MMoE-ref ({args.variant} embeddings{prec}), {n_params} dense parameters, {args.threads} threads")
    if rates:
        print(f"training: median {statistics.median(rates):.0f} samples/s (min {min(rates):.0f}, max {max(rates):.0f}, {len(rates)} windows)")
    print(f"inference (batch {BATCH}): median {statistics.median(inf):.0f} samples/s (min {min(inf):.0f}, max {max(inf):.0f})")


if __name__ == "__main__":
    main()
