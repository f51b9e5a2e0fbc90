#!/usr/bin/env python3
"""Live peft reference for `npm run test:reference` (test/reference/peft.reference.ts):
random LoRA configs on every family's tiny fixture model, adapters carried both ways.

  python3 test/oracles/peft_reference_live.py make OUT_DIR SEED COUNT
      draws COUNT random LoraConfigs (family, target_modules as names / regex /
      all-linear, exclude_modules, modules_to_save, bias, task_type, r, alpha,
      rsLoRA); for each, get_peft_model on the family's fixture; if peft
      refuses the config (or cannot load the adapter it saves), records its
      error; else moves every trainable tensor off its initial value (noise of
      0.1: larger random adapters make float32 itself unreliable, torch's
      logits then stray 1e-5 from float64), saves the adapter to OUT_DIR/<i>/peft and
      writes OUT_DIR/<i>/peft.json: eval logits, named_parameters, the
      print_trainable_parameters line. Prints {"cases": [...]}.
  python3 test/oracles/peft_reference_live.py load OUT_DIR COUNT
      for each OUT_DIR/<i>/bertkit adapter that bertkit saved: PeftModel.from_pretrained
      on the same base, eval logits (float32, and float64 for scale) and
      (is_trainable=True) named_parameters.
      Prints {"<i>": {...}}.
"""
import contextlib
import io
import json
import os
import random
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAMILIES = {
    "bert": dict(base="test/fixtures/bert/one_layer",
                 names=["query", "key", "value", "dense", "classifier"],
                 regexes=[r".*\.(query|value)", r".*layer\.0\..*dense"],
                 saves=["classifier", "pooler", "LayerNorm", "embeddings", "output.dense"]),
    "roberta": dict(base="test/fixtures/roberta/base",
                    names=["query", "key", "value", "dense"],
                    regexes=[r".*self\.(query|key)", r"roberta\..*\.dense"],
                    saves=["classifier", "LayerNorm", "word_embeddings", "out_proj"]),
    "distilbert": dict(base="test/fixtures/distilbert/base",
                       names=["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
                       regexes=[r".*\.(q_lin|v_lin)", r".*ffn\.lin\d"],
                       saves=["classifier", "pre_classifier", "sa_layer_norm", "output_layer_norm", "embeddings"]),
    "deberta-v2": dict(base="test/fixtures/deberta_v2/v3",
                       names=["query_proj", "key_proj", "value_proj", "dense"],
                       regexes=[r".*\.(query_proj|value_proj)", r".*attention\..*"],
                       saves=["classifier", "pooler", "LayerNorm", "rel_embeddings"]),
}


def draw(rng):
    family = rng.choice(list(FAMILIES))
    f = FAMILIES[family]
    kind = rng.random()
    if kind < 0.5:
        targets = rng.sample(f["names"], rng.randint(1, 3))
    elif kind < 0.75:
        targets = rng.choice(f["regexes"])
    else:
        targets = "all-linear"
    cfg = dict(r=rng.choice([1, 2, 4]), lora_alpha=rng.choice([1, 4, 8, 16]), lora_dropout=0.0, target_modules=targets,
               bias=rng.choice(["none", "all", "lora_only"]), use_rslora=rng.random() < 0.3)
    if rng.random() < 0.6:
        cfg["modules_to_save"] = rng.sample(f["saves"], rng.randint(1, 2))
    if rng.random() < 0.5:
        cfg["task_type"] = "SEQ_CLS"
    if rng.random() < 0.2 and isinstance(targets, list) and len(targets) > 1:
        cfg["exclude_modules"] = [targets[0]]
    return family, cfg


def base(family):
    return AutoModelForSequenceClassification.from_pretrained(os.path.join(ROOT, FAMILIES[family]["base"]), attn_implementation="eager",
                                                              dtype=torch.float32).eval()


def inputs(family):
    with open(os.path.join(ROOT, FAMILIES[family]["base"], "inputs.json")) as f:
        raw = json.load(f)
    return {k: torch.tensor(raw[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids") if k in raw}


def exact_logits(model, family):
    """The same model's logits in float64: how far float32 itself strays on these random weights."""
    model.double()
    with torch.no_grad():
        out = model(**inputs(family)).logits.flatten().tolist()
    model.float()
    return out


def summary(model):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        model.print_trainable_parameters()
    return buf.getvalue().strip()


def make(out, seed, count):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cases = []
    for i in range(count):
        family, cfg = draw(rng)
        case = {"index": i, "family": family, "base": FAMILIES[family]["base"], "config": cfg}
        cases.append(case)
        try:
            model = get_peft_model(base(family), LoraConfig(**json.loads(json.dumps(cfg))))
        except Exception as e:  # noqa: BLE001 - any refusal is recorded and compared
            case["peft_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            continue
        gen = torch.Generator().manual_seed(seed * 1000 + i)
        with torch.no_grad():
            for _, p in model.named_parameters():
                if p.requires_grad:
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
        model.eval()
        with torch.no_grad():
            logits = model(**inputs(family)).logits
        named = [[n, list(p.shape), bool(p.requires_grad)] for n, p in model.named_parameters()]
        logits64 = exact_logits(model, family)
        d = os.path.join(out, str(i))
        model.save_pretrained(os.path.join(d, "peft"))
        try:
            PeftModel.from_pretrained(base(family), os.path.join(d, "peft"))
        except Exception as e:  # noqa: BLE001 - peft saves some configs it cannot load (nested modules_to_save)
            case["peft_error"] = f"peft cannot load its own adapter: {type(e).__name__}: {str(e)[:300]}"
            continue
        with open(os.path.join(d, "peft.json"), "w") as f:
            json.dump({"logits": logits.flatten().tolist(), "logits64": logits64, "named": named, "line": summary(model)}, f)
    print(json.dumps({"cases": cases}))


def load(out, count):
    result = {}
    for i in range(count):
        d = os.path.join(out, str(i), "bertkit")
        if not os.path.isdir(d):
            continue
        with open(os.path.join(out, str(i), "case.json")) as f:
            family = json.load(f)["family"]
        try:
            model = PeftModel.from_pretrained(base(family), d).eval()
            with torch.no_grad():
                logits = model(**inputs(family)).logits.flatten().tolist()
            trainable = PeftModel.from_pretrained(base(family), d, is_trainable=True)
            named = [[n, list(p.shape), bool(p.requires_grad)] for n, p in trainable.named_parameters()]
            result[str(i)] = {"logits": logits, "logits64": exact_logits(model, family), "named": named, "line": summary(trainable)}
        except Exception as e:  # noqa: BLE001
            result[str(i)] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    print(json.dumps(result))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "load":
        load(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
