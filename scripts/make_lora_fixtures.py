#!/usr/bin/env python3
"""LoRA fixtures for bertkit, produced by the real peft.

    pip install torch transformers safetensors peft
    python scripts/make_lora_fixtures.py     # (re)write test/fixtures/lora

Each variant names its base: a tiny model of test/fixtures (BERT one_layer,
RoBERTa, DistilBERT, DeBERTa-v3, written by scripts/make_bert_fixtures.py and
make_encoder_fixtures.py / make_deberta_fixtures.py) with its inputs.json.
The later variants cover peft's modules_to_save rules: matching by the end of
the module path (DistilBERT's pre_classifier for "classifier"), whole modules
of any type saved (RoBERTa's classification head, LayerNorm, BertPooler,
DeBERTa's ContextPooler), bias="all" keys of wrapped modules, exclude_modules.
Each test/fixtures/lora/<name>/ holds:

  adapter_config.json        peft's save_pretrained output (base_model_name_or_path
  adapter_model.safetensors  is the relative path of the base); B and the trained
                             copies are moved off their initial values with seeded
                             noise, so the adapted logits differ from the base's
  expected.safetensors       float32: logits (adapter, eval mode), base_logits (the
                             base model alone), merged_logits (after merge_adapter),
                             loss, grad.<peft parameter name> for every trainable one
  expected.json              named_parameters of a fresh get_peft_model (name, shape,
                             requires_grad, in order), the print_trainable_parameters
                             line, the LoraConfig arguments, versions

Run from anywhere; one thread, fixed seeds, float32, eager attention.
"""

import contextlib
import copy
import io
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings  # noqa: E402

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT_BASE = "test/fixtures/bert/one_layer"
OUT = os.path.join(ROOT, "test", "fixtures", "lora")

VARIANTS = [
    # The recipe: query+value, the classifier trained in full and saved, dropout on.
    dict(name="qv_classifier", seed=11,
         config=dict(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query", "value"],
                     modules_to_save=["classifier"], bias="none")),
    # Task type SEQ_CLS (classifier added by peft), every Linear, every bias trained.
    dict(name="seq_cls_all_linear_bias_all", seed=12,
         config=dict(r=2, lora_alpha=5, lora_dropout=0.0, target_modules="all-linear",
                     bias="all", task_type="SEQ_CLS")),
    # A regex target, biases of adapted layers only, rank-stabilised scaling, no saved modules.
    dict(name="regex_lora_only_rslora", seed=13,
         config=dict(r=4, lora_alpha=16, lora_dropout=0.0, target_modules=r".*\.(self\.key|intermediate\.dense)",
                     bias="lora_only", use_rslora=True)),
    # SEQ_CLS on DistilBERT: "classifier" also wraps pre_classifier (a suffix match); every bias trained.
    dict(name="distilbert_seq_cls_bias_all", seed=14, base="test/fixtures/distilbert/base",
         config=dict(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_lin", "v_lin"], bias="all", task_type="SEQ_CLS")),
    # SEQ_CLS on RoBERTa: the whole RobertaClassificationHead (dense + out_proj) saved; biases of adapted layers.
    dict(name="roberta_seq_cls_head", seed=15, base="test/fixtures/roberta/base",
         config=dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"], bias="lora_only", task_type="SEQ_CLS")),
    # RoBERTa with bias="all": the head copy's biases are also saved under "modules_to_save.default.<sub>.bias".
    dict(name="roberta_head_bias_all", seed=16, base="test/fixtures/roberta/base",
         config=dict(r=2, lora_alpha=2, lora_dropout=0.0, target_modules=["key"], bias="all", modules_to_save=["classifier"])),
    # LayerNorm and BertPooler saved whole (modules that are not Linear), bias "all".
    dict(name="bert_save_layernorm_pooler", seed=17,
         config=dict(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["query"], bias="all",
                     modules_to_save=["LayerNorm", "pooler", "classifier"])),
    # DeBERTa-v3: all-linear under SEQ_CLS (the classifier left out), the ContextPooler saved whole.
    dict(name="deberta_all_linear_pooler", seed=18, base="test/fixtures/deberta_v2/v3",
         config=dict(r=2, lora_alpha=4, lora_dropout=0.0, target_modules="all-linear", modules_to_save=["pooler"], task_type="SEQ_CLS")),
    # DistilBERT: a regex target, exclude_modules, and "classifier" matching pre_classifier too.
    dict(name="distilbert_regex_exclude", seed=19, base="test/fixtures/distilbert/base",
         config=dict(r=2, lora_alpha=8, lora_dropout=0.0, target_modules=r".*\.(q_lin|k_lin|lin1)", exclude_modules=["k_lin"],
                     modules_to_save=["classifier"])),
]


def load_inputs(base):
    with open(os.path.join(ROOT, base, "inputs.json")) as f:
        raw = json.load(f)
    inputs = {k: torch.tensor(raw[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids") if k in raw}
    return inputs, torch.tensor(raw["labels"], dtype=torch.long)


def base_model(base):
    model = AutoModelForSequenceClassification.from_pretrained(base, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def make(variant):
    base = variant.get("base", BERT_BASE)
    inputs, labels = load_inputs(base)
    out = os.path.join(OUT, variant["name"])
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(variant["seed"])
    with torch.no_grad():
        base_logits = base_model(base)(**inputs).logits.clone()

    model = get_peft_model(base_model(base), LoraConfig(**copy.deepcopy(variant["config"])))
    named = [[n, list(p.shape), bool(p.requires_grad)] for n, p in model.named_parameters()]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        model.print_trainable_parameters()
    line = buf.getvalue().strip()

    # Move every trainable tensor off its initial value (B starts at zero, the
    # saved copies equal the originals), so a loader that drops any of them fails.
    gen = torch.Generator().manual_seed(variant["seed"])
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))

    model.eval()
    out_t = model(**inputs, labels=labels)
    out_t.loss.backward()
    grads = {f"grad.{n}": p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        logits = model(**inputs).logits.clone()
        model.merge_adapter()
        merged_logits = model(**inputs).logits.clone()
        model.unmerge_adapter()

    model.save_pretrained(out)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out, "README.md"))
    tensors = {"logits": logits, "base_logits": base_logits, "merged_logits": merged_logits,
               "loss": out_t.loss.detach().reshape(()), **grads}
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, os.path.join(out, "expected.safetensors"))
    meta = {
        "base": base,
        "lora_config": variant["config"],
        "named_parameters": named,
        "print_trainable_parameters": line,
        "peft_class": type(model).__name__,
        "max_abs_logit_change": float((logits - base_logits).abs().max()),
        "peft_version": peft.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{variant['name']}: {line}; logits moved by {meta['max_abs_logit_change']:.3f} from the base")


def main():
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    os.chdir(ROOT)  # base_model_name_or_path is written relative to the repository
    os.makedirs(OUT, exist_ok=True)
    for v in VARIANTS:
        make(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
