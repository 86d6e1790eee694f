#!/usr/bin/env python3
"""PyTorch peer for the MFH-ref workload, for side-by-side training throughput with mfh's
dense mode (`routing = false`: every branch computed for every row).

MFH-ref: batch 1024; 26 categorical fields × dim 16 (one table of `vocab` rows per field)
plus 13 dense features → x of width 429. Task grid behaviour (3) × user (U) × item (I),
task t = b·U·I + u·I + i. Three trees, one per grid dimension d; in each:
  level 1: a CGC switcher on x with size(d) outputs: per output 2 task experts + 2 shared
           experts, experts 429→256→128 (ReLU after every layer), gate Linear(429→4) +
           softmax over [the output's 2 task experts, the 2 shared experts];
  level 2: under each value v of d, a CGC on level-1 output v with one output per
           combination of the other two dimensions (mixed radix in dim order), experts
           128→128 (ReLU), 2 task + 2 shared, gates Linear(128→4) + softmax.
Each task sums its three leaves (width 128) and feeds its own tower 128→64 (ReLU) → 1.
Loss: BCE with logits on each row's own cell's 3 tasks, mean over those (row, task)
entries. Adam (lr 1e-3) for dense parameters; nn.Embedding(sparse=True) + SparseAdam for
the tables (the `sparse` variant of torch_mmoe_ref.py).

Nothing is written to lose: all level-1 experts of the three trees (and all level-1 gates)
share one GEMM for their first layer and one bmm for their second; each tree's level-2
switchers (experts and gates of every subtree) are one bmm; the towers are two bmms.
Dense parameters: 9,614,680 at 4×4, 4,410,020 at 2×2 (the formula in `param_count`, which
gives mfh's count, 665,039, for the quickstart MFH model's shape too).

    mfh bench gen --workload mfh-ref --out mfh_ref.bin      # 4×4 groups (mfh-ref2x2: 2×2)
    bench/.venv/bin/python bench/peers/torch_mfh_ref.py --data mfh_ref.bin
    bench/.venv/bin/python bench/peers/torch_mfh_ref.py --check   # float64 self-check
"""
import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mmoe_ref import read_v2  # noqa: E402

FIELDS, DIM, DENSE, BATCH = 26, 16, 13, 1024
L1 = (256, 128)  # level-1 expert widths
L2 = 128  # level-2 expert width
TOWER = 64
TASK_EXPERTS, SHARED_EXPERTS = 2, 2
GATE = TASK_EXPERTS + SHARED_EXPERTS


def uniform(bound, *shape):
    return torch.empty(*shape).uniform_(-bound, bound)


