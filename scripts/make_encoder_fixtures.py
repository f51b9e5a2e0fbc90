#!/usr/bin/env python3
"""Golden fixtures for bertkit's RoBERTa and DistilBERT, produced by the real
transformers (the BERT ones are scripts/make_bert_fixtures.py; this reuses its
helpers and its layout).

    pip install torch transformers safetensors tokenizers
    python scripts/make_encoder_fixtures.py            # (re)write the fixtures
    python scripts/make_encoder_fixtures.py --check    # regenerate in a temp dir, compare hashes

Writes
  test/fixtures/roberta/tokenizer/    a byte-level BPE tokenizer in RoBERTa's layout
                                      (transformers' RobertaTokenizer.save_pretrained:
                                      tokenizer.json + tokenizer_config.json), trained
                                      here on rotten tomatoes sentences: no real RoBERTa
                                      vocabulary can be had offline
  test/fixtures/roberta/tokenization.json
                                      what the Rust tokenizer (through transformers)
                                      gives for ~70 texts: tokens, ids, pairs, padded
                                      and truncated batches, decodes
  test/fixtures/roberta/<cfg>/        config.json, model.safetensors, inputs.json,
  test/fixtures/distilbert/<cfg>/     expected.safetensors, expected.json, as the BERT
                                      fixtures (logits, loss, grad.<name> for every
                                      parameter, eager attention)

The RoBERTa "base" fixture's inputs are the fixture tokenizer's ids for real
sentences (right padding) plus a fully padded row; "odd" has a left-padded row,
a pad id inside the attended part (RoBERTa numbers positions from input_ids,
not from the mask), explicit token_type_ids, and a sequence that uses the last
position embedding. DistilBERT "sinusoidal" records the sinusoidal table a
fresh model starts from.

No network: models and the tokenizer are built here, never from a hub id.
"""

import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizer,
)

from make_bert_fixtures import (  # noqa: E402
    forward_backward,
    fresh_dir,
    noise_floor,
    save_checkpoint,
    sdpa_results,
    tree_hashes,
    write_inputs,
    write_json,
)
from tokenizer_reference import DEFAULT_DATA, read_rotten_tomatoes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "test", "fixtures")

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as roberta-base's first four
BPE_VOCAB_SIZE = 420
BPE_TRAIN_SENTENCES = 3000

EDGE_TEXTS = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "multiple   inner    spaces",
    "tabs\tand\nnew\r\nlines",
    "don't I'll we're they've she'd it's",
    "DON'T SHOUT",
    "numbers 12345 and 3.14159 and 1,000,000",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber",
    "emoji \U0001F600\U0001F44D\U0001F3FD and \u2764\ufe0f",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 and \u4e2d\u6587",
    "a <mask> token and another<mask>",
    "<s> and </s> written in the text",
    "punctuation!!! ... ?? -- (brackets) [square] {curly}",
    "\u0085latin-1 c1 controls\u0097 from the raw files",
    "zero\u200bwidth and\u00a0no-break space",
    "  ",
    "x",
]

PAIRS = [
    ("the movie was great", "i loved every minute"),
    ("short", "a much longer second sentence with several more words in it"),
    ("", "empty first"),
    ("caf\u00e9 \U0001F600", "don't"),
]

ROBERTA_FIXTURES = [
    dict(
        name="base",
        seed=11,
        # roberta-base's own choices where they differ from RobertaConfig's
        # defaults: one token type, LayerNorm eps 1e-5, positions past pad.
        config=dict(
            hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
            max_position_embeddings=20, type_vocab_size=1, layer_norm_eps=1e-5,
            num_labels=3, hidden_act="gelu",
        ),
        max_length=14,
        sentences=3,
    ),
    dict(
        name="odd",
        seed=12,
        config=dict(
            vocab_size=40, hidden_size=24, num_attention_heads=3, intermediate_size=40,
            num_hidden_layers=2, max_position_embeddings=11, type_vocab_size=2, layer_norm_eps=1e-5,
            num_labels=1, hidden_act="gelu_new", classifier_dropout=0.3,
        ),
        seq_len=9,
    ),
]

