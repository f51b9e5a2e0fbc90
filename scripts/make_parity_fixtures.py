#!/usr/bin/env python3
"""Parity fixtures for issue 13's items 1, 4 and 5, produced by the real
transformers (no network: the models are the committed tiny fixtures).

    pip install torch transformers safetensors peft
    python scripts/make_parity_fixtures.py          # (re)write test/fixtures/parity

Writes test/fixtures/parity/
  decay.json                  for each case (a family's tiny model, some wrapped by
                              peft), named_parameters() in order and the names
                              transformers' Trainer.get_decay_parameter_names
                              returns: the parameters AdamW decays
  activations.json            per family, the config field set (hidden_act;
  activations.safetensors     DistilBERT's activation; DeBERTa's hidden_act and
                              pooler_hidden_act) and every ACT2FN name bertkit
                              computes; tensors "<family>/<act>/logits", ".../loss"
                              and ".../grad.<name>" for a few parameters, eval mode
  soft_targets.json           multi-label BCE with probability targets (BERT,
  soft_targets.safetensors    RoBERTa, DistilBERT, DeBERTa with problem_type
                              multi_label_classification) and DeBERTa's soft-label
                              cross-entropy (float labels, problem_type unset): the
                              labels used, logits, loss and gradients

One thread, float32, eager attention, fixed seeds.
"""

import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForSequenceClassification, Trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "test", "fixtures")
OUT = os.path.join(FIX, "parity")

FAMILIES = {
    # name: (fixture dir, activation config fields, parameters whose gradients are recorded)
    # (biases: small, and their gradients pass through the activation's backward)
    "bert": ("bert/one_layer", ["hidden_act"],
             ["bert.encoder.layer.0.intermediate.dense.bias", "bert.embeddings.LayerNorm.bias", "classifier.weight"]),
    "roberta": ("roberta/base", ["hidden_act"],
                ["roberta.encoder.layer.0.intermediate.dense.bias", "roberta.embeddings.LayerNorm.bias", "classifier.out_proj.weight"]),
    "distilbert": ("distilbert/base", ["activation"],
                   ["distilbert.transformer.layer.0.ffn.lin1.bias", "distilbert.embeddings.LayerNorm.bias", "classifier.weight"]),
    "deberta-v2": ("deberta_v2/v3", ["hidden_act", "pooler_hidden_act"],
                   ["deberta.encoder.layer.0.intermediate.dense.bias", "pooler.dense.bias", "deberta.embeddings.LayerNorm.bias", "classifier.weight"]),
}

# transformers' ACT2FN names that bertkit computes (lib/native.ts ACTIVATION_CODE).
ACTIVATIONS = ["gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_accurate", "gelu_fast",
               "tanh", "relu", "silu", "swish", "quick_gelu", "mish", "sigmoid", "relu6", "leaky_relu", "linear", "relu2",
               "gelu_10", "laplace", "hardswish", "sqrtsoftplus"]


def load(rel, **overrides):
    model = AutoModelForSequenceClassification.from_pretrained(os.path.join(FIX, rel), attn_implementation="eager",
                                                               dtype=torch.float32, **overrides)
    return model.eval()


