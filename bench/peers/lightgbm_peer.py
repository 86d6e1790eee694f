#!/usr/bin/env python3
"""The pragmatic peer: one LightGBM model per binary behaviour, on exactly the table,
features, facets and splits of an mfh config (read from the same TOML), selected on the
comparison's select split and scored on its report split.

Writes records in the shape of `mfh compare`'s results.json (model, seed, split,
behaviour, cell, metric, value, n, positives); put the file in `COMPARE_OUT/peers/` and
`mfh compare` shows it as a row of table.md.

    bench/peers/run_lightgbm.sh CONFIG.toml COMPARE_OUT [SEEDS]

Differences from mfh's models, by necessity: trees take numbers raw (no log1p /
standardise needed) and categorical columns natively; a multi-valued column keeps its
first value only (LightGBM has no pooled multi-hot input); each behaviour is its own
model (no sharing across behaviours or cells).
"""
import argparse
import json
import math
import os
import sys
import tomllib

import lightgbm as lgb
import numpy as np
import pandas as pd


def read_table(path, csv):
    sep = csv.get("delimiter", ",")
    header = csv.get("header", True)
    names = csv.get("columns") or None
    missing = csv.get("missing", [""])
    return pd.read_csv(
        path,
        sep=sep,
        header=0 if header else None,
        names=None if header else names,
        na_values=[m for m in missing if m != ""],
        keep_default_na=True,
        dtype=str,
        compression="infer",
    )


def load(cfg, base):
    data = cfg["data"]
    csv = data.get("csv", {})
    main = pd.concat([read_table(os.path.join(base, s), csv) for s in data["sources"]], ignore_index=True)
    for t in data.get("side_tables", []):
        side = read_table(os.path.join(base, t["path"]), t.get("csv", {}))
        side = side.rename(columns={c: f"{t['name']}.{c}" for c in side.columns})
        key = f"{t['name']}.{t['key']}"
        main = main.merge(side, how="left", left_on=t.get("join_on", t["key"]), right_on=key)
    return main


def column(df, name):
    if name in df.columns:
        return df[name]
    hits = [c for c in df.columns if c.split(".", 1)[-1] == name and "." in c]
    if len(hits) != 1:
        sys.exit(f"column {name!r}: not found or ambiguous")
    return df[hits[0]]


def num(series):
    return pd.to_numeric(series, errors="coerce")


def mask(df, predicate):
    m = np.ones(len(df), dtype=bool)
    for clause in predicate.replace("&&", " and ").split(" and "):
        clause = clause.strip()
        for op in ["<=", ">=", "==", "!=", "<", ">", "="]:
            if op in clause:
                col, val = [x.strip() for x in clause.split(op, 1)]
                v = num(column(df, col))
                x = float(val)
                m &= {"<=": v <= x, ">=": v >= x, "==": v == x, "=": v == x, "!=": v != x, "<": v < x, ">": v > x}[op].fillna(False).to_numpy()
                break
        else:
            sys.exit(f"cannot read the predicate clause {clause!r}")
    return m


def cells(df, facets):
    names = []
    codes = np.zeros(len(df), dtype=np.int64)
    values = []
    for f in facets:
        if "thresholds" not in f:
            sys.exit("this peer reads threshold facets only")
        v = num(column(df, f["column"])).to_numpy()
        idx = np.searchsorted(np.array(f["thresholds"], dtype=float), v, side="left")
        if f.get("default") is not None:
            idx = np.where(np.isnan(v), f["names"].index(f["default"]), idx)
        codes = codes * len(f["names"]) + idx
        values.append(f["names"])
    import itertools

    for combo in itertools.product(*values):
        names.append(",".join(f"{f['name']}={c}" for f, c in zip(facets, combo)) or "any")
    return codes, names


def auc(scores, labels):
    pos = labels > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(p, y):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(y) else None


def gauc(p, y, g):
    total, weight = 0.0, 0
    for _, idx in pd.Series(np.arange(len(g))).groupby(g):
        a = auc(p[idx.to_numpy()], y[idx.to_numpy()])
        if a is not None:
            total += a * len(idx)
            weight += len(idx)
    return total / weight if weight else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with open(args.config, "rb") as fh:
        cfg = tomllib.load(fh)
    base = os.path.dirname(os.path.abspath(args.config))
    df = load(cfg, base)
    splits = cfg["splits"]
    select, report = cfg["compare"]["select"], cfg["compare"]["report"]
    train_m = mask(df, splits[cfg.get("train", {}).get("train_split", "train")]["where"])
    sel_m, rep_m = mask(df, splits[select]["where"]), mask(df, splits[report]["where"])

    feats, cats = pd.DataFrame(index=df.index), []
    for f in cfg["features"]:
        col = column(df, f.get("column", f["name"]))
        if f["type"] in ("categorical", "multi"):
            sep = f.get("separator", ",") if f["type"] == "multi" else None
            values = col.str.split(sep).str[0] if sep else col
            feats[f["name"]] = values.astype("category")
            cats.append(f["name"])
        else:
            feats[f["name"]] = num(col)
    codes, cell_names = cells(df, cfg.get("facets", []))
    groups = column(df, cfg["data"]["gauc_column"]).to_numpy() if cfg["data"].get("gauc_column") else None

    records = []
    for seed in range(args.seeds):
        for b in cfg["behaviours"]:
            if b["type"] != "binary":
                continue
            y = num(column(df, b["column"])).to_numpy()
            keep = ~np.isnan(y)
            params = dict(objective="binary", learning_rate=0.05, num_leaves=63, min_data_in_leaf=50,
                          feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1, seed=42 + seed,
                          verbose=-1, num_threads=2, max_cat_to_onehot=8, cat_smooth=10)
            tr = lgb.Dataset(feats[train_m & keep], y[train_m & keep], categorical_feature=cats, free_raw_data=False)
            va = lgb.Dataset(feats[sel_m & keep], y[sel_m & keep], reference=tr)
            model = lgb.train(params, tr, num_boost_round=2000, valid_sets=[va],
                              callbacks=[lgb.early_stopping(50, verbose=False)])
            rows = rep_m & keep
            p = model.predict(feats[rows], num_iteration=model.best_iteration)
            yr, cr = y[rows], codes[rows]
            gr = groups[rows] if groups is not None else None
            for ci, name in list(enumerate(cell_names)) + [(None, "all")]:
                sel = np.ones(len(yr), dtype=bool) if ci is None else cr == ci
                vals = {"auc": auc(p[sel], yr[sel]), "logloss": logloss(p[sel], yr[sel])}
                if gr is not None:
                    vals["gauc"] = gauc(p[sel], yr[sel], gr[sel])
                for metric, value in vals.items():
                    records.append(dict(model="lightgbm", seed=42 + seed, split=report, behaviour=b["name"],
                                        cell=name, metric=metric,
                                        value=None if value is None or not math.isfinite(value) else value,
                                        n=int(sel.sum()), positives=int((yr[sel] > 0.5).sum())))
            print(f"seed {42 + seed} {b['name']}: {model.best_iteration} trees, report AUC {auc(p, yr):.4f}", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
