"""The torch side's model for bench/bench_model_step_torch.py and
bench/bench_step_torch.py: transformers' BertForSequenceClassification in the
MiniLM shape of bench/common.ts (MINILM_SHAPE), seeded with 0, in train mode,
on `threads` threads."""
import torch
from transformers import BertConfig, BertForSequenceClassification


def minilm_model(threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, num_labels=2)
    model = BertForSequenceClassification(cfg)
    model.train()
    return model
