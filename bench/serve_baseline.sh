#!/usr/bin/env bash
# Issue 21's "≥ 1.5 × today's rows/s": the in-process decode + score of one user's request
# (1 × CANDIDATES candidates over `:regress`, loadgen's request) by this checkout against
# the code of the day the issue was filed (BASE, default 07e6e2a: the last commit before
# any issue-21 work), on the same model folders, in interleaved rounds. BASE's loadgen is
# given this checkout's measurement harness (one thread per scorer on a one-thread pool,
# as `mfh serve` scores by default; the patch below) and nothing else; its models are
# trained by BASE's `mfh` on the bundled KuaiRand slice (BASE cannot read today's model
# folders), and both binaries score those.
#   bench/serve_baseline.sh [ROUNDS=3] [CANDIDATES=500]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
n=${2:-500}
base=${BASE:-07e6e2a}
wt=target/serve-baseline/src
work=target/serve-baseline
if [ ! -x "$wt/target/fastrel/examples/loadgen" ]; then
  rm -rf "$wt"
  git worktree prune
  git worktree add -f --detach "$wt" "$base" >/dev/null
  (cd "$wt" && git apply) <<'PATCH'
--- a/crates/serve/examples/loadgen.rs
+++ b/crates/serve/examples/loadgen.rs
@@ -335,18 +335,23 @@ fn main() {
     let examples: Vec<Value> = videos.iter().map(|v| json!({"video_id": v})).collect();
     let body = json!({"context": context, "examples": examples}).to_string();
 
-    // In process: the same N rows, decode + forward, then forward alone.
+    // In process (the later loadgen's harness: the server's default of one thread per
+    // scorer, on a one-thread pool).
+    let (_, scorer_threads) = mfh_serve::ServeOptions::new(dir.to_path_buf()).lanes();
+    mfh_nn::set_threads(scorer_threads);
+    let scorer_pool = rayon::ThreadPoolBuilder::new().num_threads(scorer_threads).build().unwrap();
     let m = ServedModel::load(dir, 1).unwrap();
     let parsed = mfh_serve::protocol::parse_regress(&m.decoder, body.as_bytes(), 10_000).unwrap();
     let views = parsed.views();
     let rows = views.rows();
     let mut t = Vec::new();
-    for _ in 0..200 {
+    scorer_pool.install(|| for _ in 0..200 {
         let t0 = Instant::now();
         let s = m.score(0, &views.context, &rows).unwrap();
         assert_eq!(s.n, n);
         t.push(t0.elapsed().as_secs_f64() * 1e3);
-    }
+    });
+    if std::env::var("BASE_ONLY").is_ok() { t.sort_by(f64::total_cmp); println!("base in process, {n} rows: decode+score median {:.3} ms", pct(&t, 0.5)); return; }
     t.sort_by(f64::total_cmp);
     let forward = m.time_forward(&views.context, &rows, 200);
     let mut d = Vec::new();
PATCH
  (cd "$wt" && CARGO_TARGET_DIR=target cargo build -q --profile fastrel -p mfh -p mfh-serve --features mfh-serve/grpc --bins --examples)
fi
cargo build -q --profile fastrel -p mfh-serve --features mfh-serve/grpc --examples
old="$wt/target/fastrel"
if [ ! -f "$work/mmoe/model.json" ]; then
  "$old/mfh" prepare kuairand --raw data/kuairand-pure --out "$work/data" >/dev/null
  "$old/mfh" train --config "$work/data/kuairand.toml" --model mfh --out "$work/mfh" --quiet >/dev/null
  "$old/mfh" train --config "$work/data/kuairand.toml" --model mmoe --out "$work/mmoe" --quiet >/dev/null
fi
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; base $base ($(git -C "$wt" log -1 --format=%cd --date=iso)), this checkout $(git rev-parse --short HEAD)"
for m in mfh mmoe; do
  ratios=()
  for r in $(seq "$rounds"); do
    b=$(BASE_ONLY=1 "$old/examples/loadgen" "$work/$m" "$n" 0 | sed -n 's/.*decode+score median \([0-9.]*\) ms.*/\1/p')
    line=$(target/fastrel/examples/loadgen "$work/$m" "$n" 0 | grep '1 user: decode+score')
    s=$(sed -n 's/.*decode+score median \([0-9.]*\) ms served.*/\1/p' <<<"$line")
    rbr=$(sed -n 's/.*factoring only, \([0-9.]*\) ms row by row.*/\1/p' <<<"$line")
    ratio=$(python3 -c "print(f'{$b / $s:.2f}')")
    ratios+=("$ratio")
    echo "$m round $r: base $b ms, served $s ms (row by row in this checkout $rbr ms): $ratio x base rows/s"
  done
  python3 - "$m" "${ratios[@]}" <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[2:])
print(f"{sys.argv[1]}: served / base rows/s median {statistics.median(r):.2f} (min {r[0]:.2f}, max {r[-1]:.2f}, {len(r)} rounds)")
PY
done
