"""torch side of bench/bench-model-step.ts: the same model shape, batch, mask
and step (forward, backward, clip_grad_norm_, AdamW) on the same threads.
Prints one JSON line: {"stepMs", "peakMiB", "torch"}."""
import argparse, json, statistics, time

import torch

from minilm_torch import minilm_model

p = argparse.ArgumentParser()
p.add_argument("--strategy", default="full")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--seq", type=int, default=64)
a = p.parse_args()

model = minilm_model(a.threads)
names = [n for n, _ in model.named_parameters()]
for n, prm in model.named_parameters():
    if a.strategy == "head":
        prm.requires_grad = n.startswith("classifier")
    elif a.strategy == "embeddings+lower-half":
        frozen = n.startswith("bert.embeddings.") or any(n.startswith(f"bert.encoder.layer.{i}.") for i in range(3))
        prm.requires_grad = not frozen
trainable = [prm for prm in model.parameters() if prm.requires_grad]
opt = torch.optim.AdamW(trainable, lr=2e-5, weight_decay=0.01)

B, S = a.batch, a.seq
ids = torch.tensor([(i * 7919) % 30522 for i in range(B * S)]).view(B, S)
mask = torch.tensor([1 if (i % S) < S - ((i // S) % 8) * 4 else 0 for i in range(B * S)]).view(B, S)
labels = torch.tensor([i % 2 for i in range(B)])

def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)

def reset_peak_rss():
    # Writing 5 to clear_refs resets VmHWM, so the peak counts only the steps.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

times = []
reset_peak_rss()
base = status_mib("VmRSS")
for s in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    out.loss.item()
    if s >= a.warmup:
        times.append((time.perf_counter() - t0) * 1000)
peak = status_mib("VmHWM")
# base already holds the weights; peak - base is what the steps added (grads,
# Adam state, activations, allocator slack). Add the weights back so the figure
# counts the same things as bertkit's peak native bytes.
param_bytes = sum(prm.numel() for prm in model.parameters()) * 4
print(json.dumps({"stepMs": statistics.median(times), "peakMiB": (peak - base) + param_bytes / 2**20,
                  "torch": torch.__version__}))
