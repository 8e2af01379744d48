"""The ``blasprop`` command: ``train``, ``predict`` and ``info``.

This module parses arguments and runs the three commands. Reading tables
(CSV, Parquet, the digits) and turning columns into features, targets and
labels live in ``_tables``; standardising the training data and folding the
scaling into the saved weights live in ``_scaling``.  Every expected failure
(bad file, missing column, non-numeric feature, wrong feature count, bad
option value) is a ``CLIError`` (or a ``ValueError`` or ``OSError``) and
ends as one ``blasprop: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ._scaling import fold_scaling, standardize
from ._tables import (
    DIGITS_INPUT,
    CLIError,
    class_labels,
    load_digits_table,
    numeric_matrix,
    read_table,
    target_vector,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
_MAX_CLASSES_AUTO = 20  # --task auto: integer targets with at most this many values are classes
_MIN_ROWS_EARLY_STOPPING = 1000  # default: early stopping only from this many training rows


# ----------------------------------------------------------------------------
# choosing the task


def decide_task(y, task):
    """``classify`` or ``regress``; ``auto`` looks at the target values."""
    from sklearn.utils.multiclass import type_of_target

    numeric = y.dtype.kind in "biuf"
    if y.dtype.kind == "f" and np.all(y == np.round(y)):
        # integers too large for int64 (type_of_target would cast them)
        kind = "binary" if len(np.unique(y)) <= 2 else "multiclass"
    else:
        kind = type_of_target(y)
    if task == "auto":
        few = kind == "multiclass" and len(np.unique(y)) <= _MAX_CLASSES_AUTO
        task = "classify" if (not numeric or kind == "binary" or few) else "regress"
    if task == "regress" and not numeric:
        raise CLIError("the target is not numeric, so it cannot be regressed; use --task classify")
    if task == "classify" and kind.startswith("continuous"):
        raise CLIError(
            "the target has non-integer numbers, so it cannot be classified; use --task regress"
        )
    return task


# ----------------------------------------------------------------------------
# training helpers


def _check_dtype_range(X, names, dtype):
    """Refuse features that ``dtype`` cannot hold (float32: beyond 3.4e38, or all below 1.2e-38)."""
    if dtype != "float32":
        return
    info = np.finfo(np.float32)
    peak = np.abs(X).max(axis=0) if len(X) else np.zeros(X.shape[1])
    bad = np.flatnonzero((peak > info.max) | ((peak > 0) & (peak < info.tiny)))
    if bad.size:
        j = int(bad[0])
        raise CLIError(
            f"column {names[j]!r} has values of magnitude {peak[j]:.3g}, "
            "which float32 cannot hold; use --dtype float64"
        )


class ProgressBar:
    """The per-epoch callback of ``blasprop train``.

    It feeds the library's own display (``_progress.EpochReporter``, which
    ``verbose=True`` uses), so there is one progress bar: redrawn in place on
    a terminal, fitted to its width; a line every ``every`` epochs otherwise.
    """

    def __init__(self, stream=None, every=10, min_interval=0.05):
        self.stream = stream or sys.stderr
        self.every, self.min_interval = every, min_interval
        self.reporter = None

    def __call__(self, estimator, info):
        if self.reporter is None:
            from ._progress import EpochReporter

            self.reporter = EpochReporter(
                info["max_iter"], self.stream, every=self.every, min_interval=self.min_interval
            )
        self.reporter.epoch(
            info["epoch"], info["loss"], info.get("validation_score"), info["elapsed"]
        )
        return None  # never asks to stop

    def close(self, done=True):
        """Show the final state; ``done=False`` (interrupted) only ends the line."""
        if self.reporter is not None:
            if done:
                self.reporter.close()
            else:
                self.reporter.end_line()


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
        raise CLIError(
            f"{option} expects comma-separated integers like 64,32, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise CLIError(f"{option} expects positive layer sizes, got {text!r}")
    return values


# ----------------------------------------------------------------------------
# commands


def _threads(n):
    """A context that limits blasprop and BLAS to ``n`` threads (None: no limit)."""
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def _interrupted_path(out):
    """Where an interrupted run's model goes: never the --out file itself."""
    out = Path(out)
    return out.with_name(f"{out.stem}.interrupted{out.suffix}")


