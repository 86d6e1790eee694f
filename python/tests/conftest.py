"""Shared fixtures: the bundled KuaiRand slice prepared by the mfh CLI, a config with a
short training, and small trained models. The CLI binary is required (the tests compare
the package with it): set MFH_BIN, or build it with `cargo build -p mfh`."""

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import mfh

REPO = Path(__file__).resolve().parents[2]

# A short run: enough steps for non-trivial scores, fast on 2 cores.
OVERRIDES = {
    "train.epochs": 1,
    "train.max_steps": 24,
    "train.eval_every": 12,
    "train.threads": 2,
}


def _find_bin() -> Path:
    env = os.environ.get("MFH_BIN")
    candidates = [Path(env)] if env else [REPO / "target" / "debug" / "mfh", REPO / "target" / "release" / "mfh"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        f"the mfh CLI is needed and was not found at {', '.join(map(str, candidates))}: "
        "run `cargo build -p mfh` or set MFH_BIN",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def mfh_bin() -> Path:
    return _find_bin()


def run_cli(mfh_bin: Path, *args: str, cwd=None) -> str:
    r = subprocess.run([str(mfh_bin), *args], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, f"mfh {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def kuairand(tmp_path_factory, mfh_bin) -> Path:
    """The bundled KuaiRand slice (data/kuairand-pure, CC BY-SA 4.0) prepared; returns
    the config's path."""
    raw = REPO / "data" / "kuairand-pure"
    assert raw.is_dir(), f"{raw}: the bundled KuaiRand slice is missing"
    out = tmp_path_factory.mktemp("kuairand")
    run_cli(mfh_bin, "prepare", "kuairand", "--raw", str(raw), "--out", str(out))
    cfg = out / "kuairand.toml"
    assert cfg.is_file()
    return cfg


@pytest.fixture(scope="session")
def cfg(kuairand) -> mfh.Config:
    return mfh.Config(kuairand, overrides=OVERRIDES)


@pytest.fixture(scope="session")
def log(kuairand) -> pd.DataFrame:
    """The prepared log, as pandas reads it (default dtypes), in file order."""
    return pd.read_csv(kuairand.parent / "log.csv.gz")


@pytest.fixture(scope="session")
def valid_rows(log) -> pd.DataFrame:
    return log[(log.date >= 20220505) & (log.date <= 20220506)]


@pytest.fixture(scope="session")
def models(cfg, tmp_path_factory):
    """MMoE, PLE and MFH trained briefly: name → mfh.Model."""
    root = tmp_path_factory.mktemp("models")
    return {
        name: mfh.train(cfg, model=name, out=root / name, seed=7, progress=False)
        for name in ["mmoe", "ple", "mfh"]
    }
