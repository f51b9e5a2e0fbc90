"""DeBERTa-v3's tokenizer layout, built offline (used by make_deberta_fixtures.py).

A SentencePiece Unigram model is trained on rotten tomatoes sentences with
DeBERTa-v3's special pieces ([PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3), turned into
tokenizer.json by transformers' DebertaV2Tokenizer (as it does for a
checkpoint's spm.model), and saved with save_pretrained.
"""

import io
import json
import os
import random
import tempfile

import sentencepiece as spm
from transformers import DebertaV2Tokenizer

from make_bert_fixtures import fresh_dir, write_json
from make_encoder_fixtures import EDGE_TEXTS, PAIRS
from tokenizer_reference import read_rotten_tomatoes

SPM_VOCAB_SIZE = 600
SPM_TRAIN_SENTENCES = 2000


def train_spm(sentences):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences[:SPM_TRAIN_SENTENCES]), model_writer=buf, vocab_size=SPM_VOCAB_SIZE,
        model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", character_coverage=1.0, num_threads=1, minloglevel=2)
    return buf.getvalue()


def expectations(tok, sentences):
    rng = random.Random(7)
    texts = EDGE_TEXTS + ["[CLS] and [SEP] and [MASK] in the text"] + rng.sample(sentences, 40)
    single = [{"text": t, "tokens": tok.tokenize(t), "input_ids": tok(t)["input_ids"]} for t in texts]
    pairs = [{"text": a, "text_pair": b, "input_ids": tok(a, b)["input_ids"], "token_type_ids": tok(a, b)["token_type_ids"]}
             for a, b in PAIRS]
    batch_texts = texts[-5:]
    batch = tok(batch_texts, padding=True, truncation=True, max_length=12)
    return {
        "tokenizer_class": type(tok).__name__,
        "vocab_size": len(tok),
        "special_ids": {k: getattr(tok, k + "_id") for k in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")},
        "single": single,
        "pairs": pairs,
        "batch": {"texts": batch_texts, "max_length": 12, "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
    }


def make_tokenizer_fixture(root, data_dir):
    sentences = read_rotten_tomatoes(data_dir)
    model = train_spm(sentences)
    out = fresh_dir(root, "tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "spm.model"), "wb") as f:
            f.write(model)
        tok = DebertaV2Tokenizer.from_pretrained(tmp)
        tok.save_pretrained(out)
    for f in os.listdir(out):
        assert f in ("tokenizer.json", "tokenizer_config.json"), f
    tok = DebertaV2Tokenizer.from_pretrained(out)
    result = {"tokenizer": expectations(tok, sentences)}

    write_json(os.path.join(root, "tokenization.json"), result)
