#!/usr/bin/env python3
"""torch-rechub's Shared-Bottom, MMoE and PLE on exactly mfh's Census split and features.

Reads the folder `mfh prepare census` wrote (census.toml, the data file and the
train/valid/test row-index files) and writes records in the shape of `mfh compare`'s
results.json to OUT (put it in COMPARE_OUT/peers/ to get rows in table.md):

    bench/peers/run_rechub_census.sh CENSUS_DIR COMPARE_OUT [SEEDS]

Same as mfh: the rows of each split, the features (35 categorical columns embedded with
dim 4; 7 numeric columns as log1p then standardised with train statistics), the two
tasks (income > 50K, never married), the layer sizes of census.toml's model sections,
batch 1024, Adam lr 1e-3, at most 10 epochs with early stopping (patience 2) on the
valid split, and the report on the test split.
Different, as torch-rechub builds them: its MLPs put batch norm after every hidden
Linear (mfh's sections here have none); its trainer stops on the first task's valid AUC
(mfh on the mean over both tasks); Adam has weight decay 1e-5 (torch-rechub's default).
"""
import argparse
import json
import math
import os
import sys
import tempfile
import tomllib

import numpy as np
import pandas as pd
import torch
from torch_rechub.basic.features import DenseFeature, SparseFeature
from torch_rechub.models.multi_task import MMOE, PLE, SharedBottom
from torch_rechub.trainers import MTLTrainer
from torch_rechub.utils.data import DataGenerator


def auc(scores, labels):
    pos = labels > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(p, y):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def rows(path):
    with open(path) as fh:
        return np.array([int(l) for l in fh if l.strip() and not l.startswith("#")], dtype=np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--census", required=True, help="folder written by `mfh prepare census`")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with open(os.path.join(args.census, "census.toml"), "rb") as fh:
        cfg = tomllib.load(fh)
    csv = cfg["data"]["csv"]
    df = pd.read_csv(os.path.join(args.census, cfg["data"]["sources"][0]), header=None, names=csv["columns"],
                     skipinitialspace=True, dtype=str, keep_default_na=False)
    split = {k: rows(os.path.join(args.census, v["rows"])) for k, v in cfg["splits"].items()}
    y = np.stack([
        (df[b["column"]].str.strip().isin(b["positive"])).astype(np.float32).to_numpy()
        for b in cfg["behaviours"]
    ], axis=1)
    names = [b["name"] for b in cfg["behaviours"]]

    x, features = {}, []
    for f in cfg["features"]:
        col = df[f["name"]].str.strip()
        if f["type"] == "categorical":
            codes, _ = pd.factorize(col.replace({"?": "<missing>", "": "<missing>"}))
            x[f["name"]] = codes.astype(np.int64)
            features.append(SparseFeature(f["name"], vocab_size=int(codes.max()) + 1, embed_dim=f["dim"]))
        else:
            v = np.log1p(np.maximum(pd.to_numeric(col, errors="coerce").fillna(0).to_numpy(np.float64), 0))
            mean, std = v[split["train"]].mean(), v[split["train"]].std(ddof=1)
            x[f["name"]] = ((v - mean) / (std if std > 0 else 1)).astype(np.float32)
            features.append(DenseFeature(f["name"]))

    def part(name):
        idx = split[name]
        return {k: v[idx] for k, v in x.items()}, y[idx]

    (xtr, ytr), (xva, yva), (xte, yte) = part("train"), part("valid"), part("test")
    models = cfg["models"]
    tasks = ["classification"] * len(names)
    build = {
        "sb": lambda m: SharedBottom(features, tasks, {"dims": m["bottom"]}, [{"dims": m["tower"]}] * len(tasks)),
        "mmoe": lambda m: MMOE(features, tasks, m["experts"], {"dims": m["expert_layers"]}, [{"dims": m["tower"]}] * len(tasks)),
        "ple": lambda m: PLE(features, tasks, m["levels"], m["task_experts"], m["shared_experts"],
                             {"dims": m["expert_layers"]}, [{"dims": m["tower"]}] * len(tasks)),
    }
    records = []
    torch.set_num_threads(2)
    for seed in range(args.seeds):
        for name in ["sb", "mmoe", "ple"]:
            torch.manual_seed(42 + seed)
            np.random.seed(42 + seed)
            model = build[name](models[name])
            dg = DataGenerator(xtr, ytr)
            train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=xva, y_val=yva, x_test=xte, y_test=yte, batch_size=1024)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = MTLTrainer(model, tasks, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5},
                                     n_epoch=cfg["train"].get("epochs", 10), earlystop_patience=2, device="cpu", model_path=tmp)
                trainer.fit(train_dl, val_dl)
                trainer.model.eval()
                out = []
                with torch.no_grad():
                    for xb, _ in test_dl:
                        out.append(trainer.model(xb).cpu().numpy())
                preds = np.concatenate(out)
            for t, b in enumerate(names):
                p, lab = preds[:, t], yte[:, t]
                for metric, value in (("auc", auc(p, lab)), ("logloss", logloss(p, lab))):
                    records.append(dict(model=f"rechub-{name}", seed=42 + seed, split="test", behaviour=b, cell="all",
                                        metric=metric, value=None if value is None or not math.isfinite(value) else value,
                                        n=int(len(lab)), positives=int((lab > 0.5).sum())))
                print(f"seed {42 + seed} rechub-{name} {b}: test AUC {auc(p, lab):.4f}", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
