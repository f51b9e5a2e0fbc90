"""Writes test/fixtures/trainer/length_grouped.json: transformers' get_length_grouped_indices
(LengthGroupedSampler's order) for several datasets and batch sizes, with the permutation
torch.randperm drew inside it, so test/train/length_grouped.test.ts can feed bertkit's
lengthGroupedIndices the same permutation and expect the same order.

usage: python3 scripts/make_length_grouped_fixture.py [OUT.json]"""
import json, random, sys

import torch
import transformers
from transformers.trainer_pt_utils import get_length_grouped_indices

out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/trainer/length_grouped.json"
cases = []
rng = random.Random(7)
for n, batch_size, max_len in [(8530, 16, 78), (1000, 16, 40), (1000, 32, 40), (50, 4, 10), (7, 16, 5), (100, 8, 3)]:
    lengths = [rng.randint(3, max_len) for _ in range(n)]
    g = torch.Generator().manual_seed(n * 31 + batch_size)
    state = g.get_state()
    permutation = torch.randperm(n, generator=g).tolist()
    g.set_state(state)
    grouped = get_length_grouped_indices(lengths, batch_size, generator=g)
    cases.append({"n": n, "batch_size": batch_size, "lengths": lengths, "permutation": permutation, "expected": grouped})
with open(out, "w") as f:
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f)
print(out, len(cases), "cases")
