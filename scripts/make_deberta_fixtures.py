#!/usr/bin/env python3
"""Golden fixtures for bertkit's DeBERTa-v2/v3 (model_type "deberta-v2"),
produced by the real transformers, in the layout of make_encoder_fixtures.py.

    pip install torch transformers safetensors tokenizers sentencepiece
    python scripts/make_deberta_fixtures.py            # (re)write the fixtures
    python scripts/make_deberta_fixtures.py --check    # regenerate in a temp dir, compare hashes

Writes test/fixtures/deberta_v2/
  <cfg>/            config.json, model.safetensors, inputs.json, expected.safetensors
                    (logits, loss, grad.<name> for every parameter), expected.json
  log_buckets.json  transformers' make_log_bucket_position for DeBERTa-v3's
                    (256, 512) and the fixtures' small bucket settings
  tokenizer/        a SentencePiece Unigram tokenizer trained here on rotten
                    tomatoes sentences, saved by DebertaV2TokenizerFast
                    (tokenizer.json + tokenizer_config.json): no real DeBERTa-v3
                    vocabulary can be had offline
  tokenization.json what that tokenizer gives (ids, tokens, pairs, batches)

Fixtures: "v3" is DeBERTa-v3's architecture (relative attention, shared
keys, p2c+c2p, LayerNorm'ed rel_embeddings, no absolute positions or token
types) at hidden 48 / 3 heads with 8 position buckets and sequences of 37,
so most relative positions are log-bucketed; it has padded rows, a fully
padded row and a negative (ignored) label. "unshared" takes the other
branches: pos_key_proj (share_att_key false, c2p only), clamped unbucketed
positions, absolute positions, token types, embed_proj, gelu_new, tanh
pooler, regression. "seq1" is one token per row, multi-label.

No network: models and the tokenizer are built here, never from a hub id.
"""

import argparse
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForSequenceClassification, DebertaV2Config, DebertaV2ForSequenceClassification  # noqa: E402
from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position  # noqa: E402

from make_bert_fixtures import forward_backward, fresh_dir, noise_floor, save_checkpoint, tree_hashes, write_inputs, write_json  # noqa: E402
from make_encoder_fixtures import labels_for, randomize  # noqa: E402
from tokenizer_reference import DEFAULT_DATA, read_rotten_tomatoes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "test", "fixtures")

V3 = dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True,
          pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_biased_input=False, type_vocab_size=0,
          layer_norm_eps=1e-7, hidden_act="gelu", pooler_hidden_act="gelu", pooler_dropout=0)

FIXTURES = [
    dict(name="v3", seed=31, seq_len=37, lengths=[37, 20, 5, 0], negative_label_row=2,
         config=dict(V3, vocab_size=40, hidden_size=48, num_attention_heads=3, intermediate_size=48,
                     num_hidden_layers=2, max_position_embeddings=64, num_labels=3)),
    dict(name="unshared", seed=32, seq_len=11, lengths=[11, 7, 3], token_types=True,
         config=dict(vocab_size=30, hidden_size=32, num_attention_heads=4, intermediate_size=40, num_hidden_layers=2,
                     embedding_size=24, relative_attention=True, position_buckets=-1, max_relative_positions=5,
                     norm_rel_ebd="none", share_att_key=False, pos_att_type=["c2p"], position_biased_input=True,
                     type_vocab_size=2, max_position_embeddings=16, layer_norm_eps=1e-5, hidden_act="gelu_new",
                     pooler_hidden_act="tanh", cls_dropout=0.3, num_labels=1)),
    dict(name="seq1", seed=33, seq_len=1, lengths=[1, 1],
         config=dict(V3, vocab_size=20, hidden_size=16, num_attention_heads=2, intermediate_size=24,
                     num_hidden_layers=1, max_position_embeddings=32, num_labels=2,
                     problem_type="multi_label_classification")),
]

BUCKET_CASES = [(256, 512, 700), (8, 64, 80), (4, 16, 40)]


