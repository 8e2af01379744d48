"""Inference: predict on 100,000 rows with both networks, all cores.

blasprop ``predict`` vs scikit-learn ``predict`` vs a PyTorch forward pass
under ``torch.no_grad()`` (plus ``argmax`` for the classifier, which is what
``predict`` returns).  The estimators are fitted for one epoch on 2,000 rows
first (untimed); inference cost does not depend on the weight values.

    python bench/predict.py [--quick] [--standin] [--no-torch]
"""

import large
import numpy as np
import seed
from _common import (
    ALL_CORES,
    Config,
    Section,
    compare_calls,
    fmt_s,
    fmt_x,
    md_table,
    pinned_threads,
    quiet_fit,
    standalone,
    threads_line,
    torch_dtype,
)

FIT_ROWS = 2_000


def fitted(cls, X, y, **params):
    with quiet_fit():
        return cls(max_iter=1, **params).fit(X[:FIT_ROWS], y[:FIT_ROWS])


def run(cfg: Config, impls) -> Section:
    """Inference (seconds per predict call, all cores)."""
    n, tr = cfg.predict_rows, impls.torch
    nets = {
        "seed [39, 39, 39, 1]": (seed.make_data(n, seed=1), "MLPRegressor",
                                 seed.sk_params(200), lambda dt: tr.nn.Sequential(
                                     tr.nn.Linear(39, 39), tr.nn.Sigmoid(), tr.nn.Linear(39, 39),
                                     tr.nn.Sigmoid(), tr.nn.Linear(39, 1)).to(torch_dtype(tr, dt))),
        "large [784, 512, 512, 10]": (large.make_data(n, seed=1), "MLPClassifier",
                                      large.sk_params(),
                                      lambda dt: large.torch_large_model(tr, dt)),
    }
    data = []
    with pinned_threads(ALL_CORES, tr):
        for net, ((X64, y), cls_name, params, torch_model) in nets.items():
            for dtype in (np.float64, np.float32):
                X = X64.astype(dtype)
                y_fit = y.astype(dtype) if cls_name == "MLPRegressor" else y
                fns = {}
                est = fitted(getattr(impls.sklearn, cls_name), X, y_fit, **params)
                fns["sklearn"] = lambda est=est, X=X: est.predict(X)
                if tr is not None:
                    model, Xt = torch_model(dtype).eval(), tr.from_numpy(X)
                    if cls_name == "MLPClassifier":
                        def fwd(model=model, Xt=Xt):
                            with tr.no_grad():
                                return model(Xt).argmax(1).numpy()
                    else:
                        def fwd(model=model, Xt=Xt):
                            with tr.no_grad():
                                return model(Xt).numpy().ravel()
                    fns["torch"] = fwd
                if impls.blasprop is not None:
                    bp = fitted(getattr(impls.blasprop, cls_name), X, y_fit, **params)
                    fns["blasprop"] = lambda est=bp, X=X: est.predict(X)
                m = compare_calls(fns, cfg)
                data.append({"net": net, "dtype": np.dtype(dtype).name,
                             **{k: v.as_dict() for k, v in m.items()}})
                print(f"[predict] {net} {np.dtype(dtype).name}: " + ", ".join(
                    f"{k} {fmt_s(v.seconds)}" for k, v in m.items()), flush=True)

    def s(row, k):
        return row[k]["seconds"] if k in row else None

    bp = impls.blasprop_label
    headers = ["network", "dtype", "sklearn predict", "torch no_grad", f"{bp} predict",
               f"sklearn / {bp}", f"torch / {bp}"]
    rows = [[r["net"], r["dtype"], fmt_s(s(r, "sklearn")), fmt_s(s(r, "torch")),
             fmt_s(s(r, "blasprop")), fmt_x(s(r, "sklearn"), s(r, "blasprop")),
             fmt_x(s(r, "torch"), s(r, "blasprop"))] for r in data]
    md = (f"Seconds per call on {n:,} rows; median of {cfg.repeats}; "
          f"{threads_line(ALL_CORES, tr)}.\n\n" + md_table(headers, rows) + impls.standin_note)
    return Section("predict", f"Inference: predict on {n:,} rows", md,
                   {"rows": data, "threads": ALL_CORES, "n_rows": n})


if __name__ == "__main__":
    standalone(run)
