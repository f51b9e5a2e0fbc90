#!/usr/bin/env python3
"""Python setfit on the same data as `bertkit setfit`, for benchmarks and reference tests.

    python3 test/oracles/setfit_reference.py run --model DIR --data-dir data/rotten_tomatoes \\
        --num-samples 8 --seed 42 [--out results.json]
    python3 test/oracles/setfit_reference.py sample --data-dir data/rotten_tomatoes --num-samples 8 --seed 42
    python3 test/oracles/setfit_reference.py embed --model DIR --texts texts.json [--batch-size 32]
    python3 test/oracles/setfit_reference.py predict --model DIR --texts texts.json
    python3 test/oracles/setfit_reference.py pairs --job job.json      # ContrastiveDataset pairs
    python3 test/oracles/setfit_reference.py logreg --job job.json     # LogisticRegression().fit
    python3 test/oracles/setfit_reference.py train-save --model DIR --job job.json --out DIR

`run` builds Hugging Face's rotten_tomatoes split from the raw rt-polarity
files exactly as bertkit's loadRottenTomatoesRaw does (Latin-1, split on
"\\n", str.strip, per class the first 80 % train / 10 % validation / rest
test, positives first), samples with setfit's own sample_dataset, trains
setfit's Trainer with its default TrainingArguments (seed = --seed) and
evaluates accuracy on the test split. It prints one JSON object: accuracy,
train / eval seconds measured in this process, and the sha256 of the
sampled rows, which `bertkit setfit` reports too (trainSampleSha256), so
both sides can be shown to have trained on the same examples.

Tested with setfit 1.2.0, sentence-transformers 6.3.0, transformers 5.25,
torch 2.15 (CPU). Needs no network: --model is a local folder.
"""

import argparse
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def read_polarity(path):
    with open(path, "rb") as f:
        lines = f.read().decode("latin-1").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def rotten_tomatoes(data_dir):
    """{split: (texts, labels)} as bertkit's loadRottenTomatoesRaw."""
    pos = read_polarity(os.path.join(data_dir, "rt-polarity.pos"))
    neg = read_polarity(os.path.join(data_dir, "rt-polarity.neg"))

    def cut(lines):
        n = len(lines)
        i1, i2 = int(n * 0.8 + 0.5), int(n * 0.9 + 0.5)
        return {"train": lines[:i1], "validation": lines[i1:i2], "test": lines[i2:]}

    p, q = cut(pos), cut(neg)
    return {s: (p[s] + q[s], [1] * len(p[s]) + [0] * len(q[s])) for s in ("train", "validation", "test")}


def sample_digest(texts, labels):
    rows = [[t, l] for t, l in zip(texts, labels)]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def sampled(data_dir, num_samples, seed):
    from datasets import Dataset
    from setfit import sample_dataset

    texts, labels = rotten_tomatoes(data_dir)["train"]
    ds = sample_dataset(Dataset.from_dict({"text": texts, "label": labels}), label_column="label", num_samples=num_samples, seed=seed)
    return list(ds["text"]), list(ds["label"])


def cmd_sample(a):
    texts, labels = sampled(a.data_dir, a.num_samples, a.seed)
    print(json.dumps({"text": texts, "label": labels, "sha256": sample_digest(texts, labels)}, ensure_ascii=False))


def cmd_run(a):
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    t_start = time.perf_counter()
    texts, labels = sampled(a.data_dir, a.num_samples, a.seed)
    test_texts, test_labels = rotten_tomatoes(a.data_dir)["test"]
    model = SetFitModel.from_pretrained(a.model, device="cpu")
    args = TrainingArguments(seed=a.seed, report_to="none", save_strategy="no", show_progress_bar=False)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}), metric=accuracy)
    t0 = time.perf_counter()
    trainer.train()
    t1 = time.perf_counter()
    metrics = trainer.evaluate(Dataset.from_dict({"text": test_texts, "label": test_labels}))
    t2 = time.perf_counter()
    logs = [entry for entry in trainer.st_trainer.state.log_history if "train_loss" in entry]
    out = {
        "library": "setfit",
        "num_samples": a.num_samples,
        "seed": a.seed,
        "train_samples": len(texts),
        "train_sample_sha256": sample_digest(texts, labels),
        "accuracy": metrics["accuracy"],
        "embedding_loss": logs[-1]["train_loss"] if logs else None,
        "global_step": trainer.st_trainer.state.global_step,
        "train_seconds": t1 - t0,
        "eval_seconds": t2 - t1,
        "process_seconds": t2 - t_start,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
    }
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


