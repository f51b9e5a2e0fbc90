#!/usr/bin/env python3
"""LoRA fixtures for bertkit, produced by the real peft.

    pip install torch transformers safetensors peft
    python scripts/make_lora_fixtures.py     # (re)write test/fixtures/lora

The base model is test/fixtures/bert/one_layer (a 1-layer BERT, 32 hidden,
written by scripts/make_bert_fixtures.py) and its inputs.json. Each
test/fixtures/lora/<name>/ holds:

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
from transformers import BertForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_REL = "test/fixtures/bert/one_layer"
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
]


def load_inputs():
    with open(os.path.join(ROOT, BASE_REL, "inputs.json")) as f:
        raw = json.load(f)
    inputs = {k: torch.tensor(raw[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids")}
    return inputs, torch.tensor(raw["labels"], dtype=torch.long)


def base_model():
    model = BertForSequenceClassification.from_pretrained(BASE_REL, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def make(variant, inputs, labels):
    out = os.path.join(OUT, variant["name"])
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(variant["seed"])
    with torch.no_grad():
        base_logits = base_model()(**inputs).logits.clone()

    model = get_peft_model(base_model(), LoraConfig(**variant["config"]))
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
        "base": BASE_REL,
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
    inputs, labels = load_inputs()
    for v in VARIANTS:
        make(v, inputs, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
