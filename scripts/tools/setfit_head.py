#!/usr/bin/env python3
"""Convert a SetFit model's head between setfit's pickle and bertkit's JSON.

    python3 scripts/tools/setfit_head.py to-json MODEL_DIR   # model_head.pkl -> model_head.json (bertkit loads it)
    python3 scripts/tools/setfit_head.py to-pkl  MODEL_DIR   # model_head.json -> model_head.pkl (setfit loads it)

bertkit never unpickles (loading a pickle runs whatever code it names), so a
model trained with Python's setfit needs its head written as plain numbers
once; the body (sentence-transformers files) is read as it is. `to-pkl` goes
the other way, for a bertkit-trained model used from Python.

Heads: sklearn LogisticRegression (binary or multinomial), OneVsRestClassifier
and MultiOutputClassifier of LogisticRegression, and setfit's SetFitHead.
Needs: scikit-learn, joblib; torch and setfit for SetFitHead.
"""

import argparse
import json
import os
import sys


def lr_to_state(h):
    return {
        "head_type": "LogisticRegression",
        "params": {"C": None if h.C == float("inf") else float(h.C), "max_iter": int(h.max_iter), "tol": float(h.tol),
                   "fit_intercept": bool(h.fit_intercept)},
        "classes": h.classes_.tolist(),
        "coef": h.coef_.tolist(),
        "intercept": h.intercept_.tolist(),
        "n_iter": [int(v) for v in getattr(h, "n_iter_", [])],
    }


def lr_from_state(s):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    p = s.get("params", {})
    h = LogisticRegression(C=float("inf") if p.get("C") is None else p["C"], max_iter=p.get("max_iter", 100),
                           tol=p.get("tol", 1e-4), fit_intercept=p.get("fit_intercept", True))
    h.classes_ = np.array(s["classes"])
    h.coef_ = np.array(s["coef"], dtype=np.float32)
    h.intercept_ = np.array(s["intercept"], dtype=np.float32)
    h.n_iter_ = np.array(s.get("n_iter") or [0], dtype=np.int32)
    h.n_features_in_ = h.coef_.shape[1]
    return h


def head_to_state(h):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.multioutput import MultiOutputClassifier

    if isinstance(h, LogisticRegression):
        return lr_to_state(h)
    if isinstance(h, (OneVsRestClassifier, MultiOutputClassifier)):
        estimators = []
        for e in h.estimators_:
            if isinstance(e, LogisticRegression):
                estimators.append(lr_to_state(e))
            else:  # OneVsRestClassifier's _ConstantPredictor for a label that never varies
                estimators.append({"constant": int(e.y_[0])})
        kind = "OneVsRestClassifier" if isinstance(h, OneVsRestClassifier) else "MultiOutputClassifier"
        return {"head_type": kind, "estimators": estimators}
    if type(h).__name__ == "SetFitHead":
        w = h.linear.weight.detach().cpu()
        b = h.linear.bias.detach().cpu() if h.linear.bias is not None else None
        return {
            "head_type": "SetFitHead",
            "params": {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]), "temperature": float(h.temperature),
                       "eps": float(h.eps), "bias": b is not None, "multitarget": bool(h.multitarget)},
            "weight": w.tolist(),
            "bias": b.tolist() if b is not None else None,
        }
    raise SystemExit(f"setfit_head.py: cannot convert a head of type {type(h).__name__}")


def state_to_head(s):
    kind = s.get("head_type")
    if kind == "LogisticRegression":
        return lr_from_state(s)
    if kind in ("OneVsRestClassifier", "MultiOutputClassifier"):
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
        from sklearn.multioutput import MultiOutputClassifier
        from sklearn.preprocessing import LabelBinarizer

        estimators = []
        for e in s["estimators"]:
            if "constant" in e:
                c = _ConstantPredictor()
                c.y_ = np.array([e["constant"]])
                estimators.append(c)
            else:
                estimators.append(lr_from_state(e))
        if kind == "OneVsRestClassifier":
            h = OneVsRestClassifier(LogisticRegression())
            h.estimators_ = estimators
            lb = LabelBinarizer(sparse_output=True)
            lb.fit(np.eye(len(estimators), dtype=int))
            h.label_binarizer_ = lb
            h.classes_ = lb.classes_
        else:
            h = MultiOutputClassifier(LogisticRegression())
            h.estimators_ = estimators
            h.classes_ = [e.classes_ for e in estimators]
        return h
    if kind == "SetFitHead":
        import torch
        from setfit import SetFitHead

        p = s["params"]
        h = SetFitHead(in_features=p["in_features"], out_features=p["out_features"], temperature=p["temperature"],
                       eps=p["eps"], bias=p["bias"], device="cpu", multitarget=p["multitarget"])
        with torch.no_grad():
            h.linear.weight.copy_(torch.tensor(s["weight"]))
            if p["bias"]:
                h.linear.bias.copy_(torch.tensor(s["bias"]))
        return h
    raise SystemExit(f"setfit_head.py: unknown head_type {kind!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("direction", choices=["to-json", "to-pkl"])
    ap.add_argument("model_dir")
    a = ap.parse_args(argv)
    import joblib

    pkl = os.path.join(a.model_dir, "model_head.pkl")
    js = os.path.join(a.model_dir, "model_head.json")
    if a.direction == "to-json":
        if not os.path.exists(pkl):
            raise SystemExit(f"setfit_head.py: {pkl} does not exist")
        state = head_to_state(joblib.load(pkl))
        with open(js, "w") as f:
            json.dump(state, f)
            f.write("\n")
        print(f"wrote {js} ({state['head_type']})")
    else:
        if not os.path.exists(js):
            raise SystemExit(f"setfit_head.py: {js} does not exist")
        with open(js) as f:
            state = json.load(f)
        joblib.dump(state_to_head(state), pkl)
        print(f"wrote {pkl} ({state['head_type']})")


if __name__ == "__main__":
    sys.exit(main())