def make_inputs(spec, config):
    g = torch.Generator().manual_seed(2000 + spec["seed"])
    batch, seq = len(spec["lengths"]), spec["seq_len"]
    pad = config.pad_token_id
    input_ids = torch.full((batch, seq), pad, dtype=torch.long)
    attention_mask = torch.zeros((batch, seq), dtype=torch.long)
    for b, n in enumerate(spec["lengths"]):
        input_ids[b, :n] = torch.randint(1, config.vocab_size, (n,), generator=g)
        attention_mask[b, :n] = 1
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask)
    if spec.get("token_types"):
        token_type_ids = torch.zeros_like(input_ids)
        for b, n in enumerate(spec["lengths"]):
            token_type_ids[b, (n + 1) // 2:n] = 1
        inputs["token_type_ids"] = token_type_ids
    labels = labels_for(config, batch, g)
    if "negative_label_row" in spec:
        labels[spec["negative_label_row"]] = -1  # transformers leaves negative labels out of the loss
    inputs["labels"] = labels
    return inputs


def make_fixture(spec, out_root):
    config = DebertaV2Config(**spec["config"])
    torch.manual_seed(spec["seed"])
    model = DebertaV2ForSequenceClassification(config)
    randomize(model, 1000 + spec["seed"])
    model.eval()
    inputs = make_inputs(spec, config)
    out_dir = fresh_dir(out_root, spec["name"])
    save_checkpoint(model, out_dir)
    logits, loss, grads = forward_backward(model, inputs)
    floor = noise_floor(model, inputs, logits, loss, grads)

    reloaded = AutoModelForSequenceClassification.from_pretrained(out_dir).eval()
    assert type(reloaded) is DebertaV2ForSequenceClassification
    with torch.no_grad():
        again = reloaded(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    # Without autograd torch may pick other kernels (rounding only); DeBERTa's regression head returns logits.view(-1).
    assert torch.allclose(again.flatten(), logits.flatten(), rtol=1e-5, atol=1e-7), f"{spec['name']}: reloading the checkpoint changed the logits: {again.flatten().tolist()} vs {logits.flatten().tolist()}"

    names = [n for n, _ in model.named_parameters()]
    tensors = {"logits": logits.float().contiguous(), "loss": loss.float().reshape(())}
    for n in names:
        tensors["grad." + n] = grads[n].float().contiguous()
    save_file(tensors, os.path.join(out_dir, "expected.safetensors"))
    write_inputs(os.path.join(out_dir, "inputs.json"), inputs)
    write_json(os.path.join(out_dir, "expected.json"), {
        "model_class": type(model).__name__,
        "parameter_names": names,
        "parameter_shapes": {n: list(p.shape) for n, p in model.named_parameters()},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "float32_vs_float64": floor,
        "seeds": {"torch.manual_seed": spec["seed"], "weights": 1000 + spec["seed"], "inputs": 2000 + spec["seed"]},
    })
    return dict(name=spec["name"], floor=floor)


def write_buckets(out_root):
    cases = []
    for bucket, max_position, reach in BUCKET_CASES:
        rel = torch.arange(-reach, reach + 1)
        cases.append({"bucket_size": bucket, "max_position": max_position, "from": -reach,
                      "buckets": make_log_bucket_position(rel, bucket, max_position).long().tolist()})
    write_json(os.path.join(out_root, "log_buckets.json"), {"cases": cases})


def generate(out_root, data_dir):
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # byte-identical on rerun
    root = os.path.join(out_root, "deberta_v2")
    os.makedirs(root, exist_ok=True)
    write_buckets(root)
    results = [make_fixture(spec, root) for spec in FIXTURES]
    from make_deberta_tokenizer_fixture import make_tokenizer_fixture  # noqa: E402
    make_tokenizer_fixture(root, data_dir)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="the fixtures root (deberta_v2/ goes under it)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="directory of rt-polarity.pos/.neg")
    ap.add_argument("--check", action="store_true", help="regenerate in a temp dir and compare sha256; write nothing")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp, args.data)
            fresh = tree_hashes(os.path.join(tmp, "deberta_v2"))
            current = tree_hashes(os.path.join(args.out, "deberta_v2"))
            bad = [k for k in sorted(fresh.keys() | current.keys()) if fresh.get(k) != current.get(k)]
        for k in bad:
            print(f"differs: {k}")
        print("identical" if not bad else f"{len(bad)} file(s) differ")
        return 1 if bad else 0
    for r in generate(args.out, args.data):
        f = r["floor"]
        print(f"{r['name']:>10}: f32-vs-f64 logits rel {f['logits_max_rel_err']:.2e}, loss rel {f['loss_rel_err']:.2e}, "
              f"grad rel {f['grad_max_rel_err']:.2e} ({f['grad_max_rel_err_param']})")
    root = os.path.join(args.out, "deberta_v2")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"wrote {root} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
