"""Scoring from Python equals the CLI's, whatever the input's form; metrics equal
`mfh eval`'s; weights and embeddings leave mfh intact."""

import json
import subprocess
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mfh
from conftest import run_cli


def cli_predictions(mfh_bin, model, tmp_path, split="valid"):
    out = tmp_path / f"pred-{model.name}.csv"
    run_cli(
        mfh_bin, "predict", "--model-dir", str(model.dir), "--config",
        str(model.dir / "config.toml"), "--split", split, "--out", str(out),
    )
    return pd.read_csv(out)


def test_predict_equals_cli_predict(mfh_bin, models, valid_rows, tmp_path):
    for name, model in models.items():
        cli = cli_predictions(mfh_bin, model, tmp_path)
        assert len(cli) == len(valid_rows) > 1000, name
        assert cli["row"].tolist() == valid_rows.index.tolist(), name
        py = model.predict(valid_rows)
        assert len(py) == len(cli)
        assert py["cell"].tolist() == cli["cell"].tolist(), name
        for b in model.behaviours:
            diff = np.abs(py[b].to_numpy(np.float64) - cli[f"{b}_pred"].to_numpy(np.float64))
            assert diff.max() <= 1e-6, (name, b, diff.max())


def test_text_columns_score_like_typed_columns(models, valid_rows, kuairand):
    # The same rows read as text: "12" and 12 are one key, "0.5" and 0.5 one number.
    text = pd.read_csv(kuairand.parent / "log.csv.gz", dtype=str, keep_default_na=False)
    text = text.loc[valid_rows.index[:2000]]
    m = models["mfh"]
    a = m.predict(valid_rows.iloc[:2000])
    b = m.predict(text)
    assert len(a) == len(b) == 2000
    for col in m.behaviours:
        assert np.array_equal(a[col].to_numpy(), b[col].to_numpy()), col
    assert mfh.hash_id(12) == mfh.hash_id("12") == mfh.hash_id(12.0) == mfh.hash_id(np.int64(12))
    assert mfh.hash_id("12") != mfh.hash_id("12.5")


def test_pandas_arrow_and_dict_inputs_score_the_same(models, valid_rows):
    rows = valid_rows.iloc[:1500]
    m = models["ple"]
    want = m.predict(rows)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    inputs = {
        "arrow table": table,
        "record batch": table.combine_chunks().to_batches()[0],
        "chunked table": pa.concat_tables([table.slice(0, 700), table.slice(700)]),
        "dict of numpy": {c: rows[c].to_numpy() for c in rows.columns},
    }
    for what, data in inputs.items():
        got = m.predict(data)
        assert len(got) == len(want), what
        for b in m.behaviours:
            assert np.array_equal(got[b].to_numpy(), want[b].to_numpy()), (what, b)
        assert got["cell"].tolist() == want["cell"].tolist(), what


def test_evaluate_equals_cli_eval(mfh_bin, models):
    for name, model in models.items():
        out = run_cli(mfh_bin, "eval", "--model-dir", str(model.dir), "--split", "valid", "--json")
        cli = json.loads(out)
        records = cli["records"] if isinstance(cli, dict) else cli
        want = {
            (r["behaviour"], r["cell"], r["metric"]): r["value"]
            for r in records
            if r["split"] == "valid"
        }
        report = model.evaluate(split="valid")
        assert set(["behaviour", "cell", "auc", "gauc", "logloss", "n", "positives"]) <= set(report.columns)
        assert len(report) > 0
        compared = 0
        for _, row in report.iterrows():
            for metric in ["auc", "gauc", "logloss"]:
                w = want.get((row.behaviour, row.cell, metric))
                if w is None:
                    assert pd.isna(row[metric]), (name, row.behaviour, row.cell, metric)
                    continue
                assert row[metric] == pytest.approx(w, abs=1e-12), (name, row.behaviour, row.cell, metric)
                compared += 1
        assert compared >= 3 * len(model.behaviours), name