DISTILBERT_FIXTURES = [
    dict(
        name="base",
        seed=21,
        config=dict(
            vocab_size=60, dim=32, n_heads=4, hidden_dim=48, n_layers=2, max_position_embeddings=16,
            num_labels=2, activation="gelu",
        ),
        seq_len=9,
        lengths=[9, 5, 0],
    ),
    dict(
        name="sinusoidal",
        seed=22,
        config=dict(
            vocab_size=40, dim=24, n_heads=3, hidden_dim=40, n_layers=3, max_position_embeddings=12,
            num_labels=3, activation="relu", sinusoidal_pos_embds=True, seq_classif_dropout=0.3,
            attention_dropout=0.2, problem_type="multi_label_classification",
        ),
        seq_len=7,
        lengths=[7, 3, 6],
    ),
]


# ---- tokenizer -----------------------------------------------------------------

def train_tokenizer(out_dir, data_dir):
    sentences = read_rotten_tomatoes(data_dir)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences[:BPE_TRAIN_SENTENCES], vocab_size=BPE_VOCAB_SIZE, min_frequency=2,
                            special_tokens=ROBERTA_SPECIALS, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # Through transformers' own class, so the files are laid out (post-processor,
    # added tokens, tokenizer_config.json) exactly as a RoBERTa checkpoint's.
    tok = RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=512)
    tok.save_pretrained(out_dir)
    for f in os.listdir(out_dir):
        if f not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(out_dir, f))
    # What users get: AutoTokenizer over the saved directory.
    return AutoTokenizer.from_pretrained(out_dir), sentences


def tokenization_expectations(tok, sentences):
    rng = random.Random(5)
    sample = rng.sample(sentences, 40) + sorted(sentences, key=len)[-3:]
    texts = EDGE_TEXTS + sample
    single = []
    for t in texts:
        enc = tok(t)
        single.append({
            "text": t,
            "tokens": tok.tokenize(t),
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "decoded": tok.decode(enc["input_ids"]),
            "decoded_skip_special": tok.decode(enc["input_ids"], skip_special_tokens=True),
        })
    pairs = []
    for a, b in PAIRS:
        enc = tok(a, b)
        # transformers' RoBERTa tokenizer returns no token_type_ids (model_input_names);
        # the Rust encoding's own type ids are what a tokenizer.json promises. (Before
        # the truncating call, which leaves truncation set on the Rust tokenizer.)
        rust = tok.backend_tokenizer.encode(a, b)
        trunc = tok(a, b, truncation=True, max_length=10)
        assert rust.ids == enc["input_ids"], (a, b, rust.ids, enc["input_ids"])
        pairs.append({"text": a, "text_pair": b, "input_ids": enc["input_ids"], "rust_type_ids": rust.type_ids,
                      "truncated_10_input_ids": trunc["input_ids"]})
    batch_texts = sample[:6]
    batch = tok(batch_texts, padding=True, truncation=True, max_length=16)
    left = copy.deepcopy(tok)
    left.padding_side = "left"
    batch_left = left(batch_texts[:3], padding=True)
    return {
        "tokenizer_class": type(tok).__name__,
        "model_input_names": list(tok.model_input_names),
        "vocab_size": tok.vocab_size,
        "special_ids": {k: getattr(tok, k + "_id") for k in ("bos_token", "eos_token", "sep_token", "cls_token",
                                                            "pad_token", "unk_token", "mask_token")},
        "single": single,
        "pairs": pairs,
        "batch": {"texts": batch_texts, "max_length": 16, "input_ids": batch["input_ids"],
                  "attention_mask": batch["attention_mask"]},
        "batch_left_padded": {"texts": batch_texts[:3], "input_ids": batch_left["input_ids"],
                              "attention_mask": batch_left["attention_mask"]},
        "transformers_version": transformers.__version__,
    }


# ---- models --------------------------------------------------------------------

