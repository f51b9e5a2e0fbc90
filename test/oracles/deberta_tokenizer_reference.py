#!/usr/bin/env python3
"""Expected token ids from transformers' DebertaV2Tokenizer built from a bare
spm.model, for test/reference/deberta_v2_tokenizer.reference.ts (which runs
this script).

    pip install transformers tokenizers sentencepiece protobuf
    python3 test/oracles/deberta_tokenizer_reference.py --work /tmp/x --out /tmp/x/ref.json \
        [--data ../shared/data/rotten_tomatoes]

No DeBERTa-v3 vocabulary can be had offline, so a SentencePiece Unigram model
is trained here on all 10,662 rotten tomatoes sentences with DeBERTa-v3's
special pieces and SentencePiece's default nmt_nfkc normalization (its
precompiled charsmap is in the file, as in the real spm.model, and
transformers 5 leaves it unused). Directories under --work hold that spm.model
and the tokenizer_config.json of each variant (the Hub's, do_lower_case,
split_by_punct, add_prefix_space false), as the DeBERTa-v3 repositories do:
no tokenizer.json.

For each variant the JSON holds transformers' ids of every sentence
(truncated to --max-length), of sentence pairs truncated longest-first to
--pair-max-length, and of a probe text around every code point below
U+30000: "a<c>b <c><c> <c>b<c>" (inside a word, doubled after a space,
starting a word, and last, after a letter).

Exit status 3 means a Python package is missing (the suite skips).
"""

import argparse
import io
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tokenizer_reference import DEFAULT_DATA, pair_indices, read_rotten_tomatoes, write_json  # noqa: E402

VARIANTS = {
    "hub": {"do_lower_case": False, "vocab_type": "spm"},
    "lowercase": {"do_lower_case": True, "vocab_type": "spm"},
    "split_by_punct": {"split_by_punct": True},
    "no_prefix_space": {"add_prefix_space": False},
}
PROBE_END = 0x30000


def probe_texts():
    """One text per code point below PROBE_END (surrogates left out), and the code points."""
    cps = [cp for cp in range(PROBE_END) if not 0xD800 <= cp <= 0xDFFF]
    return cps, [f"a{chr(cp)}b {chr(cp)}{chr(cp)} {chr(cp)}b{chr(cp)}" for cp in cps]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--work", required=True, help="directory for the tokenizer variants")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--pair-max-length", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()

    try:
        import sentencepiece as spm
        import tokenizers
        import transformers
        from transformers import AutoTokenizer
    except ImportError as err:
        print(f"deberta_tokenizer_reference.py: {err} (pip install transformers tokenizers sentencepiece protobuf)", file=sys.stderr)
        sys.exit(3)

    sentences = read_rotten_tomatoes(args.data)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, vocab_size=args.vocab_size, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", character_coverage=1.0, num_threads=1, minloglevel=2)
    pairs = pair_indices(len(sentences))
    cps, probes = probe_texts()
    out = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__},
        "maxLength": args.max_length,
        "pairMaxLength": args.pair_max_length,
        "sentences": sentences,
        "pairs": pairs,
        "probeCodepoints": cps,
        "variants": {},
    }
    for name, config in VARIANTS.items():
        d = os.path.join(args.work, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "spm.model"), "wb") as f:
            f.write(buf.getvalue())
        write_json(os.path.join(d, "tokenizer_config.json"), config)
        # config.json's model_type is what makes AutoTokenizer pick DebertaV2Tokenizer, as on the Hub;
        # bertkit's AutoTokenizer does not read it.
        write_json(os.path.join(d, "config.json"), {"model_type": "deberta-v2"})
        tok = AutoTokenizer.from_pretrained(d)
        assert type(tok).__name__ == "DebertaV2Tokenizer", type(tok).__name__
        encoded = tok([sentences[i] for i, _ in pairs], [sentences[j] for _, j in pairs],
                      truncation=True, max_length=args.pair_max_length)
        out["variants"][name] = {
            "dir": d,
            "ids": tok(sentences, truncation=True, max_length=args.max_length)["input_ids"],
            "pairIds": encoded["input_ids"],
            "pairTypeIds": encoded["token_type_ids"],
            "probeIds": tok(probes)["input_ids"],
        }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
