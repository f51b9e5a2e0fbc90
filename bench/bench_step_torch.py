"""torch side of bench/bench-step-cpu.ts: the MiniLM-shaped HF BertForSequenceClassification
(SDPA attention) on the same batches (a JSON list of {input_ids, labels}, padded here to each
batch's longest), forward + backward + clip_grad_norm_ + AdamW, fp32 or bf16 autocast on the CPU.
Prints one JSON line: {"stepMs", "torch"} (median of the steps after --warmup)."""
import argparse, json, statistics, time

import torch

from minilm_torch import minilm_model

p = argparse.ArgumentParser()
p.add_argument("--batches", required=True)
p.add_argument("--strategy", default="full")
p.add_argument("--precision", default="fp32")
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()

model = minilm_model(a.threads)
for i, (n, prm) in enumerate(model.named_parameters()):
    if a.strategy == "head":
        prm.requires_grad = n.startswith("classifier")
    elif a.strategy == "index100":
        prm.requires_grad = i > 100
trainable = [prm for prm in model.parameters() if prm.requires_grad]
opt = torch.optim.AdamW(trainable, lr=2e-5, weight_decay=0.01)

batches = []
for b in json.load(open(a.batches)):
    seq = max(len(r) for r in b["input_ids"])
    ids = torch.zeros(len(b["input_ids"]), seq, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(b["input_ids"]):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    batches.append((ids, mask, torch.tensor(b["labels"])))

times = []
for s, (ids, mask, labels) in enumerate(batches):
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss.item()
    if s >= a.warmup:
        times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"stepMs": statistics.median(times), "torch": torch.__version__}))
