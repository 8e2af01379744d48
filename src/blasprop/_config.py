"""``blasprop.show_config()``: versions, BLAS and build options in one place.

What a bug report needs: blasprop's version and how it was built, the
versions of Python, NumPy, SciPy and scikit-learn, and the BLAS that does
blasprop's matrix products. blasprop links no BLAS of its own: ``_blas``
calls the routines SciPy exports through ``scipy.linalg.cython_blas``, so the
BLAS is SciPy's (usually the OpenBLAS bundled in SciPy's wheel, which is not
necessarily the one NumPy loads). Its build-time description comes from
``scipy.show_config``; the library actually loaded and its thread count come
from threadpoolctl (installed with scikit-learn and blasprop); should it be
missing, that part reads "unknown" instead of failing.
"""

import os
import platform
import sys
import warnings

from ._blas_policy import small_matrix_gemm

__all__ = ["show_config"]

_MODES = ("stdout", "dicts")


def _scipy_build_blas():
    """SciPy's own record of the BLAS it was built against ({} if unknown)."""
    try:
        import scipy

        deps = scipy.show_config(mode="dicts")["Build Dependencies"]
        blas = dict(deps.get("blas", {}))
    except Exception:  # older or unusual SciPy builds: nothing to report
        return {}
    keep = ("name", "version", "detection method", "has ilp64", "openblas configuration")
    return {k: blas[k] for k in keep if k in blas}


def _under_scipy(path, site_dir):
    """Whether a library file lies in SciPy's install (``scipy/``,
    ``scipy.libs/``, ``scipy/.dylibs/``)."""
    try:
        rel = os.path.relpath(
            os.path.normcase(os.path.realpath(path)),
            os.path.normcase(os.path.realpath(site_dir)),
        )
    except ValueError:  # another drive on Windows
        return False
    first = rel.split(os.sep)[0]
    return first == "scipy" or first.startswith("scipy.")


def _scipy_blas_pools(pools, site_dir, build_name):
    """The entries of ``threadpool_info()`` that are SciPy's BLAS.

    First the BLAS libraries inside SciPy's install (the wheels bundle one);
    failing that (SciPy linked to a shared BLAS, e.g. conda or a distro), the
    ones whose kind matches SciPy's build record, or the only BLAS loaded.
    """
    blas = [p for p in pools if p.get("user_api") == "blas"]
    inside = [p for p in blas if p.get("filepath") and _under_scipy(p["filepath"], site_dir)]
    if inside:
        return inside
    name = (build_name or "").lower()
    named = [p for p in blas if p.get("internal_api") and p["internal_api"].lower() in name]
    if named:
        return named
    return blas if len(blas) == 1 else []


def _runtime_blas(build_name):
    """SciPy's loaded BLAS as threadpoolctl sees it, or None without threadpoolctl."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    with warnings.catch_warnings():
        # threadpoolctl warns about some OpenMP combinations; a report must not raise
        warnings.simplefilter("ignore")
        pools = threadpool_info()
    site_dir = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    keep = ("internal_api", "version", "num_threads", "threading_layer", "architecture",
            "filepath")
    return [
        {k: p.get(k) for k in keep}
        for p in _scipy_blas_pools(pools, site_dir, build_name)
    ]


def scipy_blas():
    """SciPy's loaded BLAS libraries (threadpoolctl's entries), [] if unknown."""
    return _runtime_blas(_scipy_build_blas().get("name")) or []


def blas_environment():
    """The environment variables that steer OpenBLAS, as this process has them
    (``OPENBLAS_*``, ``GOTO_*``, ``OMP_NUM_THREADS``). OpenBLAS reads them once,
    when it is loaded; ``OPENBLAS_CORETYPE`` replaces its CPU detection, so it
    decides which kernels run (and whether blasprop's small-matrix routing
    applies: see ``small_matrix_gemm``)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS_", "GOTO_")) or k == "OMP_NUM_THREADS"}


