#!/usr/bin/env bash
# The Python package's tests: a venv (target/pyenv, or $MFH_PYENV), the package installed
# from python/ as a newcomer installs it (pip builds the wheel with maturin, profile
# `wheel`), then pytest. The tests compare the package with the CLI: target/debug/mfh with
# the features the Rust tests use (built here; a no-op after `cargo test`), or $MFH_BIN;
# the serving tests drive `mfh serve` with Triton's own clients (tritonclient); the S3
# tests start moto's S3 server (moto[server]) and a connection-cutting proxy themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MFH_PYENV:-target/pyenv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q "./python[test]"
if [ -z "${MFH_BIN:-}" ]; then
  cargo build -q -p mfh --features parquet,serve,grpc,s3
  MFH_BIN=$PWD/target/debug/mfh
fi
export MFH_BIN
# From the repository root, so that `import mfh` is the installed package, not python/mfh.
exec "$venv/bin/python" -m pytest -q python/tests "$@"
