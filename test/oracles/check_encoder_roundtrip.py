#!/usr/bin/env python3
"""bertkit → transformers: checkpoints and the tokenizer that bertkit saves load
in transformers and give bertkit's numbers.

    npx tsc -p tsconfig.json
    BERTKIT_ADDON_PATH=build-main/Release/bertkit.node python test/oracles/check_encoder_roundtrip.py

For each golden fixture (RoBERTa base/odd, DistilBERT base/sinusoidal, BERT
three_labels, DeBERTa-v2 v3/unshared/seq1) bertkit loads the checkpoint with AutoModelForSequenceClassification,
moves every weight (so the file cannot be the fixture's own), computes logits on
the fixture inputs and saves with savePretrained. transformers then loads that
directory with its AutoModelForSequenceClassification: the class must be the
same, nothing missing, unexpected or mismatched, and the logits equal bertkit's
within 1e-5 (relative to the largest). bertkit also saves the RoBERTa fixture
tokenizer; transformers' AutoTokenizer must load it and give the same ids for
texts and pairs. Exits non-zero on any failure. Needs Python, so it is not part
of `npm test`.
"""

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
CASES = ["roberta/base", "roberta/odd", "distilbert/base", "distilbert/sinusoidal", "bert/three_labels",
         "deberta_v2/v3", "deberta_v2/unshared", "deberta_v2/seq1"]
TEXTS = ["the movie was great", "caf\u00e9 na\u00efve \U0001F600 don't", "  spaces  and\ttabs ", "a <mask> here"]
PAIRS = [("first text", "second text, longer than the first"), ("", "empty first")]

NODE_SCRIPT = r"""
const { join } = require('node:path')
const { readFileSync, writeFileSync } = require('node:fs')
const lib = require(join(process.argv[1], 'dist', 'lib', 'index.js'))
const [root, out, casesJson, textsJson, pairsJson] = process.argv.slice(1)
;(async () => {
  const result = { models: {}, tokenizer: {} }
  for (const name of JSON.parse(casesJson)) {
    const dir = join(root, 'test', 'fixtures', name)
    const model = await lib.AutoModelForSequenceClassification.fromPretrained(dir)
    model.eval()
    // Move every weight, so what transformers reads can only be what bertkit wrote.
    const moved = new Map()
    let k = 0
    for (const [n, p] of model.namedParameters()) {
      const v = p.toFloat32Array()
      for (let i = 0; i < v.length; i++) v[i] += 0.01 * Math.sin(++k)
      moved.set(n, v)
    }
    model.loadStateDict(moved, { strict: true })
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8'))
    const batch = inputs.input_ids.length, seq = inputs.input_ids[0].length
    const ids = (rows) => lib.tensor(Int32Array.from(rows.flat()), { shape: [batch, seq], dtype: 'int32' })
    const logits = lib.tidy(() => model.forward({
      inputIds: ids(inputs.input_ids), attentionMask: ids(inputs.attention_mask),
      tokenTypeIds: inputs.token_type_ids ? ids(inputs.token_type_ids) : null,
    }).logits.toArray())
    const saveDir = join(out, name.replace('/', '_'))
    model.savePretrained(saveDir)
    result.models[name] = { dir: saveDir, className: model.constructor.name, logits, shape: [batch, model.numLabels] }
    model.dispose()
  }
  const tok = await lib.AutoTokenizer.fromPretrained(join(root, 'test', 'fixtures', 'roberta', 'tokenizer'))
  const tokDir = join(out, 'roberta_tokenizer')
  tok.savePretrained(tokDir)
  result.tokenizer = {
    dir: tokDir,
    texts: JSON.parse(textsJson).map((t) => tok(t).inputIds),
    pairs: JSON.parse(pairsJson).map(([a, b]) => tok(a, { textPair: b }).inputIds),
  }
  writeFileSync(join(out, 'bertkit.json'), JSON.stringify(result))
})().catch((err) => { console.error(err); process.exit(1) })
"""


def main():
    transformers.utils.logging.disable_progress_bar()
    failures = []
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["node", "-e", NODE_SCRIPT, ROOT, out, json.dumps(CASES), json.dumps(TEXTS), json.dumps(PAIRS)],
                       check=True, cwd=ROOT)
        with open(os.path.join(out, "bertkit.json")) as f:
            ours = json.load(f)

        for name in CASES:
            m = ours["models"][name]
            with open(os.path.join(FIXTURES, name, "inputs.json")) as f:
                inputs = {k: torch.tensor(v) for k, v in json.load(f).items() if k != "labels"}
            model, info = AutoModelForSequenceClassification.from_pretrained(
                m["dir"], output_loading_info=True, attn_implementation="eager")
            model.eval()
            with torch.no_grad():
                theirs = model(**inputs).logits
            bertkit = torch.tensor(m["logits"], dtype=torch.float32).reshape(m["shape"])
            rel = ((theirs - bertkit).abs().max() / theirs.abs().max()).item()
            problems = [f"{k}: {sorted(map(str, v))}" for k, v in info.items() if v]
            if type(model).__name__ != m["className"]:
                problems.append(f"class {type(model).__name__}, bertkit saved {m['className']}")
            if rel > 1e-5:
                problems.append(f"logits differ: relative {rel:.2e}")
            print(f"{name:>22}: {type(model).__name__}, logits max relative diff {rel:.2e}"
                  + ("" if not problems else "  FAIL " + "; ".join(problems)))
            if problems:
                failures.append(name)

        t = ours["tokenizer"]
        tok = AutoTokenizer.from_pretrained(t["dir"])
        bad = [x for x, ids in zip(TEXTS, t["texts"]) if tok(x)["input_ids"] != ids]
        bad += [p for p, ids in zip(PAIRS, t["pairs"]) if tok(*p)["input_ids"] != ids]
        print(f"{'roberta tokenizer':>22}: {type(tok).__name__} loads bertkit's save, "
              f"{len(TEXTS) + len(PAIRS) - len(bad)}/{len(TEXTS) + len(PAIRS)} id sequences equal"
              + (f"  FAIL {bad}" if bad else ""))
        if bad:
            failures.append("tokenizer")
    print("round trip OK" if not failures else f"round trip FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