def _version_of(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", None)


def _collect():
    import numpy
    import scipy
    import sklearn

    from . import _version

    build = _scipy_build_blas()
    runtime = _runtime_blas(build.get("name"))
    threads = None
    if runtime:
        counts = {p["num_threads"] for p in runtime}
        threads = counts.pop() if len(counts) == 1 else None
    return {
        "blasprop": {
            "version": _version.__version__,
            "path": os.path.dirname(os.path.abspath(__file__)),
            "build_options": dict(_version.build_options),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "dependencies": {
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "threadpoolctl": _version_of("threadpoolctl"),
        },
        "blas": {
            "via": "scipy.linalg.cython_blas",
            "build": build,
            "loaded": runtime,
            "num_threads": threads,
            "small_matrix_gemm": small_matrix_gemm(runtime or []),
            "environment": blas_environment(),
        },
    }


def _format(info):
    b, py, deps, blas = info["blasprop"], info["python"], info["dependencies"], info["blas"]
    opts = ", ".join(f"{k}={v}" for k, v in b["build_options"].items())
    lines = [
        f"blasprop {b['version']}",
        f"  path: {b['path']}",
        f"  build options: {opts}",
        f"python {py['version']} ({py['implementation']}, {py['machine']})",
        f"  executable: {py['executable']}",
        f"  platform: {py['platform']}",
        "dependencies:",
    ]
    width = max(len(k) for k in deps)
    for name, version in deps.items():
        lines.append(f"  {name:<{width}}  {version or 'not installed'}")
    lines.append(f"BLAS (SciPy's, through {blas['via']}):")
    build = blas["build"]
    if build:
        built = " ".join(str(build[k]) for k in ("name", "version") if build.get(k))
        lines.append(f"  built against: {built or 'unknown'}")
        if build.get("openblas configuration"):
            lines.append(f"  configuration: {build['openblas configuration']}")
    else:
        lines.append("  built against: unknown (scipy.show_config has no record)")
    env = blas["environment"]
    if env:
        forced = (" (OpenBLAS's core set by OPENBLAS_CORETYPE, not detected)"
                  if env.get("OPENBLAS_CORETYPE") else "")
        lines.append("  environment: " + ", ".join(f"{k}={v}" for k, v in env.items()) + forced)
    lines.append("  small products to small-matrix gemm kernels: "
                 + ("yes" if blas["small_matrix_gemm"] else "no (gemv, ger)"))
    loaded = blas["loaded"]
    if loaded is None:
        lines.append("  loaded: unknown (pip install threadpoolctl to see the library and "
                     "its threads)")
    elif not loaded:
        lines.append("  loaded: not visible to threadpoolctl (e.g. Apple Accelerate)")
    else:
        for p in loaded:
            details = ", ".join(
                str(p[k]) for k in ("architecture", "threading_layer") if p.get(k)
            )
            lines.append(
                f"  loaded: {p['internal_api']} {p['version'] or ''}"
                f"{' (' + details + ')' if details else ''}, {p['num_threads']} threads"
            )
            lines.append(f"    {p['filepath']}")
    return "\n".join(lines)


def show_config(mode="stdout"):
    """Show blasprop's version, build options, dependencies and BLAS.

    Parameters
    ----------
    mode : {'stdout', 'dicts'}, default='stdout'
        'stdout' prints a readable report (paste it into bug reports);
        'dicts' returns the same information as a dict instead (the
        convention of ``numpy.show_config`` and ``scipy.show_config``).

    Returns
    -------
    None or dict
        With ``mode='dicts'``, a dict with the keys

        - ``"blasprop"``: ``version``, ``path`` (the imported package) and
          ``build_options`` (``cython_checks``, ``native``: the meson options
          of this build);
        - ``"python"``: ``version``, ``implementation``, ``executable``,
          ``platform``, ``machine``;
        - ``"dependencies"``: the versions of ``numpy``, ``scipy``,
          ``scikit-learn`` and ``threadpoolctl`` (None when not installed);
        - ``"blas"``: ``via`` (``"scipy.linalg.cython_blas"``), ``build``
          (SciPy's record of the BLAS it was built against: ``name``,
          ``version``, ...), ``loaded`` (SciPy's BLAS libraries as
          threadpoolctl reports them: ``internal_api``, ``version``,
          ``num_threads``, ``threading_layer``, ``architecture``,
          ``filepath``; None without threadpoolctl), ``num_threads``
          (the BLAS thread count, None when unknown), ``small_matrix_gemm``
          (whether blasprop sends small products to gemm's small-matrix
          kernels) and ``environment`` (the ``OPENBLAS_*``, ``GOTO_*`` and
          ``OMP_NUM_THREADS`` variables set: ``OPENBLAS_CORETYPE`` overrides
          OpenBLAS's choice of kernels for the CPU).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    info = _collect()
    if mode == "dicts":
        return info
    print(_format(info))
    return None
