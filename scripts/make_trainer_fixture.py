#!/usr/bin/env python3
"""Training-loop fixture for bertkit's Trainer, produced by transformers' Trainer.

    pip install torch transformers safetensors accelerate
    python scripts/make_trainer_fixture.py            # (re)write test/fixtures/trainer/bert_tiny
    python scripts/make_trainer_fixture.py --check    # regenerate in a temp dir, compare with the committed one

A tiny random BERT (seeded, dropout off so both libraries compute the same
function) is fine-tuned by the real `transformers.Trainer` for 20 optimizer
steps: 2 epochs of 80 rows, batch 4, gradient_accumulation_steps 2, linear
schedule with 5 warm-up steps, weight decay 0.1 (so a parameter put in the
wrong decay group moves visibly), max_grad_norm 0.5 (low enough that clipping
acts on most steps), the default optimizer of the installed transformers, rows
in dataset order (train_sampling_strategy="sequential"; bertkit's
trainSamplingStrategy: 'sequential'), dynamic padding with pad id 0.

test/fixtures/trainer/bert_tiny/ holds:
  config.json, model.safetensors   the initial model (save_pretrained before training)
  data.json                        the rows: input_ids (varying lengths) and labels
  expected.json                    the training arguments, one log entry per step
                                   (loss, grad_norm, learning_rate, epoch, unrounded),
                                   train_loss, versions, notes
  final.safetensors                every parameter after the last step

One deliberate departure from the stock Trainer, for transformers#47688:
BertForSequenceClassification.forward takes **kwargs, so transformers 5.x
assumes the model scales its loss for gradient accumulation by
num_items_in_batch, but its classification loss ignores that count; the
Trainer then skips its own division by gradient_accumulation_steps and
accumulates the SUM of the micro-batch mean losses (logged loss and gradients
k times too large). The fixture sets the Trainer's documented switch
`loss_is_scaled_for_ga = False`, which restores the intended loss: the mean
over the micro-batches, as transformers 4.x computed it and as bertkit does.

No network. Bit-identical across reruns on one machine (one thread, fixed
seeds); another CPU may differ in the last bits, hence the tolerances in
test/train/trainer_parity.test.ts.
"""

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "test", "fixtures", "trainer", "bert_tiny")

SEED = 42
ROWS = 80
CONFIG = dict(
    vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=32, type_vocab_size=2, num_labels=3, hidden_act="gelu",
    # Dropout off: the Trainer's random draws then cannot matter, and the two libraries
    # (different generators) compute the same function.
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    # Larger than BERT's 0.02 so the logits (and the loss) move from the first step.
    initializer_range=0.2,
)
ARGS = dict(
    learning_rate=3e-3, per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=2,
    warmup_steps=5, lr_scheduler_type="linear", weight_decay=0.1, max_grad_norm=0.5, seed=SEED,
    adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
)


def make_rows():
    """Label = (count of token 7) + (count of token 9), capped at 2; lengths 3-14, never a fully padded row."""
    g = torch.Generator().manual_seed(SEED)
    rows = []
    for _ in range(ROWS):
        length = int(torch.randint(3, 15, (1,), generator=g))
        middle = torch.randint(4, CONFIG["vocab_size"], (length - 2,), generator=g).tolist()
        ids = [1] + middle + [2]
        label = min(2, ids.count(7) + ids.count(9))
        rows.append({"input_ids": ids, "labels": label})
    return rows


def collate(rows):
    """DataCollatorWithPadding's output for pad id 0 (bertkit's collator builds the same tensors)."""
    longest = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor([r["labels"] for r in rows])}


class FixtureTrainer(Trainer):
    # transformers#47688: see the module docstring.
    loss_is_scaled_for_ga = False


def generate(out_dir):
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(out_dir, exist_ok=True)
    model = BertForSequenceClassification(BertConfig(attn_implementation="eager", **CONFIG))
    model.save_pretrained(out_dir)
    rows = make_rows()
    work = tempfile.mkdtemp()
    try:
        args = TrainingArguments(
            work, **ARGS, train_sampling_strategy="sequential", logging_steps=1, save_strategy="no",
            report_to=[], disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
        )
        trainer = FixtureTrainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        result = trainer.train()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = [e for e in trainer.state.log_history if "loss" in e and "train_loss" not in e]
    assert len(steps) == 20, f"expected 20 logged steps, got {len(steps)}"
    clipped = sum(1 for e in steps if e["grad_norm"] > ARGS["max_grad_norm"])
    assert clipped >= 10, f"clipping acted on only {clipped} steps; lower max_grad_norm"
    decay = set(trainer.get_decay_parameter_names(model))
    names = [n for n, _ in model.named_parameters()]
    save_file({n: p.detach().contiguous() for n, p in model.named_parameters()}, os.path.join(out_dir, "final.safetensors"))
    with open(os.path.join(out_dir, "data.json"), "w") as f:
        json.dump({"rows": rows}, f)
        f.write("\n")
    expected = {
        "training_args": {**ARGS, "train_sampling_strategy": "sequential", "logging_steps": 1,
                          "optim": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
                          "loss_is_scaled_for_ga": False},
        "pad_token_id": 0,
        "steps": [{k: e[k] for k in ("step", "epoch", "loss", "grad_norm", "learning_rate")} for e in steps],
        "train_loss": result.training_loss,
        "global_step": result.global_step,
        "parameter_names": names,
        "decay_parameter_names": [n for n in names if n in decay],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0]},
        "notes": "Made by scripts/make_trainer_fixture.py with transformers' Trainer; see its docstring.",
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    return expected


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--check", action="store_true", help="regenerate in a temporary directory and compare with --out")
    a = p.parse_args()
    if not a.check:
        e = generate(a.out)
        print(f"wrote {a.out}: {e['global_step']} steps, loss {e['steps'][0]['loss']:.4f} -> {e['steps'][-1]['loss']:.4f}")
        return
    tmp = tempfile.mkdtemp()
    try:
        generate(tmp)
        names = sorted(os.listdir(a.out))
        same = [n for n in names if filecmp.cmp(os.path.join(a.out, n), os.path.join(tmp, n), shallow=False)]
        for n in names:
            print(f"{'same' if n in same else 'DIFFERENT'}  {n}")
        sys.exit(0 if len(same) == len(names) else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
