"""Reading the command line's data: CSV and Parquet tables, their columns as numbers or labels.

What ``blasprop train`` and ``predict`` read goes through here: a file is
opened only if it is a regular file (a FIFO or a device would hang or never
end), CSV is parsed with the standard library (Parquet with pandas and
pyarrow), and columns become a float64 feature matrix, a numeric target or
class labels kept exactly as written. Every problem with the data raises
``CLIError`` with a message naming the file, the column and the line.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections import Counter
from pathlib import Path

import numpy as np

_PARQUET_SUFFIXES = {".parquet", ".pq"}


class CLIError(Exception):
    """An expected failure of the command line, reported as one line without a traceback.

    Defined here, where most of them are raised; ``cli`` imports it from here.
    """


class Table:
    """Named columns read from a CSV or Parquet file."""

    def __init__(self, path, names, columns, lines=None):
        self.path, self.names, self.columns = str(path), names, columns
        self.lines = lines  # file line number of each row (CSV only), for messages
        self.n_rows = len(columns[0]) if columns else 0
        self._index = {name: j for j, name in enumerate(names)}  # wide files: no list.index

    def __contains__(self, name):
        return name in self._index

    def column(self, name):
        j = self._index.get(name)
        if j is None:
            shown = ", ".join(repr(n) for n in self.names[:12])
            more = ", ..." if len(self.names) > 12 else ""
            raise CLIError(f"{self.path}: no column {name!r} (columns: {shown}{more})")
        return self.columns[j]

    def where(self, i):
        return f"line {self.lines[i]}" if self.lines else f"row {i + 1}"


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _open_data_file(path):
    """Open ``path`` for reading if it is a regular file.

    The check is on the opened descriptor (no window for the path to change
    in between), and the open does not block: a FIFO would otherwise wait
    for a writer forever, and /dev/zero would be read until memory runs out.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:  # Windows cannot open directories
        raise CLIError(f"{path}: is a directory, not a data file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
            raise CLIError(f"{path}: is {kind}, not a data file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_table(path):
    """Read a CSV file with a header row (or Parquet, with pandas + pyarrow)."""
    path = Path(path)
    with _open_data_file(path) as f:
        if path.suffix.lower() in _PARQUET_SUFFIXES:
            return _read_parquet(path, f)
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a UTF-8 text (CSV) file") from None
    del data
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
            rows.append([cell.strip() for cell in row])
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise CLIError(f"{path}: not a readable CSV file ({exc})") from None
    del text
    if not header or all(not h.strip() for h in header):
        raise CLIError(f"{path}: empty file; expected a CSV header row")
    names = [h.strip() or f"column_{i}" for i, h in enumerate(header)]
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        raise CLIError(f"{path}: duplicate column name(s) {', '.join(map(repr, dupes))}")
    if not rows:
        raise CLIError(f"{path}: has a header but no data rows")
    cells = np.empty((len(rows), len(names)), dtype=object)
    cells[...] = rows
    del rows
    return Table(path, names, list(cells.T), lines)


def _read_parquet(path, f):
    try:
        import pandas as pd
    except ImportError:
        raise CLIError(
            "reading Parquet needs pandas and pyarrow: pip install pandas pyarrow"
        ) from None
    try:
        df = pd.read_parquet(f)
    except ImportError as exc:
        raise CLIError(f"reading Parquet needs pyarrow: pip install pyarrow ({exc})") from None
    except Exception as exc:  # pyarrow raises its own error types for bad files
        raise CLIError(f"{path}: not a readable Parquet file ({exc})") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise CLIError(f"{path}: no data")
    names = [str(c) for c in df.columns]
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        raise CLIError(f"{path}: duplicate column name(s) {', '.join(map(repr, dupes))}")
    return Table(path, names, [df.iloc[:, j].to_numpy() for j in range(df.shape[1])])


def numeric_matrix(table, names):
    """The named columns as a float64 matrix; complain about anything else."""
    out = np.empty((table.n_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        col = table.column(name)
        try:
            out[:, j] = col.astype(np.float64)
        except (ValueError, TypeError, OverflowError):
            bad = next(i for i, v in enumerate(col) if not _is_float(v))
            if str(col[bad]).strip() == "":
                raise CLIError(
                    f"{table.path}: column {name!r} has a missing value at {table.where(bad)} "
                    "(empty cell)"
                ) from None
            raise CLIError(
                f"{table.path}: column {name!r} is not numeric "
                f"({table.where(bad)}: {str(col[bad])[:40]!r}); features must be numbers"
            ) from None
    finite = np.isfinite(out)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise CLIError(
            f"{table.path}: column {names[j]!r} has a missing or non-finite value "
            f"at {table.where(i)}"
        )
    return out


def _is_float(v):
    try:
        float(v)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


_INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")  # canonical, at most 19 digits (int64)


def _exact_ints(col):
    """``col`` as int64 when every value is the text of an int64, else None.

    Parsed as integers, never through float64, which cannot tell 2**53 from
    2**53 + 1.
    """
    if col.dtype.kind in "iu":
        return col
    if col.dtype.kind != "O" or not all(isinstance(v, str) and _INT_TEXT.fullmatch(v) for v in col):
        return None
    values = [int(v) for v in col]
    if min(values) < -(2**63) or max(values) >= 2**63:
        return None
    return np.array(values, dtype=np.int64)


def target_vector(table, name):
    """Numbers when every value parses as one (integers when all integral), else strings."""
    col = table.column(name)
    ints = _exact_ints(col)
    if ints is not None:
        return ints
    if col.dtype.kind in "bf":
        y = col
    elif all(_is_float(v) for v in col):
        y = col.astype(np.float64)
    else:
        empty = [i for i, v in enumerate(col) if v is None or str(v).strip() == ""]
        if empty:
            raise CLIError(
                f"{table.path}: target column {name!r} is empty at {table.where(empty[0])}"
            )
        return col.astype(str)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            bad = int(np.argmin(np.isfinite(y)))
            raise CLIError(
                f"{table.path}: target column {name!r} has a missing value at {table.where(bad)}"
            )
        if np.all(y == np.round(y)) and np.abs(y).max() < 2**53:
            y = y.astype(np.int64)
    return y


def class_labels(table, name):
    """The target column's values as class labels, exactly as written.

    Integers are int64 (parsed as integers); any other text, including
    numbers such as ``1.0`` or ``1e3``, stays text, so that labels are never
    merged by a conversion and predictions write back what the file said.
    """
    col = table.column(name)
    ints = _exact_ints(col)
    if ints is not None:
        return ints
    if col.dtype.kind in "bf":  # Parquet: values already typed
        return target_vector(table, name)
    target_vector(table, name)  # same errors for empty cells
    return col.astype(str)


def load_digits_table():
    """The 8x8 handwritten digits shipped with scikit-learn, features in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = [f"pixel_{i}" for i in range(digits.data.shape[1])]
    return digits.data / 16.0, digits.target, names, "digit"


# what a model trained on the digits expects of its input columns
DIGITS_INPUT = "pixel intensities 0-16 divided by 16 (values in [0, 1]), as load_digits().data / 16"
