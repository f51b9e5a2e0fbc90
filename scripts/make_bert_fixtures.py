#!/usr/bin/env python3
"""Golden fixtures for bertkit's BERT, produced by the real transformers.

    pip install torch transformers safetensors
    python scripts/make_bert_fixtures.py            # (re)write test/fixtures/bert
    python scripts/make_bert_fixtures.py --check    # regenerate in a temp dir, compare hashes

Each test/fixtures/bert/<name>/ holds:
  config.json           model.config as save_pretrained writes it (saved before the
                        forward, which would otherwise write the inferred problem_type)
  model.safetensors     save_pretrained's weights
  inputs.json           {input_ids, attention_mask, token_type_ids, labels} nested lists
  expected.safetensors  float32: logits [B, num_labels], loss [] (0-d),
                        grad.<param name> for every named_parameters() entry,
                        logits_sdpa / loss_sdpa (transformers' default attention path)
  expected.json         parameter_names (named_parameters order), parameter_shapes,
                        versions, the float32-vs-float64 noise floor, and notes

All expected values come from the eager attention path (additive mask of
finfo(float32).min), which is the mask bertkit's design commits to. The CPU
default (sdpa, boolean mask) differs only on rows whose attention_mask is all
zeros; logits_sdpa records what it gives there.

No network: every model is built from a config, never from a hub id.
Outputs are bit-identical across reruns on one machine (one thread, fixed
seeds); another CPU/BLAS may differ in the last bits, which is why --check
reports hashes and the tests use tolerances.
"""

import argparse
import copy
import hashlib
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
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "test", "fixtures", "bert")

# Each batch row is described by its real length; the rest is padding. A
# length of 0 makes a row that is entirely padding.
FIXTURES = [
    dict(
        name="odd",
        seed=1,
        config=dict(
            vocab_size=60, hidden_size=72, num_attention_heads=3, intermediate_size=200,
            num_hidden_layers=2, max_position_embeddings=64, type_vocab_size=2,
            num_labels=2, hidden_act="gelu",
        ),
        seq_len=9,
        lengths=[9, 5, 0],
    ),
    dict(
        name="one_layer",
        seed=2,
        config=dict(
            vocab_size=50, hidden_size=32, num_attention_heads=4, intermediate_size=64,
            num_hidden_layers=1, max_position_embeddings=16, type_vocab_size=2,
            num_labels=2, hidden_act="gelu_new",
        ),
        seq_len=9,
        lengths=[9, 4, 7],
    ),
    dict(
        name="three_labels",
        seed=3,
        config=dict(
            vocab_size=40, hidden_size=48, num_attention_heads=4, intermediate_size=96,
            num_hidden_layers=2, max_position_embeddings=40, type_vocab_size=2,
            num_labels=3, hidden_act="relu",
        ),
        seq_len=37,
        lengths=[37, 20, 11],
    ),
    dict(
        name="regression",
        seed=4,
        config=dict(
            vocab_size=30, hidden_size=16, num_attention_heads=2, intermediate_size=32,
            num_hidden_layers=2, max_position_embeddings=8, type_vocab_size=2,
            num_labels=1, hidden_act="gelu",
        ),
        seq_len=1,
        lengths=[1, 0, 1],
    ),
    dict(
        name="multi_label",
        seed=5,
        config=dict(
            vocab_size=30, hidden_size=24, num_attention_heads=2, intermediate_size=48,
            num_hidden_layers=2, max_position_embeddings=16, type_vocab_size=2,
            num_labels=3, hidden_act="gelu", problem_type="multi_label_classification",
        ),
        seq_len=9,
        lengths=[9, 2, 6],
    ),
]

BERT_BASE_CASED = dict(
    vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, num_labels=2,
)


def make_config(spec):
    # attention_probs/hidden dropout keep their defaults (0.1): eval() is what
    # turns them off, and the fixture must show a config where they are on.
    return BertConfig(attn_implementation="eager", **spec)


