#!/usr/bin/env python3
"""The Python side of bertkit's ONNX reference check (test/reference/onnx.reference.ts).

    pip install onnx onnxruntime torch transformers
    python3 test/oracles/onnx_reference.py JOB.json OUT.json
    python3 test/oracles/onnx_reference.py --make-deberta-v3 DIR   (a random model with DeBERTa-v3's position settings)

JOB.json lists cases: {"name", "onnx", "quantized" (optional path), "model_dir"
(optional: a transformers model folder to run with torch), "inputs":
{"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]]}}.
For each case OUT.json gets: the onnx.checker verdict (full_check, with shape
inference), the graph's opset and inputs, onnxruntime's logits (CPU provider)
on exactly the inputs the graph declares, the int8 variant's logits when
given, and transformers' logits (eval mode, the same inputs) when a
model_dir is given.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402


def feed_for(session, inputs):
    feed = {}
    for i in session.get_inputs():
        if i.name not in inputs:
            raise KeyError(f"the graph takes {i.name}, which the job does not give")
        feed[i.name] = np.array(inputs[i.name], dtype=np.int64)
    return feed


def run(path, inputs):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], feed_for(session, inputs))
    return logits.tolist(), [i.name for i in session.get_inputs()]


def transformers_logits(model_dir, inputs, input_names):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    model.eval()
    kwargs = {k: torch.tensor(inputs[k], dtype=torch.long) for k in input_names}
    with torch.no_grad():
        return model(**kwargs).logits.float().tolist()


def make_deberta_v3(folder):
    """A random model with DeBERTa-v3-base's position settings (256 buckets, 512
    positions, shared keys, p2c+c2p) at a small width, for sequences past 512."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    config = DebertaV2Config(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=512, type_vocab_size=0, relative_attention=True, position_buckets=256,
                             max_relative_positions=-1, pos_att_type=["p2c", "c2p"], share_att_key=True, norm_rel_ebd="layer_norm",
                             position_biased_input=False, layer_norm_eps=1e-7, initializer_range=0.2, num_labels=3)
    DebertaV2ForSequenceClassification(config).eval().save_pretrained(folder)


def main():
    if sys.argv[1] == "--make-deberta-v3":
        make_deberta_v3(sys.argv[2])
        return
    job_path, out_path = sys.argv[1], sys.argv[2]
    with open(job_path) as f:
        job = json.load(f)
    out = {"versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__}, "cases": {}}
    for case in job:
        r = {}
        model = onnx.load(case["onnx"])
        try:
            onnx.checker.check_model(model, full_check=True)
            r["checker"] = "ok"
        except Exception as err:  # noqa: BLE001 - the verdict is the result
            r["checker"] = f"{type(err).__name__}: {err}"
        r["opset"] = [[o.domain, o.version] for o in model.opset_import]
        r["ir_version"] = model.ir_version
        r["logits"], r["input_names"] = run(case["onnx"], case["inputs"])
        if case.get("quantized"):
            r["quantized_logits"], _ = run(case["quantized"], case["inputs"])
            qmodel = onnx.load(case["quantized"])
            try:
                onnx.checker.check_model(qmodel, full_check=True)
                r["quantized_checker"] = "ok"
            except Exception as err:  # noqa: BLE001
                r["quantized_checker"] = f"{type(err).__name__}: {err}"
        if case.get("model_dir"):
            r["transformers_logits"] = transformers_logits(case["model_dir"], case["inputs"], r["input_names"])
        out["cases"][case["name"]] = r
    if "torch" in sys.modules:
        import torch
        import transformers
        out["versions"].update(torch=torch.__version__, transformers=transformers.__version__)
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
