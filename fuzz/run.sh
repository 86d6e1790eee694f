#!/usr/bin/env bash
# Builds one fuzz target with libFuzzer's coverage instrumentation on the stable toolchain
# (what `cargo fuzz build --sanitizer none` does) and runs it over the seeds.
#   fuzz/run.sh TARGET [libFuzzer options]     e.g. fuzz/run.sh row_parser -runs=1000000
# Targets: row_parser, config_loader, model_dir, embedding_file. New corpus entries go to
# fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [libFuzzer options]}
shift
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# The same instruction-set baseline as every other x86-64 build (.cargo/config.toml).
case "$host" in x86_64-*) RUSTFLAGS="$RUSTFLAGS -Ctarget-cpu=x86-64-v3" ;; esac
# --target keeps the instrumentation out of build scripts and proc macros.
cargo build --release --target "$host" --bins
mkdir -p "corpus/$target" "artifacts/$target"
dict=()
[ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
[ -d /dev/shm ] && export TMPDIR=/dev/shm
exec "target/$host/release/$target" -artifact_prefix="artifacts/$target/" -timeout=10 \
  -rss_limit_mb=2048 "${dict[@]}" "$@" "corpus/$target" "seeds/$target"
