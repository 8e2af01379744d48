"""The version has one source (meson.build), and show_config reports the truth."""

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import scipy
import sklearn
from blasprop._version import build_options
from packaging.version import Version

import blasprop

MESON_BUILD = Path(__file__).resolve().parents[1] / "meson.build"


def _meson_version():
    """The ``version:`` of meson.build's project(), or None when the tests run
    without the source tree beside them."""
    if not MESON_BUILD.is_file():
        return None
    text = MESON_BUILD.read_text(encoding="utf-8")
    project = re.search(r"\bproject\s*\((.*?)\)", text, re.S)
    assert project, "no project() call in meson.build"
    found = re.search(r"\bversion\s*:\s*'([^']+)'", project.group(1))
    assert found, "project() in meson.build has no version: '...'"
    return found.group(1)


# ----------------------------------------------------------------------------
# Version: one source of truth


def test_version_is_pep440():
    assert isinstance(blasprop.__version__, str)
    Version(blasprop.__version__)  # raises InvalidVersion otherwise


def test_version_matches_installed_metadata():
    assert Version(importlib.metadata.version("blasprop")) == Version(blasprop.__version__)


def test_version_matches_meson_build():
    meson = _meson_version()
    if meson is None:
        pytest.skip(f"{MESON_BUILD} not present (tests copied without the source tree)")
    assert blasprop.__version__ == meson


def test_dist_info_name_carries_the_version():
    # the dist-info directory is named like the wheel: blasprop-<version>
    dist = importlib.metadata.distribution("blasprop")
    names = {str(f).split("/")[0] for f in dist.files or ()}
    expected = f"blasprop-{Version(blasprop.__version__)}.dist-info"
    assert expected in names, sorted(names)


def test_cli_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "blasprop", "--version"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == f"blasprop {blasprop.__version__}"


def test_build_options_shape():
    assert set(build_options) == {"cython_checks", "native"}
    assert all(isinstance(v, bool) for v in build_options.values())


# ----------------------------------------------------------------------------
# show_config


def test_show_config_is_public():
    from blasprop._config import show_config

    assert blasprop.show_config is show_config
    assert "show_config" in blasprop.__all__


