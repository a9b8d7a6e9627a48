"""Mean (min-max) over seeds of the final metrics in a final.jsonl of results/run_all.sh,
as the markdown table of results/README_results.md."""
import json
import sys
from collections import defaultdict

KEYS = {"digits": ["test_accuracy"], "digits-cnn": ["test_accuracy"],
        "numbers": ["test_exact_match", "test_bleu"],
        "addition": ["test_exact_match"] + [f"test_exact_match_len{n}" for n in range(6, 9)]}
MODES = ("standard", "pa-matmul", "pa")

runs = defaultdict(list)
with open(sys.argv[1]) as f:
    for line in f:
        row = json.loads(line)
        runs[row["task"], row["mode"]].append(row)

for task, keys in KEYS.items():
    present = [m for m in MODES if runs[task, m]]
    if not present:
        continue
    keys = [k for k in keys if k in runs[task, present[0]][0]]
    print(f"\n**{task}**\n")
    print("| mode | seeds | " + " | ".join(k.removeprefix("test_") for k in keys) + " | minutes/run |")
    print("|---" * (len(keys) + 3) + "|")
    for mode in present:
        rows = runs[task, mode]
        cells = []
        for k in keys:
            values = [r[k] for r in rows]
            scale = 1 if k.endswith("bleu") else 100
            mean = sum(values) / len(values) * scale
            spread = f" ({min(values) * scale:.1f}-{max(values) * scale:.1f})" if len(values) > 1 else ""
            cells.append(f"{mean:.1f}{spread}")
        minutes = sum(r["train_seconds"] for r in rows) / len(rows) / 60
        print(f"| {mode} | {len(rows)} | " + " | ".join(cells) + f" | {minutes:.1f} |")
