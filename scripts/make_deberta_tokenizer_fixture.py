"""DeBERTa-v3's tokenizer layout, built offline.

A SentencePiece Unigram model is trained on rotten tomatoes sentences with
DeBERTa-v3's special pieces ([PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3).

- make_tokenizer_fixture (used by make_deberta_fixtures.py): turned into
  tokenizer.json by transformers' DebertaV2Tokenizer (as it does for a
  checkpoint's spm.model), and saved with save_pretrained.
- make_spm_fixture (run this file): test/fixtures/deberta_v2_spm/, the layout
  of the DeBERTa-v3 Hub repositories: spm.model + tokenizer_config.json and
  no tokenizer.json, with what transformers' AutoTokenizer gives from them
  (expected.json), for bertkit to build the same tokenizer from spm.model.

      python scripts/make_deberta_tokenizer_fixture.py            # (re)write deberta_v2_spm/
      python scripts/make_deberta_tokenizer_fixture.py --check    # regenerate in a temp dir, compare hashes
"""

import argparse
import io
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import sentencepiece as spm  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, DebertaV2Tokenizer  # noqa: E402
from transformers.convert_slow_tokenizer import import_protobuf  # noqa: E402

from make_bert_fixtures import fresh_dir, tree_hashes, write_json  # noqa: E402
from make_encoder_fixtures import EDGE_TEXTS, PAIRS  # noqa: E402
from tokenizer_reference import DEFAULT_DATA, read_rotten_tomatoes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "test", "fixtures")

SPM_VOCAB_SIZE = 600
SPM_TRAIN_SENTENCES = 2000


def train_spm(sentences, vocab_size=SPM_VOCAB_SIZE, train_sentences=SPM_TRAIN_SENTENCES, **options):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences[:train_sentences]), model_writer=buf, vocab_size=vocab_size,
        model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", character_coverage=1.0, num_threads=1, minloglevel=2, **options)
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


# ---- spm.model only (the DeBERTa-v3 Hub layout) --------------------------------

# A few normalization rules of our own instead of nmt_nfkc: the precompiled
# charsmap they compile to is small (nmt_nfkc's is 240 KB), and transformers 5
# ignores the charsmap anyway, which the texts below show ("！", U+3000, "ﬁ").
SPM_RULES = "FF01\t21\n3000\t20\nFB01\t66 69\n"

# What the Hub's microsoft/deberta-v3-* repositories hold in tokenizer_config.json.
HUB_TOKENIZER_CONFIG = {"do_lower_case": False, "vocab_type": "spm"}

# tokenizer_config.json of each variant: the same spm.model with DebertaV2Tokenizer's options.
SPM_VARIANTS = {
    "hub": HUB_TOKENIZER_CONFIG,
    "lowercase": {"do_lower_case": True},
    "split_by_punct": {"split_by_punct": True},
    "no_prefix_space": {"add_prefix_space": False},
}

SPM_TEXTS = [
    "\x85", "a\x85", "a\x85b", "a \x85 b", "trailing no-break space\xa0", "\xa0leading no-break space",
    "zero\u200bwidth\u200b", "\ufeffbyte order mark at both ends\ufeff", "ideographic\u3000space",
    "fullwidth\uff01 and \ufb01ne", "e\u0301 combining acute and e\u0301\u0301", "\u00c5str\u00f6m \u00d8RESUND stra\u00dfe",
    "\u03a3\u0391\u03a3 \u03c3\u03b1\u03c2 \u03a3", "cp1252 \x92quotes\x93 and \x96 dashes\x97 \xe9\xe8\xe0",
    "many      spaces   and\t\ttabs\n\n\nnewlines\r\n", "line\u2028separator\u2029paragraph", "a\x0bvertical\x0cform feed",
    "<br>user defined<br>piece<br/>", "[MASK] and [UNK] and [PAD] written in the text", "hello... world!!! (really?)",
    "a,b;c", "don't-stop", "\u4e2d\u6587 unknown \u65e5\u672c", "12,345.67 $5 100%", "\x00 nul and \x1f unit separator",
    "ends with a space ", "\t", "\n", "emoji \U0001F600 flags \U0001F1EB\U0001F1F7", "\u2581 literal metaspace \u2581\u2581",
    "under_score and hy-phen", "CamelCaseWord", "http://example.com/path?x=1",
]


