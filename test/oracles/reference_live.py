#!/usr/bin/env python3
"""Live reference for `npm run test:reference`: fresh random BERT configs each
run, and N training steps with transformers + torch for the loss trajectory.

  python3 test/oracles/reference_live.py make OUT_DIR SEED
      writes a random BertForSequenceClassification (config.json +
      model.safetensors, save_pretrained), inputs.json and batches.json
      (a fixed data order for training), with dropout off.
  python3 test/oracles/reference_live.py train MODEL_DIR BATCHES_JSON STEPS
      runs STEPS optimizer steps exactly as the Trainer does with
      learning_rate 1e-3, weight_decay 0.01 (not on biases / LayerNorm
      weights), warmup 2 steps then linear decay over STEPS, max_grad_norm 1.0,
      AdamW betas (0.9, 0.999), eps 1e-8; prints {"losses": [...]}.
"""
import json, os, random, sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup  # noqa: E402


# Every transformers activation name bertkit computes (lib/native.ts ACTIVATION_CODE).
ACTIVATIONS = ["gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_accurate", "gelu_fast",
               "tanh", "relu", "silu", "swish", "quick_gelu", "mish", "sigmoid", "relu6", "leaky_relu", "linear", "relu2",
               "gelu_10", "laplace", "hardswish", "sqrtsoftplus"]


def make(out, seed):
    rng = random.Random(seed)
    heads = rng.choice([2, 3, 4])
    hidden = heads * rng.choice([8, 12, 16])
    num_labels = rng.choice([2, 3, 5])
    config = BertConfig(vocab_size=rng.choice([50, 97]), hidden_size=hidden, num_hidden_layers=rng.choice([1, 2, 3]),
                        num_attention_heads=heads, intermediate_size=rng.choice([2, 3, 4]) * hidden,
                        hidden_act=rng.choice(ACTIVATIONS), max_position_embeddings=40,
                        type_vocab_size=2, num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        # Larger-than-default random weights, so a wrong bias or LayerNorm would show.
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
    model.save_pretrained(out)
    batch, seq = rng.choice([2, 3, 4]), rng.choice([1, 5, 11, 23])

    def make_batch():
        ids, mask, types, labels = [], [], [], []
        for b in range(batch):
            length = rng.randint(1, seq) if b else seq
            ids.append([rng.randint(1, config.vocab_size - 1) for _ in range(length)] + [0] * (seq - length))
            mask.append([1] * length + [0] * (seq - length))
            types.append([0] * (length // 2) + [1] * (length - length // 2) + [0] * (seq - length))
            labels.append(rng.randint(0, num_labels - 1))
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}

    with open(os.path.join(out, "inputs.json"), "w") as f:
        json.dump(make_batch(), f)
    with open(os.path.join(out, "batches.json"), "w") as f:
        json.dump([make_batch() for _ in range(4)], f)
    print(json.dumps({"hidden": hidden, "heads": heads, "layers": config.num_hidden_layers, "act": config.hidden_act,
                      "labels": num_labels, "batch": batch, "seq": seq}))


def train(model_dir, batches_json, steps):
    torch.set_num_threads(1)
    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32)
    model.train()  # dropout probabilities are 0 in these configs
    batches = json.load(open(batches_json))
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, 2, steps)
    losses = []
    for step in range(steps):
        b = batches[step % len(batches)]
        out = model(**{k: torch.tensor(v) for k, v in b.items()})
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    print(json.dumps({"losses": losses}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    else:
        train(sys.argv[2], sys.argv[3], int(sys.argv[4]))