def randomize(model, seed):
    """Replace transformers' init by values that make a forward pass discriminating.

    The stock init (std 0.02, LayerNorm weight 1 / bias 0, biases 0) leaves
    attention nearly uniform and hides a missing bias, a swapped LayerNorm
    weight/bias or a mask applied to the wrong axis. Linear weights get
    std 1/sqrt(fan_in) so activations stay O(1) through every layer.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.2 * noise)
            elif "embeddings" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / p.shape[1] ** 0.5)


def build_model(spec):
    torch.manual_seed(spec["seed"])
    model = BertForSequenceClassification(make_config(spec["config"]))
    randomize(model, 1000 + spec["seed"])
    return model.eval()


def make_inputs(spec, config):
    g = torch.Generator().manual_seed(2000 + spec["seed"])
    batch, seq = len(spec["lengths"]), spec["seq_len"]
    pad = config.pad_token_id
    input_ids = torch.full((batch, seq), pad, dtype=torch.long)
    attention_mask = torch.zeros((batch, seq), dtype=torch.long)
    token_type_ids = torch.zeros((batch, seq), dtype=torch.long)
    for b, n in enumerate(spec["lengths"]):
        # Real tokens avoid the pad id so its zero gradient (padding_idx) is
        # attributable to padding alone.
        input_ids[b, :n] = torch.randint(1, config.vocab_size, (n,), generator=g)
        attention_mask[b, :n] = 1
        # Sentence-pair layout as a tokenizer writes it: segment B after the
        # midpoint, padding back to type 0.
        token_type_ids[b, (n + 1) // 2 : n] = 1
    if config.num_labels == 1:
        labels = torch.randn(batch, generator=g)
    elif config.problem_type == "multi_label_classification":
        labels = torch.randint(0, 2, (batch, config.num_labels), generator=g).float()
    else:
        labels = torch.randint(0, config.num_labels, (batch,), generator=g)
    return dict(input_ids=input_ids, attention_mask=attention_mask,
                token_type_ids=token_type_ids, labels=labels)


def forward_backward(model, inputs):
    """Logits, loss and named grads in eval mode (dropout off), in the model's dtype."""
    model.zero_grad(set_to_none=True)
    model.eval()
    out = model(**inputs)
    out.loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        grads[name] = p.grad.detach().clone()
    return out.logits.detach().clone(), out.loss.detach().clone(), grads


def rel_err(a, ref):
    """max|a-ref| / max|ref|: per-tensor relative error that tolerates zeros in ref."""
    a, ref = a.double(), ref.double()
    scale = ref.abs().max().item()
    diff = (a - ref).abs().max().item()
    return diff / scale if scale > 0 else diff


def noise_floor(model, inputs, logits, loss, grads):
    m64 = copy.deepcopy(model).double()
    inputs64 = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
    l64, loss64, g64 = forward_backward(m64, inputs64)
    # A key bias shifts every score of a query row by the same amount, which
    # softmax cancels: its true gradient is zero and float32 returns rounding
    # noise (~1e-9) there, so a relative error means nothing for it. With a
    # single key (seq_len 1) the same holds for all query/key parameters.
    scale = max(g.abs().max().item() for g in g64.values())
    zero = {n for n in grads if g64[n].abs().max().item() <= 1e-6 * scale}
    per_param = {n: rel_err(grads[n], g64[n]) for n in grads if n not in zero}
    worst = max(per_param, key=per_param.get)
    # Elementwise views, for tests that compare element by element: a logit
    # near zero or a tiny gradient entry has a large relative error in float32.
    atol_needed = max(((grads[n].double() - g64[n]).abs() - 1e-4 * g64[n].abs()).max().item() for n in grads)
    return {
        "logits_max_abs_diff": (logits.double() - l64).abs().max().item(),
        "logits_elementwise_max_rel_err": ((logits.double() - l64).abs() / l64.abs()).max().item(),
        "grad_atol_needed_with_rtol_1e-4": max(atol_needed, 0.0),
        "logits_max_rel_err": rel_err(logits, l64),
        "loss_abs_diff": abs(loss.item() - loss64.item()),
        "loss_rel_err": abs(loss.item() - loss64.item()) / abs(loss64.item()),
        "grad_max_rel_err": per_param[worst],
        "grad_max_rel_err_param": worst,
        "grad_rel_err_definition": "max|g32-g64| / max|g64| per tensor, max over tensors",
        "grad_largest_abs": scale,
        "analytically_zero_grads_f32_max_abs": {n: grads[n].abs().max().item() for n in sorted(zero)},
    }


def sdpa_results(model, inputs):
    # set_attn_implementation validates and switches every submodule's view of
    # the config; fall back to the attribute for older releases.
    m = copy.deepcopy(model)
    if hasattr(m, "set_attn_implementation"):
        m.set_attn_implementation("sdpa")
    else:
        m.config._attn_implementation = "sdpa"
    with torch.no_grad():
        out = m(**inputs)
    return out.logits, out.loss