class Grid:
    """Dims (behaviour B, user U, item I); task t = b·U·I + u·I + i."""

    def __init__(self, b, u, i):
        self.sizes = (b, u, i)
        self.n_cells = u * i
        self.n_tasks = b * u * i

    def coords(self, t):
        b, u, i = self.sizes
        return (t // (u * i), (t // i) % u, t % i)

    def leaf(self, d, t):
        """(value of dim d, level-2 output index) of task t in the tree split on d: the other
        dims' coordinates as a mixed-radix index in dim order."""
        c = self.coords(t)
        k = 0
        for e in range(3):
            if e != d:
                k = k * self.sizes[e] + c[e]
        return c[d], k


def mix(task, shared, g, k):
    """CGC mixing in the features × rows layout. task [..., 2k, D, n] (output j's task
    experts at 2j, 2j+1), shared [..., 2, D, n], g [..., k, 4, n] softmaxed gates →
    [..., k, D, n]. unbind rather than indexing: its backward is one stack, where a slice's
    backward zero-fills the whole input."""
    lead = task.shape[:-3]
    t0, t1 = task.view(*lead, k, TASK_EXPERTS, *task.shape[-2:]).unbind(-3)
    s0, s1 = shared.unsqueeze(-4).unbind(-3)  # [..., 1, D, n]
    g0, g1, g2, g3 = g.unsqueeze(-2).unbind(-3)  # [..., k, 1, n]
    return torch.addcmul(torch.addcmul(torch.addcmul(t0 * g0, t1, g1), s0, g2), s1, g3)


class MfhRef(nn.Module):
    """Weights are stored [out, in] (nn.Linear's layout) and activations as features × rows
    ([..., width, n]), so every expert, gate and subtree is a contiguous block of a bmm
    operand or result."""

    def __init__(self, grid, vocab, sparse=True):
        super().__init__()
        self.grid = grid
        n_in = FIELDS * DIM + DENSE
        self.emb = nn.ModuleList(nn.Embedding(vocab, DIM, sparse=sparse) for _ in range(FIELDS))
        T = grid.n_tasks
        self.k1 = list(grid.sizes)  # level-1 outputs per tree
        self.k2 = [T // k for k in self.k1]  # level-2 outputs per subtree
        # The brief's architecture never drops a level at B=3 and U, I ≥ 2.
        assert all(k > 1 for k in self.k1 + self.k2), "a level with one output would be dropped"
        # Level-1 experts of all trees, tree by tree; within a tree: task experts of output
        # 0, 1, …, K1−1 (2 each), then the 2 shared experts.
        self.e1 = [TASK_EXPERTS * k + SHARED_EXPERTS for k in self.k1]
        self.e2 = [TASK_EXPERTS * k + SHARED_EXPERTS for k in self.k2]
        E1 = self.E1 = sum(self.e1)
        G1 = self.G1 = GATE * sum(self.k1)  # all level-1 gate logits
        # First layer of every level-1 expert and every level-1 gate: one [E1·256 + G1, 429].
        relu_bound = lambda fan_in: math.sqrt(6.0 / fan_in)  # noqa: E731  (Kaiming uniform)
        lin_bound = lambda fan_in: 1.0 / math.sqrt(fan_in)  # noqa: E731  (nn.Linear default)
        self.w1a = nn.Parameter(torch.cat([uniform(relu_bound(n_in), E1 * L1[0], n_in), uniform(lin_bound(n_in), G1, n_in)]))
        self.b1a = nn.Parameter(torch.cat([torch.zeros(E1 * L1[0], 1), uniform(lin_bound(n_in), G1, 1)]))
        # Second layer of the level-1 experts: [E1, 128, 256].
        self.w1b = nn.Parameter(uniform(relu_bound(L1[0]), E1, L1[1], L1[0]))
        self.b1b = nn.Parameter(torch.zeros(E1, L1[1], 1))
        # Level 2, per tree: [K1, E2·128 + K2·4, 128] (experts then gates of each subtree).
        self.w2 = nn.ParameterList()
        self.b2 = nn.ParameterList()
        for k1, k2, e2 in zip(self.k1, self.k2, self.e2):
            w = [uniform(relu_bound(L1[1]), k1, e2 * L2, L1[1]), uniform(lin_bound(L1[1]), k1, GATE * k2, L1[1])]
            b = [torch.zeros(k1, e2 * L2, 1), uniform(lin_bound(L1[1]), k1, GATE * k2, 1)]
            self.w2.append(nn.Parameter(torch.cat(w, dim=1)))
            self.b2.append(nn.Parameter(torch.cat(b, dim=1)))
        # Towers: [T, 64, 128] → ReLU → [T, 1, 64].
        self.tw1 = nn.Parameter(uniform(lin_bound(L2), T, TOWER, L2))
        self.tb1 = nn.Parameter(uniform(lin_bound(L2), T, TOWER, 1))
        self.tw2 = nn.Parameter(uniform(lin_bound(TOWER), T, 1, TOWER))
        self.tb2 = nn.Parameter(uniform(lin_bound(TOWER), T, 1, 1))

    def dense_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("emb.")]

    def embed(self, ids, dense):
        return torch.cat([e(ids[:, f]) for f, e in enumerate(self.emb)] + [dense.to(self.w1a.dtype)], dim=1)

    def forward(self, ids, dense):
        """Logits [n, n_tasks] for every task of every row."""
        return self.body(self.embed(ids, dense))

    def body(self, x):
        """Everything after the embedding lookup: x [n, 429] → logits [n, n_tasks]."""
        n = x.shape[0]
        a = torch.addmm(self.b1a, self.w1a, x.t())  # [E1·256 + G1, n]
        h, g1 = a.split([self.E1 * L1[0], self.G1])
        h = torch.relu(h).view(self.E1, L1[0], n)
        h = torch.relu(torch.baddbmm(self.b1b, self.w1b, h))  # [E1, 128, n]
        leaves = []
        for d, (he, g) in enumerate(zip(h.split(self.e1), g1.split([GATE * k for k in self.k1]))):
            k1, k2, e2 = self.k1[d], self.k2[d], self.e2[d]
            task, shared = he.split([TASK_EXPERTS * k1, SHARED_EXPERTS])
            l1 = mix(task, shared, torch.softmax(g.view(k1, GATE, n), dim=1), k1)  # [K1, 128, n]
            # Level 2: one bmm for every subtree's experts and gates.
            z = torch.baddbmm(self.b2[d], self.w2[d], l1)  # [K1, E2·128 + K2·4, n]
            h2, g2 = z.split([e2 * L2, GATE * k2], dim=1)
            h2 = torch.relu(h2).view(k1, e2, L2, n)
            task, shared = h2.split([TASK_EXPERTS * k2, SHARED_EXPERTS], dim=1)
            leaves.append(mix(task, shared, torch.softmax(g2.view(k1, k2, GATE, n), dim=2), k2))  # [K1, K2, 128, n]
        # Task order (b, u, i): tree behaviour's leaves already are; the others permute.
        B, U, I = self.grid.sizes
        s = leaves[0].view(B, U, I, L2, n) + leaves[1].view(U, B, I, L2, n).transpose(0, 1)
        s = s + leaves[2].view(I, B, U, L2, n).permute(1, 2, 0, 3, 4)
        t = torch.relu(torch.baddbmm(self.tb1, self.tw1, s.view(-1, L2, n)))  # [T, 64, n]
        return torch.baddbmm(self.tb2, self.tw2, t).view(-1, n).t()  # [n, T]

    def reference_forward(self, ids, dense):
        """The same function from the same parameters, one expert, gate, leaf and tower at a
        time, rows × features (slow; for --check)."""
        x = self.embed(ids, dense)
        E1, T = self.E1, self.grid.n_tasks
        lin = lambda x, w, b: x @ w.t() + b.view(-1)  # noqa: E731

        def expert1(e):
            r = slice(e * L1[0], (e + 1) * L1[0])
            return torch.relu(lin(torch.relu(lin(x, self.w1a[r], self.b1a[r])), self.w1b[e], self.b1b[e]))

        def cgc(experts, gate, k):
            out = []
            for j in range(k):
                g = torch.softmax(gate(j), dim=1)
                idx = [TASK_EXPERTS * j + m for m in range(TASK_EXPERTS)] + [TASK_EXPERTS * k + m for m in range(SHARED_EXPERTS)]
                out.append(sum(g[:, q : q + 1] * experts[i] for q, i in enumerate(idx)))
            return out

        leaves = [[None] * 3 for _ in range(T)]
        e0, g0 = 0, E1 * L1[0]
        for d in range(3):
            k1, k2, e1, e2 = self.k1[d], self.k2[d], self.e1[d], self.e2[d]
            experts = [expert1(e0 + e) for e in range(e1)]

            def gate1(j):
                r = slice(g0 + GATE * j, g0 + GATE * (j + 1))
                return lin(x, self.w1a[r], self.b1a[r])

            l1 = cgc(experts, gate1, k1)
            e0 += e1
            g0 += GATE * k1
            w2, b2 = self.w2[d], self.b2[d]
            for v in range(k1):
                ex = [torch.relu(lin(l1[v], w2[v, e * L2 : (e + 1) * L2], b2[v, e * L2 : (e + 1) * L2])) for e in range(e2)]

                def gate2(j):
                    r = slice(e2 * L2 + GATE * j, e2 * L2 + GATE * (j + 1))
                    return lin(l1[v], w2[v, r], b2[v, r])

                out = cgc(ex, gate2, k2)
                for t in range(T):
                    vv, kk = self.grid.leaf(d, t)
                    if vv == v:
                        leaves[t][d] = out[kk]
        cols = []
        for t in range(T):
            s = leaves[t][0] + leaves[t][1] + leaves[t][2]
            cols.append(lin(torch.relu(lin(s, self.tw1[t], self.tb1[t])), self.tw2[t], self.tb2[t]))
        return torch.cat(cols, dim=1)


def param_count(grid):
    """Dense parameters by formula (experts, gates and towers, all with biases)."""
    lin = lambda a, b: a * b + b  # noqa: E731
    n_in, T, tot = FIELDS * DIM + DENSE, grid.n_tasks, 0
    for k1 in grid.sizes:
        k2 = T // k1
        tot += (TASK_EXPERTS * k1 + SHARED_EXPERTS) * (lin(n_in, L1[0]) + lin(*L1)) + k1 * lin(n_in, GATE)
        tot += k1 * ((TASK_EXPERTS * k2 + SHARED_EXPERTS) * lin(L1[1], L2) + k2 * lin(L1[1], GATE))
    return tot + T * (lin(L2, TOWER) + lin(TOWER, 1))


def masked_loss(logits, labels, user, item, grid):
    """BCE with logits on each row's own cell's tasks only, mean over those entries."""
    cell = user * grid.sizes[2] + item  # [n]
    tasks = torch.arange(grid.sizes[0], device=logits.device).unsqueeze(0) * grid.n_cells + cell.unsqueeze(1)  # [n, B]
    own = logits.gather(1, tasks)
    return F.binary_cross_entropy_with_logits(own, labels.to(own.dtype), reduction="sum") / own.numel()


def fake(path, groups, batches, vocab, seed=1):
    """A v2 file like `mfh bench gen` writes (same distributions; not the same bytes)."""
    u_n, i_n = groups
    rng = np.random.default_rng(seed)
    n = batches * BATCH

    def group(k):
        p = 1.0 / np.arange(1, k + 1)
        return rng.choice(k, size=n, p=p / p.sum()).astype("<u4")

    ids = np.minimum((rng.random((n, FIELDS)) ** 3.0 * vocab).astype(np.int64), vocab - 1).astype("<u4")
    dense = (rng.random((n, DENSE)) * 2 - 1).astype("<f4")
    user, item = group(u_n), group(i_n)
    rate = 0.1 * np.arange(1, 4)[None, :] * (1 - 0.05 * (user + item).astype(np.float64))[:, None]
    labels = (rng.random((n, 3)) < rate).astype("<f4")
    with open(path, "wb") as f:
        f.write(b"MFHBENC2")
        f.write(np.array([batches, BATCH, FIELDS, DENSE, 3, u_n, i_n, vocab], dtype="<u8").tobytes())
        for b in range(batches):
            r = slice(b * BATCH, (b + 1) * BATCH)
            for a in (ids[r], dense[r], labels[r], user[r], item[r]):
                f.write(np.ascontiguousarray(a).tobytes())
    print(f"{batches} fake MFH-ref {u_n}×{i_n} batches of {BATCH} rows → {path}")


def check(threads):
    """float64: the batched forward equals the one-part-at-a-time reference, and the masked
    loss falls over 20 steps on one repeated batch."""
    torch.set_num_threads(threads)
    torch.manual_seed(3)
    ok = True
    for groups in ((2, 2), (4, 4), (2, 3)):
        grid = Grid(3, *groups)
        vocab, n = 50, 37
        model = MfhRef(grid, vocab).double()
        n_params = sum(p.numel() for p in model.dense_parameters())
        ids = torch.randint(0, vocab, (n, FIELDS))
        dense = torch.rand(n, DENSE, dtype=torch.float64) * 2 - 1
        user, item = torch.randint(0, groups[0], (n,)), torch.randint(0, groups[1], (n,))
        labels = (torch.rand(n, 3) < 0.3).double()
        with torch.no_grad():
            diff = (model(ids, dense) - model.reference_forward(ids, dense)).abs().max().item()
        opts = [torch.optim.SparseAdam(list(model.emb.parameters()), lr=1e-3), torch.optim.Adam(model.dense_parameters(), lr=1e-3)]
        losses = []
        for _ in range(20):
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss = masked_loss(model(ids, dense), labels, user, item, grid)
            loss.backward()
            for o in opts:
                o.step()
            losses.append(loss.item())
        # Gradients reach only the row's own cell's towers.
        model.zero_grad(set_to_none=True)
        masked_loss(model(ids[:1], dense[:1]), labels[:1], user[:1], item[:1], grid).backward()
        cell = int(user[0]) * groups[1] + int(item[0])
        live = {t for t in range(grid.n_tasks) if model.tw2.grad[t].abs().sum() > 0}
        want = {b * grid.n_cells + cell for b in range(3)}
        good = diff < 1e-10 and losses[-1] < losses[0] and n_params == param_count(grid) and live == want
        ok &= good
        print(
            f"{groups[0]}×{groups[1]}: {n_params} params (formula {param_count(grid)}), batched vs reference max |Δ| {diff:.2e}, "
            f"loss {losses[0]:.5f} → {losses[-1]:.5f}, towers with gradient {sorted(live)} (want {sorted(want)}): {'ok' if good else 'FAIL'}"
        )
    print("check passed" if ok else "check FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="file written by `mfh bench gen` (format v2, an MFH-ref workload)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (default: eager)")
    ap.add_argument("--check", action="store_true", help="float64 self-check on tiny random batches")
    ap.add_argument("--fake", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--fake-groups", default="4x4", help=argparse.SUPPRESS)
    ap.add_argument("--fake-batches", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--fake-vocab", type=int, default=100_000, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.threads))
    if args.fake:
        fake(args.fake, tuple(int(v) for v in args.fake_groups.split("x")), args.fake_batches, args.fake_vocab)
        return
    if not args.data:
        ap.error("--data is required (or --check)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    h, data = read_v2(args.data)
    shape = (h["batch_size"], h["fields"], h["dense"], h["behaviours"])
    assert shape == (BATCH, FIELDS, DENSE, 3), f"not an MFH-ref file: {h}"
    grid = Grid(3, h["user_groups"], h["item_groups"])
    model = MfhRef(grid, h["vocab"])
    dense_params = model.dense_parameters()
    n_params = sum(p.numel() for p in dense_params)
    assert n_params == param_count(grid), (n_params, param_count(grid))
    opts = [torch.optim.SparseAdam(list(model.emb.parameters()), lr=1e-3), torch.optim.Adam(dense_params, lr=1e-3)]
    if args.compile:  # the dense part only (sparse embedding gradients stay eager)
        model.body = torch.compile(model.body)
    fwd = model
    step = 0

    def run(k):
        nonlocal step
        for _ in range(k):
            ids, dense, y, user, item = data[step % len(data)]
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss = masked_loss(fwd(ids, dense), y, user, item, grid)
            loss.backward()
            for o in opts:
                o.step()
            step += 1

    run(args.steps)  # warm-up
    rates = []
    for _ in range(args.windows):
        t = time.perf_counter()
        run(args.steps)
        rates.append(args.steps * BATCH / (time.perf_counter() - t))
    model.eval()
    with torch.no_grad():
        # Scoring cycles through the batches, as mfh's does.
        for k in range(5):
            fwd(data[k % len(data)][0], data[k % len(data)][1])
        inf = []
        k = 0
        for _ in range(args.windows):
            t = time.perf_counter()
            for _ in range(args.steps):
                fwd(data[k % len(data)][0], data[k % len(data)][1])
                k += 1
            inf.append(args.steps * BATCH / (time.perf_counter() - t))
    u, i = grid.sizes[1:]
    mode = ", torch.compile" if args.compile else ""
    print(f"torch {torch.__version__} MFH-ref {u}×{i} groups ({grid.n_tasks} tasks, {grid.n_cells} cells), {n_params} dense parameters, {args.threads} threads{mode}")
    print(f"training: median {statistics.median(rates):.0f} samples/s (min {min(rates):.0f}, max {max(rates):.0f}, {len(rates)} windows)")
    print(f"inference (batch {BATCH}): median {statistics.median(inf):.0f} samples/s (min {min(inf):.0f}, max {max(inf):.0f})")


if __name__ == "__main__":
    main()
