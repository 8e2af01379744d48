"""What ``verbose=True`` prints once per epoch.

On a terminal: one line redrawn in place (epoch, bar, loss, validation
score, time, ETA). Elsewhere (files, pipes, notebooks' captured output):
scikit-learn's own lines, unchanged, so logs and tests that read them keep
working.
"""

import sys
import time

_BAR = 24


def _fmt_seconds(s):
    if s < 60:
        return f"{s:4.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class EpochReporter:
    def __init__(self, max_iter, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.max_iter = max_iter
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.open_line = False

    def epoch(self, n_iter, loss, val_score=None):
        if not self.tty:
            print("Iteration %d, loss = %.8f" % (n_iter, loss), file=self.stream)
            if val_score is not None:
                print("Validation score: %f" % val_score, file=self.stream)
            return
        elapsed = time.perf_counter() - self.start
        frac = min(n_iter / self.max_iter, 1.0)
        done = int(round(frac * _BAR))
        eta = elapsed / n_iter * (self.max_iter - n_iter)
        line = (
            f"\repoch {n_iter:>{len(str(self.max_iter))}}/{self.max_iter} "
            f"[{'#' * done}{'-' * (_BAR - done)}] loss {loss:.6f}"
            + (f"  val {val_score:.4f}" if val_score is not None else "")
            + f"  {_fmt_seconds(elapsed)}  ETA {_fmt_seconds(eta)} (at most)"
        )
        self.stream.write(line)
        self.stream.flush()
        self.open_line = True

    def message(self, text):
        """A line of its own (stopping messages)."""
        self.close()
        print(text, file=self.stream)

    def close(self):
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False