def write_inputs(path, inputs):
    # One key per line, one row per list: diffable and readable by eye.
    body = ",\n".join(f' "{k}": {json.dumps(v.tolist())}' for k, v in inputs.items())
    with open(path, "w") as f:
        f.write("{\n" + body + "\n}\n")


def write_json(path, obj, one_line_items=None):
    # one_line_items names a list written one element per line, so a long
    # list of small records stays readable and diffs line by line.
    text = json.dumps(obj, indent=1)
    if one_line_items:
        items = ",\n  ".join(json.dumps(x) for x in obj[one_line_items])
        rest = {k: v for k, v in obj.items() if k != one_line_items}
        text = json.dumps(rest, indent=1)[:-2] + f',\n "{one_line_items}": [\n  {items}\n ]\n}}'
    with open(path, "w") as f:
        f.write(text + "\n")


def fresh_dir(root, name):
    # Stale files from an earlier layout would otherwise survive a rerun.
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def save_checkpoint(model, out_dir):
    model.save_pretrained(out_dir)
    kept = {"config.json", "model.safetensors"}
    for f in os.listdir(out_dir):
        assert f in kept, f"save_pretrained wrote an unexpected file {f}"


def make_fixture(spec, out_root):
    out_dir = fresh_dir(out_root, spec["name"])
    model = build_model(spec)
    inputs = make_inputs(spec, model.config)
    # Before the forward: BertForSequenceClassification.forward writes the
    # inferred problem_type into model.config.
    save_checkpoint(model, out_dir)
    configured_problem_type = model.config.problem_type

    logits, loss, grads = forward_backward(model, inputs)
    floor = noise_floor(model, inputs, logits, loss, grads)
    logits_sdpa, loss_sdpa = sdpa_results(model, inputs)

    names = [n for n, _ in model.named_parameters()]
    tensors = {"logits": logits.float().contiguous(), "loss": loss.float().reshape(())}
    tensors["logits_sdpa"] = logits_sdpa.float().contiguous()
    tensors["loss_sdpa"] = loss_sdpa.float().reshape(())
    for n in names:
        tensors["grad." + n] = grads[n].float().contiguous()
    save_file(tensors, os.path.join(out_dir, "expected.safetensors"))

    pad_row = model.bert.embeddings.word_embeddings.padding_idx
    assert grads["bert.embeddings.word_embeddings.weight"][pad_row].abs().max() == 0
    fully_padded = [b for b, n in enumerate(spec["lengths"]) if n == 0]

    write_inputs(os.path.join(out_dir, "inputs.json"), inputs)
    write_json(os.path.join(out_dir, "expected.json"), {
        "parameter_names": names,
        "parameter_shapes": {n: list(p.shape) for n, p in model.named_parameters()},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": "eager",
        "problem_type_in_config": configured_problem_type,
        "problem_type_used": model.config.problem_type,
        "fully_padded_rows": fully_padded,
        "sdpa_vs_eager_logits_max_abs_diff_per_row": (logits_sdpa - logits).abs().amax(dim=-1).tolist(),
        "float32_vs_float64": floor,
        "seeds": {"torch.manual_seed": spec["seed"], "weights": 1000 + spec["seed"],
                  "inputs": 2000 + spec["seed"]},
    })
    return dict(name=spec["name"], logits=logits, floor=floor, model=model, inputs=inputs,
                sdpa_diff=(logits_sdpa - logits).abs().amax(dim=-1).tolist(), fully_padded=fully_padded)


