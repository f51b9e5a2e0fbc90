"""Hugging Face side of the recipe benchmark: the seed's Trainer recipe on
pre-tokenized data (bench/tokenize_rotten_tomatoes.py), for one freezing
strategy and precision. Prints one JSON line.

usage: python3 bench/bench_hf_trainer.py --model DIR --data tokenized.json
         --strategy full|head|index100|lora [--precision fp32|fp16|bf16] [--epochs 1]
         [--batch 16] [--lr 2e-5] [--max-steps N] [--seed 42]
         [--pad-to-multiple-of 8] [--no-warmup] [--cudnn-sdpa on|off] [--nan-inf-filter on|off]

Set up as a competent user would, so the comparison with bertkit (lib/cli/bench.ts,
which passes the same switches to both sides) is fair:
- cuDNN attention off by default (--cudnn-sdpa off): on sm_90, recent torch sends bf16
  scaled_dot_product_attention with a padding mask to cuDNN, which builds a new graph per
  input shape; dynamic padding gives dozens of shapes per epoch (issue 13, item 20).
  torch then uses its memory-efficient or flash kernels.
- Warm-up (on unless --no-warmup): before the timed train() and evaluate(), untimed
  forward + backward passes at every (batch size, padded length) the run can meet, and
  eval forwards at every eval shape, under the same autocast the Trainer uses, with the RNG
  state restored afterwards. bertkit does the same warm-up, so neither side pays start-up
  (kernel loading, library handles, allocator growth, per-shape graphs) inside its timings.
- --pad-to-multiple-of N: DataCollatorWithPadding(pad_to_multiple_of=N) (bertkit: padToMultipleOf).
- --nan-inf-filter: TrainingArguments.logging_nan_inf_filter (default on, as transformers).
  When on, the Trainer tests every micro-batch's loss for NaN/Inf with a Python `if`, a host
  synchronisation per step on CUDA; bertkit checks the loss only when it logs (loggingSteps).
"""
import argparse, json, os, tempfile, time

import numpy as np
import torch
import transformers
from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments,
                          AutoTokenizer)

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--tokenizer", default=None)
p.add_argument("--data", required=True)
p.add_argument("--strategy", default="full")
p.add_argument("--precision", default="fp32")
p.add_argument("--epochs", type=float, default=1)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--lr", type=float, default=2e-5)
p.add_argument("--max-steps", type=int, default=-1)
p.add_argument("--seed", type=int, default=42)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--init-dir", default=None, help="save the initialised model (new classifier included) here before training")
p.add_argument("--pad-to-multiple-of", type=int, default=None)
p.add_argument("--no-warmup", action="store_true", help="time cold: start-up costs fall inside train() and evaluate()")
p.add_argument("--cudnn-sdpa", choices=["on", "off"], default="off")
p.add_argument("--nan-inf-filter", choices=["on", "off"], default="on")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
if a.pad_to_multiple_of is not None and a.pad_to_multiple_of < 1:
    p.error(f"--pad-to-multiple-of must be a positive integer, got {a.pad_to_multiple_of}")
if torch.cuda.is_available() and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
    torch.backends.cuda.enable_cudnn_sdp(a.cudnn_sdpa == "on")

data = json.load(open(a.data))
# Plain lists of dicts: the Trainer takes any sized, indexable dataset (no `datasets` needed).
def rows(split):
    return [{"input_ids": ids, "label": y} for ids, y in zip(data[split]["input_ids"], data[split]["labels"])]
train, test = rows("train"), rows("test")
tokenizer = AutoTokenizer.from_pretrained(a.tokenizer or a.model)
# The new classifier is drawn from the seed, as with Trainer(model_init=...).
from transformers import set_seed
set_seed(a.seed)
model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2)
if a.init_dir:
    model.save_pretrained(a.init_dir)
    tokenizer.save_pretrained(a.init_dir)
names = [n for n, _ in model.named_parameters()]
for i, (name, param) in enumerate(model.named_parameters()):
    if a.strategy == "head":
        param.requires_grad = name.startswith("classifier")
    elif a.strategy == "index100":
        param.requires_grad = i > 100
