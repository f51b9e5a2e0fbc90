"""Writes a bert-base-sized BertForSequenceClassification with seeded random
weights (save_pretrained: config.json + model.safetensors) and copies a
tokenizer next to it: identical weights for bertkit and the HF Trainer in
timing runs where no pretrained bert-base is available.

usage: python3 bench/make_random_bert.py OUT_DIR TOKENIZER_DIR [--vocab 30522]
         [--layers 12 --hidden 768 --heads 12 --intermediate 3072]   (smaller for smoke runs)"""
import argparse, shutil, os

import torch
from transformers import BertConfig, BertForSequenceClassification

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("tokenizer")
p.add_argument("--vocab", type=int, default=30522)
p.add_argument("--layers", type=int, default=12)
p.add_argument("--hidden", type=int, default=768)
p.add_argument("--heads", type=int, default=12)
p.add_argument("--intermediate", type=int, default=3072)
a = p.parse_args()
torch.manual_seed(0)
# bert-base-cased's shape by default (12 layers, 768 hidden, 12 heads, 3072 intermediate) with the tokenizer's vocabulary.
config = BertConfig(vocab_size=a.vocab, num_labels=2, num_hidden_layers=a.layers, hidden_size=a.hidden,
                    num_attention_heads=a.heads, intermediate_size=a.intermediate)
BertForSequenceClassification(config).save_pretrained(a.out)
for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    src = os.path.join(a.tokenizer, f)
    if os.path.exists(src):
        shutil.copy(src, a.out)
print("wrote", a.out)
