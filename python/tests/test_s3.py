"""S3 sources (the CLI built with the `s3` feature) against moto's S3 server, started here,
behind a TCP proxy that cuts connections in the middle of a response: training from the
bucket must equal training from the same files on disk (no row lost or read twice), and
`--follow s3://…` must take the objects under a prefix."""

import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

BUCKET = "mfh-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CuttingProxy:
    """Forwards 127.0.0.1:port to the server; the first `cuts` connections whose answers
    pass `after` bytes are reset there, in the middle of whatever response crosses it."""

    def __init__(self, target: int, after: int, cuts: int):
        self.target, self.after, self.left = target, after, cuts
        self.cut = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self, c):
        s = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self._pump, args=(c, s), daemon=True).start()
        sent = 0
        try:
            while data := s.recv(65536):
                with self.lock:
                    cut = self.left > 0 and sent + len(data) > self.after
                    if cut:
                        self.left -= 1
                        self.cut += 1
                if cut:
                    c.sendall(data[: self.after - sent])
                    # A reset, not a clean end: the client sees the connection break.
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                c.sendall(data)
                sent += len(data)
        except OSError:
            pass
        c.close()
        s.close()

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on a free port (the venv's `moto[server]`); yields its port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "w") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
                break
            except OSError:
                assert p.poll() is None, f"moto's server stopped: {log.read_text()}"
                assert time.time() < deadline, f"moto's server did not answer: {log.read_text()}"
                time.sleep(0.2)
        yield port
    finally:
        p.terminate()
        p.wait(timeout=30)


def _client(port: int):
    import boto3

    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )


def _env(port: int) -> dict:
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
    )
    return env


def _train(mfh_bin, config: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(mfh_bin), "train", "--config", str(config), "--model", "mmoe", "--out", str(out),
         "--seed", "3", "--quiet", *extra],
        capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, f"mfh train failed ({r.returncode}):\n{r.stderr}"
    return r


def _config(kuairand: Path, sources: str, side: str, dest: Path, max_steps: int = 24) -> Path:
    """The prepared config with the log read from `sources` (date partitions) and the
    side tables from `side`, one short epoch (`max_steps`, 0: the whole epoch)."""
    text = kuairand.read_text()
    text = text.replace(
        'sources = ["log.csv.gz"]',
        f'sources = ["{sources}"]\npartitions = {{ date = "int" }}',
    )
    for t in ("users", "videos", "item_counts"):
        text = text.replace(f'path = "{t}.csv.gz"', f'path = "{side}/{t}.csv.gz"')
    text = text.replace(
        "epochs = 4\n", f"epochs = 1\nmax_steps = {max_steps}\nthreads = 2\n"
    ).replace("eval_every = 125\n", "eval_every = 12\n")
    dest.write_text(text)
    return dest


