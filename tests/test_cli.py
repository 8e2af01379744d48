"""The ``blasprop`` command line.

End to end, as ``python -m blasprop`` in subprocesses: starting Python and
importing scikit-learn dominates each run, so a module fixture launches the
commands in two parallel waves (trainings and every bad-input case first,
then the commands that need a trained model) and the tests check the
collected results: exit status 2, one ``blasprop: error:`` line on stderr, no
traceback.  Every bad-input case also runs in-process through ``cli.main``
(same code path, no interpreter start-up), where the absence of an escaping
exception is checked directly.
"""

import csv
import io
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.datasets import load_digits

import blasprop
from blasprop import MLPClassifier, MLPRegressor, _scaling, _tables, cli


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "blasprop", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def _run_all(commands, cwd):
    workers = min(len(commands), (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(_run, args, cwd) for name, args in commands.items()}
        return {name: f.result() for name, f in futures.items()}


def _num(v):
    return repr(float(v))  # shortest text that reads back as the same float64


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _classification_table(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    species = np.array(["ant", "bee", "cat"])[
        np.digitize(X[:, 0] + X[:, 1] - 0.3 * X[:, 2], [-0.7, 0.7])
    ]
    return X, species


def _regression_table(n, seed):
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(0, 1000, n), rng.normal(0, 500, n), rng.normal(0, 1e4, n)
    price = 1e5 + 3e4 * (x1 / 1000) - 2e4 * (x2 / 500) ** 2 + rng.normal(0, 1000, n)
    return np.column_stack([x1, x2, x3]), price


def _python_model(est, X, y, names=None):
    est.fit(X, y)
    if names is not None:  # as fitting on a DataFrame would set them
        est.feature_names_in_ = np.array(names, dtype=object)
    return est


# name -> (arguments, fragment expected in the error line)
ERROR_CASES = {
    "train_missing_file": (["train", "nothere.csv"], "No such file"),
    "train_directory": (["train", "."], "is a directory"),
    "train_binary_file": (["train", "garbage.csv"], "UTF-8"),
    "train_nul_bytes": (["train", "nul.csv"], "NUL bytes"),
    "train_empty_file": (["train", "empty.csv"], "empty file"),
    "train_header_only": (["train", "header_only.csv"], "no data rows"),
    "train_ragged_rows": (["train", "ragged.csv"], "line 3 has 2 fields"),
    "train_non_numeric_feature": (["train", "words.csv"], "column 'colour' is not numeric"),
    "train_missing_value": (["train", "holes.csv"], "column 'b' has a missing value at line 3"),
    "train_missing_target": (["train", "cls.csv", "--target", "nope"], "no column 'nope'"),
    "train_regress_strings": (["train", "cls.csv", "--task", "regress"], "not numeric"),
    "train_classify_floats": (["train", "reg.csv", "--task", "classify"], "non-integer"),
    "train_bad_hidden": (["train", "cls.csv", "--hidden", "4,x"], "--hidden"),
    "train_bad_activation": (["train", "cls.csv", "--activation", "swish", "--epochs", "2"],
                             "activation"),
    "train_bad_test_size": (["train", "cls.csv", "--test-size", "1.5"], "--test-size"),
    "predict_corrupted_model": (["predict", "corrupted.bpm", "cls.csv"],
                                "not a valid blasprop model"),
    "predict_csv_as_model": (["predict", "cls.csv", "cls.csv"], "magic"),
    "predict_pickle_as_model": (["predict", "model.pkl", "cls.csv"], "pickle"),
    "predict_missing_model": (["predict", "nothere.bpm", "cls.csv"], "No such file"),
    "predict_missing_column": (["predict", "named.bpm", "no_b.csv"],
                               "missing column(s) the model was trained on: 'b'"),
    "predict_wrong_feature_count": (["predict", "nonames.bpm", "five_cols.csv"],
                                    "expects 3 features"),
    "predict_non_numeric_feature": (["predict", "named.bpm", "words_b.csv"],
                                    "column 'b' is not numeric"),
    "predict_missing_value": (["predict", "named.bpm", "holes.csv"], "missing value"),
    "predict_proba_regressor": (["predict", "reg_named.bpm", "cls.csv", "--proba"],
                                "--proba needs a classifier"),
    "info_truncated_model": (["info", "truncated.bpm"], "truncated"),
    "info_not_a_model": (["info", "garbage.csv"], "magic"),
    # data files that are not regular files: refused at once, never read
    "train_fifo": (["train", "pipe.csv"], "is a FIFO"),
    "train_dev_zero": (["train", "/dev/zero"], "is a character device"),
    "predict_fifo": (["predict", "named.bpm", "pipe.csv"], "is a FIFO"),
    "predict_dev_zero": (["predict", "named.bpm", "/dev/zero"], "is a character device"),
    "predict_directory": (["predict", "named.bpm", "."], "is a directory"),
    # a bad option fails before anything is read or trained
    "train_bad_solver": (["train", "cls.csv", "--solver", "adamx"], "solver"),
    "train_overflowing_float32": (["train", "huge.csv", "--dtype", "float32"],
                                  "float32 cannot hold"),
    "predict_malformed_metadata": (["predict", "bad_meta.bpm", "cls.csv"], "malformed metadata"),
    "info_malformed_metadata": (["info", "bad_meta.bpm"], "malformed metadata"),
}


# every bad-input case also runs as a real subprocess (`python -m blasprop`),
# all of them in parallel in the `runs` fixture
SUBPROCESS_ERROR_CASES = sorted(ERROR_CASES)


def _write_inputs(d):
    X, species = _classification_table(300, 0)
    _write_csv(d / "cls.csv", ["a", "b", "c", "species"],
               [[*map(_num, x), s] for x, s in zip(X, species)])
    X, species = _classification_table(50, 1)
    _write_csv(d / "cls_new.csv", ["c", "species", "a", "b"],  # other order, target included
               [[_num(x[2]), s, _num(x[0]), _num(x[1])] for x, s in zip(X, species)])
    X, price = _regression_table(400, 2)
    _write_csv(d / "reg.csv", ["x1", "price", "x2", "x3"],
               [[_num(x[0]), _num(p), _num(x[1]), _num(x[2])] for x, p in zip(X, price)])
    digits = load_digits()
    order = list(range(64))[::-1]
    _write_csv(d / "digits_new.csv", ["digit"] + [f"pixel_{j}" for j in order],
               [[t] + [_num(v / 16.0) for v in x[order]]
                for x, t in zip(digits.data[:300], digits.target)])

    (d / "garbage.csv").write_bytes(bytes(range(256)) * 4)
    (d / "nul.csv").write_bytes(b"a,b,y\n1,2\x00,3\n4,5,6\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "header_only.csv").write_text("a,b,y\n")
    (d / "ragged.csv").write_text("a,b,y\n1,2,3\n4,5\n")
    (d / "words.csv").write_text("a,b,colour,c,y\n1,2,3,4,0\n1,2,red,4,1\n")
    (d / "words_b.csv").write_text("c,b,a\n1,x,3\n")
    (d / "holes.csv").write_text("a,b,c,y\n1,2,3,0\n1,,3,1\n")
    (d / "no_b.csv").write_text("a,c\n1,2\n")
    (d / "five_cols.csv").write_text("p,q,r,s,t\n1,2,3,4,5\n")
    (d / "huge.csv").write_text("a,b,y\n1e300,1,0\n-2e300,2,1\n3e300,1,0\n1e300,2,1\n")
    os.mkfifo(d / "pipe.csv")  # nobody ever writes to it: reading it would block forever

    rng = np.random.default_rng(3)
    X3 = rng.normal(size=(40, 3))
    named = _python_model(MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
                          X3, X3[:, 0] > 0, names=["a", "b", "c"])
    blasprop.save(named, d / "named.bpm")
    reg_named = _python_model(MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
                              X3, X3[:, 0], names=["a", "b", "c"])
    blasprop.save(reg_named, d / "reg_named.bpm")
    nonames = _python_model(MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
                            X3, X3[:, 0] > 0)
    blasprop.save(nonames, d / "nonames.bpm")
    blob = (d / "named.bpm").read_bytes()
    (d / "truncated.bpm").write_bytes(blob[: len(blob) - 10])
    corrupted = bytearray(blob)
    corrupted[-5] ^= 0x01
    (d / "corrupted.bpm").write_bytes(bytes(corrupted))
    import pickle

    (d / "model.pkl").write_bytes(pickle.dumps(named))
    # save refuses such metadata, so the file is edited after saving
    blasprop.save(nonames, d / "bad_meta.bpm", metadata={"cli": {"features": ["a", "b", "c"]}})
    _rewrite_header(d / "bad_meta.bpm", _set_cli("features", ["a", "b", 3]))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_inputs")
    _write_inputs(d)
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "digits").mkdir()
    _write_inputs(d)
    first = {name: ERROR_CASES[name][0] for name in SUBPROCESS_ERROR_CASES}
    first["digits"] = ["train", "--random-state", "0"]  # run in d/digits, see below
    first["cls"] = ["train", "cls.csv", "--hidden", "16", "--random-state", "0",
                    "--dtype", "float32", "--out", "cls.bpm"]
    first["reg"] = ["train", "reg.csv", "--target", "price", "--hidden", "32",
                    "--random-state", "0", "--out", "reg.bpm"]
    digits_args = first.pop("digits")
    with ThreadPoolExecutor(1) as pool:  # the default run, in its own directory
        digits_future = pool.submit(_run, digits_args, d / "digits")
        results = _run_all(first, d)
        results["digits"] = digits_future.result()

    second = {
        "digits_info": ["info", "digits/model.bpm"],
        "digits_predict": ["predict", "digits/model.bpm", "digits_new.csv"],
        "cls_proba": ["predict", "cls.bpm", "cls_new.csv", "--proba", "--out", "proba.csv"],
        "reg_predict": ["predict", "reg.bpm", "reg.csv"],
    }
    results.update(_run_all(second, d))
    return d, results


def _ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def _score(stdout, name):
    match = re.search(rf"held-out {re.escape(name)}: ([0-9.]+)", stdout)
    assert match, stdout
    return float(match.group(1))


# ---------------------------------------------------------------------------
# working commands


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
def test_default_train_on_digits(runs):
    d, results = runs
    r = _ok(results["digits"])
    assert _score(r.stdout, "accuracy") >= 0.9
    assert "digits" in r.stdout
    assert re.search(r"ms per epoch", r.stdout)
    assert "model saved to model.bpm" in r.stdout
    assert (d / "digits" / "model.bpm").is_file()
    # not a terminal: plain progress lines every few epochs, no carriage returns
    assert re.search(r"^epoch 1/\d+ +loss [0-9.]+ +val [0-9.]+ .*ETA", r.stderr, re.M)
    assert "\r" not in r.stderr
    assert len(r.stderr.splitlines()) <= 25


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
def test_info(runs):
    d, results = runs
    r = _ok(results["digits_info"])
    assert "MLPClassifier" in r.stdout
    assert "architecture: 64 -> 64 (relu) -> 10 (softmax)" in r.stdout
    assert "classes (10): 0 1 2 3 4 5 6 7 8 9" in r.stdout
    assert "float64" in r.stdout
    loaded = blasprop.load(d / "digits" / "model.bpm")
    assert f"{loaded.n_iter_} epochs" in r.stdout
    assert f"{sum(w.size for w in loaded.coefs_ + loaded.intercepts_):,}" in r.stdout


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
def test_predict_selects_columns_by_name(runs):
    d, results = runs
    r = _ok(results["digits_predict"])
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["digit"]
    got = np.array([int(row[0]) for row in rows[1:]])
    digits = load_digits()
    model = blasprop.load(d / "digits" / "model.bpm")
    np.testing.assert_array_equal(got, model.predict(digits.data[:300] / 16.0))
    assert np.mean(got == digits.target[:300]) > 0.9


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
def test_string_labels_and_proba_to_file(runs):
    d, results = runs
    r = _ok(results["cls"])
    assert "MLPClassifier" in r.stdout
    assert _score(r.stdout, "accuracy") > 0.85
    _ok(results["cls_proba"])
    with open(d / "proba.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["proba_ant", "proba_bee", "proba_cat"]
    got = np.array([[float(v) for v in row] for row in rows[1:]])
    X, _ = _classification_table(50, 1)
    model = blasprop.load(d / "cls.bpm")
    assert model.coefs_[0].dtype == np.float32
    expected = model.predict_proba(X)
    np.testing.assert_array_equal(got, expected)  # repr of floats round-trips exactly


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
def test_regression_with_target_in_the_middle(runs):
    d, results = runs
    r = _ok(results["reg"])
    assert "MLPRegressor" in r.stdout
    assert _score(r.stdout, "R^2") > 0.9  # needs the standardisation folded into the weights
    r = _ok(results["reg_predict"])
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["price"]
    got = np.array([float(row[0]) for row in rows[1:]])
    X, price = _regression_table(400, 2)
    np.testing.assert_array_equal(got, blasprop.load(d / "reg.bpm").predict(X))
    assert 1 - np.sum((got - price) ** 2) / np.sum((price - price.mean()) ** 2) > 0.9


# ---------------------------------------------------------------------------
# bad input: one line on stderr, exit status 2, no traceback


def _check_error(returncode, stderr, case):
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("blasprop: error: ")
    assert ERROR_CASES[case][1] in lines[0]


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
@pytest.mark.parametrize("case", SUBPROCESS_ERROR_CASES)
def test_bad_input_subprocess(runs, case):
    r = runs[1][case]
    _check_error(r.returncode, r.stderr, case)


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input(inputs, case, monkeypatch, capsys):
    monkeypatch.chdir(inputs)
    status = cli.main(ERROR_CASES[case][0])
    _check_error(status, capsys.readouterr().err, case)


def test_bad_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# helpers, in-process


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def _epochs(bar, n, max_iter=100, val=True):
    for e in range(1, n + 1):
        bar(None, {"epoch": e, "max_iter": max_iter, "loss": 1.0 / e,
                   "validation_score": 0.5 if val else None, "elapsed": 0.1 * e})
    bar.close()


def test_progress_bar_on_a_terminal_redraws_one_line():
    stream = _Stream(tty=True)
    _epochs(cli.ProgressBar(stream), 30)
    out = stream.getvalue()
    assert out.count("\r") == 31  # every epoch (0.1 s apart), then the final state
    assert out.count("\n") == 1 and out.endswith("\n")
    frames = out.split("\r")[1:]
    assert "epoch 30/100" in frames[-2] and "val 0.5000" in frames[-2] and "ETA 7.0s" in frames[-2]
    assert "epoch 30/100" in frames[-1] and "done" in frames[-1]


def test_progress_bar_on_a_terminal_throttles_fast_epochs():
    stream = _Stream(tty=True)
    bar = cli.ProgressBar(stream)
    for e in range(1, 1001):
        bar(None, {"epoch": e, "max_iter": 1000, "loss": 1.0, "validation_score": None,
                   "elapsed": 0.001 * e})
    bar.close()
    out = stream.getvalue()
    assert 15 <= out.count("\r") <= 25  # ~every 0.05 s of a 1 s run, plus the final state
    assert "epoch 1000/1000" in out.split("\r")[-1]


def test_progress_bar_without_terminal_prints_every_few_epochs():
    stream = _Stream(tty=False)
    _epochs(cli.ProgressBar(stream, every=10), 25, val=False)
    lines = stream.getvalue().splitlines()
    assert [int(re.match(r"epoch (\d+)/", line).group(1)) for line in lines] == [1, 10, 20, 25]
    assert "\r" not in stream.getvalue()
    assert "val" not in lines[0]


def test_fold_scaling_matches_scaled_pipeline():
    X, y = _regression_table(200, 5)
    Y = np.column_stack([y, 2 * y + 7])
    xm, xs = X.mean(0), X.std(0)
    ym, ys = Y.mean(0), Y.std(0)
    est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=20, random_state=0)
    est.fit((X - xm) / xs, (Y - ym) / ys)
    expected = est.predict((X - xm) / xs) * ys + ym
    _scaling.fold_scaling(est, xm, xs, ym, ys)
    np.testing.assert_allclose(est.predict(X), expected, rtol=1e-9,
                               atol=1e-9 * np.abs(expected).max())

    Xc, labels = _classification_table(100, 6)
    Xc = Xc * [1, 100, 0.01] + [5, -300, 0]
    m, s = Xc.mean(0), Xc.std(0)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0).fit(
        (Xc - m) / s, labels)
    expected = clf.predict_proba((Xc - m) / s)
    _scaling.fold_scaling(clf, m, s)
    np.testing.assert_allclose(clf.predict_proba(Xc), expected, atol=1e-12)


@pytest.mark.parametrize(
    "y, task",
    [
        (np.array(["a", "b", "a", "c"]), "classify"),
        (np.array([0, 1, 1, 0]), "classify"),
        (np.arange(40) % 7, "classify"),
        (np.arange(100), "regress"),
        (np.linspace(0, 1, 30), "regress"),
        (np.array([1.0, 2.0, 1.0, 2.0]), "classify"),
    ],
)
def test_auto_task(y, task):
    assert cli.decide_task(y, "auto") == task


def test_delimiters_and_bom(tmp_path):
    (tmp_path / "semi.csv").write_bytes("\ufeffa;b;label\n1;2;x\n3;4;y\n".encode("utf-8"))
    (tmp_path / "tabs.tsv").write_text("a\tb\tlabel\n1\t2\tx\n3\t4\ty\n")
    for name in ("semi.csv", "tabs.tsv"):
        table = _tables.read_table(tmp_path / name)
        assert table.names == ["a", "b", "label"]
        np.testing.assert_array_equal(_tables.numeric_matrix(table, ["a", "b"]), [[1, 2], [3, 4]])
        assert list(_tables.target_vector(table, "label")) == ["x", "y"]


def test_target_values_become_numbers_when_they_can(tmp_path):
    (tmp_path / "t.csv").write_text("a,int,float,str\n1,3,0.5,x\n2,4.0,1.5,7\n")
    table = _tables.read_table(tmp_path / "t.csv")
    assert _tables.target_vector(table, "int").dtype == np.int64
    assert _tables.target_vector(table, "float").dtype == np.float64
    assert list(_tables.target_vector(table, "str")) == ["x", "7"]


def test_table_errors_are_the_errors_main_reports(tmp_path, capsys):
    """_tables raises the CLIError that main turns into one line and exit status 2."""
    assert cli.CLIError is _tables.CLIError
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    table = _tables.read_table(tmp_path / "t.csv")
    with pytest.raises(cli.CLIError, match="no column 'z'"):
        table.column("z")
    assert cli.main(["train", str(tmp_path / "t.csv"), "--target", "z"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blasprop: error: ") and "no column 'z'" in err


def test_parquet(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    X, species = _classification_table(200, 7)
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "species": species})
    df.to_parquet(tmp_path / "d.parquet")
    out = tmp_path / "m.bpm"
    assert cli.main(["train", str(tmp_path / "d.parquet"), "--epochs", "20", "--random-state", "0",
                     "-q", "--out", str(out)]) == 0
    assert cli.main(["predict", str(out), str(tmp_path / "d.parquet")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-201] == "species" and len(lines[-200:]) == 200


# ---------------------------------------------------------------------------
# --version and import time


def test_version_imports_neither_sklearn_nor_the_estimators():
    code = (
        "import sys\n"
        "from blasprop import cli\n"
        "try:\n"
        "    cli.main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')\n"
        "               or m in ('blasprop._classes', 'blasprop._core', 'blasprop._model_io'))\n"
        "print(heavy, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"blasprop {blasprop.__version__}"
    assert r.stderr.strip() == "[]"


def test_lazy_public_names_resolve():
    import blasprop._classes
    import blasprop._model_io

    for name in blasprop.__all__:
        assert name in dir(blasprop)
        assert getattr(blasprop, name) is not None
    assert blasprop.MLPClassifier is blasprop._classes.MLPClassifier
    assert blasprop.load is blasprop._model_io.load
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        blasprop.nothing_here


# ---------------------------------------------------------------------------
# data files that are not regular files


@pytest.mark.slow  # three blasprop subprocesses per command
@pytest.mark.parametrize("command", ["train", "predict"])
def test_non_regular_data_files_fail_at_once(inputs, command):
    """A FIFO with no writer, /dev/zero and a directory: one error line, in seconds, not never."""
    commands = {}
    for name, data in (("fifo", "pipe.csv"), ("dev_zero", "/dev/zero"), ("directory", ".")):
        args = ["train", data] if command == "train" else ["predict", "named.bpm", data]
        commands[name] = args
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {
            name: pool.submit(
                subprocess.run, [sys.executable, "-m", "blasprop", *args], cwd=inputs,
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )
            for name, args in commands.items()
        }
        results = {name: f.result() for name, f in futures.items()}
    for name, r in results.items():
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("blasprop: error: "), (name, r.stderr)
        assert "not a data file" in lines[0], (name, r.stderr)


# ---------------------------------------------------------------------------
# options


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--solver", "bogus"], "solver"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "-5"], "--batch-size"),
        (["--threads", "0"], "--threads"),
        (["--hidden", "0"], "--hidden"),
        (["--activation", "swish"], "activation"),
        (["--activation", "relu,tanh", "--hidden", "8"], "activation has 2 entries"),
        (["--test-size", "-0.1"], "--test-size"),
    ],
)
def test_bad_option_fails_before_reading_or_training(options, fragment, tmp_path, capsys):
    # the data file does not exist: the option is reported, not the file
    status = cli.main(["train", str(tmp_path / "absent.csv"), *options])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""  # no "training ..." line
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blasprop: error: ")
    assert fragment in lines[0]
    assert "absent.csv" not in lines[0]


def test_solver_help_lists_adamw(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for solver in ("adam", "adamw", "sgd", "lbfgs"):
        assert re.search(rf"\b{solver}\b", text)
    assert "--threads N" in text


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_threads_option_limits_blas_during_fit_and_predict(inputs, monkeypatch, tmp_path, capsys):
    before = _blas_threads()
    seen = {}
    real_fit, real_predict = MLPClassifier.fit, MLPClassifier.predict

    def fit(self, *a, **k):
        seen["fit"] = _blas_threads()
        return real_fit(self, *a, **k)

    def predict(self, *a, **k):
        seen["predict"] = _blas_threads()
        return real_predict(self, *a, **k)

    monkeypatch.setattr(MLPClassifier, "fit", fit)
    monkeypatch.setattr(MLPClassifier, "predict", predict)
    model = tmp_path / "m.bpm"
    assert cli.main(["train", str(inputs / "cls.csv"), "--threads", "1", "--epochs", "3",
                     "--test-size", "0", "-q", "--out", str(model)]) == 0
    assert cli.main(["predict", str(model), str(inputs / "cls.csv"), "--threads", "1"]) == 0
    capsys.readouterr()
    assert seen["fit"] and set(seen["fit"]) == {1}
    assert seen["predict"] and set(seen["predict"]) == {1}
    assert _blas_threads() == before  # the limit ends with the command


# ---------------------------------------------------------------------------
# wide files


def _wide_csv(path, n_columns, n_rows=5):
    rng = np.random.default_rng(n_columns)
    names = [f"f{j}" for j in range(n_columns)]
    with open(path, "w") as f:
        f.write(",".join(names) + ",y\n")
        for i in range(n_rows):
            f.write(",".join(f"{v:.6g}" for v in rng.normal(size=n_columns)) + f",{i % 2}\n")
    return names


def _read_and_match(path, names):
    import time

    start = time.perf_counter()
    table = _tables.read_table(path)
    wanted = names[::-1]  # a model's order differs from the file's
    assert all(n in table for n in wanted)
    X = _tables.numeric_matrix(table, wanted)
    return time.perf_counter() - start, X


def test_wide_files_take_linear_time(tmp_path):
    small = _wide_csv(tmp_path / "small.csv", 2_000)
    large = _wide_csv(tmp_path / "large.csv", 20_000)
    t_small = min(_read_and_match(tmp_path / "small.csv", small)[0] for _ in range(3))
    t_large, X = min((_read_and_match(tmp_path / "large.csv", large) for _ in range(2)),
                     key=lambda r: r[0])
    assert X.shape == (5, 20_000)
    rng = np.random.default_rng(20_000)
    expected = np.array([[float(f"{v:.6g}") for v in rng.normal(size=20_000)] for _ in range(5)])
    np.testing.assert_array_equal(X, expected[:, ::-1])
    # linear: about 10x; the quadratic column look-ups took about 100x
    assert t_large < 25 * t_small + 0.5, (t_small, t_large)
    assert t_large < 10


def test_wide_file_end_to_end(tmp_path, capsys):
    names = _wide_csv(tmp_path / "wide.csv", 20_000, n_rows=6)
    model = tmp_path / "wide.bpm"
    assert cli.main(["train", str(tmp_path / "wide.csv"), "--hidden", "2", "--epochs", "2",
                     "--test-size", "0", "-q", "--out", str(model)]) == 0
    assert cli.main(["predict", str(model), str(tmp_path / "wide.csv")]) == 0
    assert cli.main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert (f"input columns (20000, picked by name): {', '.join(names[:10])}, ..., "
            f"{names[-1]}") in out


# ---------------------------------------------------------------------------
# class labels are kept exactly


def _labelled_csv(path, labels, per_class=12):
    """One feature that separates the classes; the label column as written."""
    rows = []
    for k, label in enumerate(labels):
        for i in range(per_class):
            rows.append([repr(k * 3.0 + 0.1 * i), label])
    _write_csv(path, ["x", "label"], rows)


@pytest.mark.parametrize(
    "labels, dtype",
    [
        (["9007199254740992", "9007199254740993"], np.int64),  # 2**53 and 2**53 + 1
        (["-9223372036854775808", "-1", "9223372036854775807"], np.int64),  # int64's ends
        (["18446744073709551616", "18446744073709551617"], str),  # beyond int64: text
        (["1.0", "1.00", "1e0"], str),  # one float, three labels
        (["2.0", "10.0", "-3.0"], str),  # integral floats: written back as written
        (["007", "7"], str),
    ],
)
def test_labels_are_exact(tmp_path, labels, dtype, capsys):
    _labelled_csv(tmp_path / "l.csv", labels)
    model = tmp_path / "l.bpm"
    assert cli.main(["train", str(tmp_path / "l.csv"), "--solver", "lbfgs", "--epochs", "300",
                     "--hidden", "8", "--test-size", "0", "--random-state", "0", "-q",
                     "--out", str(model)]) == 0
    est = blasprop.load(model)
    assert len(est.classes_) == len(labels)
    if dtype is np.int64:
        assert est.classes_.dtype == np.int64
        assert sorted(est.classes_.tolist()) == sorted(int(v) for v in labels)
    else:
        assert sorted(map(str, est.classes_)) == sorted(labels)
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(tmp_path / "l.csv")]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["label"]
    got = [row[0] for row in rows[1:]]
    assert set(got) <= set(labels)
    expected = [label for label in labels for _ in range(12)]
    assert np.mean([g == e for g, e in zip(got, expected)]) > 0.9


def test_integer_targets_parse_as_integers(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,9007199254740993\n2,-9223372036854775808\n3,0\n")
    table = _tables.read_table(tmp_path / "t.csv")
    for y in (_tables.target_vector(table, "y"), _tables.class_labels(table, "y")):
        assert y.dtype == np.int64
        assert y.tolist() == [2**53 + 1, -(2**63), 0]


# ---------------------------------------------------------------------------
# standardisation of extreme columns


def test_standardize_extreme_columns():
    rng = np.random.default_rng(0)
    s = rng.normal(size=500)
    a = np.column_stack([
        s * 1e300 + 5e300,   # mean and variance overflow
        s * 1e-300,          # variance underflows
        np.full(500, 7.0),   # constant
        np.full(500, 1e308),  # constant and huge
        s * 3 + 1,           # ordinary
        np.zeros(500),
    ])
    z, mean, scale = _scaling.standardize(a)
    assert np.isfinite(z).all() and np.isfinite(mean).all() and np.isfinite(scale).all()
    assert (scale > 0).all()
    for j in (0, 1, 4):  # informative columns: standardised, not zeroed
        np.testing.assert_allclose(z[:, j].std(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(z[:, j], (s - s.mean()) / s.std(), rtol=1e-9, atol=1e-9)
    for j in (2, 3, 5):
        assert (z[:, j] == 0).all()
    # the ordinary column: what the plain formula gives
    np.testing.assert_allclose(z[:, 4], (a[:, 4] - a[:, 4].mean()) / a[:, 4].std(),
                               rtol=1e-12, atol=1e-14)
    assert mean[0] == pytest.approx(
        a[:, 0].mean() if np.isfinite(a[:, 0].mean()) else 5e300, rel=0.2)


def _train_scaled(tmp_path, scale, columns=(0, 1, 2)):
    X, species = _classification_table(300, 11)
    X = X * [scale, 1.0, 1.0] + [0.0, 3.0, 3.0]
    X[:, 2] = 42.0  # a constant column besides
    X = X[:, list(columns)]
    names = ["a", "b", "c"][: len(columns)]
    path = tmp_path / f"x{scale}{len(columns)}.csv"
    _write_csv(path, names + ["species"], [[*map(_num, x), s] for x, s in zip(X, species)])
    model = tmp_path / "x.bpm"
    assert cli.main(["train", str(path), "--random-state", "0", "-q", "--hidden", "16",
                     "--out", str(model)]) == 0
    return X, species, blasprop.load(model)


@pytest.mark.parametrize("scale", [1e300, 1e-300, 1e-10, 1e30])
def test_train_on_extreme_feature_scales(tmp_path, scale, capsys):
    X1, species, plain = _train_scaled(tmp_path, 1.0)
    X, _, est = _train_scaled(tmp_path, scale)
    _, _, without_a = _train_scaled(tmp_path, 1.0, columns=(1, 2))
    capsys.readouterr()
    assert np.isfinite(est.coefs_[0]).all() and (est.coefs_[0][0] != 0).any()
    accuracy = np.mean(est.predict(X) == species)
    assert accuracy == pytest.approx(np.mean(plain.predict(X1) == species), abs=0.02)
    assert accuracy > np.mean(without_a.predict(X1[:, 1:]) == species) + 0.1  # column a is used


def test_regression_target_of_huge_values(tmp_path, capsys):
    X, price = _regression_table(300, 12)
    _write_csv(tmp_path / "r.csv", ["x1", "x2", "x3", "y"],
               [[*map(_num, x), _num(p * 1e300)] for x, p in zip(X, price)])
    model = tmp_path / "r.bpm"
    assert cli.main(["train", str(tmp_path / "r.csv"), "--random-state", "0", "-q",
                     "--hidden", "32", "--out", str(model)]) == 0
    assert _score(capsys.readouterr().out, "R^2") > 0.9
    pred = blasprop.load(model).predict(X)
    assert np.isfinite(pred).all()
    pred = pred / 1e300
    assert 1 - np.sum((pred - price) ** 2) / np.sum((price - price.mean()) ** 2) > 0.9


@pytest.mark.parametrize("x_scale, fragment", [(1e39, "round to zero"), (1e-39, "overflows")])
def test_fold_scaling_refuses_what_float32_cannot_hold(x_scale, fragment):
    X, labels = _classification_table(60, 13)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(
        X.astype(np.float32), labels)
    before = [w.copy() for w in clf.coefs_]
    with pytest.raises(ValueError, match=fragment):
        _scaling.fold_scaling(clf, np.zeros(3), np.array([1.0, x_scale, 1.0]))
    for w, b in zip(clf.coefs_, before):
        np.testing.assert_array_equal(w, b)  # unchanged


def test_non_finite_feature_is_refused(tmp_path, capsys):
    (tmp_path / "inf.csv").write_text("a,b,y\n1,2,0\n3,inf,1\n4,5,0\n")
    (tmp_path / "big.csv").write_text("a,b,y\n1,2,0\n3,1e999,1\n4,5,0\n")
    for name in ("inf.csv", "big.csv"):
        assert cli.main(["train", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "column 'b' has a missing or non-finite value at line 3" in err


# ---------------------------------------------------------------------------
# malformed metadata


def _rewrite_header(path, change):
    """Apply ``change`` to a model file's JSON header, keeping the layout valid
    (docs/model-files.md)."""
    import json
    import struct
    import zlib

    blob = path.read_bytes()
    magic, version, _, json_len, data_len = struct.unpack("<8sIIQQ", blob[:32])
    header = json.loads(blob[32:32 + json_len])
    data = blob[len(blob) - data_len:]
    change(header)
    raw = json.dumps(header).encode()
    pad = -(32 + len(raw)) % 64
    with open(path, "wb") as f:
        f.write(struct.pack("<8sIIQQ", magic, version, zlib.crc32(raw), len(raw), data_len))
        f.write(raw + b"\0" * pad + data)


def _set_cli(key, value):
    def change(header):
        header["metadata"]["cli"][key] = value
    return change


MALFORMED = {
    "version_number": lambda h: h.__setitem__("blasprop_version", 5),
    "version_list": lambda h: h.__setitem__("blasprop_version", ["0.1"]),
    "cli_not_object": lambda h: h["metadata"].__setitem__("cli", "trained"),
    "cli_list": lambda h: h["metadata"].__setitem__("cli", [1, 2]),
    "data_number": _set_cli("data", 7),
    "target_list": _set_cli("target", ["y"]),
    "features_text": _set_cli("features", "a,b,c"),
    "features_numbers": _set_cli("features", [1, 2, 3]),
    "features_too_few": _set_cli("features", ["a", "b"]),
    "features_repeated": _set_cli("features", ["a", "a", "b"]),
    "input_number": _set_cli("input", 3),
    "task_bool": _set_cli("task", True),
    "standardized_text": _set_cli("standardized", "yes"),
    "n_train_text": _set_cli("n_train", "many"),
    "n_train_negative": _set_cli("n_train", -3),
    "n_train_float": _set_cli("n_train", 1.5),
    "n_test_object": _set_cli("n_test", {}),
    "score_name_list": _set_cli("score_name", []),
    "test_score_text": _set_cli("test_score", "high"),
    "test_score_bool": _set_cli("test_score", True),
    "fit_seconds_text": _set_cli("fit_seconds", "1s"),
    "seconds_per_epoch_text": _set_cli("seconds_per_epoch", "fast"),
    "seconds_per_epoch_list": _set_cli("seconds_per_epoch", [0.1]),
    "interrupted_text": _set_cli("interrupted_after_epochs", "3"),
}


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_model")
    X, species = _classification_table(100, 14)
    _write_csv(d / "d.csv", ["a", "b", "c", "species"],
               [[*map(_num, x), s] for x, s in zip(X, species)])
    assert cli.main(["train", str(d / "d.csv"), "--epochs", "5", "-q",
                     "--out", str(d / "good.bpm")]) == 0
    return d


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("command", ["info", "predict"])
def test_malformed_metadata(cli_model, tmp_path, case, command, capsys):
    import shutil

    model = tmp_path / "m.bpm"
    shutil.copy(cli_model / "good.bpm", model)
    _rewrite_header(model, MALFORMED[case])
    capsys.readouterr()
    args = [command, str(model)] + ([str(cli_model / "d.csv")] if command == "predict" else [])
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"blasprop: error: {model}")


def test_rewritten_header_still_loads(cli_model, tmp_path, capsys):
    """The helper above keeps files valid: an unchanged rewrite still works."""
    import shutil

    model = tmp_path / "m.bpm"
    shutil.copy(cli_model / "good.bpm", model)
    _rewrite_header(model, lambda h: None)
    assert cli.main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "input columns (3, picked by name): a, b, c" in out
    assert "input values: raw values (the standardisation is folded into the weights)" in out


@pytest.mark.slow  # the runs fixture: some 25 subprocesses and the digits training
def test_info_says_what_the_digits_model_expects(runs):
    r = _ok(runs[1]["digits_info"])
    assert "input columns (64, picked by name): pixel_0, pixel_1" in r.stdout
    assert "pixel_63" in r.stdout
    assert "input values: pixel intensities 0-16 divided by 16" in r.stdout


# ---------------------------------------------------------------------------
# the progress line


@pytest.mark.parametrize("columns", [40, 80, 200])
@pytest.mark.parametrize("val", [True, False])
@pytest.mark.parametrize("max_iter", [7, 200, 100_000])
def test_progress_line_fits_the_terminal(monkeypatch, columns, val, max_iter):
    from blasprop._progress import EpochReporter

    monkeypatch.setenv("COLUMNS", str(columns))
    stream = _Stream(tty=True)
    reporter = EpochReporter(max_iter, stream)
    epochs = sorted({*range(1, 8), max_iter // 2, max_iter})
    for n in epochs:
        reporter.epoch(n, 1234.5 / n, 0.98765 if val else None, elapsed=3.7 * n)
    reporter.close()
    out = stream.getvalue()
    assert out.endswith("\n") and out.count("\n") == 1
    frames = out[:-1].split("\r")[1:]
    assert len(frames) == len(epochs) + 1  # every epoch redrawn, then the final state
    for frame in frames:
        assert len(frame) <= columns - 1, frame  # never wraps
    assert f"epoch {max_iter}/{max_iter}" in frames[-1] and "done" in frames[-1]
    if columns >= 80:
        assert "[" in frames[-2] and "loss" in frames[-2] and "ETA" in frames[-2]
        assert ("val 0.9877" in frames[-2]) == val


def test_cli_progress_bar_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = _Stream(tty=True)
    _epochs(cli.ProgressBar(stream), 30, max_iter=100_000)
    frames = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert len(frames) == 31
    assert all(len(f) <= 39 for f in frames)


def _fit_verbose_on_a_terminal(monkeypatch, est, X, y):
    """Fit with verbose on a fake terminal; warnings are shown on the same stream."""
    import warnings

    stream = _Stream(tty=True)
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setenv("COLUMNS", "80")

    def show(message, category, filename, lineno, file=None, line=None):
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        est.fit(X, y)
        assert warnings.showwarning is show  # the reporter put it back
    return stream.getvalue()


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_warning_at_the_end_of_fit_starts_on_its_own_line(monkeypatch, cls, early_stopping):
    X, y = _classification_table(120, 15)
    if cls is MLPRegressor:
        y = X[:, 0] * 2.0
    est = cls(hidden_layer_sizes=(4,), max_iter=5, verbose=True, random_state=0,
              early_stopping=early_stopping)
    out = _fit_verbose_on_a_terminal(monkeypatch, est, X, y)
    at = out.index("ConvergenceWarning")
    start = max(out.rfind("\n", 0, at), out.rfind("\r", 0, at)) + 1
    assert out[start - 1] == "\n"  # the bar's line was ended first
    assert "epoch" not in out[start:at]
    assert "epoch 5/5" in out[:start]


def test_warning_during_fit_starts_on_its_own_line(monkeypatch):
    """A warning from a callback, mid-run, also gets a line of its own; the bar goes on below."""
    import warnings

    def warn(est, info):
        if info["epoch"] == 3:
            warnings.warn("something to say", UserWarning)

    X, y = _classification_table(120, 16)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=6, verbose=True, random_state=0,
                        callbacks=[warn])
    out = _fit_verbose_on_a_terminal(monkeypatch, est, X, y)
    at = out.index("UserWarning: something to say")
    start = max(out.rfind("\n", 0, at), out.rfind("\r", 0, at)) + 1
    assert out[start - 1] == "\n"
    assert "epoch 3/6" in out[:start] and "epoch 6/6" in out[at:]


# ---------------------------------------------------------------------------
# Ctrl-C


@pytest.fixture(scope="module")
def slow_training_data(tmp_path_factory):
    """Random labels and a wide network: each epoch takes a good fraction of a second."""
    d = tmp_path_factory.mktemp("sigint")
    rng = np.random.default_rng(17)
    X = rng.normal(size=(4000, 10))
    _write_csv(d / "big.csv", [f"x{j}" for j in range(10)] + ["y"],
               [[*(f"{v:.5f}" for v in x), int(k)] for x, k in zip(X, rng.integers(0, 3, 4000))])
    return d


@pytest.mark.slow
@pytest.mark.parametrize("existing", [True, False])
def test_ctrl_c_exits_130_and_keeps_the_out_file(slow_training_data, tmp_path, existing):
    import signal
    import time

    out = tmp_path / "model.bpm"
    old = b"an earlier model, not to be touched"
    if existing:
        out.write_bytes(old)
    proc = subprocess.Popen(
        [sys.executable, "-m", "blasprop", "train", str(slow_training_data / "big.csv"),
         "--hidden", "256,256", "--epochs", "1000", "--no-early-stopping", "--threads", "1",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        first = proc.stderr.readline()  # the first progress line: training is under way
        assert first.startswith("epoch 1/1000"), first
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    kept = tmp_path / "model.interrupted.bpm"
    assert f"was saved to {kept}" in stderr
    assert "model saved to" not in stdout
    if existing:
        assert out.read_bytes() == old
    else:
        assert not out.exists()
    model = blasprop.load(kept)
    assert 1 <= model.n_iter_ < 1000
    assert model.coefs_[0].shape == (10, 256)