def randomize(model, seed):
    """As make_bert_fixtures.randomize, knowing DistilBERT's LayerNorm names."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.2 * noise)
            elif "embeddings" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / p.shape[1] ** 0.5)


def labels_for(config, batch, g):
    if config.num_labels == 1:
        return torch.randn(batch, generator=g)
    if config.problem_type == "multi_label_classification":
        return torch.randint(0, 2, (batch, config.num_labels), generator=g).float()
    return torch.randint(0, config.num_labels, (batch,), generator=g)


def roberta_inputs(spec, config, tok, sentences):
    g = torch.Generator().manual_seed(2000 + spec["seed"])
    pad = config.pad_token_id
    if spec["name"] == "base":
        rng = random.Random(spec["seed"])
        # Long ones are truncated; a short one leaves right padding.
        texts = rng.sample(sentences, spec["sentences"] - 1) + [sorted(sentences, key=len)[40]]
        enc = tok(texts, padding=True, truncation=True, max_length=spec["max_length"], return_tensors="pt")
        input_ids = torch.cat([enc["input_ids"], torch.full((1, enc["input_ids"].shape[1]), pad)])
        attention_mask = torch.cat([enc["attention_mask"], torch.zeros((1, enc["attention_mask"].shape[1]), dtype=torch.long)])
        return dict(input_ids=input_ids, attention_mask=attention_mask,
                    labels=labels_for(config, input_ids.shape[0], g)), texts
    seq = spec["seq_len"]
    rows, masks = [], []

    def real(n):
        # Real tokens avoid the pad id, except where a row wants one on purpose.
        ids = torch.randint(2, config.vocab_size, (n,), generator=g)
        ids[0], ids[-1] = config.bos_token_id, config.eos_token_id
        return ids.tolist()

    rows.append(real(seq)); masks.append([1] * seq)                     # the full length: last position used
    rows.append([pad] * 3 + real(seq - 3)); masks.append([0] * 3 + [1] * (seq - 3))  # left padding
    inside = real(7) + [pad] * 2
    inside[3] = pad                                                       # a pad id the mask attends to
    rows.append(inside); masks.append([1] * 7 + [0] * 2)
    rows.append([pad] * seq); masks.append([0] * seq)                    # entirely padding
    input_ids = torch.tensor(rows)
    attention_mask = torch.tensor(masks)
    token_type_ids = torch.zeros_like(input_ids)
    for b, m in enumerate(masks):
        n = sum(m)
        if n:
            first = m.index(1)
            token_type_ids[b, first + (n + 1) // 2: first + n] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                labels=labels_for(config, len(rows), g)), None


def distilbert_inputs(spec, config):
    g = torch.Generator().manual_seed(2000 + spec["seed"])
    batch, seq = len(spec["lengths"]), spec["seq_len"]
    pad = config.pad_token_id
    input_ids = torch.full((batch, seq), pad, dtype=torch.long)
    attention_mask = torch.zeros((batch, seq), dtype=torch.long)
    for b, n in enumerate(spec["lengths"]):
        input_ids[b, :n] = torch.randint(1, config.vocab_size, (n,), generator=g)
        attention_mask[b, :n] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels_for(config, batch, g))


def make_model_fixture(kind, spec, out_root, model, inputs, extra_meta, extra_tensors=None):
    out_dir = fresh_dir(out_root, spec["name"])
    # Before the forward, which writes the inferred problem_type into the config.
    save_checkpoint(model, out_dir)
    configured_problem_type = model.config.problem_type
    logits, loss, grads = forward_backward(model, inputs)
    floor = noise_floor(model, inputs, logits, loss, grads)
    logits_sdpa, _ = sdpa_results(model, inputs)

    # The checkpoint on disk alone reproduces the logits: nothing the fixture
    # depends on lives only in memory (e.g. a re-initialised sinusoidal table).
    reloaded = AutoModelForSequenceClassification.from_pretrained(out_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        again = reloaded(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    assert torch.equal(again, logits), f"{kind}/{spec['name']}: reloading the checkpoint changed the logits"

    names = [n for n, _ in model.named_parameters()]
    tensors = {"logits": logits.float().contiguous(), "loss": loss.float().reshape(())}
    for n in names:
        tensors["grad." + n] = grads[n].float().contiguous()
    tensors.update(extra_tensors or {})
    save_file(tensors, os.path.join(out_dir, "expected.safetensors"))
    write_inputs(os.path.join(out_dir, "inputs.json"), inputs)
    write_json(os.path.join(out_dir, "expected.json"), {
        "model_class": type(model).__name__,
        "parameter_names": names,
        "parameter_shapes": {n: list(p.shape) for n, p in model.named_parameters()},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": "eager",
        "problem_type_in_config": configured_problem_type,
        "problem_type_used": model.config.problem_type,
        "sdpa_vs_eager_logits_max_abs_diff_per_row": (logits_sdpa - logits).abs().amax(dim=-1).tolist(),
        "float32_vs_float64": floor,
        "seeds": {"torch.manual_seed": spec["seed"], "weights": 1000 + spec["seed"], "inputs": 2000 + spec["seed"]},
        **extra_meta,
    })
    return dict(name=f"{kind}/{spec['name']}", floor=floor, grads=grads, model=model)


def make_roberta(out_root, tok, sentences):
    results = []
    for spec in ROBERTA_FIXTURES:
        fields = dict(spec["config"])
        if "vocab_size" not in fields:
            fields["vocab_size"] = len(tok)
        config = RobertaConfig(attn_implementation="eager", **fields)
        torch.manual_seed(spec["seed"])
        model = RobertaForSequenceClassification(config)
        randomize(model, 1000 + spec["seed"])
        model.eval()
        inputs, texts = roberta_inputs(spec, config, tok, sentences)
        positions = roberta_position_ids(inputs["input_ids"], config.pad_token_id)
        r = make_model_fixture("roberta", spec, out_root, model, inputs, {
            "texts": texts,
            "position_ids": positions.tolist(),
            "token_type_ids_given": "token_type_ids" in inputs,
        })
        pad = config.pad_token_id
        # padding_idx rows get no gradient, for words and for positions.
        assert r["grads"]["roberta.embeddings.word_embeddings.weight"][pad].abs().max() == 0
        assert r["grads"]["roberta.embeddings.position_embeddings.weight"][pad].abs().max() == 0
        results.append(r)
    return results


def roberta_position_ids(input_ids, pad):
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings
    return RobertaEmbeddings.create_position_ids_from_input_ids(input_ids, pad)


def make_distilbert(out_root):
    results = []
    for spec in DISTILBERT_FIXTURES:
        config = DistilBertConfig(attn_implementation="eager", **spec["config"])
        torch.manual_seed(spec["seed"])
        model = DistilBertForSequenceClassification(config)
        extra = {}
        if config.sinusoidal_pos_embds:
            # What a fresh model starts from, before the fixture's noise replaces it.
            extra["fresh_position_embeddings"] = model.distilbert.embeddings.position_embeddings.weight.detach().clone()
        randomize(model, 1000 + spec["seed"])
        model.eval()
        inputs = distilbert_inputs(spec, config)
        r = make_model_fixture("distilbert", spec, out_root, model, inputs, {
            "fully_padded_rows": [b for b, n in enumerate(spec["lengths"]) if n == 0],
            "position_embeddings_trainable": model.distilbert.embeddings.position_embeddings.weight.requires_grad,
        }, extra)
        assert r["grads"]["distilbert.embeddings.word_embeddings.weight"][config.pad_token_id].abs().max() == 0
        results.append(r)
    return results


def generate(out_root, data_dir):
    transformers.utils.logging.disable_progress_bar()
    # One thread: the fixtures must be byte-identical on rerun.
    torch.set_num_threads(1)
    roberta_root = os.path.join(out_root, "roberta")
    distil_root = os.path.join(out_root, "distilbert")
    os.makedirs(roberta_root, exist_ok=True)
    os.makedirs(distil_root, exist_ok=True)
    tok, sentences = train_tokenizer(fresh_dir(roberta_root, "tokenizer"), data_dir)
    write_json(os.path.join(roberta_root, "tokenization.json"), tokenization_expectations(tok, sentences))
    return make_roberta(roberta_root, tok, sentences) + make_distilbert(distil_root)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="the fixtures root (roberta/ and distilbert/ go under it)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="directory of rt-polarity.pos/.neg")
    ap.add_argument("--check", action="store_true", help="regenerate in a temp dir and compare sha256; write nothing")
    args = ap.parse_args()

    if args.check:
        bad = []
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp, args.data)
            for sub in ("roberta", "distilbert"):
                fresh, current = tree_hashes(os.path.join(tmp, sub)), tree_hashes(os.path.join(args.out, sub))
                bad += [f"{sub}/{k}" for k in sorted(fresh.keys() | current.keys()) if fresh.get(k) != current.get(k)]
        for k in bad:
            print(f"differs: {k}")
        print("identical" if not bad else f"{len(bad)} file(s) differ")
        return 1 if bad else 0

    results = generate(args.out, args.data)
    for r in results:
        f = r["floor"]
        print(f"{r['name']:>22}: f32-vs-f64 logits abs {f['logits_max_abs_diff']:.2e} rel {f['logits_max_rel_err']:.2e}, "
              f"loss rel {f['loss_rel_err']:.2e}, grad rel {f['grad_max_rel_err']:.2e} ({f['grad_max_rel_err_param']})")
    for sub in ("roberta", "distilbert"):
        root = os.path.join(args.out, sub)
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
        print(f"wrote {root} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
