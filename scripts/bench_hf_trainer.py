"""Hugging Face side of the recipe benchmark: the seed's Trainer recipe on
pre-tokenized data (scripts/tokenize_rotten_tomatoes.py), for one freezing
strategy and precision. Prints one JSON line.

usage: python3 scripts/bench_hf_trainer.py --model DIR --data tokenized.json
         --strategy full|head|index100|lora [--precision fp32|fp16|bf16] [--epochs 1]
         [--batch 16] [--lr 2e-5] [--max-steps N] [--seed 42]"""
import argparse, json, os, tempfile, time

import numpy as np
import torch
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
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

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
                         disable_tqdm=True, logging_steps=50)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                  data_collator=DataCollatorWithPadding(tokenizer=tokenizer), compute_metrics=compute_metrics)
cuda = torch.cuda.is_available()
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
    "torch": torch.__version__,
}))
