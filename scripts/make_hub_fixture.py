#!/usr/bin/env python3
"""Writes test/fixtures/hub/: the tiny repos that test/hub/hub.test.ts serves
from a local HTTP server in the Hub's URL scheme, and the parquet files that
test/data/load_dataset.test.ts reads. A few KB in all.

    pip install pyarrow numpy
    python3 scripts/make_hub_fixture.py

- model/: a BERT for sequence classification small enough to read by eye
  (hidden 8, one layer, vocabulary of 24), with config.json, vocab.txt,
  tokenizer_config.json and model.safetensors (written by hand: the format is
  an 8-byte header length, a JSON header, the raw little-endian bytes).
- dataset/: a dataset repo laid out as the Hub's parquet conversion lays out
  rotten_tomatoes-style repos: data/{split}-00000-of-00001.parquet, README.md.
- local/: parquet files exercising the reader: several row groups, a list
  column, nulls, int64 and float64, and the gzip and zstd codecs.

The rows are fixed literals here and repeated in the tests; change both
together. Parquet bytes vary with the pyarrow version (its name is written into
the file), so reruns may change the files but never what they hold.
"""
import json
import os
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "hub")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "film", "is", "was", "good", "bad",
         "great", "boring", "fun", "not", "very", ".", ",", "!", "##s", "##ly", "caf"]

HIDDEN, LAYERS, HEADS, INTER, POS, TYPES, LABELS = 8, 1, 2, 16, 16, 2, 2

DATASET_SPLITS = {
    "train": [
        ("a gorgeous, witty, seductive movie.", 1),
        ("the film is strictly routine.", 0),
        ("caf\u00e9 society, na\u00efve and charming \u2014 a delight.", 1),
        ("boring and far too long.", 0),
        ("one of the year's best films!", 1),
        ("a mess from start to finish.", 0),
    ],
    "validation": [
        ("warm, funny and true.", 1),
        ("it never finds its footing.", 0),
    ],
    "test": [
        ("a small gem.", 1),
        ("tedious.", 0),
    ],
}


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 ndarray), written in that order."""
    header = {}
    offset = 0
    blobs = []
    for name, array in tensors:
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def bert_tensors(rng):
    def w(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.float32)

    def ones(*shape):
        return np.ones(shape, dtype=np.float32)

    out = [
        ("bert.embeddings.word_embeddings.weight", w(len(VOCAB), HIDDEN)),
        ("bert.embeddings.position_embeddings.weight", w(POS, HIDDEN)),
        ("bert.embeddings.token_type_embeddings.weight", w(TYPES, HIDDEN)),
        ("bert.embeddings.LayerNorm.weight", ones(HIDDEN)),
        ("bert.embeddings.LayerNorm.bias", zeros(HIDDEN)),
    ]
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for part in ("query", "key", "value"):
            out += [(p + f"attention.self.{part}.weight", w(HIDDEN, HIDDEN)), (p + f"attention.self.{part}.bias", zeros(HIDDEN))]
        out += [
            (p + "attention.output.dense.weight", w(HIDDEN, HIDDEN)),
            (p + "attention.output.dense.bias", zeros(HIDDEN)),
            (p + "attention.output.LayerNorm.weight", ones(HIDDEN)),
            (p + "attention.output.LayerNorm.bias", zeros(HIDDEN)),
            (p + "intermediate.dense.weight", w(INTER, HIDDEN)),
            (p + "intermediate.dense.bias", zeros(INTER)),
            (p + "output.dense.weight", w(HIDDEN, INTER)),
            (p + "output.dense.bias", zeros(HIDDEN)),
            (p + "output.LayerNorm.weight", ones(HIDDEN)),
            (p + "output.LayerNorm.bias", zeros(HIDDEN)),
        ]
    out += [
        ("bert.pooler.dense.weight", w(HIDDEN, HIDDEN)),
        ("bert.pooler.dense.bias", zeros(HIDDEN)),
        ("classifier.weight", w(LABELS, HIDDEN)),
        ("classifier.bias", zeros(LABELS)),
    ]
    return out


def make_model(dir_):
    os.makedirs(dir_, exist_ok=True)
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": len(VOCAB),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTER,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": POS,
        "type_vocab_size": TYPES,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "id2label": {"0": "neg", "1": "pos"},
        "label2id": {"neg": 0, "pos": 1},
    }
    with open(os.path.join(dir_, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(dir_, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    with open(os.path.join(dir_, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": POS, "tokenizer_class": "BertTokenizer"}, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(dir_, "model.safetensors"), bert_tensors(np.random.RandomState(0)))


def table(rows):
    return pa.table({"text": pa.array([r[0] for r in rows], pa.string()), "label": pa.array([r[1] for r in rows], pa.int64())})


def make_dataset(dir_):
    os.makedirs(os.path.join(dir_, "data"), exist_ok=True)
    for split, rows in DATASET_SPLITS.items():
        pq.write_table(table(rows), os.path.join(dir_, "data", f"{split}-00000-of-00001.parquet"), compression="snappy")
    with open(os.path.join(dir_, "README.md"), "w") as f:
        f.write("---\nlicense: unknown\n---\n\nA tiny rotten_tomatoes-shaped dataset for bertkit's tests.\n")


def make_local(dir_):
    os.makedirs(dir_, exist_ok=True)
    t = pa.table({
        "text": pa.array(["first", "second \u00e9", "third", "fourth", "fifth"], pa.string()),
        "label": pa.array([0, 1, 2, 1, 0], pa.int64()),
        "score": pa.array([0.5, -1.25, 3.0, 0.0, 2.5], pa.float64()),
        "tags": pa.array([["a"], [], ["b", "c"], None, ["d"]], pa.list_(pa.string())),
        "note": pa.array(["x", None, "z", None, "w"], pa.string()),
    })
    # Two rows a row group: the reader must stitch row groups together.
    pq.write_table(t, os.path.join(dir_, "sample.parquet"), compression="snappy", row_group_size=2)
    small = t.select(["text", "label"])
    pq.write_table(small, os.path.join(dir_, "sample_gzip.parquet"), compression="gzip")
    pq.write_table(small, os.path.join(dir_, "sample_zstd.parquet"), compression="zstd")


if __name__ == "__main__":
    make_model(os.path.join(ROOT, "model"))
    make_dataset(os.path.join(ROOT, "dataset"))
    make_local(os.path.join(ROOT, "local"))
    for base, _, files in sorted(os.walk(ROOT)):
        for name in sorted(files):
            p = os.path.join(base, name)
            print(f"{os.path.relpath(p, ROOT)}: {os.path.getsize(p)} bytes")