def spm_expectations(tok, texts, pairs, full=True):
    """What transformers' tokenizer gives: ids per text and pair (in the order of texts and pairs); with
    full, also tokens, decoding, truncation and padding."""
    out = {
        "input_ids": [tok(t)["input_ids"] for t in texts],
        "pair_input_ids": [tok(a, b)["input_ids"] for a, b in pairs],
        "pair_token_type_ids": [tok(a, b)["token_type_ids"] for a, b in pairs],
    }
    if not full:
        return out
    out["tokens"] = [tok.tokenize(t) for t in texts]
    out["decoded"] = [tok.decode(ids) for ids in out["input_ids"]]
    out["decoded_skip_special"] = [tok.decode(ids, skip_special_tokens=True) for ids in out["input_ids"]]
    truncated = []
    long_a, long_b = texts[-3] + " " + texts[-2], texts[-1]
    # only_first / only_second need the other sequence short enough to fit.
    cases = [("longest_first", long_a, long_b, 8), ("longest_first", long_a, long_b, 11), ("longest_first", long_b, long_a, 9),
             ("only_first", long_a, "short one", 9), ("only_first", long_a, None, 6), ("longest_first", long_a, None, 3),
             ("only_second", "short one", long_b, 10), ("only_second", "x", long_a, 7)]
    for strategy, a, b, max_length in cases:
        enc = tok(a, b, truncation=strategy, max_length=max_length)
        truncated.append({"text": a, "text_pair": b, "truncation": strategy, "max_length": max_length,
                          "input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]})
    out["truncated"] = truncated
    batch_texts = ["a,b;c", "", "hello... world!!! (really?)", "x", "[MASK] and [UNK] and [PAD] written in the text"]
    padded = []
    for options in ({"padding": True}, {"padding": "max_length", "max_length": 16, "truncation": True},
                    {"padding": True, "pad_to_multiple_of": 8}, {"padding": True, "truncation": True, "max_length": 7}):
        enc = tok(batch_texts, **options)
        padded.append({"texts": batch_texts, "options": options, "input_ids": enc["input_ids"],
                       "attention_mask": enc["attention_mask"], "token_type_ids": enc["token_type_ids"]})
    out["padded"] = padded
    return out


def make_spm_fixture(root, data_dir):
    sentences = read_rotten_tomatoes(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "rules.tsv")
        with open(rules, "w") as f:
            f.write(SPM_RULES)
        model = train_spm(sentences, normalization_rule_tsv=rules, user_defined_symbols=["<br>"])
    # The model keeps the rules file's (temporary) path: drop it, so a rerun writes the same bytes.
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model)
    proto.normalizer_spec.ClearField("normalization_rule_tsv")
    model = proto.SerializeToString()
    out = fresh_dir(root, "deberta_v2_spm")
    with open(os.path.join(out, "spm.model"), "wb") as f:
        f.write(model)
    rng = random.Random(11)
    texts = EDGE_TEXTS + ["[CLS] and [SEP] and [MASK] in the text"] + SPM_TEXTS + rng.sample(sentences, 15)
    pairs = PAIRS + [("[CLS] a [SEP]", "b [MASK]"), (SPM_TEXTS[0], SPM_TEXTS[1]), ("x", "")]
    variants = {}
    for name, config in SPM_VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "spm.model"), "wb") as f:
                f.write(model)
            write_json(os.path.join(tmp, "tokenizer_config.json"), config)
            # As on the Hub: config.json's model_type is what makes AutoTokenizer pick DebertaV2Tokenizer.
            write_json(os.path.join(tmp, "config.json"), {"model_type": "deberta-v2"})
            tok = AutoTokenizer.from_pretrained(tmp)
            assert type(tok).__name__ == "DebertaV2Tokenizer", type(tok).__name__
            saved = os.path.join(tmp, "saved")
            tok.save_pretrained(saved)
            with open(os.path.join(saved, "tokenizer.json")) as f:
                tokenizer_json = json.load(f)
            with open(os.path.join(saved, "tokenizer_config.json")) as f:
                saved_config = json.load(f)
        vocab = tokenizer_json["model"].pop("vocab")
        variants[name] = {
            "tokenizer_config": config,
            "vocab_size": tok.vocab_size,
            "len": len(tok),
            "special_ids": {k: getattr(tok, k + "_id") for k in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token")},
            "all_special_ids": sorted(tok.all_special_ids),
            "model_max_length": tok.model_max_length if tok.model_max_length < 1e20 else None,
            # save_pretrained's tokenizer.json but the vocabulary (the pieces of spm.model, in order, with their scores)
            "tokenizer_json": tokenizer_json,
            "vocab_head": vocab[:8],
            "vocab_length": len(vocab),
            "saved_config": {k: v for k, v in saved_config.items() if k not in ("is_local", "local_files_only", "model_max_length", "backend")},
            **spm_expectations(tok, texts, pairs, full=name == "hub"),
        }
    write_json(os.path.join(out, "tokenizer_config.json"), HUB_TOKENIZER_CONFIG)
    expected = {
        "made_by": f"scripts/make_deberta_tokenizer_fixture.py, transformers {transformers.__version__}, sentencepiece {spm.__version__}",
        "texts": texts,
        "pairs": pairs,
    }
    # One variant a line: compact, and a regenerated fixture still diffs readably.
    lines = [json.dumps(expected, ensure_ascii=False)[:-1] + ', "variants": {']
    lines.append(",\n".join(f"  {json.dumps(name)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for name, v in variants.items()))
    lines.append("}}")
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="the fixtures root (deberta_v2_spm/ goes under it)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="directory of rt-polarity.pos/.neg")
    ap.add_argument("--check", action="store_true", help="regenerate in a temp dir and compare sha256; write nothing")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = tree_hashes(make_spm_fixture(tmp, args.data))
            current = tree_hashes(os.path.join(args.out, "deberta_v2_spm"))
        bad = [k for k in sorted(fresh.keys() | current.keys()) if fresh.get(k) != current.get(k)]
        for k in bad:
            print(f"differs: {k}")
        print("identical" if not bad else f"{len(bad)} file(s) differ")
        return 1 if bad else 0
    out = make_spm_fixture(args.out, args.data)
    sizes = {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out))}
    print(f"wrote {out}: " + ", ".join(f"{f} {n / 1024:.1f} KiB" for f, n in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