@contextlib.contextmanager
def _noting_sigint(seen):
    """Ctrl-C raises KeyboardInterrupt as usual, and is recorded in ``seen``.

    fit catches the KeyboardInterrupt and returns the model of the epochs
    done so far; ``seen`` tells the command that this is what happened.
    Signal handlers can only be set from the main thread, which is also the
    only one Python delivers SIGINT to.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _new_estimator(args, classify, n_train=None, early=True):
    """The estimator the options describe; bad option values fail here, before any training."""
    from . import MLPClassifier, MLPRegressor
    from ._activations import hidden_activation_names

    hidden = _parse_ints(args.hidden, "--hidden")
    activation = args.activation.split(",") if "," in args.activation else args.activation
    cls = MLPClassifier if classify else MLPRegressor
    est = cls(
        hidden_layer_sizes=hidden,
        activation=activation,
        solver=args.solver,
        max_iter=args.epochs,
        batch_size="auto" if n_train is None else _batch_size(args.batch_size, n_train, early),
        early_stopping=early,
        random_state=args.random_state,
        # all the cores --threads allows (it limits OpenMP as well as BLAS)
        n_jobs=-1,
    )
    try:
        est._validate_params()
        hidden_activation_names(est.activation, len(hidden))
    except (ValueError, TypeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(message) from None
    return est


def _check_options(args):
    if not 0 <= args.test_size < 1:
        raise CLIError(f"--test-size must be in [0, 1), got {args.test_size}")
    if args.epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 0:
        raise CLIError(
            "--batch-size must be a positive number of rows, or 0 for 'auto'; "
            f"got {args.batch_size}"
        )
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    _new_estimator(args, classify=True)


def cmd_train(args):
    from sklearn.exceptions import ConvergenceWarning

    from ._model_io import save

    _check_options(args)  # a bad option fails before the data is read
    if args.data is None:
        X, y, features, target = load_digits_table()
        source, scale, table = "scikit-learn digits", False, None
        expects = DIGITS_INPUT
    else:
        table = read_table(args.data)
        target = args.target or table.names[-1]
        table.column(target)  # clear error when it is missing
        features = [n for n in table.names if n != target]
        if not features:
            raise CLIError(f"{args.data}: no feature columns besides the target {target!r}")
        X, y = numeric_matrix(table, features), target_vector(table, target)
        source, scale = Path(args.data).name, args.scale
        expects = "raw values"
        if scale:
            expects = "raw values (the standardisation is folded into the weights)"
    _check_dtype_range(X, features, args.dtype)
    task = decide_task(y, args.task)
    classify = task == "classify"
    if classify and table is not None:
        y = class_labels(table, target)  # exact labels, never through float

    X_train, X_test, y_train, y_test = _split(X, y, args.test_size, args.random_state, classify)
    if len(X_train) < 2:
        raise CLIError("not enough rows to train on")
    early = args.early_stopping
    if early is None:  # a 10% validation split is too noisy to stop on for small data
        early = len(X_train) >= _MIN_ROWS_EARLY_STOPPING
    est = _new_estimator(args, classify, len(X_train), early)
    bar = None
    if not args.quiet and "callbacks" in est.get_params():
        bar = ProgressBar()
        est.set_params(callbacks=[bar])

    x_fit, y_fit = X_train.astype(args.dtype), y_train
    if scale:
        x_fit, x_mean, x_scale = standardize(X_train)
        x_fit = x_fit.astype(args.dtype)
        if not classify:
            y2d, y_mean, y_scale = standardize(y_train.astype(np.float64).reshape(len(y_train), -1))
            y_fit = y2d.reshape(y_train.shape)
    score_name = "accuracy" if classify else "R^2"
    metadata = {  # what info shows and predict needs to pick the columns
        "data": source,
        "target": target,
        "features": list(features),
        "input": expects,
        "task": task,
        "standardized": bool(scale),
        "n_train": len(X_train),
        "n_test": len(X_test),
        "score_name": score_name,
    }
    n_classes = f", {len(np.unique(y))} classes" if classify else ""
    print(
        f"training {type(est).__name__} on {source}: {len(X_train)} rows for training, "
        f"{len(X_test)} held out, {X.shape[1]} features{n_classes}; target {target!r}"
    )
    sys.stdout.flush()
    interrupted = []
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), _threads(args.threads), _noting_sigint(interrupted):
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="Training interrupted by user")
            est.fit(x_fit, y_fit)
    except KeyboardInterrupt:
        interrupted.append(signal.SIGINT)  # raised where fit does not catch it (lbfgs)
    finally:
        if bar is not None:
            bar.close(done=not interrupted)
    seconds = time.perf_counter() - start
    if bar is not None:
        est.set_params(callbacks=None)  # callables cannot be stored in a model file
    scaling = None
    if scale:
        scaling = (x_mean, x_scale) + ((y_mean, y_scale) if not classify else ())
    if interrupted:
        return _save_interrupted(est, args, classify, scaling, metadata)
    if scale:
        _fold(est, classify, *scaling)

    epochs = getattr(est, "n_iter_", 0) or 1
    if est.n_iter_ >= args.epochs and args.solver != "lbfgs":
        print(f"note: stopped at --epochs {args.epochs} before the loss converged")
    elif early:
        print(f"stopped early after {est.n_iter_} epochs (validation score stopped improving)")
    score = None
    if len(X_test):
        with _threads(args.threads):
            score = _held_out_score(est, X_test.astype(args.dtype), y_test, classify)
        print(f"held-out {score_name}: {score:.4f} on {len(X_test)} rows")
    print(
        f"time: {seconds:.2f} s, {1000 * seconds / epochs:.1f} ms per epoch "
        f"({est.n_iter_} epochs)"
    )
    metadata.update(
        test_score=score,
        fit_seconds=round(seconds, 4),
        seconds_per_epoch=round(seconds / epochs, 6),
    )
    save(est, args.out, metadata={"cli": metadata})
    print(f"model saved to {args.out}")
    return 0


def _held_out_score(est, X, y, classify):
    """Accuracy, or R^2 computed on y divided by a power of two (R^2 does not
    change) so that targets near 1e300 do not overflow its sums of squares."""
    if classify:
        return float(est.score(X, y))
    from sklearn.metrics import r2_score

    _, exponent = np.frexp(np.abs(y).max())
    unit = np.ldexp(1.0, int(exponent) - 1)
    return float(r2_score(y / unit, est.predict(X) / unit))


def _fold(est, classify, x_mean, x_scale, y_mean=None, y_scale=None):
    try:
        if classify or est.out_activation_ != "identity":
            fold_scaling(est, x_mean, x_scale)
        else:
            fold_scaling(est, x_mean, x_scale, y_mean, y_scale)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _save_interrupted(est, args, classify, scaling, metadata):
    """After Ctrl-C: keep what was trained under its own name, exit 130."""
    from ._model_io import save

    n_iter = getattr(est, "n_iter_", 0)
    kept = ""
    if n_iter and hasattr(est, "coefs_"):
        try:
            if scaling:
                _fold(est, classify, *scaling)
        except CLIError as exc:
            kept = f"; the model of the {n_iter} epochs done was not kept ({exc})"
        else:
            path = _interrupted_path(args.out)
            metadata.update(interrupted_after_epochs=n_iter, test_score=None)
            save(est, path, metadata={"cli": metadata})
            kept = f"; the model of the {n_iter} epochs done was saved to {path}"
    print(f"blasprop: interrupted; {args.out} was not written{kept}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _cli_metadata(est, header, path):
    """The "cli" metadata of a model file; None when there is none.

    ``load`` has checked the type of every field (``_model_io._CLI_FIELDS``);
    what is checked here is how the fields fit the loaded model."""
    def bad(what):
        return CLIError(f"{path}: malformed metadata: {what}")

    metadata = header.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("cli") is None:
        return None  # saved from Python, with or without metadata of its own
    cli = metadata["cli"]
    features = cli.get("features")
    if features is not None:
        if len(features) != est.n_features_in_:
            raise bad(
                f"cli.features names {len(features)} columns, "
                f"the model has {est.n_features_in_} inputs"
            )
        if len(set(features)) != len(features):
            raise bad("cli.features names a column twice")
    return cli


def _model_features(est, cli):
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    if cli is not None and cli.get("features") is not None:
        return cli["features"]
    return None


def cmd_predict(args):
    from ._model_io import load_with_info

    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    est, header = load_with_info(args.model)
    cli = _cli_metadata(est, header, args.model)
    table = read_table(args.data)
    names = _model_features(est, cli)
    n_features = est.n_features_in_
    if names is not None and len(names) == n_features:
        missing = [n for n in names if n not in table]
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
    with warnings.catch_warnings(), _threads(args.threads):
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        if args.proba:
            if not is_classifier:
                raise CLIError("--proba needs a classifier; this model is a regressor")
            values = est.predict_proba(X)
            multilabel = getattr(est._label_binarizer, "y_type_", "") == "multilabel-indicator"
            labels = range(values.shape[1]) if multilabel else est.classes_
            columns = [f"proba_{c}" for c in labels]
        else:
            values = est.predict(X)
            target = cli.get("target") if cli is not None else None
            if values.ndim == 1:
                columns = [str(target) if target is not None else "prediction"]
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


def _shorten(names, first=10):
    names = list(map(str, names))
    if len(names) <= first + 1:
        return ", ".join(names)
    return f"{', '.join(names[:first])}, ..., {names[-1]}"


def cmd_info(args):
    from ._model_io import load_with_info

    est, header = load_with_info(args.model)
    cli = _cli_metadata(est, header, args.model)
    params = est.get_params()
    sizes = [est.n_features_in_] + [w.shape[1] for w in est.coefs_]
    acts = params["activation"]
    acts = [acts] * (len(sizes) - 2) if isinstance(acts, str) else list(acts)
    layers = zip(sizes[1:], acts + [est.out_activation_])
    arch = str(sizes[0]) + "".join(f" -> {s} ({a})" for s, a in layers)
    n_weights = sum(w.size for w in est.coefs_)
    n_biases = sum(b.size for b in est.intercepts_)
    defaults = type(est)().get_params()
    changed = [
        f"{k}={v!r}"
        for k, v in params.items()
        if k != "hidden_layer_sizes" and v != defaults.get(k)
    ]
    lines = [
        f"file: {args.model} ({os.path.getsize(args.model):,} bytes, "
        f"format {header['format_version']}, "
        f"saved by blasprop {header.get('blasprop_version')})",
        f"estimator: {type(est).__name__}",
        f"architecture: {arch}",
        f"parameters: {n_weights + n_biases:,} ({n_weights:,} weights + {n_biases:,} biases), "
        f"{est.coefs_[0].dtype}",
        f"settings: {', '.join(changed) if changed else 'all defaults'}",
    ]
    if hasattr(est, "classes_"):
        classes = [str(c) for c in est.classes_]
        shown = " ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        lines.append(f"classes ({len(classes)}): {shown}")
    names = _model_features(est, cli)
    if names is not None:
        lines.append(f"input columns ({len(names)}, picked by name): {_shorten(names)}")
    else:
        lines.append(
            f"input columns: {est.n_features_in_}, unnamed "
            "(the data needs exactly these, in order)"
        )
    if cli is not None and cli.get("input") is not None:
        lines.append(f"input values: {cli['input']}")
    elif cli is not None and cli.get("standardized") is not None:
        lines.append("input values: raw values" + (
            " (the standardisation is folded into the weights)" if cli["standardized"] else ""))
    training = [f"{getattr(est, 'n_iter_', '?')} epochs"]
    if getattr(est, "loss_", None) is not None:
        training.append(f"final loss {est.loss_:.6g}")
    if getattr(est, "best_validation_score_", None) is not None:
        training.append(f"best validation score {est.best_validation_score_:.4f}")
    lines.append("training: " + ", ".join(training))
    if cli is not None:
        parts = [
            f"trained on {cli.get('data')} "
            f"(target {cli.get('target')!r}, {cli.get('n_train')} rows)"
        ]
        if cli.get("interrupted_after_epochs") is not None:
            parts.append(f"interrupted after {cli['interrupted_after_epochs']} epochs")
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

    p = sub.add_parser(
        "train", help="train a model on a CSV/Parquet file (default: the digits data)"
    )
    p.add_argument(
        "data", nargs="?", help="CSV with a header row, or Parquet (default: sklearn's digits)"
    )
    p.add_argument("--target", metavar="COL", help="target column (default: the last column)")
    p.add_argument("--task", choices=("auto", "classify", "regress"), default="auto",
                   help="auto (default): classify when the target is text or has at most "
                        f"{_MAX_CLASSES_AUTO} distinct integer values, else regress")
    p.add_argument("--hidden", default="64", metavar="SIZES",
                   help="hidden layer sizes, e.g. 64,64 (default: 64)")
    p.add_argument("--activation", default="relu", metavar="NAME",
                   help="hidden activation: relu (default), identity, logistic, tanh, leaky_relu, "
                        "elu, gelu, silu, softplus; or one per hidden layer: relu,tanh")
    p.add_argument("--solver", default="adam", metavar="NAME",
                   help="adam (default), adamw (adam with decoupled weight decay), sgd or lbfgs")
    p.add_argument("--epochs", type=int, default=200, metavar="N",
                   help="maximum epochs (default: 200)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B",
                   help="minibatch size, 0 for 'auto' (default: 64)")
    p.add_argument("--test-size", type=float, default=0.2, metavar="FRACTION",
                   help="held-out fraction (default: 0.2)")
    p.add_argument("--random-state", type=int, default=None, metavar="SEED",
                   help="seed for the split and the weights")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--early-stopping", dest="early_stopping", action="store_const", const=True,
                   help="hold out 10%% of the training rows and stop when their score stalls "
                        f"(default: on from {_MIN_ROWS_EARLY_STOPPING} training rows)")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_const", const=False,
                   help="train all --epochs (or until the training loss stalls)")
    p.add_argument("--no-scale", dest="scale", action="store_false",
                   help="do not standardise features (and regression targets); by default they are "
                        "standardised and the scaling is folded into the saved weights")
    p.add_argument("--out", default="model.bpm", metavar="FILE",
                   help="model file to write (default: model.bpm)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads blasprop and BLAS may use (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="write predictions for a CSV/Parquet file as CSV")
    p.add_argument("model", help="model file (.bpm)")
    p.add_argument("data", help="CSV with a header row, or Parquet")
    p.add_argument("--out", metavar="FILE", help="CSV file to write (default: standard output)")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads blasprop and BLAS may use (default: what BLAS is set to use)")
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
        return EXIT_INTERRUPTED
