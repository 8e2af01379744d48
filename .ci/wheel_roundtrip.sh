#!/usr/bin/env bash
# Wheel round trip: what a user gets from PyPI must work on its own.
#
#   1. clone the committed tree (HEAD) into a scratch directory, so nothing a
#      developer built or left untracked can leak into the artifacts;
#   2. build the sdist and, from it, the wheel with `python -m build` (build
#      isolation) in a virtual environment that has `build` and nothing else:
#      no Cython, NumPy or SciPy, so the sdist must declare everything it needs;
#   3. check the sdist holds the sources, the build files and the tests
#      (`tar tzf`), and the wheel every module of src/blasprop;
#   4. install the wheel with its `test` extra into a fresh virtual environment;
#   5. run the test suite shipped in the sdist against the installed wheel,
#      from a directory that holds only tests/, pyproject.toml (for the
#      project's pytest configuration), meson.build (for the version test)
#      and examples/ (run by the tests), so the source tree cannot be
#      imported;
#   6. check the version agrees everywhere: meson.build, both file names,
#      blasprop.__version__, the installed metadata and `blasprop --version`.
#
# Usage: bash .ci/wheel_roundtrip.sh [extra pytest arguments]
# Environment: PYTHON (default python3), KEEP_ROUNDTRIP=1 keeps the scratch
# directory. Exits non-zero on the first failure.
set -euo pipefail

start=$SECONDS
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/blasprop-roundtrip.XXXXXX")"
if [[ "${KEEP_ROUNDTRIP:-0}" == 1 ]]; then
    echo "scratch directory kept: $work"
else
    trap 'rm -rf "$work"' EXIT
fi
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

step() { echo; echo "== [$((SECONDS - start))s] $*"; }
fail() { echo "wheel_roundtrip: FAILED: $*" >&2; exit 1; }

step "clean clone of $repo (committed HEAD)"
git clone --quiet --no-hardlinks "$repo" "$work/src"
git -C "$work/src" log -1 --format='%h %s'

step "build environment: 'build' only, no Cython/NumPy/SciPy"
"$python" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install --quiet --upgrade pip build
for mod in Cython numpy scipy mesonpy; do
    if "$work/build-env/bin/python" -c "import $mod" 2>/dev/null; then
        fail "$mod is importable in the build environment; the isolation check is void"
    fi
done

step "python -m build (sdist, then the wheel from the sdist, isolated)"
"$work/build-env/bin/python" -m build --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 \
    || { tail -n 60 "$work/build.log"; fail "python -m build"; }
tail -n 1 "$work/build.log"
shopt -s nullglob
sdists=("$work"/dist/blasprop-*.tar.gz)
wheels=("$work"/dist/blasprop-*.whl)
shopt -u nullglob
[[ ${#sdists[@]} -eq 1 && ${#wheels[@]} -eq 1 ]] \
    || fail "expected one sdist and one wheel in dist/, got: $(ls "$work/dist")"
sdist="${sdists[0]}"
wheel="${wheels[0]}"
ls -l "$sdist" "$wheel"

step "sdist contents (tar tzf)"
sdist_version="$(basename "$sdist" .tar.gz)"
sdist_version="${sdist_version#blasprop-}"
tar tzf "$sdist" | sed "s|^blasprop-$sdist_version/||" | sort > "$work/sdist.txt"
# every committed file the build or the tests need
git -C "$work/src" ls-files -- src csrc tests examples meson.build meson.options \
    pyproject.toml LICENSE README.md | sort > "$work/needed.txt"
missing="$(comm -23 "$work/needed.txt" "$work/sdist.txt")"
[[ -z "$missing" ]] || fail "missing from the sdist: $missing"
grep -q '^PKG-INFO$' "$work/sdist.txt" || fail "the sdist has no PKG-INFO"
echo "sdist: $(wc -l < "$work/sdist.txt") files, including" \
     "$(grep -c '^tests/.*\.py$' "$work/sdist.txt") test modules; all $(wc -l < "$work/needed.txt") needed files present"

step "fresh virtual environment: pip install '$(basename "$wheel")[test]'"
"$python" -m venv "$work/venv"
venv_py="$work/venv/bin/python"
"$venv_py" -m pip install --quiet --upgrade pip
"$venv_py" -m pip install --quiet "${wheel}[test]"

step "wheel contents"
"$venv_py" - "$wheel" "$work/src" <<'EOF'
import sys, zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
expected = {f"blasprop/{p.name}" for p in (src / "src" / "blasprop").glob("*.py")}
expected |= {f"blasprop/{p.name}" for p in (src / "src" / "blasprop").glob("*.pxd")}
expected.add("blasprop/_version.py")
missing = sorted(expected - names)
exts = sorted(p.stem for p in (src / "src" / "blasprop").glob("*.pyx"))
for ext in exts:
    if not any(n.startswith(f"blasprop/{ext}.") and n.endswith((".so", ".pyd")) for n in names):
        missing.append(f"blasprop/{ext} extension module")
if missing:
    sys.exit("missing from the wheel (add them to meson.build): " + ", ".join(missing))
print(f"wheel: {len(names)} files, every module of src/blasprop and the extensions {exts} present")
EOF

step "tests from the sdist, outside the source tree"
mkdir "$work/sdist-x" "$work/run"
tar xzf "$sdist" -C "$work/sdist-x"
unpacked="$work/sdist-x/blasprop-$sdist_version"
cp -R "$unpacked/tests" "$work/run/tests"
cp "$unpacked/pyproject.toml" "$unpacked/meson.build" "$work/run/"
if [[ -d "$unpacked/examples" ]]; then cp -R "$unpacked/examples" "$work/run/examples"; fi
cd "$work/run"
installed="$("$venv_py" -c 'import blasprop; print(blasprop.__file__)')"
case "$installed" in
    "$work/venv/"*) echo "blasprop imported from $installed" ;;
    *) fail "blasprop imported from $installed, not from the installed wheel" ;;
esac

step "version agreement"
wheel_version="$(basename "$wheel")"
wheel_version="${wheel_version#blasprop-}"
wheel_version="${wheel_version%%-*}"
meson_version="$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" meson.build | head -n 1)"
py_version="$("$venv_py" -c 'import blasprop; print(blasprop.__version__)')"
meta_version="$("$venv_py" -c 'import importlib.metadata as m; print(m.version("blasprop"))')"
cli_version="$("$work/venv/bin/blasprop" --version)"
echo "meson.build=$meson_version sdist=$sdist_version wheel=$wheel_version" \
     "__version__=$py_version metadata=$meta_version cli='$cli_version'"
for v in "$sdist_version" "$wheel_version" "$py_version" "$meta_version"; do
    [[ "$v" == "$meson_version" ]] || fail "version $v differs from meson.build's $meson_version"
done
[[ "$cli_version" == "blasprop $meson_version" ]] || fail "blasprop --version says '$cli_version'"

step "pytest against the installed wheel"
"$venv_py" -m pytest -c "$work/run/pyproject.toml" --rootdir "$work/run" -p no:cacheprovider \
    "$work/run/tests" "$@"

step "wheel round trip passed in $((SECONDS - start)) s"