def test_training_from_a_bucket_through_broken_connections_equals_training_from_disk(
    kuairand, mfh_bin, s3, tmp_path
):
    # The log in date partitions (the date column becomes the folder), CSV and Parquet
    # alternating, as a writer would lay it out; the side tables beside them.
    log = pd.read_csv(kuairand.parent / "log.csv.gz")
    local = tmp_path / "local"
    files = {}
    for i, (date, part) in enumerate(log.groupby("date", sort=True)):
        rows = part.drop(columns="date")
        if i % 2 == 0:
            name = f"logs/date={date}/part-0.csv.gz"
            body = gzip.compress(rows.to_csv(index=False).encode(), mtime=0)
        else:
            name = f"logs/date={date}/part-0.parquet"
            body = rows.to_parquet(index=False)
        files[name] = body
    for t in ("users", "videos", "item_counts"):
        files[f"side/{t}.csv.gz"] = (kuairand.parent / f"{t}.csv.gz").read_bytes()
    # What a writer leaves beside its data is never read.
    files["logs/_temporary/part-9.csv.gz"] = b"not data"
    files["logs/date=20220428/.part-1.csv.gz.crc"] = b"not data"
    client = _client(s3)
    client.create_bucket(Bucket=BUCKET)
    for name, body in files.items():
        client.put_object(Bucket=BUCKET, Key=name, Body=body)
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(body)
    assert len({n for n in files if n.endswith(".parquet")}) >= 4

    on_disk = _config(kuairand, f"{local}/logs/date=*/part-0.*", str(local / "side"), tmp_path / "disk.toml")
    in_s3 = _config(kuairand, f"s3://{BUCKET}/logs/date=*/part-0.*", f"s3://{BUCKET}/side", tmp_path / "s3.toml")
    proxy = CuttingProxy(s3, after=300_000, cuts=4)
    try:
        _train(mfh_bin, on_disk, tmp_path / "disk", dict(os.environ))
        _train(mfh_bin, in_s3, tmp_path / "s3", _env(proxy.port))
    finally:
        proxy.close()
    assert proxy.cut == 4, "the proxy cut fewer connections than planned: nothing was tested"

    def evaluate(model: Path, config: Path, env: dict) -> dict:
        r = subprocess.run(
            [str(mfh_bin), "eval", "--model-dir", str(model), "--config", str(config),
             "--split", "valid", "--json"],
            capture_output=True, text=True, env=env,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    a = evaluate(tmp_path / "disk", on_disk, dict(os.environ))
    b = evaluate(tmp_path / "s3", in_s3, _env(s3))
    records = a["records"] if isinstance(a, dict) else a
    assert sum(1 for r in records if r["metric"] == "auc") >= 3, a
    assert a == b, "training from the bucket differs from training from disk"


def test_follow_takes_the_objects_under_a_prefix(kuairand, mfh_bin, s3, tmp_path):
    log = pd.read_csv(kuairand.parent / "log.csv.gz")
    client = _client(s3)
    client.create_bucket(Bucket="mfh-follow")
    for t in ("users", "videos", "item_counts"):
        client.put_object(Bucket="mfh-follow", Key=f"side/{t}.csv.gz",
                          Body=(kuairand.parent / f"{t}.csv.gz").read_bytes())
    # Small files: the first epoch runs to its end (following starts after it).
    train = log[log.date <= 20220504].head(3000).drop(columns="date")
    client.put_object(Bucket="mfh-follow", Key="logs/date=20220428/part-0.csv.gz",
                      Body=gzip.compress(train.to_csv(index=False).encode()))
    # Two later days arrive under the followed prefix; one more is still being written
    # (a hidden name) and one partition has no `_SUCCESS` marker yet.
    for date in (20220505, 20220506, 20220507):
        rows = log[log.date == date].head(2000).drop(columns="date")
        client.put_object(Bucket="mfh-follow", Key=f"new/date={date}/part-0.csv.gz",
                          Body=gzip.compress(rows.to_csv(index=False).encode()))
    client.put_object(Bucket="mfh-follow", Key="new/date=20220505/_SUCCESS", Body=b"")
    client.put_object(Bucket="mfh-follow", Key="new/date=20220506/_SUCCESS", Body=b"")
    client.put_object(Bucket="mfh-follow", Key="new/date=20220506/.part-1.csv.gz", Body=b"x")
    config = _config(kuairand, "s3://mfh-follow/logs/date=*/part-0.csv.gz", "s3://mfh-follow/side",
                     tmp_path / "follow.toml", max_steps=0)
    out = tmp_path / "run"
    _train(mfh_bin, config, out, _env(s3), "--follow", "s3://mfh-follow/new", "--follow-success",
           "--follow-idle-exit", "1", "--follow-poll-ms", "200")
    lines = [json.loads(line) for line in (out / "follow.jsonl").read_text().splitlines()]
    assert [line["file"] for line in lines] == [
        "s3://mfh-follow/new/date=20220505/part-0.csv.gz",
        "s3://mfh-follow/new/date=20220506/part-0.csv.gz",
    ], lines
