#!/usr/bin/env python3
"""Live reference for `npm run test:reference` (test/reference/families.reference.ts):
a fresh random config of every family each run, with a random activation of
transformers' ACT2FN (those bertkit computes) and a random kind of labels,
including float targets: multi-label probabilities and DeBERTa's soft labels.

  python3 test/oracles/families_reference_live.py make OUT_DIR SEED
      writes OUT_DIR/<family>/ for bert, roberta, distilbert, deberta-v2:
      config.json + model.safetensors (save_pretrained), and case.json:
      inputs, labels, problem_type, logits, loss and every gradient (float32,
      eval mode, eager attention). Prints a one-line summary per family.
"""
import json
import os
import random
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from transformers import (BertConfig, BertForSequenceClassification, DebertaV2Config, DebertaV2ForSequenceClassification,  # noqa: E402
                          DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

ACTIVATIONS = ["gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_accurate", "gelu_fast",
               "tanh", "relu", "silu", "swish", "quick_gelu", "mish", "sigmoid", "relu6", "leaky_relu", "linear", "relu2",
               "gelu_10", "laplace", "hardswish", "sqrtsoftplus"]


def config_for(family, rng):
    heads = rng.choice([2, 3, 4])
    hidden = heads * rng.choice([4, 8])
    common = dict(vocab_size=rng.choice([40, 61]), num_labels=rng.choice([1, 2, 3, 5]))
    act = rng.choice(ACTIVATIONS)
    if family == "distilbert":
        return DistilBertConfig(dim=hidden, n_heads=heads, n_layers=rng.choice([1, 2]), hidden_dim=rng.choice([2, 4]) * hidden,
                                activation=act, max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
                                seq_classif_dropout=0.0, sinusoidal_pos_embds=rng.random() < 0.5, **common), act
    shared = dict(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=rng.choice([1, 2]),
                  intermediate_size=rng.choice([2, 4]) * hidden, hidden_act=act, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, **common)
    if family == "bert":
        return BertConfig(max_position_embeddings=32, type_vocab_size=2, **shared), act
    if family == "roberta":
        return RobertaConfig(max_position_embeddings=40, type_vocab_size=1, pad_token_id=1, **shared), act
    return DebertaV2Config(max_position_embeddings=32, type_vocab_size=0, relative_attention=True, position_buckets=rng.choice([-1, 8]),
                           pos_att_type=["p2c", "c2p"], share_att_key=rng.random() < 0.5, position_biased_input=False,
                           norm_rel_ebd="layer_norm", pooler_hidden_act=rng.choice(ACTIVATIONS), pooler_dropout=0.0,
                           layer_norm_eps=1e-7, **shared), act


CLASSES = {"bert": BertForSequenceClassification, "roberta": RobertaForSequenceClassification,
           "distilbert": DistilBertForSequenceClassification, "deberta-v2": DebertaV2ForSequenceClassification}


def make(out, seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for family, cls in CLASSES.items():
        config, act = config_for(family, rng)
        n = config.num_labels
        # The labels: regression for one label; else class ids, multi-label probabilities, or (DeBERTa) soft labels.
        kinds = ["regression"] if n == 1 else ["single_label_classification", "multi_label_classification"] + (["soft_labels"] if family == "deberta-v2" else [])
        kind = rng.choice(kinds)
        if kind == "multi_label_classification":
            config.problem_type = kind
        model = cls(config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                elif p.dim() == 1:
                    p.copy_(0.2 * torch.randn_like(p))
                else:
                    p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
        model.config._attn_implementation = "eager"
        model.eval()
        d = os.path.join(out, family)
        model.save_pretrained(d)
        batch, seq = rng.choice([2, 3]), rng.choice([3, 7, 12])
        first = 2 if family == "roberta" else 1  # RoBERTa: ids past pad_token_id 1
        ids = [[rng.randint(first, config.vocab_size - 1) for _ in range(seq)] for _ in range(batch)]
        mask = [[1] * seq] + [[1] * (k := rng.randint(1, seq)) + [0] * (seq - k) for _ in range(batch - 1)]
        pad = config.pad_token_id
        ids = [[t if m else pad for t, m in zip(r, mr)] for r, mr in zip(ids, mask)]
        if kind == "regression":
            labels = torch.randn(batch)
        elif kind == "single_label_classification":
            labels = torch.tensor([rng.randrange(n) for _ in range(batch)])
        elif kind == "multi_label_classification":
            labels = torch.rand(batch, n)
        else:
            labels = torch.softmax(2 * torch.randn(batch, n), dim=-1)
        inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        out_t = model(**inputs, labels=labels)
        out_t.loss.backward()
        case = {
            "family": family, "activation": act, "kind": kind, "config": {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool, list)) or v is None},
            "input_ids": ids, "attention_mask": mask, "labels": labels.tolist(), "labels_dtype": "int32" if labels.dtype == torch.long else "float32",
            "logits": out_t.logits.detach().flatten().tolist(), "loss": out_t.loss.item(),
            "grads": {name: p.grad.flatten().tolist() for name, p in model.named_parameters() if p.grad is not None},
        }
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(case, f)
        print(f"{family}: {act}, {kind}, hidden {config.hidden_size if family != 'distilbert' else config.dim}, {n} labels")


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] != "make":
        sys.exit(f"unknown command {sys.argv[1]}")
    make(sys.argv[2], int(sys.argv[3]))
