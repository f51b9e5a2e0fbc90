"""Tokenizes the raw rotten tomatoes files with Hugging Face's tokenizer for a
model directory, using the split rule of ../shared/data/rotten_tomatoes/README.md,
and writes {train, validation, test: {input_ids, labels}} as JSON. The GPU
benchmark carries this file so bertkit and the HF Trainer see identical ids.

usage: python3 bench/tokenize_rotten_tomatoes.py RAW_DIR TOKENIZER_DIR OUT.json"""
import json, sys

from transformers import AutoTokenizer

raw, tok_dir, out = sys.argv[1:4]


def lines(path):
    with open(path, "rb") as f:
        text = f.read().decode("latin-1")
    return [l.strip() for l in text.split("\n") if l.strip()]


pos, neg = lines(f"{raw}/rt-polarity.pos"), lines(f"{raw}/rt-polarity.neg")
n = len(pos)
assert n == len(neg) == 5331, (len(pos), len(neg))
i1, i2 = int(n * 0.8 + 0.5), int(n * 0.9 + 0.5)
splits = {
    "train": (pos[:i1] + neg[:i1], [1] * i1 + [0] * i1),
    "validation": (pos[i1:i2] + neg[i1:i2], [1] * (i2 - i1) + [0] * (i2 - i1)),
    "test": (pos[i2:] + neg[i2:], [1] * (n - i2) + [0] * (n - i2)),
}
tok = AutoTokenizer.from_pretrained(tok_dir)
result = {}
for name, (texts, labels) in splits.items():
    enc = tok(texts, truncation=True)
    result[name] = {"input_ids": enc["input_ids"], "labels": labels}
with open(out, "w") as f:
    json.dump(result, f)
print({k: len(v["labels"]) for k, v in result.items()})
