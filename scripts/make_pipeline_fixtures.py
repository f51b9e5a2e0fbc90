#!/usr/bin/env python3
"""Fixtures for bertkit's text-classification pipeline, produced by the real
transformers pipeline("text-classification").

    pip install torch transformers safetensors tokenizers
    python scripts/make_pipeline_fixtures.py

Writes test/fixtures/pipeline/
  <model>/        a tiny seeded classifier saved by save_pretrained (config.json,
                  model.safetensors) with its tokenizer (tokenizer.json,
                  tokenizer_config.json, vocab.txt for WordPiece)
  expected.json   per model, the cases: pipeline(...) keyword arguments, the
                  call's inputs and keyword arguments, and what transformers
                  returned (or the error class it raised)

Models: "bert_labels" (3 named labels, single-label), "bert_multi_label"
(problem_type multi_label_classification), "bert_regression" (one output,
problem_type regression), "bert_one_label" (one output, no problem_type: the
pipeline picks sigmoid), "distilbert", "roberta" and "deberta_v3" (DeBERTa-v3's
architecture with log-bucketed relative positions). The RoBERTa and DeBERTa
tokenizers are the repository's tokenizer fixtures; BERT and DistilBERT share a
WordPiece vocabulary written here. Weights are drawn with a wide
initializer_range so that scores differ visibly between labels.

No network: models and tokenizers are built here, never from a hub id.
"""

import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizerFast,
    DebertaV2Config, DebertaV2ForSequenceClassification, DistilBertConfig,
    DistilBertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification, pipeline,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "pipeline")

WORDS = """the a an and or but not no is was are be this that it its of in on to for with as at by from
film movie story plot acting actors cast director script scenes ending music characters
good great fine best better fun funny smart warm moving charming clever fresh lovely
bad worst dull boring slow weak flat silly tired mess awful stupid thin long
very too so quite really almost never ever just still even more most much
i you we they he she one two some all every what who how why
love hate like enjoy watch see feel think make made makes time year day life world people
""".split()

SENTENCES = [
    "a great film .",
    "the worst movie i have ever seen , dull and too long .",
    "charming , funny and smart : the best story this year",
    "not good , not bad",
    "the acting is fine but the script is a mess",
    "",
]
LONG = " ".join(["the film is very good but the plot is too long and so slow"] * 6)
PAIRS = [
    {"text": "a great film", "text_pair": "the worst movie"},
    {"text": "dull and boring", "text_pair": "charming and moving, really"},
]


def wordpiece_tokenizer(folder):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    punct = list(".,:;!?'\"-()")
    vocab = specials + punct + letters + ["##" + c for c in letters] + WORDS
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=os.path.join(folder, "vocab.txt"), do_lower_case=True, model_max_length=24)
    tok.save_pretrained(folder)
    return tok


def copy_tokenizer(src, folder, **overrides):
    tok = AutoTokenizer.from_pretrained(src)
    for k, v in overrides.items():
        setattr(tok, k, v)
    tok.save_pretrained(folder)
    return tok


def save(model, folder):
    model.eval()
    model.save_pretrained(folder)