def make_legacy(base, out_root):
    """A one_layer checkpoint as old/pretraining tools wrote it.

    Bare BertModel keys (no "bert." prefix), LayerNorm .gamma/.beta, extra
    cls.* pretraining heads, plus classifier.* so the expected logits are
    fully determined by the file. The expected logits are what transformers
    itself computes after loading this file.
    """
    out_dir = fresh_dir(out_root, "legacy_gamma_beta")
    model, inputs = base["model"], base["inputs"]
    cfg = model.config

    def legacy_name(n):
        n = n[len("bert."):] if n.startswith("bert.") else n
        n = n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        return n

    state = {legacy_name(n): p.detach().clone().contiguous() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(3000)
    h, v = cfg.hidden_size, cfg.vocab_size
    heads = {
        "cls.predictions.bias": torch.randn(v, generator=g),
        "cls.predictions.transform.dense.weight": torch.randn(h, h, generator=g),
        "cls.predictions.transform.dense.bias": torch.randn(h, generator=g),
        "cls.predictions.transform.LayerNorm.gamma": torch.randn(h, generator=g),
        "cls.predictions.transform.LayerNorm.beta": torch.randn(h, generator=g),
        "cls.predictions.decoder.weight": torch.randn(v, h, generator=g),
        "cls.seq_relationship.weight": torch.randn(2, h, generator=g),
        "cls.seq_relationship.bias": torch.randn(2, generator=g),
    }
    state.update(heads)
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(out_root, base["name"], "config.json"), os.path.join(out_dir, "config.json"))
    write_inputs(os.path.join(out_dir, "inputs.json"), inputs)

    loaded, info = BertForSequenceClassification.from_pretrained(
        out_dir, output_loading_info=True, attn_implementation="eager")
    loaded.eval()
    with torch.no_grad():
        logits = loaded(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    # Both directions of the contract: transformers mapped every legacy name
    # back, so the logits are the original model's, bit for bit.
    assert torch.equal(logits, base["logits"]), "transformers did not load the legacy names as expected"
    for n, p in loaded.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[n]), n

    save_file({"logits": logits.float().contiguous()}, os.path.join(out_dir, "expected.safetensors"))
    write_json(os.path.join(out_dir, "expected.json"), {
        "same_weights_and_inputs_as": base["name"],
        "key_map": {legacy_name(n): n for n, _ in model.named_parameters()},
        "extra_keys": sorted(heads),
        "transformers_loading_info": {k: sorted(v) if isinstance(v, (set, list)) else v
                                      for k, v in info.items() if k != "error_msgs"} |
                                     {"error_msgs": [str(e) for e in info.get("error_msgs", [])]},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    })
    return info


def make_names_bert_base_cased(out_root):
    # The meta device gives names and shapes without allocating 400 MB.
    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig(attn_implementation="eager", **BERT_BASE_CASED))
    params = [(n, list(p.shape), p.numel()) for n, p in model.named_parameters()]
    assert len(params) == 201, len(params)
    assert params[100][0] == "bert.encoder.layer.5.output.LayerNorm.bias", params[100]
    assert params[0][0] == "bert.embeddings.word_embeddings.weight"
    assert [n for n, _, _ in params[197:]] == [
        "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    write_json(os.path.join(out_root, "names_bert_base_cased.json"), {
        "config": BERT_BASE_CASED,
        "count": len(params),
        "total_numel": sum(n for _, _, n in params),
        "numel_index_le_100": sum(n for _, _, n in params[:101]),
        "transformers_version": transformers.__version__,
        "parameters": [{"index": i, "name": n, "shape": s} for i, (n, s, _) in enumerate(params)],
    }, one_line_items="parameters")


def generate(out_root):
    transformers.utils.logging.disable_progress_bar()
    # One thread: BLAS reductions split across threads can change the last
    # bits between runs, and the fixtures must be byte-identical on rerun.
    torch.set_num_threads(1)
    os.makedirs(out_root, exist_ok=True)
    results = [make_fixture(spec, out_root) for spec in FIXTURES]
    info = make_legacy(next(r for r in results if r["name"] == "one_layer"), out_root)
    make_names_bert_base_cased(out_root)
    return results, info


def tree_hashes(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="regenerate in a temp dir and compare sha256 with --out; write nothing")
    args = ap.parse_args()

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            fresh, current = tree_hashes(tmp), tree_hashes(args.out)
        bad = sorted(k for k in fresh.keys() | current.keys() if fresh.get(k) != current.get(k))
        for k in bad:
            print(f"differs: {k}")
        print("identical" if not bad else f"{len(bad)} file(s) differ")
        return 1 if bad else 0

    results, info = generate(args.out)
    for r in results:
        f = r["floor"]
        print(f"{r['name']:>13}: f32-vs-f64 logits abs {f['logits_max_abs_diff']:.2e} "
              f"rel {f['logits_max_rel_err']:.2e}, loss rel {f['loss_rel_err']:.2e}, "
              f"grad rel {f['grad_max_rel_err']:.2e} ({f['grad_max_rel_err_param']}); "
              f"sdpa-vs-eager per row {['%.1e' % x for x in r['sdpa_diff']]}")
    print("legacy load info:", {k: sorted(v) if isinstance(v, (set, list)) else v for k, v in info.items()})
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
