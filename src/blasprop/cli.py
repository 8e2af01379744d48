"""The ``blasprop`` command: ``train``, ``predict`` and ``info``.

This module only parses arguments and orchestrates; reading tables, choosing
the task, folding feature scaling into the weights and drawing the progress
bar live in the helper functions and class below.  Every expected failure
(bad file, missing column, non-numeric feature, wrong feature count, bad
option value) ends as one ``blasprop: error: ...`` line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

EXIT_ERROR = 2
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_MAX_CLASSES_AUTO = 20  # --task auto: integer targets with at most this many values are classes
_MIN_ROWS_EARLY_STOPPING = 1000  # default: early stopping only from this many training rows


class CLIError(Exception):
    """An expected failure, reported as one line without a traceback."""


# ----------------------------------------------------------------------------
# reading data


class Table:
    """Named columns read from a CSV or Parquet file."""

    def __init__(self, path, names, columns, lines=None):
        self.path, self.names, self.columns = str(path), names, columns
        self.lines = lines  # file line number of each row (CSV only), for messages
        self.n_rows = len(columns[0]) if columns else 0

    def column(self, name):
        try:
            return self.columns[self.names.index(name)]
        except ValueError:
            shown = ", ".join(repr(n) for n in self.names[:12])
            more = ", ..." if len(self.names) > 12 else ""
            raise CLIError(f"{self.path}: no column {name!r} (columns: {shown}{more})") from None

    def where(self, i):
        return f"line {self.lines[i]}" if self.lines else f"row {i + 1}"


def read_table(path):
    """Read a CSV file with a header row (or Parquet, with pandas + pyarrow)."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{path}: is a directory, not a data file")
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return _read_parquet(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a UTF-8 text (CSV) file") from None
    if "\x00" in text:
        raise CLIError(f"{path}: contains NUL bytes; not a text (CSV) file")
    first = text[: text.find("\n")] if "\n" in text else text
    delimiter = ","
    if "," not in first:
        delimiter = "\t" if "\t" in first else (";" if ";" in first else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows, lines = [], []
    try:
        header = next(reader, None)
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise CLIError(
                    f"{path}: line {reader.line_num} has {len(row)} fields, "
                    f"the header has {len(header)}"
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise CLIError(f"{path}: not a readable CSV file ({exc})") from None
    if not header or all(not h.strip() for h in header):
        raise CLIError(f"{path}: empty file; expected a CSV header row")
    names = [h.strip() or f"column_{i}" for i, h in enumerate(header)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CLIError(f"{path}: duplicate column name(s) {', '.join(map(repr, dupes))}")
    if not rows:
        raise CLIError(f"{path}: has a header but no data rows")
    columns = [np.array([row[j].strip() for row in rows], dtype=object) for j in range(len(names))]
    return Table(path, names, columns, lines)


def _read_parquet(path):
    try:
        import pandas as pd
    except ImportError:
        raise CLIError("reading Parquet needs pandas and pyarrow: pip install pandas pyarrow") from None
    try:
        df = pd.read_parquet(path)
    except ImportError as exc:
        raise CLIError(f"reading Parquet needs pyarrow: pip install pyarrow ({exc})") from None
    except Exception as exc:  # pyarrow raises its own error types for bad files
        raise CLIError(f"{path}: not a readable Parquet file ({exc})") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise CLIError(f"{path}: no data")
    names = [str(c) for c in df.columns]
    return Table(path, names, [df[c].to_numpy() for c in df.columns])


def numeric_matrix(table, names):
    """The named columns as a float64 matrix; complain about anything else."""
    out = np.empty((table.n_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        col = table.column(name)
        try:
            out[:, j] = col.astype(np.float64)
        except (ValueError, TypeError):
            bad = next(i for i, v in enumerate(col) if not _is_float(v))
            if str(col[bad]).strip() == "":
                raise CLIError(
                    f"{table.path}: column {name!r} has a missing value at {table.where(bad)} (empty cell)"
                ) from None
            raise CLIError(
                f"{table.path}: column {name!r} is not numeric "
                f"({table.where(bad)}: {str(col[bad])[:40]!r}); features must be numbers"
            ) from None
        finite = np.isfinite(out[:, j])
        if not finite.all():
            bad = int(np.argmin(finite))
            raise CLIError(
                f"{table.path}: column {name!r} has a missing or non-finite value at {table.where(bad)}"
            )
    return out


def _is_float(v):
    try:
        float(v)
    except (ValueError, TypeError):
        return False
    return True


def target_vector(table, name):
    """Numbers when every value parses as one (integers when all integral), else strings."""
    col = table.column(name)
    if col.dtype.kind in "biuf":
        y = col
    elif all(_is_float(v) for v in col):
        y = col.astype(np.float64)
    else:
        empty = [i for i, v in enumerate(col) if v is None or str(v).strip() == ""]
        if empty:
            raise CLIError(f"{table.path}: target column {name!r} is empty at {table.where(empty[0])}")
        return col.astype(str)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            bad = int(np.argmin(np.isfinite(y)))
            raise CLIError(f"{table.path}: target column {name!r} has a missing value at {table.where(bad)}")
        if np.all(y == np.round(y)) and np.abs(y).max() < 2**53:
            y = y.astype(np.int64)
    return y


def decide_task(y, task):
    """``classify`` or ``regress``; ``auto`` looks at the target values."""
    from sklearn.utils.multiclass import type_of_target

    numeric = y.dtype.kind in "biuf"
    kind = type_of_target(y)
    if task == "auto":
        few = kind == "multiclass" and len(np.unique(y)) <= _MAX_CLASSES_AUTO
        task = "classify" if (not numeric or kind == "binary" or few) else "regress"
    if task == "regress" and not numeric:
        raise CLIError("the target is not numeric, so it cannot be regressed; use --task classify")
    if task == "classify" and kind.startswith("continuous"):
        raise CLIError("the target has non-integer numbers, so it cannot be classified; use --task regress")
    return task


def load_digits_table():
    """The 8x8 handwritten digits shipped with scikit-learn, features in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = [f"pixel_{i}" for i in range(digits.data.shape[1])]
    return digits.data / 16.0, digits.target, names, "digit"


# ----------------------------------------------------------------------------
# training helpers


def fold_scaling(est, x_mean, x_scale, y_mean=None, y_scale=None):
    """Fold standardisation of X (and y, for an identity output) into the weights.

    After ``est`` was fitted on ``(X - x_mean) / x_scale`` (and
    ``(y - y_mean) / y_scale``), it predicts from raw ``X`` in raw units.
    """
    dtype = est.coefs_[0].dtype
    w0 = est.coefs_[0].astype(np.float64)
    est.intercepts_[0] = (est.intercepts_[0] - (x_mean / x_scale) @ w0).astype(dtype)
    est.coefs_[0] = (w0 / x_scale[:, None]).astype(dtype)
    if y_mean is not None:
        est.coefs_[-1] = (est.coefs_[-1].astype(np.float64) * y_scale).astype(dtype)
        est.intercepts_[-1] = (est.intercepts_[-1] * y_scale + y_mean).astype(dtype)


def _standardize(a):
    mean = a.mean(axis=0)
    scale = a.std(axis=0)
    scale[scale == 0] = 1.0
    return (a - mean) / scale, mean, scale


def _fmt_seconds(s):
    if s < 60:
        return f"{s:.0f}s" if s >= 9.5 else f"{s:.1f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class ProgressBar:
    """Per-epoch callback: one redrawn line on a terminal, a line every few epochs otherwise."""

    def __init__(self, stream=None, every=10, width=24, min_interval=0.05):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self.width, self.min_interval = every, width, min_interval
        self.last, self.shown, self._drawn_at, self._len = None, None, None, 0

    def _text(self, info, final=False):
        epoch, total, elapsed = info["epoch"], info["max_iter"], info["elapsed"]
        text = f"epoch {epoch}/{total}  loss {info['loss']:.4f}"
        if info.get("validation_score") is not None:
            text += f"  val {info['validation_score']:.4f}"
        if final:
            return text + f"  {_fmt_seconds(elapsed)} elapsed  done"
        eta = elapsed / max(epoch, 1) * max(total - epoch, 0)
        return text + f"  {_fmt_seconds(elapsed)} elapsed  ETA {_fmt_seconds(eta)}"

    def _draw(self, info, final=False):
        done = int(self.width * min(info["epoch"] / max(info["max_iter"], 1), 1))
        if final:
            done = self.width
        line = f"[{'#' * done}{'.' * (self.width - done)}] {self._text(info, final)}"
        self.stream.write("\r" + line + " " * max(self._len - len(line), 0))
        self._len = len(line)
        self._drawn_at = info["elapsed"]

    def __call__(self, estimator, info):
        self.last = info
        if self.tty:
            if self._drawn_at is None or info["elapsed"] - self._drawn_at >= self.min_interval:
                self._draw(info)
                self.stream.flush()
        elif info["epoch"] == 1 or info["epoch"] % self.every == 0:
            self.stream.write(self._text(info) + "\n")
            self.shown = info["epoch"]
            self.stream.flush()
        return None  # never asks to stop

    def close(self):
        if self.last is None:
            return
        if self.tty:
            self._draw(self.last, final=True)
            self.stream.write("\n")
        elif self.shown != self.last["epoch"]:
            self.stream.write(self._text(self.last, final=True) + "\n")
        self.stream.flush()


def _split(X, y, test_size, random_state, stratify):
    from sklearn.model_selection import train_test_split

    if test_size == 0:
        return X, X[:0], y, y[:0]
    try:
        return train_test_split(
            X, y, test_size=test_size, random_state=random_state, stratify=y if stratify else None
        )
    except ValueError:
        if not stratify:
            raise
        return train_test_split(X, y, test_size=test_size, random_state=random_state)


def _batch_size(requested, n_train, early_stopping):
    """``requested``, or "auto" when 0 or larger than the rows an epoch sees."""
    rows = int(n_train * 0.9) if early_stopping else n_train
    return requested if 0 < requested <= rows else "auto"


def _parse_ints(text, option):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CLIError(f"{option} expects comma-separated integers like 64,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise CLIError(f"{option} expects positive layer sizes, got {text!r}")
    return values


# ----------------------------------------------------------------------------
# commands


def cmd_train(args):
    from sklearn.exceptions import ConvergenceWarning

    from . import MLPClassifier, MLPRegressor
    from ._model_io import save

    if not 0 <= args.test_size < 1:
        raise CLIError(f"--test-size must be in [0, 1), got {args.test_size}")
    if args.data is None:
        X, y, features, target = load_digits_table()
        source, scale = "scikit-learn digits", False
    else:
        table = read_table(args.data)
        target = args.target or table.names[-1]
        table.column(target)  # clear error when it is missing
        features = [n for n in table.names if n != target]
        if not features:
            raise CLIError(f"{args.data}: no feature columns besides the target {target!r}")
        X, y = numeric_matrix(table, features), target_vector(table, target)
        source, scale = Path(args.data).name, args.scale
    task = decide_task(y, args.task)
    classify = task == "classify"

    X_train, X_test, y_train, y_test = _split(X, y, args.test_size, args.random_state, classify)
    if len(X_train) < 2:
        raise CLIError("not enough rows to train on")
    early = args.early_stopping
    if early is None:  # a 10% validation split is too noisy to stop on for small data
        early = len(X_train) >= _MIN_ROWS_EARLY_STOPPING
    activation = args.activation.split(",") if "," in args.activation else args.activation
    cls = MLPClassifier if classify else MLPRegressor
    est = cls(
        hidden_layer_sizes=_parse_ints(args.hidden, "--hidden"),
        activation=activation,
        solver=args.solver,
        max_iter=args.epochs,
        batch_size=_batch_size(args.batch_size, len(X_train), early),
        early_stopping=early,
        random_state=args.random_state,
    )
    bar = None
    if not args.quiet and "callbacks" in est.get_params():
        bar = ProgressBar()
        est.set_params(callbacks=[bar])

    x_fit, y_fit = X_train.astype(args.dtype), y_train
    if scale:
        x_fit, x_mean, x_scale = _standardize(X_train)
        x_fit = x_fit.astype(args.dtype)
        if not classify:
            y2d, y_mean, y_scale = _standardize(y_train.astype(np.float64).reshape(len(y_train), -1))
            y_fit = y2d.reshape(y_train.shape)
    n_classes = f", {len(np.unique(y))} classes" if classify else ""
    print(
        f"training {cls.__name__} on {source}: {len(X_train)} rows for training, "
        f"{len(X_test)} held out, {X.shape[1]} features{n_classes}; target {target!r}"
    )
    sys.stdout.flush()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(x_fit, y_fit)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if bar is not None:
        est.set_params(callbacks=None)  # callables cannot be stored in a model file
    if scale:
        if classify or est.out_activation_ != "identity":
            fold_scaling(est, x_mean, x_scale)
        else:
            fold_scaling(est, x_mean, x_scale, y_mean, y_scale)

    epochs = getattr(est, "n_iter_", 0) or 1
    if est.n_iter_ >= args.epochs and args.solver != "lbfgs":
        print(f"note: stopped at --epochs {args.epochs} before the loss converged")
    elif early:
        print(f"stopped early after {est.n_iter_} epochs (validation score stopped improving)")
    score_name = "accuracy" if classify else "R^2"
    score = None
    if len(X_test):
        score = float(est.score(X_test.astype(args.dtype), y_test))
        print(f"held-out {score_name}: {score:.4f} on {len(X_test)} rows")
    print(f"time: {seconds:.2f} s, {1000 * seconds / epochs:.1f} ms per epoch ({est.n_iter_} epochs)")
    metadata = {
        "cli": {
            "data": source,
            "target": target,
            "features": list(features),
            "task": task,
            "standardized": bool(scale),
            "n_train": len(X_train),
            "n_test": len(X_test),
            "score_name": score_name,
            "test_score": score,
            "fit_seconds": round(seconds, 4),
            "seconds_per_epoch": round(seconds / epochs, 6),
        }
    }
    save(est, args.out, metadata=metadata)
    print(f"model saved to {args.out}")
    return 0


def _model_features(est, header):
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    cli = (header.get("metadata") or {}).get("cli") if isinstance(header.get("metadata"), dict) else None
    if isinstance(cli, dict) and isinstance(cli.get("features"), list):
        return [str(n) for n in cli["features"]]
    return None


def cmd_predict(args):
    from ._model_io import load_with_info

    est, header = load_with_info(args.model)
    table = read_table(args.data)
    names = _model_features(est, header)
    n_features = est.n_features_in_
    if names is not None and len(names) == n_features:
        missing = [n for n in names if n not in table.names]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:8]) + (", ..." if len(missing) > 8 else "")
            raise CLIError(f"{args.data}: missing column(s) the model was trained on: {shown}")
        X = numeric_matrix(table, names)
    else:
        if len(table.names) != n_features:
            raise CLIError(
                f"{args.data}: has {len(table.names)} columns but the model expects "
                f"{n_features} features (and does not know their names)"
            )
        X = numeric_matrix(table, table.names)
    is_classifier = hasattr(est, "classes_")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        if args.proba:
            if not is_classifier:
                raise CLIError("--proba needs a classifier; this model is a regressor")
            values = est.predict_proba(X)
            multilabel = getattr(est._label_binarizer, "y_type_", "") == "multilabel-indicator"
            columns = [f"proba_{c}" for c in (range(values.shape[1]) if multilabel else est.classes_)]
        else:
            values = est.predict(X)
            cli = (header.get("metadata") or {}).get("cli", {}) if isinstance(header.get("metadata"), dict) else {}
            target = cli.get("target") if isinstance(cli, dict) else None
            if values.ndim == 1:
                columns = [str(target) if target else "prediction"]
            else:
                columns = [f"prediction_{j}" for j in range(values.shape[1])]
    values = values.reshape(len(X), -1)
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([str(v) for v in row] for row in values)
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"wrote {len(X)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_info(args):
    from ._model_io import load_with_info

    est, header = load_with_info(args.model)
    params = est.get_params()
    sizes = [est.n_features_in_] + [w.shape[1] for w in est.coefs_]
    acts = params["activation"]
    acts = [acts] * (len(sizes) - 2) if isinstance(acts, str) else list(acts)
    arch = str(sizes[0]) + "".join(f" -> {s} ({a})" for s, a in zip(sizes[1:], acts + [est.out_activation_]))
    n_weights = sum(w.size for w in est.coefs_)
    n_biases = sum(b.size for b in est.intercepts_)
    defaults = type(est)().get_params()
    changed = [f"{k}={v!r}" for k, v in params.items() if k != "hidden_layer_sizes" and v != defaults.get(k)]
    lines = [
        f"file: {args.model} ({os.path.getsize(args.model):,} bytes, format {header['format_version']}, "
        f"saved by blasprop {header.get('blasprop_version')})",
        f"estimator: {type(est).__name__}",
        f"architecture: {arch}",
        f"parameters: {n_weights + n_biases:,} ({n_weights:,} weights + {n_biases:,} biases), {est.coefs_[0].dtype}",
        f"settings: {', '.join(changed) if changed else 'all defaults'}",
    ]
    if hasattr(est, "classes_"):
        classes = [str(c) for c in est.classes_]
        shown = " ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        lines.append(f"classes ({len(classes)}): {shown}")
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        lines.append(f"features: {', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''}")
    training = [f"{getattr(est, 'n_iter_', '?')} epochs"]
    if getattr(est, "loss_", None) is not None:
        training.append(f"final loss {est.loss_:.6g}")
    if getattr(est, "best_validation_score_", None) is not None:
        training.append(f"best validation score {est.best_validation_score_:.4f}")
    lines.append("training: " + ", ".join(training))
    cli = (header.get("metadata") or {}).get("cli") if isinstance(header.get("metadata"), dict) else None
    if isinstance(cli, dict):
        parts = [f"trained on {cli.get('data')} (target {cli.get('target')!r}, {cli.get('n_train')} rows)"]
        if cli.get("test_score") is not None:
            parts.append(f"held-out {cli.get('score_name')} {cli['test_score']:.4f}")
        if cli.get("seconds_per_epoch") is not None:
            parts.append(f"{1000 * cli['seconds_per_epoch']:.1f} ms per epoch")
        lines.append("command line: " + ", ".join(parts))
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------
# argument parsing


def build_parser():
    parser = argparse.ArgumentParser(
        prog="blasprop",
        description="Train, apply and inspect blasprop multilayer perceptrons.",
    )
    try:
        from . import __version__
    except ImportError:  # pragma: no cover
        __version__ = "unknown"
    parser.add_argument("--version", action="version", version=f"blasprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on a CSV/Parquet file (default: the digits data)")
    p.add_argument("data", nargs="?", help="CSV with a header row, or Parquet (default: sklearn's digits)")
    p.add_argument("--target", metavar="COL", help="target column (default: the last column)")
    p.add_argument("--task", choices=("auto", "classify", "regress"), default="auto",
                   help="auto (default): classify when the target is text or has at most "
                        f"{_MAX_CLASSES_AUTO} distinct integer values, else regress")
    p.add_argument("--hidden", default="64", metavar="SIZES", help="hidden layer sizes, e.g. 64,64 (default: 64)")
    p.add_argument("--activation", default="relu", metavar="NAME",
                   help="hidden activation: relu (default), identity, logistic, tanh, leaky_relu, "
                        "elu, gelu, silu, softplus; or one per hidden layer: relu,tanh")
    p.add_argument("--solver", default="adam", metavar="NAME", help="adam, sgd or lbfgs (default: adam)")
    p.add_argument("--epochs", type=int, default=200, metavar="N", help="maximum epochs (default: 200)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="minibatch size, 0 for 'auto' (default: 64)")
    p.add_argument("--test-size", type=float, default=0.2, metavar="FRACTION", help="held-out fraction (default: 0.2)")
    p.add_argument("--random-state", type=int, default=None, metavar="SEED", help="seed for the split and the weights")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--early-stopping", dest="early_stopping", action="store_const", const=True,
                   help="hold out 10%% of the training rows and stop when their score stalls "
                        f"(default: on from {_MIN_ROWS_EARLY_STOPPING} training rows)")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_const", const=False,
                   help="train all --epochs (or until the training loss stalls)")
    p.add_argument("--no-scale", dest="scale", action="store_false",
                   help="do not standardise features (and regression targets); by default they are "
                        "standardised and the scaling is folded into the saved weights")
    p.add_argument("--out", default="model.bpm", metavar="FILE", help="model file to write (default: model.bpm)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="write predictions for a CSV/Parquet file as CSV")
    p.add_argument("model", help="model file (.bpm)")
    p.add_argument("data", help="CSV with a header row, or Parquet")
    p.add_argument("--out", metavar="FILE", help="CSV file to write (default: standard output)")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="describe a model file")
    p.add_argument("model", help="model file (.bpm)")
    p.set_defaults(func=cmd_info)
    return parser


def _message(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv=None):
    """Entry point of the ``blasprop`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `blasprop predict ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (CLIError, ValueError, OSError, ImportError, MemoryError) as exc:
        print(f"blasprop: error: {_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("blasprop: interrupted", file=sys.stderr)
        return 130
