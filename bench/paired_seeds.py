"""Paired comparison of recipe-benchmark results (lib/cli/bench.ts JSON files):
for each strategy, the seeds both libraries ran, each library's mean test F1,
the mean of the per-seed differences (bertkit - transformers) and its standard
error. With --same-init runs the two libraries start each seed from identical
weights, so the per-seed difference isolates what differs between them (data
order, dropout masks, rounding) from the spread between seeds.

usage: python3 bench/paired_seeds.py OUT.md RESULTS.json [RESULTS.json ...]"""
import json, math, statistics, sys

out_path, inputs = sys.argv[1], sys.argv[2:]
rows = []
for path in inputs:
    rows += [dict(r, source=path) for r in json.load(open(path))["results"] if not r.get("error")]

lines = [
    "# Paired seeds: bertkit vs transformers, same initial weights",
    "",
    "Inputs: " + ", ".join(f"`{p}`" for p in inputs) + ". "
    "Per seed, both libraries fine-tuned from the same saved initial model (bench --same-init): "
    "all-MiniLM-L6-v2 on rotten tomatoes, the seed's hyperparameters, 1 epoch, test F1.",
    "Command: `python3 bench/paired_seeds.py " + " ".join([out_path] + inputs) + "`",
    "",
    "| strategy | seeds | bertkit mean F1 | transformers mean F1 | mean difference | std. error of the difference | train loss (bertkit / transformers) |",
    "|---|---|---|---|---|---|---|",
]
detail = []
for strategy in sorted({r["strategy"] for r in rows}):
    ours = {r["seed"]: r for r in rows if r["strategy"] == strategy and r["library"] == "bertkit"}
    theirs = {r["seed"]: r for r in rows if r["strategy"] == strategy and r["library"] == "transformers"}
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        continue
    diffs = [ours[s]["evalF1"] - theirs[s]["evalF1"] for s in seeds]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    lines.append(
        f"| {strategy} | {len(seeds)} ({seeds[0]}-{seeds[-1]}) | {statistics.mean(ours[s]['evalF1'] for s in seeds):.3f} "
        f"| {statistics.mean(theirs[s]['evalF1'] for s in seeds):.3f} | {statistics.mean(diffs):+.3f} | {se:.3f} "
        f"| {statistics.mean(ours[s]['trainLoss'] for s in seeds):.3f} / {statistics.mean(theirs[s]['trainLoss'] for s in seeds):.3f} |"
    )
    detail.append(f"- {strategy}: " + ", ".join(f"{s}: {ours[s]['evalF1']:.3f} / {theirs[s]['evalF1']:.3f}" for s in seeds))
lines += ["", "Per seed (bertkit / transformers test F1):", ""] + detail
open(out_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