def build_models(work):
    torch.manual_seed(0)
    wp = os.path.join(work, "_wordpiece")
    tok = wordpiece_tokenizer(wp)
    vocab = len(tok)
    models = {}

    def bert(name, **kw):
        folder = os.path.join(work, name)
        cfg = BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=64, initializer_range=0.3, **kw)
        save(BertForSequenceClassification(cfg), folder)
        for f in os.listdir(wp):
            shutil.copy(os.path.join(wp, f), folder)
        models[name] = folder

    bert("bert_labels", num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"},
         label2id={"negative": 0, "neutral": 1, "positive": 2})
    bert("bert_multi_label", num_labels=4, problem_type="multi_label_classification",
         id2label={0: "acting", 1: "plot", 2: "music", 3: "length"}, label2id={"acting": 0, "plot": 1, "music": 2, "length": 3})
    bert("bert_regression", num_labels=1, problem_type="regression", id2label={0: "rating"}, label2id={"rating": 0})
    bert("bert_one_label", num_labels=1)

    folder = os.path.join(work, "distilbert")
    cfg = DistilBertConfig(vocab_size=vocab, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=64,
                           initializer_range=0.3, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    save(DistilBertForSequenceClassification(cfg), folder)
    for f in os.listdir(wp):
        shutil.copy(os.path.join(wp, f), folder)
    models["distilbert"] = folder

    folder = os.path.join(work, "roberta")
    rt = copy_tokenizer(os.path.join(ROOT, "test", "fixtures", "roberta", "tokenizer"), folder, model_max_length=24)
    cfg = RobertaConfig(vocab_size=len(rt), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, type_vocab_size=1, pad_token_id=rt.pad_token_id, bos_token_id=0, eos_token_id=2,
                        initializer_range=0.3, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    save(RobertaForSequenceClassification(cfg), folder)
    models["roberta"] = folder

    folder = os.path.join(work, "deberta_v3")
    dt = copy_tokenizer(os.path.join(ROOT, "test", "fixtures", "deberta_v2", "tokenizer"), folder, model_max_length=24)
    cfg = DebertaV2Config(vocab_size=len(dt), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          max_position_embeddings=64, type_vocab_size=0, relative_attention=True, position_buckets=8,
                          max_relative_positions=-1, pos_att_type=["p2c", "c2p"], share_att_key=True, norm_rel_ebd="layer_norm",
                          position_biased_input=False, pad_token_id=dt.pad_token_id, layer_norm_eps=1e-7, initializer_range=0.3,
                          num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"},
                          label2id={"negative": 0, "neutral": 1, "positive": 2})
    save(DebertaV2ForSequenceClassification(cfg), folder)
    models["deberta_v3"] = folder
    shutil.rmtree(wp)
    return models


def cases_for(name):
    cases = [
        dict(inputs=SENTENCES[0], call={}),
        dict(inputs=SENTENCES[:5], call={}),
        dict(inputs=SENTENCES[:5], call={"batch_size": 2}),
        dict(inputs=SENTENCES[1], call={"top_k": 2}),
        dict(inputs=SENTENCES[1:4], call={"top_k": None}),
        dict(inputs=SENTENCES[2], call={"top_k": None}),
        dict(inputs=SENTENCES[:3], call={"function_to_apply": "sigmoid"}),
        dict(inputs=SENTENCES[:3], call={"function_to_apply": "none", "top_k": None}),
        dict(inputs=SENTENCES[3], call={"function_to_apply": "softmax"}),
        dict(inputs=SENTENCES[5], call={}),
        dict(inputs=PAIRS[0], call={}),
        dict(inputs=PAIRS, call={"top_k": None}),
        dict(inputs=[SENTENCES[0], PAIRS[1]], call={"batch_size": 2}),
        dict(inputs=LONG, call={"truncation": True}),
        dict(inputs=[LONG, SENTENCES[0]], call={"truncation": True, "max_length": 10, "batch_size": 2}),
        dict(init={"top_k": 2}, inputs=SENTENCES[0], call={}),
        dict(init={"top_k": 2}, inputs=SENTENCES[:2], call={}),
        dict(init={"top_k": None}, inputs=SENTENCES[0], call={"top_k": 1}),
        dict(init={"function_to_apply": "none"}, inputs=SENTENCES[:2], call={}),
    ]
    return cases


def to_plain(x):
    if isinstance(x, dict):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [to_plain(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x


def main():
    work = tempfile.mkdtemp()
    try:
        models = build_models(work)
        expected = {"transformers_version": transformers.__version__, "torch_version": torch.__version__, "models": {}}
        for name, folder in models.items():
            results = []
            for case in cases_for(name):
                init = case.get("init", {})
                pipe = pipeline("text-classification", model=folder, tokenizer=folder, device="cpu", **init)
                try:
                    out = to_plain(pipe(case["inputs"], **case["call"]))
                    results.append({**case, "init": init, "output": out})
                except Exception as err:  # noqa: BLE001 - recorded so the TS side can check it also refuses
                    results.append({**case, "init": init, "error": type(err).__name__, "message": str(err)[:300]})
            expected["models"][name] = results
        if os.path.exists(OUT):
            shutil.rmtree(OUT)
        os.makedirs(OUT)
        for name, folder in models.items():
            shutil.copytree(folder, os.path.join(OUT, name))
        with open(os.path.join(OUT, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        print("wrote", OUT, file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
