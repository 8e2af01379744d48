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
from blasprop import MLPClassifier, MLPRegressor
from blasprop import cli


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
    species = np.array(["ant", "bee", "cat"])[np.digitize(X[:, 0] + X[:, 1] - 0.3 * X[:, 2], [-0.7, 0.7])]
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
    "train_bad_activation": (["train", "cls.csv", "--activation", "swish", "--epochs", "2"], "activation"),
    "train_bad_test_size": (["train", "cls.csv", "--test-size", "1.5"], "--test-size"),
    "predict_corrupted_model": (["predict", "corrupted.bpm", "cls.csv"], "not a valid blasprop model"),
    "predict_csv_as_model": (["predict", "cls.csv", "cls.csv"], "magic"),
    "predict_pickle_as_model": (["predict", "model.pkl", "cls.csv"], "pickle"),
    "predict_missing_model": (["predict", "nothere.bpm", "cls.csv"], "No such file"),
    "predict_missing_column": (["predict", "named.bpm", "no_b.csv"], "missing column(s) the model was trained on: 'b'"),
    "predict_wrong_feature_count": (["predict", "nonames.bpm", "five_cols.csv"], "expects 3 features"),
    "predict_non_numeric_feature": (["predict", "named.bpm", "words_b.csv"], "column 'b' is not numeric"),
    "predict_missing_value": (["predict", "named.bpm", "holes.csv"], "missing value"),
    "predict_proba_regressor": (["predict", "reg_named.bpm", "cls.csv", "--proba"], "--proba needs a classifier"),
    "info_truncated_model": (["info", "truncated.bpm"], "truncated"),
    "info_not_a_model": (["info", "garbage.csv"], "magic"),
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
               [[t] + [_num(v / 16.0) for v in x[order]] for x, t in zip(digits.data[:300], digits.target)])

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
    first["cls"] = ["train", "cls.csv", "--hidden", "16", "--random-state", "0", "--dtype", "float32",
                    "--out", "cls.bpm"]
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
    cli.fold_scaling(est, xm, xs, ym, ys)
    np.testing.assert_allclose(est.predict(X), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())

    Xc, labels = _classification_table(100, 6)
    Xc = Xc * [1, 100, 0.01] + [5, -300, 0]
    m, s = Xc.mean(0), Xc.std(0)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0).fit((Xc - m) / s, labels)
    expected = clf.predict_proba((Xc - m) / s)
    cli.fold_scaling(clf, m, s)
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
        table = cli.read_table(tmp_path / name)
        assert table.names == ["a", "b", "label"]
        np.testing.assert_array_equal(cli.numeric_matrix(table, ["a", "b"]), [[1, 2], [3, 4]])
        assert list(cli.target_vector(table, "label")) == ["x", "y"]


def test_target_values_become_numbers_when_they_can(tmp_path):
    (tmp_path / "t.csv").write_text("a,int,float,str\n1,3,0.5,x\n2,4.0,1.5,7\n")
    table = cli.read_table(tmp_path / "t.csv")
    assert cli.target_vector(table, "int").dtype == np.int64
    assert cli.target_vector(table, "float").dtype == np.float64
    assert list(cli.target_vector(table, "str")) == ["x", "7"]


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