def inputs_of(rel):
    with open(os.path.join(FIX, rel, "inputs.json")) as f:
        raw = json.load(f)
    return {k: torch.tensor(raw[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids") if k in raw}, raw["labels"]


def decay_cases():
    cases = {}
    for family, (rel, _, _) in FAMILIES.items():
        cases[family] = load(rel)
    cases["deberta-v2-unshared"] = load("deberta_v2/unshared")
    peft_cases = {
        "bert-lora-save-layernorm": ("bert/one_layer", dict(r=2, target_modules=["query", "value"], modules_to_save=["LayerNorm", "classifier"])),
        "distilbert-lora-seq-cls-bias-all": ("distilbert/base", dict(r=2, target_modules=["q_lin"], task_type="SEQ_CLS", bias="all")),
        "roberta-lora-seq-cls": ("roberta/base", dict(r=2, target_modules=["query", "key"], task_type="SEQ_CLS", bias="lora_only")),
        "deberta-v2-lora-all-linear": ("deberta_v2/v3", dict(r=2, target_modules="all-linear", task_type="SEQ_CLS")),
    }
    for name, (rel, cfg) in peft_cases.items():
        cases[name] = (rel, get_peft_model(load(rel), LoraConfig(**cfg)), cfg)
    out = {}
    for name, entry in cases.items():
        rel, model, cfg = (entry if isinstance(entry, tuple) else (FAMILIES.get(name, ("deberta_v2/unshared",))[0], entry, None))
        decay = Trainer.get_decay_parameter_names(None, model)
        out[name] = {
            "base": rel,
            "lora_config": cfg,
            "named_parameters": [n for n, _ in model.named_parameters()],
            "decay": decay,
        }
    return out


def forward_backward(model, inputs, labels, grads):
    model.zero_grad()
    out = model(**inputs, labels=labels)
    out.loss.backward()
    params = dict(model.named_parameters())
    return out.logits.detach(), out.loss.detach().reshape(()), {g: params[g].grad.detach().clone() for g in grads}


def activations():
    tensors, meta = {}, {}
    for family, (rel, fields, grads) in FAMILIES.items():
        inputs, raw_labels = inputs_of(rel)
        labels = torch.tensor([max(v, 0) for v in raw_labels], dtype=torch.long)
        meta[family] = {"base": rel, "fields": fields, "labels": labels.tolist(), "grads": grads}
        for act in ACTIVATIONS:
            model = load(rel, **{f: act for f in fields})
            logits, loss, g = forward_backward(model, inputs, labels, grads)
            tensors[f"{family}/{act}/logits"] = logits
            tensors[f"{family}/{act}/loss"] = loss
            for name, v in g.items():
                tensors[f"{family}/{act}/grad.{name}"] = v
    meta["activations"] = ACTIVATIONS
    return tensors, meta


def soft_targets():
    gen = torch.Generator().manual_seed(13)
    tensors, meta = {}, {}
    cases = [(family, rel, grads, "multi_label_classification") for family, (rel, _, grads) in FAMILIES.items()]
    cases.append(("deberta-v2", FAMILIES["deberta-v2"][0], FAMILIES["deberta-v2"][2], None))
    for family, rel, grads, problem_type in cases:
        inputs, _ = inputs_of(rel)
        model = load(rel, problem_type=problem_type)
        rows, classes = inputs["input_ids"].shape[0], model.config.num_labels
        if problem_type is None:
            # DeBERTa's soft-label branch: rows of any float weights (one row not summing to 1).
            labels = torch.softmax(torch.randn(rows, classes, generator=gen) * 2, dim=-1)
            labels[0] *= 0.5
        else:
            # Probabilities in [0, 1], with exact 0 and 1 among them.
            labels = torch.rand(rows, classes, generator=gen)
            labels[0, 0], labels[-1, -1] = 0.0, 1.0
        name = f"{family}/{problem_type or 'soft_labels'}"
        logits, loss, g = forward_backward(model, inputs, labels, grads)
        tensors[f"{name}/labels"] = labels
        tensors[f"{name}/logits"] = logits
        tensors[f"{name}/loss"] = loss
        for n, v in g.items():
            tensors[f"{name}/grad.{n}"] = v
        meta[name] = {"base": rel, "problem_type": problem_type, "grads": grads}
    return tensors, meta


def save(name, tensors, meta):
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, os.path.join(OUT, f"{name}.safetensors"))
    write_json(name, meta)


def write_json(name, obj):
    obj = {**obj, "versions": {"transformers": transformers.__version__, "torch": torch.__version__, "peft": peft.__version__}}
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    os.makedirs(OUT, exist_ok=True)
    write_json("decay", decay_cases())
    save("activations", *activations())
    save("soft_targets", *soft_targets())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
