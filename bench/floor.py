"""The seed workload's BLAS floor, measured: builds and runs blas_floor.c.

``blas_floor(batch)`` returns the seconds one float64 epoch's matrix products
alone take through SciPy's OpenBLAS, made with the call kinds blasprop's
gateway chooses for that BLAS (see blas_floor.c), or None with the reason
when it cannot be measured here (no C compiler, no OpenBLAS, blasprop not
importable). The program is compiled once per process into a temporary
directory; nothing is written to the source tree.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile

from _common import BENCH_DIR

SOURCE = os.path.join(BENCH_DIR, "blas_floor.c")


@functools.lru_cache(maxsize=1)
def _program():
    """(path of the compiled program, None) or (None, reason)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler (set CC)"
    exe = os.path.join(tempfile.mkdtemp(prefix="blasprop-floor-"), "blas_floor")
    res = subprocess.run([cc, "-O2", SOURCE, "-o", exe, "-ldl"], capture_output=True, text=True)
    if res.returncode:
        return None, f"compiling blas_floor.c failed: {res.stderr.strip()[:200]}"
    return exe, None


@functools.lru_cache(maxsize=1)
def _library():
    """(SciPy's OpenBLAS file, the gateway's policy name) or (None, reason)."""
    try:
        from blasprop._config import scipy_blas, small_matrix_gemm
    except ImportError as exc:
        return None, f"blasprop not importable ({exc})"
    loaded = [p for p in scipy_blas() if p.get("internal_api") == "openblas"]
    if not loaded or not loaded[0].get("filepath"):
        return None, "SciPy's BLAS is not an OpenBLAS threadpoolctl can see"
    return (loaded[0]["filepath"], "small" if small_matrix_gemm(loaded) else "level2"), None


def policy():
    """The gateway's policy the floor is measured with ('small', 'level2' or None)."""
    lib, _ = _library()
    return lib[1] if lib else None


def blas_floor(batch: int):
    """(seconds per epoch or None, note)."""
    exe, why = _program()
    lib, why_lib = _library()
    if exe is None or lib is None:
        return None, why or why_lib
    path, pol = lib
    res = subprocess.run([exe, path, str(batch), pol], capture_output=True, text=True)
    if res.returncode:
        return None, f"blas_floor failed: {res.stderr.strip()[:200]}"
    if res.stderr.strip():
        print(f"[floor] {res.stderr.strip()}", file=sys.stderr)
    return float(res.stdout.split()[0]), f"{pol} call kinds, best of 7 epochs"


def faster(a, b):
    """The faster of two ``blas_floor`` results (either may be unmeasured)."""
    (ta, na), (tb, nb) = a, b
    if ta is None or tb is None:
        return (ta, na) if tb is None else (tb, nb)
    return min(ta, tb), na + ", timed twice"