def accuracy(y_pred, y_test):
    # The same number as evaluate.load("accuracy"), without fetching the metric script from the Hub.
    y_pred = [int(v) for v in y_pred]
    return {"accuracy": sum(int(p == t) for p, t in zip(y_pred, y_test)) / len(y_test)}


def versions():
    import sentence_transformers
    import setfit
    import sklearn
    import torch
    import transformers

    return {"setfit": setfit.__version__, "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__, "torch": torch.__version__, "sklearn": sklearn.__version__}


def cmd_embed(a):
    from sentence_transformers import SentenceTransformer

    with open(a.texts) as f:
        texts = json.load(f)
    model = SentenceTransformer(a.model, device="cpu")
    emb = model.encode(texts, batch_size=a.batch_size)
    print(json.dumps({"dim": int(emb.shape[1]), "embeddings": emb.tolist()}))


def cmd_predict(a):
    from setfit import SetFitModel

    with open(a.texts) as f:
        texts = json.load(f)
    model = SetFitModel.from_pretrained(a.model, device="cpu")
    print(json.dumps({"proba": model.predict_proba(texts, as_numpy=True).tolist(),
                      "predict": [p if isinstance(p, (str, list)) else int(p) for p in model.predict(texts, as_numpy=True).tolist()]}))


def cmd_pairs(a):
    from setfit.sampler import ContrastiveDataset

    with open(a.job) as f:
        job = json.load(f)
    texts = [f"t{i}" for i in range(len(job["labels"]))]
    ds = ContrastiveDataset(texts, job["labels"], job.get("multilabel", False), job.get("num_iterations"),
                            job.get("sampling_strategy", "oversampling"), max_pairs=job.get("max_pairs", -1))
    print(json.dumps([[int(p["sentence_1"][1:]), int(p["sentence_2"][1:]), p["label"]] for p in ds]))


def cmd_logreg(a):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    with open(a.job) as f:
        job = json.load(f)
    X = np.array(job["x"], dtype=np.float32).reshape(job["rows"], job["cols"])
    h = LogisticRegression().fit(X, job["y"])
    print(json.dumps({"coef": h.coef_.tolist(), "intercept": h.intercept_.tolist(), "n_iter": int(h.n_iter_[0])}))


def cmd_train_save(a):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    with open(a.job) as f:
        job = json.load(f)
    model = SetFitModel.from_pretrained(a.model, device="cpu", use_differentiable_head=job.get("differentiable_head", False),
                                        head_params={"out_features": 2} if job.get("differentiable_head") else None,
                                        multi_target_strategy=job.get("multi_target_strategy"))
    args = TrainingArguments(max_steps=job.get("max_steps", 2), batch_size=(4, 2), num_epochs=(1, 2), report_to="none", save_strategy="no",
                             show_progress_bar=False)
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": job["texts"], "label": job["labels"]})).train()
    model.save_pretrained(a.out)
    print(json.dumps({"proba": model.predict_proba(job["probe"], as_numpy=True).tolist()}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--data-dir", required=True)
    r.add_argument("--num-samples", type=int, default=8)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--out")
    s = sub.add_parser("sample")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--num-samples", type=int, default=8)
    s.add_argument("--seed", type=int, default=42)
    e = sub.add_parser("embed")
    e.add_argument("--model", required=True)
    e.add_argument("--texts", required=True)
    e.add_argument("--batch-size", type=int, default=32)
    p = sub.add_parser("predict")
    p.add_argument("--model", required=True)
    p.add_argument("--texts", required=True)
    for name in ("pairs", "logreg"):
        sub.add_parser(name).add_argument("--job", required=True)
    ts = sub.add_parser("train-save")
    ts.add_argument("--model", required=True)
    ts.add_argument("--job", required=True)
    ts.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    {"run": cmd_run, "sample": cmd_sample, "embed": cmd_embed, "predict": cmd_predict, "pairs": cmd_pairs, "logreg": cmd_logreg,
     "train-save": cmd_train_save}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
