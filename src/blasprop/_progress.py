"""The per-epoch progress display of ``verbose=True`` and of ``blasprop train``.

On a terminal: one line redrawn in place (epoch, bar, loss, validation
score, time, ETA), always narrower than the terminal, since a line that
wraps can no longer be redrawn and leaves one line per epoch behind.
Elsewhere (files, pipes, notebooks' captured output): scikit-learn's own
lines, unchanged, so logs and tests that read them keep working; or, for the
command line (``every=N``), a compact line every N epochs.

A warning shown while the line is open (ConvergenceWarning at the end of
fit, for one) would be printed after the bar on the same row; while a
reporter has a line open, ``warnings.showwarning`` ends that line first.
"""

import os
import shutil
import sys
import threading
import time
import warnings

_BAR = 24
_MIN_BAR = 5


def _fmt_seconds(s):
    if s < 60:
        return f"{s:.0f}s" if s >= 9.5 else f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _terminal_columns(stream):
    """Columns of the terminal ``stream`` writes to; $COLUMNS wins, as in shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
        if columns > 0:
            return columns
    except (KeyError, ValueError):
        pass
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = shutil.get_terminal_size().columns
    return columns if columns > 0 else 80


# Reporters with an unfinished line, and the warnings.showwarning that was in
# place before ours.  Shared by all threads; guarded by _LOCK.
_LOCK = threading.Lock()
_OPEN = set()
_saved_showwarning = None
_in_hook = threading.local()


def _showwarning(message, category, filename, lineno, file=None, line=None):
    if not getattr(_in_hook, "active", False):
        _in_hook.active = True
        try:
            with _LOCK:
                reporters = list(_OPEN)
            for reporter in reporters:
                reporter.end_line()
        finally:
            _in_hook.active = False
    show = _saved_showwarning
    if show is None or show is _showwarning:
        show = warnings._showwarning_orig
    show(message, category, filename, lineno, file, line)


def _line_opened(reporter):
    global _saved_showwarning
    with _LOCK:
        _OPEN.add(reporter)
        if warnings.showwarning is not _showwarning:
            _saved_showwarning = warnings.showwarning
            warnings.showwarning = _showwarning


def _line_closed(reporter):
    with _LOCK:
        _OPEN.discard(reporter)
        if not _OPEN and warnings.showwarning is _showwarning:
            # only when nobody replaced it since; _saved_showwarning stays
            # for anyone who kept a reference to the hook
            warnings.showwarning = _saved_showwarning


class EpochReporter:
    """Shows training progress, one call of :meth:`epoch` per epoch.

    Parameters
    ----------
    max_iter : int
        Epochs at most (the bar's 100%).
    stream : file, default sys.stdout
    every : int or None
        When ``stream`` is not a terminal: None prints scikit-learn's lines
        (``Iteration n, loss = ...``) every epoch; an integer prints a compact
        line at epoch 1, every ``every`` epochs and at :meth:`close`.
    min_interval : float
        On a terminal, redraw at most this often (seconds); :meth:`close`
        and :meth:`end_line` draw the latest state.
    columns : int or None
        Terminal width; None asks the terminal at every redraw (it may be
        resized).
    """

    def __init__(self, max_iter, stream=None, *, every=None, min_interval=0.0, columns=None):
        self.stream = stream if stream is not None else sys.stdout
        self.max_iter = max(int(max_iter), 1)
        self.every, self.min_interval, self.columns = every, min_interval, columns
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.open_line = False
        self.last = None  # (n_iter, loss, val_score, elapsed) of the latest epoch
        self._drawn = None  # the state on screen (or in the log)
        self._drawn_at = None
        self._width = 0  # columns used by the open line
        self._lock = threading.RLock()

    # -- text --------------------------------------------------------------

    def _fields(self, state, final):
        n_iter, loss, val_score, elapsed = state
        fields = [f"loss {loss:.6f}"]
        if val_score is not None:
            fields.append(f"val {val_score:.4f}")
        fields.append(f"{_fmt_seconds(elapsed)} elapsed")
        if final:
            fields.append("done")
        else:
            eta = elapsed / max(n_iter, 1) * max(self.max_iter - n_iter, 0)
            fields.append(f"ETA {_fmt_seconds(eta)}")
        return f"epoch {n_iter}/{self.max_iter}", fields

    def text(self, state, final=False):
        """The compact one-line form (no bar), as written to logs."""
        head, fields = self._fields(state, final)
        return "  ".join([head] + fields)

    def _fit_line(self, state, final, room):
        """The terminal line for ``state`` in at most ``room`` columns."""
        head, fields = self._fields(state, final)
        short = [f"loss {state[1]:.4g}"] + [f.replace(" elapsed", "") for f in fields[1:]]
        for variant in (fields, short):
            rest = "  ".join(variant)
            bar_room = room - len(head) - len(rest) - 4  # "[", "] " and the spaces around
            if bar_room >= _MIN_BAR:
                width = min(bar_room, _BAR)
                done = width if final else int(width * min(state[0] / self.max_iter, 1.0))
                return f"{head} [{'#' * done}{'-' * (width - done)}] {rest}"
        # no room for a bar: drop what matters least, then cut
        no_val = [f for f in short if not f.startswith("val ")]
        for variant in (short, no_val, no_val[:1] + no_val[2:]):
            line = "  ".join([head] + variant)
            if len(line) <= room:
                return line
        return line[:room]

    # -- drawing -------------------------------------------------------------

    def _draw(self, state, final=False):
        room = max((self.columns or _terminal_columns(self.stream)) - 1, 1)
        line = self._fit_line(state, final, room)
        pad = max(min(self._width, room) - len(line), 0)  # erase what the last draw left
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)
        self._drawn, self._drawn_at = state, state[3]
        if not self.open_line:
            self.open_line = True
            _line_opened(self)

    def epoch(self, n_iter, loss, val_score=None, elapsed=None):
        if elapsed is None:
            elapsed = time.perf_counter() - self.start
        state = (n_iter, loss, val_score, elapsed)
        with self._lock:
            self.last = state
            if self.tty:
                if self._drawn_at is None or elapsed - self._drawn_at >= self.min_interval:
                    self._draw(state)
            elif self.every is None:
                print("Iteration %d, loss = %.8f" % (n_iter, loss), file=self.stream)
                if val_score is not None:
                    print("Validation score: %f" % val_score, file=self.stream)
            elif n_iter == 1 or n_iter % self.every == 0:
                self.stream.write(self.text(state) + "\n")
                self.stream.flush()
                self._drawn = state

    def message(self, text):
        """A line of its own (stopping messages)."""
        with self._lock:
            self.end_line()
            print(text, file=self.stream)

    def end_line(self):
        """Finish the open terminal line (showing the latest epoch), if any."""
        with self._lock:
            if not self.open_line:
                return
            if self.last is not None and self._drawn is not self.last:
                self._draw(self.last)
            self.stream.write("\n")
            self.stream.flush()
            self.open_line, self._width = False, 0
            _line_closed(self)

    def close(self):
        """The final state ("done") and the end of the line."""
        with self._lock:
            if self.last is None:
                return
            if self.tty:
                if self.open_line or self._drawn is not self.last:
                    self._draw(self.last, final=True)
                    self.end_line()
            elif self.every is not None and self._drawn is not self.last:
                self.stream.write(self.text(self.last, final=True) + "\n")
                self.stream.flush()
                self._drawn = self.last
