"""Writes a Parquet copy of the raw KuaiRand-Pure log for `bench/kuairand-log-parquet.toml`.

    bench/.venv/bin/pip install pyarrow
    bench/.venv/bin/python bench/make_parquet.py   # → target/kuairand-log.parquet

Columns keep the types pyarrow infers from the CSV (int64 throughout); snappy pages, one
row group. The file is a build product: not committed.
"""

from pathlib import Path

import pyarrow.csv as pv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "data/kuairand-pure/log_standard_pure_20220425_20220506.csv.gz"
OUT = ROOT / "target/kuairand-log.parquet"

table = pv.read_csv(SRC)
OUT.parent.mkdir(parents=True, exist_ok=True)
pq.write_table(table, OUT, compression="snappy")
print(f"{table.num_rows} rows × {table.num_columns} columns → {OUT}")
