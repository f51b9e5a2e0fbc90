#!/usr/bin/env python3
"""Does peft load the adapters bertkit saves, and compute bertkit's outputs?

    npx tsc -p tsconfig.json                       # builds dist/
    pip install torch transformers safetensors peft
    python test/oracles/check_lora_interop.py [--keep DIR]

For each case below, bertkit (run through node on dist/) wraps a fixture BERT
with getPeftModel, trains the adapter three AdamW steps (dropout on, so every
adapter tensor and saved module moves), and saves it with savePretrained;
it also records its eval logits, its merged logits, its trainable-parameter
line and its named parameters. Then peft loads that directory onto the same
base with PeftModel.from_pretrained and this script compares:

  logits          peft's eval logits vs bertkit's           (max |diff| <= 1e-5,
                  and the adapter must move them from the base's by > 1e-2)
  merged          peft's merge_and_unload() logits vs bertkit's merge()
  names           peft's named_parameters (is_trainable=True): names, shapes,
                  requires_grad vs bertkit's namedParameters()
  summary         print_trainable_parameters() vs trainableParametersLine()

Exit status 0 when every case passes. The addon comes from
BERTKIT_ADDON_PATH when set (as for the tests).
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings  # noqa: E402

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import BertForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = [
    dict(name="qv_classifier", base="test/fixtures/bert/one_layer",
         config=dict(r=4, loraAlpha=8, loraDropout=0.1, targetModules=["query", "value"], modulesToSave=["classifier"])),
    dict(name="seq_cls_all_linear_bias_all", base="test/fixtures/bert/one_layer",
         config=dict(r=2, loraAlpha=5, targetModules="all-linear", bias="all", taskType="SEQ_CLS")),
    dict(name="regex_lora_only_rslora", base="test/fixtures/bert/one_layer",
         config=dict(r=4, loraAlpha=16, targetModules=r".*\.(self\.key|intermediate\.dense)", bias="lora_only", useRslora=True)),
    dict(name="three_labels_recipe", base="test/fixtures/bert/three_labels",
         config=dict(r=8, loraAlpha=16, loraDropout=0.1, targetModules=["query", "value"], taskType="SEQ_CLS")),
]

# Runs in node against the compiled library; argv: cases JSON, output directory.
NODE = r"""
const path = require('node:path')
const fs = require('node:fs')
const dist = path.join(process.env.BERTKIT_ROOT, 'dist', 'lib')
const { BertForSequenceClassification, AdamW, tensor, tidy, noGrad } = require(path.join(dist, 'index.js'))
const { LoraConfig, getPeftModel } = require(path.join(dist, 'peft', 'index.js'))
const [cases, out] = [JSON.parse(process.argv[2]), process.argv[3]]

function batch(dir) {
  const raw = JSON.parse(fs.readFileSync(path.join(dir, 'inputs.json'), 'utf8'))
  const shape = [raw.input_ids.length, raw.input_ids[0].length]
  const ids = (rows) => tensor(Int32Array.from(rows.flat()), { shape, dtype: 'int32' })
  return { inputIds: ids(raw.input_ids), attentionMask: ids(raw.attention_mask), tokenTypeIds: ids(raw.token_type_ids),
    labels: tensor(Int32Array.from(raw.labels), { dtype: 'int32' }) }
}

;(async () => {
  for (const c of cases) {
    const baseDir = path.join(process.env.BERTKIT_ROOT, c.base)
    const model = await BertForSequenceClassification.fromPretrained(baseDir)
    const config = new LoraConfig({ ...c.config, baseModelNameOrPath: c.base })
    const peft = getPeftModel(model, config, { seed: 7 })
    const named = [...peft.namedParameters()].map(([n, p]) => [n, [...p.shape], p.requiresGrad])
    const line = peft.trainableParametersLine()
    const trainable = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad).map(([, p]) => p)
    const opt = new AdamW(trainable, { lr: 0.05, weightDecay: 0 })
    peft.train()
    for (let step = 0; step < 3; step++) {
      tidy(() => {
        const b = batch(baseDir)
        peft.forward(b).loss.backward()
        opt.step()
        opt.zeroGrad()
        for (const t of Object.values(b)) t.dispose()
      })
    }
    opt.dispose()
    peft.eval()
    const logits = () => noGrad(() => tidy(() => {
      const b = batch(baseDir)
      return Array.from(peft.forward({ ...b, labels: null }).logits.toFloat32Array())
    }))
    const adapted = logits()
    peft.merge()
    const merged = logits()
    peft.unmerge()
    const dir = path.join(out, c.name)
    peft.savePretrained(dir)
    fs.writeFileSync(path.join(dir, 'bertkit.json'), JSON.stringify({ logits: adapted, merged, named, line }))
    peft.dispose()
  }
})().catch((err) => { console.error(err); process.exit(1) })
"""


def inputs_of(base):
    with open(os.path.join(ROOT, base, "inputs.json")) as f:
        raw = json.load(f)
    return {k: torch.tensor(raw[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "token_type_ids")}


def base_model(base):
    return BertForSequenceClassification.from_pretrained(os.path.join(ROOT, base), attn_implementation="eager", dtype=torch.float32)


def check(case, adapter_dir):
    with open(os.path.join(adapter_dir, "bertkit.json")) as f:
        ours = json.load(f)
    inputs = inputs_of(case["base"])
    results = {}

    with torch.no_grad():
        base_logits = base_model(case["base"]).eval()(**inputs).logits
    model = PeftModel.from_pretrained(base_model(case["base"]), adapter_dir).eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    diff = (logits.flatten() - torch.tensor(ours["logits"])).abs().max().item()
    moved = (logits - base_logits).abs().max().item()
    # A comparison is only worth something if the adapter changes the output.
    results["logits"] = (diff <= 1e-5 and moved > 1e-2, f"max |diff| {diff:.2e} (the adapter moves the logits by {moved:.3f})")
    with torch.no_grad():
        merged = model.merge_and_unload()(**inputs).logits
    diff = (merged.flatten() - torch.tensor(ours["merged"])).abs().max().item()
    results["merged"] = (diff <= 1e-5, f"max |diff| {diff:.2e}")

    trainable = PeftModel.from_pretrained(base_model(case["base"]), adapter_dir, is_trainable=True)
    named = [[n, list(p.shape), bool(p.requires_grad)] for n, p in trainable.named_parameters()]
    bad = [f"{a} vs {b}" for a, b in zip(named, ours["named"]) if a != b]
    same = len(named) == len(ours["named"]) and not bad
    results["names"] = (same, f"{len(named)} tensors" + ("" if same else f"; first difference {bad[:1] or (len(named), len(ours['named']))}"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        trainable.print_trainable_parameters()
    line = buf.getvalue().strip()
    results["summary"] = (line == ours["line"], line if line == ours["line"] else f"peft: {line!r} / bertkit: {ours['line']!r}")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="write the adapters here and keep them")
    args = ap.parse_args()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    os.chdir(ROOT)

    out = args.keep or tempfile.mkdtemp(prefix="bertkit-lora-interop-")
    os.makedirs(out, exist_ok=True)
    script = os.path.join(out, "make_adapters.js")
    with open(script, "w") as f:
        f.write(NODE)
    env = {**os.environ, "BERTKIT_ROOT": ROOT}
    subprocess.run(["node", script, json.dumps(CASES), out], check=True, env=env)

    print(f"peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    ok = True
    for case in CASES:
        results = check(case, os.path.join(out, case["name"]))
        for what, (passed, detail) in results.items():
            ok &= passed
            print(f"{'PASS' if passed else 'FAIL'}  {case['name']:<28} {what:<8} {detail}")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
