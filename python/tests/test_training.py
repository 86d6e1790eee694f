"""Training from Python: from DataFrames as from files, errors as exceptions with their
location, Ctrl-C leaving a run that resumes, comparisons as DataFrames."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

import mfh
from conftest import OVERRIDES


def same_weights(a, b):
    wa, wb = a.weights(), b.weights()
    assert wa.keys() == wb.keys()
    return all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_training_from_dataframes_equals_training_from_files(cfg, log, tmp_path):
    train = log[(log.date >= 20220428) & (log.date <= 20220504)]
    valid = log[(log.date >= 20220505) & (log.date <= 20220506)]
    files = mfh.train(cfg, model="mmoe", out=tmp_path / "files", seed=11, progress=False)
    frames = mfh.train(
        cfg, model="mmoe", out=tmp_path / "frames", seed=11, progress=False,
        data={"train": train, "valid": valid},
    )
    assert same_weights(files, frames)
    a, b = files.evaluate(split="valid"), frames.evaluate(split="valid")
    assert len(a) == len(b) > 0
    assert np.allclose(a.auc.to_numpy(float), b.auc.to_numpy(float), equal_nan=True)


def test_bad_config_raises_config_error_naming_the_key(kuairand):
    with pytest.raises(mfh.ConfigError) as e:
        mfh.Config(kuairand, overrides={"train.epochs": "many"})
    assert e.value.key is not None and "epochs" in str(e.value)
    with pytest.raises(mfh.ConfigError) as e:
        mfh.Config(kuairand, overrides={"train.batch_size": 0})
    assert e.value.key == "train.batch_size", str(e.value)
    with pytest.raises(mfh.ConfigError):
        mfh.Config(kuairand.parent / "no-such.toml")


def test_missing_column_and_bad_value_raise_data_error(models, log, cfg, tmp_path):
    m = models["mmoe"]
    rows = log.iloc[:50]
    with pytest.raises(mfh.DataError, match="missing input `video_id`") as e:
        m.predict(rows.drop(columns=["video_id"]))
    assert e.value.row == 0
    bad = rows.copy()
    bad["item_prior_impressions"] = bad["item_prior_impressions"].astype(object)
    bad.loc[bad.index[9], "item_prior_impressions"] = "lots"
    with pytest.raises(mfh.DataError, match="lots") as e:
        m.predict(bad)
    assert e.value.row == 9
    # Training data: the error names the table, its 1-based row and the column.
    train = log[(log.date >= 20220428) & (log.date <= 20220504)].copy()
    train["item_prior_impressions"] = train["item_prior_impressions"].astype(object)
    train.iloc[4, train.columns.get_loc("item_prior_impressions")] = "lots"
    with pytest.raises(mfh.DataError) as e:
        mfh.train(cfg, model="mmoe", out=tmp_path / "bad", progress=False, data={"train": train})
    assert e.value.file == 'data["train"]', str(e.value)
    assert e.value.line == 5 and e.value.column == "item_prior_impressions", str(e.value)
    with pytest.raises(mfh.ConfigError, match="not a split"):
        mfh.train(cfg, model="mmoe", out=tmp_path / "bad2", progress=False, data={"nope": train})


def test_compare_returns_a_table(cfg, tmp_path):
    table = mfh.compare(cfg, models=["sb", "mmoe"], seeds=1, out=tmp_path / "cmp", bootstrap=50)
    assert set(table.model) == {"sb", "mmoe"}
    assert {"seed", "split", "behaviour", "cell", "auc", "n"} <= set(table.columns)
    assert (tmp_path / "cmp" / "table.md").is_file()
    assert table.auc.notna().sum() > 0


SCRIPT = textwrap.dedent(
    """
    import signal, sys, mfh
    # Ctrl-C raises KeyboardInterrupt even when this process was started with SIGINT
    # ignored (a test run launched in the background by a non-interactive shell: Python
    # then leaves SIGINT ignored, and the stop request would never arrive).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = mfh.Config(sys.argv[1], overrides=dict(eval(sys.argv[3])))
    try:
        mfh.train(cfg, model="mmoe", out=sys.argv[2], seed=5, progress=False)
        print("FINISHED")
    except mfh.Interrupted as e:
        print("INTERRUPTED", e.step, e.checkpoint, flush=True)
        sys.exit(3)
    """
)


def test_sigint_leaves_a_run_that_resume_continues(kuairand, tmp_path):
    over = dict(OVERRIDES, **{"train.max_steps": 160, "train.eval_every": 80,
                             "train.checkpoint_every": 4, "train.threads": 1})
    out = tmp_path / "run"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    p = subprocess.Popen(
        [sys.executable, str(script), str(kuairand), str(out), repr(over)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ckpts = out / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if ckpts.is_dir() and any(c.name.startswith("ckpt-") for c in ckpts.iterdir()):
            break
        time.sleep(0.05)
    assert p.poll() is None, f"the run ended before a checkpoint: {p.communicate()}"
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 3, (p.returncode, stdout, stderr)
    words = stdout.split()
    assert words[0] == "INTERRUPTED", stdout
    step = int(words[1])
    assert 0 < step < 160
    cfg = mfh.Config(kuairand, overrides=over)
    resumed = mfh.train(cfg, model="mmoe", out=out, seed=5, progress=False, resume=True)
    whole = mfh.train(cfg, model="mmoe", out=tmp_path / "whole", seed=5, progress=False)
    assert same_weights(resumed, whole)
