"""model.predict on 1,024-row DataFrames against the Rust request path on the same rows
(decode + score in process, rows already split into fields as a parsed request holds
them), in one process, rounds interleaved. Prints rows/s per round, medians, min–max and
the ratio. Run through bench/python_predict.sh (it builds the package and the data)."""

import statistics
import sys
import time

import pandas as pd

import mfh

cfg_path, out = sys.argv[1], sys.argv[2]
models = sys.argv[3].split(",") if len(sys.argv) > 3 else ["mmoe", "mfh"]
ROWS, CHUNKS, ROUNDS = 1024, 16, 7

cfg = mfh.Config(cfg_path, overrides={"train.epochs": 1, "train.max_steps": 40, "train.eval_every": 40})
log = pd.read_csv(cfg.path.parent / "log.csv.gz")
valid = log[(log.date >= 20220505) & (log.date <= 20220506)]
frames = [valid.iloc[i * ROWS:(i + 1) * ROWS] for i in range(CHUNKS)]
assert all(len(f) == ROWS for f in frames)
print(f"# kernel path {mfh.kernel_path()}; {CHUNKS} DataFrames of {ROWS} rows per round, {ROUNDS} rounds")
print("model,round,predict_rows_per_s,request_path_rows_per_s,ratio")
for name in models:
    m = mfh.train(cfg, model=name, out=f"{out}/{name}", seed=1, progress=False)
    m.predict(frames[0])  # warm-up
    py, rust = [], []
    for r in range(ROUNDS):
        t0 = time.perf_counter()
        for f in frames:
            s = m.predict(f)
            assert len(s) == ROWS
        py.append(ROWS * CHUNKS / (time.perf_counter() - t0))
        secs = sum(m.time_request_path(f, reps=1) for f in frames)
        rust.append(ROWS * CHUNKS / secs)
        print(f"{name},{r},{py[-1]:.0f},{rust[-1]:.0f},{py[-1] / rust[-1]:.3f}")
    ratios = [a / b for a, b in zip(py, rust)]
    print(
        f"# {name}: predict median {statistics.median(py):.0f} rows/s (min {min(py):.0f}, max {max(py):.0f}); "
        f"request path median {statistics.median(rust):.0f} (min {min(rust):.0f}, max {max(rust):.0f}); "
        f"ratio median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
    )