def test_show_config_dict_keys_and_versions():
    info = blasprop.show_config(mode="dicts")
    assert set(info) == {"blasprop", "python", "dependencies", "blas"}
    assert set(info["blasprop"]) == {"version", "path", "build_options"}
    assert set(info["python"]) == {"version", "implementation", "executable", "platform",
                                   "machine"}
    assert set(info["dependencies"]) == {"numpy", "scipy", "scikit-learn", "threadpoolctl"}
    assert set(info["blas"]) == {"via", "build", "loaded", "num_threads",
                                 "small_matrix_gemm", "environment"}

    assert info["blasprop"]["version"] == blasprop.__version__
    assert info["blasprop"]["build_options"] == build_options
    assert Path(info["blasprop"]["path"]).resolve() == Path(blasprop.__file__).resolve().parent
    assert info["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert info["python"]["executable"] == sys.executable
    assert info["dependencies"]["numpy"] == numpy.__version__
    assert info["dependencies"]["scipy"] == scipy.__version__
    assert info["dependencies"]["scikit-learn"] == sklearn.__version__
    assert info["blas"]["via"] == "scipy.linalg.cython_blas"


def test_show_config_blas_threads_match_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = blasprop.show_config(mode="dicts")
    assert info["dependencies"]["threadpoolctl"] == threadpoolctl.__version__
    loaded = info["blas"]["loaded"]
    assert isinstance(loaded, list)
    blas_paths = {
        p["filepath"]: p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"
    }
    for pool in loaded:
        # every reported library is a BLAS threadpoolctl sees, with its thread count
        assert pool["filepath"] in blas_paths
        assert pool["num_threads"] == blas_paths[pool["filepath"]]["num_threads"]
    if loaded:
        assert info["blas"]["num_threads"] == loaded[0]["num_threads"]
        assert info["blas"]["num_threads"] >= 1


def test_show_config_follows_threadpool_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not blasprop.show_config(mode="dicts")["blas"]["loaded"]:
        pytest.skip("SciPy's BLAS is not visible to threadpoolctl here")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert blasprop.show_config(mode="dicts")["blas"]["num_threads"] == 1


def test_show_config_picks_scipys_blas_not_numpys():
    from blasprop._config import _scipy_blas_pools

    site = str(Path("/site-packages"))
    numpy_blas = {"user_api": "blas", "internal_api": "openblas", "num_threads": 4,
                  "filepath": str(Path(site, "numpy.libs", "libscipy_openblas64_.so"))}
    scipy_blas = {"user_api": "blas", "internal_api": "openblas", "num_threads": 2,
                  "filepath": str(Path(site, "scipy.libs", "libscipy_openblas.so"))}
    dylib_blas = dict(scipy_blas, filepath=str(Path(site, "scipy", ".dylibs", "libopenblas.dylib")))
    omp = {"user_api": "openmp", "internal_api": "openmp", "num_threads": 2,
           "filepath": str(Path(site, "scipy.libs", "libgomp.so"))}
    pools = [numpy_blas, omp, scipy_blas]
    assert _scipy_blas_pools(pools, site, "scipy-openblas") == [scipy_blas]
    assert _scipy_blas_pools([numpy_blas, dylib_blas], site, "scipy-openblas") == [dylib_blas]
    # a shared BLAS outside both packages (conda, distro): matched by kind
    shared = {"user_api": "blas", "internal_api": "mkl", "num_threads": 2,
              "filepath": str(Path("/opt", "conda", "lib", "libmkl_rt.so"))}
    assert _scipy_blas_pools([numpy_blas, shared], site, "mkl-sdl") == [shared]
    assert _scipy_blas_pools([shared], site, None) == [shared]
    assert _scipy_blas_pools([omp], site, "scipy-openblas") == []


def test_show_config_without_threadpoolctl(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # makes the import fail
    info = blasprop.show_config(mode="dicts")
    assert info["blas"]["loaded"] is None
    assert info["blas"]["num_threads"] is None
    assert info["dependencies"]["threadpoolctl"] is None
    assert blasprop.show_config() is None
    out = capsys.readouterr().out
    assert "pip install threadpoolctl" in out
    assert "threadpoolctl  not installed" in out


def test_show_config_prints_report(capsys):
    assert blasprop.show_config() is None
    out = capsys.readouterr().out
    assert out.startswith(f"blasprop {blasprop.__version__}\n")
    for version in (numpy.__version__, scipy.__version__, sklearn.__version__):
        assert version in out
    assert "cython_checks=" in out and "native=" in out
    assert "scipy.linalg.cython_blas" in out


def test_show_config_reports_the_openblas_environment(monkeypatch, capsys):
    """OPENBLAS_CORETYPE replaces OpenBLAS's CPU detection (it decides which
    kernels run), so a report must say when it is set; unrelated variables
    stay out."""
    for name in list(os.environ):
        if name.startswith(("OPENBLAS_", "GOTO_")) or name == "OMP_NUM_THREADS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("BLASPROP_UNRELATED", "1")
    assert blasprop.show_config(mode="dicts")["blas"]["environment"] == {}
    blasprop.show_config()
    assert "environment:" not in capsys.readouterr().out

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = blasprop.show_config(mode="dicts")["blas"]["environment"]
    assert env == {"OMP_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Haswell"}
    blasprop.show_config()
    out = capsys.readouterr().out
    assert ("environment: OMP_NUM_THREADS=2, OPENBLAS_CORETYPE=Haswell "
            "(OpenBLAS's core set by OPENBLAS_CORETYPE, not detected)") in out


def test_show_config_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        blasprop.show_config(mode="json")


def test_small_matrix_gemm_follows_the_openblas_core():
    """The small-matrix gemm routing is chosen from the core OpenBLAS reports
    for SciPy's BLAS; other cores and other BLAS keep gemv and ger."""
    from blasprop._blas_policy import choose, current
    from blasprop._config import scipy_blas, small_matrix_gemm

    def pool(api, arch):
        return {"internal_api": api, "architecture": arch}

    assert small_matrix_gemm([pool("openblas", "SkylakeX")])
    assert small_matrix_gemm([pool("openblas", "SapphireRapids")])
    assert not small_matrix_gemm([pool("openblas", "Haswell")])
    assert not small_matrix_gemm([pool("openblas", "Zen")])
    assert not small_matrix_gemm([pool("mkl", "SkylakeX")])
    assert not small_matrix_gemm([pool("openblas", None)])
    assert not small_matrix_gemm([])
    # what this process chose is what its BLAS reports
    small = small_matrix_gemm(scipy_blas())
    assert choose() == (small, False, small, small, small)
    assert current() == (small, False, small, small, small)
