"""Per-cell AUC table of a synthetic-study comparison (bench/synthetic_study.sh,
bench/synthetic_ablation.sh): mean and sd over seeds, and each model's share of the oracle
AUC above chance.  python3 bench/synthetic_table.py CMP_DIR MODEL[,MODEL...]"""
import json, sys, statistics
out, models = sys.argv[1], sys.argv[2].split(",")
res = json.load(open(out + "/results.json"))
orc = json.load(open(out + "/oracle.json"))
cells = ["user=new,item=tail", "user=new,item=head", "user=old,item=tail", "user=old,item=head", "all"]
for b in ["click", "long_view", "like"]:
    print(f"\n{b}: mean AUC over seeds (share of the oracle above chance)")
    print("| cell | oracle | " + " | ".join(models) + " |")
    print("|---|---:|" + "---:|" * len(models))
    for c in cells:
        o = next(r["value"] for r in orc if r["behaviour"] == b and r["cell"] == c and r["metric"] == "auc")
        row = [c, f"{o:.4f}"]
        for m in models:
            v = [r["value"] for r in res if r["model"] == m and r["behaviour"] == b and r["cell"] == c
                 and r["metric"] == "auc" and r["value"] is not None]
            if not v:
                row.append("-")
                continue
            mu = statistics.mean(v)
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            row.append(f"{mu:.4f} ± {sd:.4f} ({100 * (mu - 0.5) / (o - 0.5):.1f} %)")
        print("| " + " | ".join(row) + " |")