def test_two_threads_score_like_one(models, valid_rows):
    m = models["mfh"]
    parts = [valid_rows.iloc[:3000], valid_rows.iloc[3000:6000]]
    alone = [m.predict(p) for p in parts]
    got = [None, None]

    def work(i):
        for _ in range(3):
            got[i] = m.predict(parts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert got[i] is not None and len(got[i]) == len(alone[i])
        for b in m.behaviours:
            assert np.array_equal(got[i][b].to_numpy(), alone[i][b].to_numpy()), (i, b)


def test_weights_round_trip_through_safetensors(models, tmp_path):
    from safetensors.numpy import load_file

    m = models["mmoe"]
    w = m.weights()
    assert len(w) > 4 and all(v.dtype == np.float32 and v.size > 0 for v in w.values())
    path = tmp_path / "mmoe.safetensors"
    m.save_safetensors(path, embeddings=True)
    loaded = load_file(str(path))
    for k, v in w.items():
        assert k in loaded, k
        assert np.array_equal(loaded[k], v), k
    keys, rows = m.embeddings("user_id")
    assert keys.dtype == np.uint64 and rows.dtype == np.float32
    assert rows.shape == (len(keys), 16) and len(keys) > 100
    assert any(k.startswith("embeddings.") and k.endswith(".keys") for k in loaded)
    with pytest.raises(mfh.MfhError, match="no embedded feature `nope`"):
        m.embeddings("nope")


def test_onnx_export_fed_by_onnx_feed_equals_predict(mfh_bin, models, valid_rows, tmp_path):
    import onnxruntime as ort
    rows = valid_rows.iloc[:1000]
    for name, model in models.items():
        onnx = tmp_path / f"{name}.onnx"
        run_cli(mfh_bin, "export", "--model-dir", str(model.dir), "--onnx", str(onnx))
        sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        # The graph and io.json are one bundle: the graph's metadata carries io.json's id.
        io = json.loads((tmp_path / f"{name}.onnx.io.json").read_text())
        assert sess.get_modelmeta().custom_metadata_map["mfh_bundle"] == io["bundle"]["id"], name
        feed = model.onnx_feed(rows)
        names = {i.name for i in sess.get_inputs()}
        assert names == set(feed), (name, names ^ set(feed))
        (scores,) = sess.run(["scores"], feed)
        want = model.predict(rows)[model.behaviours].to_numpy()
        assert scores.shape == want.shape
        assert np.abs(scores - want).max() <= 1e-5, (name, np.abs(scores - want).max())
        # Model.export_onnx writes its bundle through the same code.
        py_onnx = tmp_path / f"{name}-py.onnx"
        model.export_onnx(py_onnx)
        py_io = json.loads((tmp_path / f"{name}-py.onnx.io.json").read_text())
        py_sess = ort.InferenceSession(str(py_onnx), providers=["CPUExecutionProvider"])
        assert py_sess.get_modelmeta().custom_metadata_map["mfh_bundle"] == py_io["bundle"]["id"]
        (py_scores,) = py_sess.run(["scores"], feed)
        assert np.abs(py_scores - scores).max() <= 1e-6, name
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli_predict_on_unlabelled_files_keeps_columns(mfh_bin, models, valid_rows, tmp_path):
    m = models["mfh"]
    rows = valid_rows.iloc[:3000].drop(columns=["is_click", "long_view", "is_like", "date"])
    src = tmp_path / "unlabelled.csv"
    rows.to_csv(src, index=False)
    want = m.predict(rows)
    for out in [tmp_path / "p.csv", tmp_path / "p.parquet"]:
        run_cli(mfh_bin, "predict", "--model-dir", str(m.dir), "--data", str(src),
                "--keep", "user_id,video_id", "--out", str(out))
        got = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)
        assert list(got.columns) == ["row", "user_id", "video_id", "cell"] + [f"{b}_pred" for b in m.behaviours]
        assert len(got) == len(rows), out
        assert got["row"].tolist() == list(range(len(rows)))
        assert got["user_id"].astype(str).tolist() == rows["user_id"].astype(str).tolist()
        assert got["video_id"].astype(str).tolist() == rows["video_id"].astype(str).tolist()
        assert got["cell"].tolist() == want["cell"].astype(str).tolist()
        for b in m.behaviours:
            diff = np.abs(got[f"{b}_pred"].to_numpy(np.float64) - want[b].to_numpy(np.float64))
            assert diff.max() <= 1e-6, (out.name, b, diff.max())
    r = subprocess.run([str(mfh_bin), "predict", "--model-dir", str(m.dir), "--data", str(src),
                        "--keep", "nope", "--out", str(tmp_path / "x.csv")], capture_output=True, text=True)
    assert r.returncode != 0 and "--keep: no column `nope`" in r.stderr, r.stderr
    assert not (tmp_path / "x.csv").exists()
