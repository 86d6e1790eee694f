"""`mfh serve` answers Triton's own Python clients (tritonclient from PyPI) over KServe v2
REST — JSON and binary tensors — and gRPC, with the scores `mfh predict` writes for the
same rows; malformed requests get 4xx answers or gRPC error codes, never a crash."""

import re
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import run_cli

ROWS = 400


@pytest.fixture(scope="module")
def rows(kuairand, valid_rows, tmp_path_factory):
    """The first ROWS validation rows as the file holds them (every cell as text) and
    `mfh predict`'s scores for them."""
    text = pd.read_csv(kuairand.parent / "log.csv.gz", dtype=str, keep_default_na=False)
    text = text.loc[valid_rows.index[:ROWS]].drop(columns=["is_click", "long_view", "is_like"])
    return text.reset_index(drop=True)


@pytest.fixture(scope="module")
def server(mfh_bin, models):
    """`mfh serve` on free loopback ports, REST and gRPC, serving the MFH model."""
    m = models["mfh"]
    p = subprocess.Popen(
        [str(mfh_bin), "serve", "--model-dir", str(m.dir), "--addr", "127.0.0.1:0",
         "--grpc-addr", "127.0.0.1:0", "--max-rows", "1000"],
        stderr=subprocess.PIPE, text=True,
    )
    line = ""
    t0 = time.time()
    while "serving" not in line:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            pytest.fail(f"mfh serve exited ({p.returncode}) before serving", pytrace=False)
        assert time.time() - t0 < 120, "mfh serve did not start within 120 s"
    http_addr = re.search(r"http://(\S+)", line).group(1)
    grpc_addr = re.search(r"grpc://(\S+)", line).group(1)
    yield {"http": http_addr, "grpc": grpc_addr, "model": m, "name": m.name}
    p.terminate()
    assert p.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def want(mfh_bin, models, rows, tmp_path_factory):
    m = models["mfh"]
    d = tmp_path_factory.mktemp("triton")
    src = d / "rows.csv"
    rows.to_csv(src, index=False)
    run_cli(mfh_bin, "predict", "--model-dir", str(m.dir), "--data", str(src), "--out", str(d / "p.csv"))
    got = pd.read_csv(d / "p.csv")
    assert len(got) == len(rows) == ROWS
    return got


def model_inputs(client_meta, rows):
    """(name, datatype) of the model's inputs the rows carry."""
    inputs = client_meta["inputs"] if isinstance(client_meta, dict) else [
        {"name": i.name, "datatype": i.datatype} for i in client_meta.inputs]
    out = [(i["name"], i["datatype"]) for i in inputs if i["name"] in rows.columns]
    assert len(out) >= 5, out
    return out


def columns(rows, inputs):
    """Each input as a numpy column: FP64 where the model reads a number and every cell
    has one, else the cells' text as BYTES."""
    cols = []
    for name, dt in inputs:
        cells = rows[name]
        if dt == "FP64" and (cells != "").all():
            cols.append((name, "FP64", cells.astype(np.float64).to_numpy()))
        else:
            cols.append((name, "BYTES", np.array([c.encode() for c in cells], dtype=object)))
    assert any(dt == "FP64" for _, dt, _ in cols), "no numeric input sent as FP64"
    return cols


def check(got, want, behaviours, cells):
    assert [c.decode() if isinstance(c, bytes) else c for c in cells] == want["cell"].tolist()
    for b, v in got.items():
        assert v.shape == (ROWS,), (b, v.shape)
        diff = np.abs(v.astype(np.float64) - want[f"{b}_pred"].to_numpy(np.float64))
        assert diff.max() <= 1e-6, (b, diff.max())
    assert sorted(got) == sorted(behaviours)


@pytest.mark.parametrize("binary", [True, False])
def test_http_client_scores_equal_mfh_predict(server, rows, want, binary):
    c = httpclient.InferenceServerClient(server["http"])
    assert c.is_server_live() and c.is_model_ready(server["name"])
    meta = c.get_model_metadata(server["name"])
    behaviours = [o["name"] for o in meta["outputs"] if o["name"] != "cell"]
    inputs = []
    for name, dt, data in columns(rows, model_inputs(meta, rows)):
        i = httpclient.InferInput(name, [ROWS], dt)
        i.set_data_from_numpy(data, binary_data=binary)
        inputs.append(i)
    outputs = [httpclient.InferRequestedOutput(b, binary_data=binary) for b in behaviours + ["cell"]]
    r = c.infer(server["name"], inputs, outputs=outputs)
    check({b: r.as_numpy(b) for b in behaviours}, want, behaviours, r.as_numpy("cell").tolist())
    # No outputs named: every output, in JSON.
    r = c.infer(server["name"], inputs)
    check({b: r.as_numpy(b) for b in behaviours}, want, behaviours, r.as_numpy("cell").tolist())


