#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/ (run from anywhere; idempotent).

Each seed is a harness input: the selector/flags byte the harness documents, then a file's
bytes. Sources: small files written here, the repository's configs, and the model folders
in fuzz/model-base/ (a tiny MMoE and MFH trained by `mfh train` on a 40-row log)."""
import glob, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Row parser: flags (bit0 gzip, bit1 header, bit2 skip, bit3 side table, >=0xfc chunk edge).
HEADER = b"uid,day,tags,price,clicked,play,dur\n"
ROWS = b"u1,1,t1|t2,1.5,1,5,10\nu2,1,,,0,3,0\nu3,2,t2,2e1,1,30,10\nu1,3,t3,0,0,1,2\n"
rows = {
    "plain": ROWS,
    "crlf": ROWS.replace(b"\n", b"\r\n"),
    "quoted": b'"u1",1,"t1|t2","1.5",1,5,10\n"u,2",2,"a ""b""",3,0,1,1\n',
    "missing": b"u1,1,,,,,\nu2,2,t1,nan,1,inf,0\n",
    "short": b"u1,1\nu2,2,t1,1,1,1,1,1\n",
    "noeol": b"u1,1,t1,1,1,1,1",
}
for name, body in rows.items():
    put("row_parser", f"rows-{name}", bytes([2]) + body)
    put("row_parser", f"rows-{name}-gz", bytes([3]) + body)
    put("row_parser", f"rows-{name}-skip", bytes([6]) + body)
put("row_parser", "whole-file", bytes([0]) + HEADER + ROWS)
put("row_parser", "bom-file", bytes([0]) + b"\xef\xbb\xbf" + HEADER + ROWS)
put("row_parser", "chunk-edge", bytes([0xFE]) + ROWS)
put("row_parser", "chunk-edge-quoted", bytes([0xFF]) + b'"u1",1,"t1|t2","1.5",1,5,10\n')
put("row_parser", "side", bytes([0x0A]) + b"u1,a,30\nu2,c,\nu3,\"b\",50\n")
put("row_parser", "side-whole", bytes([0x08]) + b"uid,tier,age\r\nu1,a,30\r\nu1,b,31\r\n")

# Config loader: the repository's configs, and one over the harness's own files.
for path in sorted(set(glob.glob(os.path.join(ROOT, "**", "*.toml"), recursive=True))):
    rel = os.path.relpath(path, ROOT)
    if rel.startswith(("target", "fuzz", "mfh-quickstart")) or rel.endswith("Cargo.toml"):
        continue
    if os.path.basename(rel) in ("rustfmt.toml", "clippy.toml", "config.toml"):
        continue
    put("config_loader", rel.replace("/", "_"), open(path, "rb").read())
put("config_loader", "harness.toml", open(os.path.join(HERE, "seeds-src", "harness.toml"), "rb").read())

# Model folder: selector (bits 0-2 the file, bit 3 MFH base), then the file.
FILES = ["model.json", "config.toml", "transforms.json", "dense.bin", "embeddings.bin"]
for bit, base in [(0, "mmoe"), (8, "mfh")]:
    for i, name in enumerate(FILES):
        data = open(os.path.join(HERE, "model-base", base, name), "rb").read()
        if name == "dense.bin":
            data = data[:-8]
        put("model_dir", f"{base}-{name}", bytes([bit | i]) + data)
    put("model_dir", f"{base}-as-is", bytes([bit | 6]))

# Embedding file: mode byte, then a layer / table / header (checksums dropped where the
# harness appends them).
layer = open(os.path.join(HERE, "model-base", "mmoe", "embeddings.bin"), "rb").read()
n_fields = struct.unpack_from("<I", layer, 16)[0]
pos = 20
for _ in range(n_fields):
    pos += 4 + struct.unpack_from("<I", layer, pos)[0] + 9
header = layer[: pos + 8]
put("embedding_file", "layer", bytes([0]) + layer)
put("embedding_file", "header", bytes([2]) + header[:-8])
tables = layer[len(header):]
# Each table: magic..row count, rows, checksum; walk them by their own lengths.
at = 0
k = 0
while at < len(tables):
    t = tables[at:]
    name_len = struct.unpack_from("<I", t, 12)[0]
    p = 16 + name_len
    dim = struct.unpack_from("<I", t, p)[0]
    p += 4 + 4 + 8
    tag = t[p]
    p += 1 + (12 if tag == 1 else 16)
    p += 4 + 8 + 8  # lifecycle (v2)
    sw = struct.unpack_from("<I", t, p)[0]
    p += 4
    n = struct.unpack_from("<Q", t, p)[0]
    p += 8 + n * (8 + 4 * (dim + sw))
    put("embedding_file", f"table{k}", bytes([1]) + t[:p])
    if k == 0:
        put("embedding_file", "first-table", bytes([3]) + t[:p])
    at += p + 8
    k += 1
