#!/usr/bin/env python3
"""What transformers computes for a BERT sequence classifier, as JSON on stdout.

    pip install torch transformers safetensors
    python test/oracles/bert_reference.py MODEL_DIR INPUTS_JSON [--attn eager|sdpa] [--no-grads]

MODEL_DIR holds config.json + model.safetensors (any checkpoint transformers
loads: bertkit's savePretrained output, a fixture, a legacy file). INPUTS_JSON
is {"input_ids", "attention_mask"?, "token_type_ids"?, "labels"?} as nested
lists, the format of test/fixtures/bert/*/inputs.json.

Output: {"logits": [[...]], "loss": float|null, "grads": {name: nested list}
(named_parameters order, only with labels), "parameter_names": [...],
"problem_type": str|null, "loading_info": {...}, "transformers_version",
"torch_version"}. Computed in float32, eval mode (dropout off), one thread.

--attn defaults to eager: its additive finfo.min mask is the one bertkit
implements. transformers' CPU default, sdpa, gives a different result only on
rows whose attention_mask is all zeros (zero attention output instead of a
uniform average over all positions).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertForSequenceClassification  # noqa: E402


def label_tensor(labels, config):
    # JSON loses the int/float distinction (JavaScript writes 1.0 as 1), and
    # transformers picks the loss from the label dtype when problem_type is
    # unset, so the dtype is decided from the config instead.
    floating = config.num_labels == 1 or config.problem_type in ("regression", "multi_label_classification")
    return torch.tensor(labels, dtype=torch.float32 if floating else torch.long)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("inputs_json")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    ap.add_argument("--no-grads", action="store_true", help="forward only")
    args = ap.parse_args()

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    model, info = BertForSequenceClassification.from_pretrained(
        args.model_dir, attn_implementation=args.attn, dtype=torch.float32, output_loading_info=True)
    model.eval()

    with open(args.inputs_json) as f:
        raw = json.load(f)
    inputs = {k: torch.tensor(raw[k], dtype=torch.long)
              for k in ("input_ids", "attention_mask", "token_type_ids") if raw.get(k) is not None}
    if raw.get("labels") is not None:
        inputs["labels"] = label_tensor(raw["labels"], model.config)

    want_grads = "labels" in inputs and not args.no_grads
    with torch.set_grad_enabled(want_grads):
        out = model(**inputs)
        if want_grads:
            out.loss.backward()

    names = [n for n, _ in model.named_parameters()]
    result = {
        "logits": out.logits.detach().tolist(),
        "loss": None if out.loss is None else out.loss.item(),
        "grads": {n: None if p.grad is None else p.grad.tolist()
                  for n, p in model.named_parameters()} if want_grads else None,
        "parameter_names": names,
        "problem_type": model.config.problem_type,
        "loading_info": {k: sorted(str(x) for x in v) for k, v in info.items()},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