if a.strategy == "lora":
    # The adapter bertkit's bench trains (lib/cli/bench.ts BENCH_LORA), with peft itself.
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                             target_modules=["query", "value"], modules_to_save=["classifier"]))

def compute_metrics(pred):
    # Binary F1 of the positive class, as sklearn's f1_score.
    y, yhat = pred.label_ids, np.argmax(pred.predictions, axis=-1)
    tp = int(((yhat == 1) & (y == 1)).sum()); fp = int(((yhat == 1) & (y == 0)).sum()); fn = int(((yhat == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}

out = tempfile.mkdtemp()
args = TrainingArguments(out, learning_rate=a.lr, per_device_train_batch_size=a.batch, per_device_eval_batch_size=a.batch,
                         num_train_epochs=a.epochs, max_steps=a.max_steps, weight_decay=0.01, save_strategy="no",
                         report_to=[], seed=a.seed, fp16=a.precision == "fp16", bf16=a.precision == "bf16",
                         disable_tqdm=True, logging_steps=50, logging_nan_inf_filter=a.nan_inf_filter == "on",
                         # transformers refuses bf16 without a GPU unless the run is declared a CPU run.
                         use_cpu=not torch.cuda.is_available())
collator = DataCollatorWithPadding(tokenizer=tokenizer, pad_to_multiple_of=a.pad_to_multiple_of)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                  data_collator=collator, compute_metrics=compute_metrics)
cuda = torch.cuda.is_available()


def warmup_batches(rows, batch_sizes):
    """One batch per (batch size, padded length) the run can meet: a row of that length plus the
    shortest rows (lib/cli/bench.ts builds the same shapes for bertkit)."""
    first_of_length = {}
    for i, r in enumerate(rows):
        first_of_length.setdefault(len(r["input_ids"]), i)
    shortest = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    m = a.pad_to_multiple_of or 1
    seen, batches = set(), []
    for b in sorted(set(batch_sizes)):
        for length in sorted(first_of_length):
            key = (b, -(-length // m) * m)
            if key in seen:
                continue
            seen.add(key)
            batches.append([rows[first_of_length[length]]] + [rows[i] for i in shortest[: b - 1]])
    return batches


def warm_up():
    """Untimed passes at every shape, under the Trainer's autocast, RNG state restored."""
    start = time.perf_counter()
    device = trainer.args.device
    half = torch.bfloat16 if a.precision == "bf16" else torch.float16 if a.precision == "fp16" else None
    autocast = lambda: torch.autocast(device.type, dtype=half, enabled=half is not None)  # noqa: E731
    sizes = lambda n, b: [b] + ([n % b] if n % b else [])  # noqa: E731
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.train()
        for batch in warmup_batches(train, sizes(len(train), a.batch)):
            inputs = {k: v.to(device) for k, v in collator(batch).items()}
            with autocast():
                loss = model(**inputs).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            for batch in warmup_batches(test, sizes(len(test), a.batch)):
                inputs = {k: v.to(device) for k, v in collator(batch).items()}
                with autocast():
                    model(**inputs)
        model.train()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


warmup_seconds = None if a.no_warmup else warm_up()
if cuda:
    torch.cuda.reset_peak_memory_stats()
result = trainer.train()
peak_train = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
ev = trainer.evaluate()
print(json.dumps({
    "library": "transformers", "strategy": a.strategy, "precision": a.precision,
    "trainRuntime": result.metrics["train_runtime"], "trainLoss": result.metrics["train_loss"],
    "trainSamplesPerSecond": result.metrics["train_samples_per_second"], "steps": result.global_step,
    "evalF1": ev["eval_f1"], "evalLoss": ev["eval_loss"], "evalRuntime": ev["eval_runtime"],
    "peakMemoryMiB": peak_train, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    "torch": torch.__version__, "transformers": transformers.__version__,
    "warmupSeconds": warmup_seconds, "padToMultipleOf": a.pad_to_multiple_of,
    "cudnnSdpa": a.cudnn_sdpa if cuda else None, "loggingNanInfFilter": a.nan_inf_filter == "on",
    "attnImplementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
}))
