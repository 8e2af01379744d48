"""Which routes of the BLAS gateway suit the BLAS that SciPy loaded.

The gateway (``_blas.pyx``) sends vector-shaped products to level-1 and
level-2 BLAS unless its policy says otherwise. OpenBLAS built for the
SkylakeX family of cores has gemm kernels for small matrices that beat
level 2 on those shapes, are slower for some transposes than for others,
and stop past a size; the policy records which of the gateway's routes use
them and the sizes where they stop. This module decides that policy once
per process, from the core threadpoolctl reports for SciPy's BLAS, so it
depends only on the BLAS build and results are reproducible on a machine.
"""

from typing import NamedTuple

__all__ = ["SMALL_GEMM_CORES", "SMALL_KERNEL_LIMITS", "Routes", "choose", "current", "routes_for",
           "small_matrix_gemm", "use"]

# OpenBLAS cores whose gemm has kernels for small matrices (OpenBLAS's
# KERNEL.SKYLAKEX, which its Cooperlake and SapphireRapids targets include).
# Measured on SkylakeX; the others are inferred from the shared kernels.
SMALL_GEMM_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})

# Where those kernels stop or slow down, in the terms of _blas.Policy.
SMALL_KERNEL_LIMITS = {
    # an operand of at most 64 x 64 is small (the size of the copy buffer)
    "small_max_entries": 64 * 64,
    # copying a small Bᵀ to multiply it untransposed pays from about 16 rows
    "copy_bt_min_rows": 16,
    # OpenBLAS uses its small kernels up to 100³ multiply-adds per call
    "small_kernel_max_madds": 100 ** 3,
    # and leaves them for Aᵀ B past 64³
    "tn_block_max_madds": 64 ** 3,
}


class Routes(NamedTuple):
    """Which products the gateway sends to gemm's small-matrix kernels."""

    rows_gemm_double: bool = False   # m == 1, float64: gemm, not gemv
    rows_gemm_float: bool = False    # m == 1, float32: gemm, not gemv
    outer_gemm_double: bool = False  # k == 1, float64: gemm, not ger
    outer_gemm_float: bool = False   # k == 1, float32: gemm, not ger
    small_kernels: bool = False      # the small-kernel forms of other products


def small_matrix_gemm(loaded):
    """Whether SciPy's BLAS, as ``_config.scipy_blas`` lists it, is an
    OpenBLAS whose core has small-matrix gemm kernels."""
    return any(p.get("internal_api") == "openblas"
               and (p.get("architecture") or "").lower() in SMALL_GEMM_CORES
               for p in loaded)


def routes_for(small):
    """The routes for a BLAS with (``small``) or without small-matrix gemm
    kernels. Float one-row products stay on sgemv, faster there even so."""
    return Routes(rows_gemm_double=small, rows_gemm_float=False,
                  outer_gemm_double=small, outer_gemm_float=small, small_kernels=small)


def use(routes):
    """Set the gateway's policy: ``routes`` with the small kernels' limits."""
    # imported here, not above: show_config reads this module and must work
    # even when the compiled gateway does not load
    from . import _blas

    _blas.set_policy(**Routes(*routes)._asdict(), **SMALL_KERNEL_LIMITS)


def current():
    """The routes the gateway uses now."""
    from . import _blas

    policy = _blas.get_policy()
    return Routes(**{name: bool(policy[name]) for name in Routes._fields})


_CHOSEN = None


def choose():
    """Once per process: set the gateway's policy from SciPy's BLAS."""
    global _CHOSEN
    if _CHOSEN is None:
        from ._config import scipy_blas

        routes = routes_for(small_matrix_gemm(scipy_blas()))
        use(routes)
        _CHOSEN = routes
    return _CHOSEN