def test_grpc_client_scores_equal_mfh_predict(server, rows, want):
    c = grpcclient.InferenceServerClient(server["grpc"])
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(server["name"])
    meta = c.get_model_metadata(server["name"])
    behaviours = [o.name for o in meta.outputs if o.name != "cell"]
    inputs = []
    for name, dt, data in columns(rows, model_inputs(meta, rows)):
        i = grpcclient.InferInput(name, [ROWS], dt)
        i.set_data_from_numpy(data)
        inputs.append(i)
    r = c.infer(server["name"], inputs)
    check({b: r.as_numpy(b) for b in behaviours}, want, behaviours, r.as_numpy("cell").tolist())
    # A subset of outputs, in the order asked.
    r = c.infer(server["name"], inputs, outputs=[grpcclient.InferRequestedOutput(behaviours[-1])])
    assert [o.name for o in r.get_response().outputs] == [behaviours[-1]]


def test_malformed_requests_get_errors_not_crashes(server, rows):
    g = grpcclient.InferenceServerClient(server["grpc"])
    h = httpclient.InferenceServerClient(server["http"])
    name = server["name"]
    rng = np.random.default_rng(7)
    ok = grpcclient.InferInput("user_id", [2], "BYTES")
    ok.set_data_from_numpy(np.array([b"1", b"2"], dtype=object))
    codes = {}
    for k in range(300):
        kind = k % 6
        if kind == 0:  # garbage in a BYTES tensor: lengths that run past the data
            i = grpcclient.InferInput("user_id", [3], "BYTES")
            i.set_data_from_numpy(np.array([b"a", b"b", b"c"], dtype=object))
            i._raw_content = rng.bytes(int(rng.integers(1, 64)))
            inputs = [i]
        elif kind == 1:  # an input the model does not have
            i = grpcclient.InferInput(f"nope{k}", [1], "FP32")
            i.set_data_from_numpy(np.array([1.0], dtype=np.float32))
            inputs = [i]
        elif kind == 2:  # a NaN
            i = grpcclient.InferInput("hourmin", [1], "FP32")
            i.set_data_from_numpy(np.array([np.nan], dtype=np.float32))
            inputs = [ok, i]
        elif kind == 3:  # lengths that differ
            i = grpcclient.InferInput("video_id", [1], "BYTES")
            i.set_data_from_numpy(np.array([b"1"], dtype=object))
            inputs = [ok, i]
        elif kind == 4:  # too many rows (the server takes 1000)
            i = grpcclient.InferInput("user_id", [1001], "BYTES")
            i.set_data_from_numpy(np.array([b"1"] * 1001, dtype=object))
            inputs = [i]
        else:  # a shape that does not hold the data
            i = grpcclient.InferInput("user_id", [5], "BYTES")
            i.set_data_from_numpy(np.array([b"1"] * 5, dtype=object))
            i._input.shape[:] = [7]
            inputs = [i]
        with pytest.raises(InferenceServerException) as e:
            g.infer(name, inputs)
        status = e.value.status()
        codes[status] = codes.get(status, 0) + 1
    assert set(codes) <= {"StatusCode.INVALID_ARGUMENT", "StatusCode.RESOURCE_EXHAUSTED"}, codes
    assert codes.get("StatusCode.RESOURCE_EXHAUSTED") == 50, codes
    assert g.is_server_live() and h.is_server_live()
    # REST: a binary header that points past the body, and binary sizes that do not add up.
    import urllib.request
    for body, headers in [
        (b'{"inputs":[]}', {"Inference-Header-Content-Length": "999"}),
        (b'{"inputs":[{"name":"user_id","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":9}}]}xx',
         {"Inference-Header-Content-Length": "97"}),
        (b'{"inputs":[{"name":"user_id","datatype":"BYTES","shape":[1],"data":["1"]}]}', {}),
    ]:
        req = urllib.request.Request(f"http://{server['http']}/v2/models/{name}/infer", data=body,
                                     headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert 400 <= e.value.code < 500, (body, e.value.code, e.value.read())
    assert h.is_server_live()
