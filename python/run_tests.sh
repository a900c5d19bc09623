#!/usr/bin/env bash
# CI entry point for the Python bindings: builds a real wheel of python/ into a fresh venv,
# runs the pytest suite against the installed package (not the source tree) and the
# examples, and prints how long it took.
#
# Environment: PYTHON (default python3); JSONBUS_LIBRARY (optional: the shared library to
# bundle and load instead of ../target/release); JSONBUS_TEST_NO_ENSUREPIP=1 forces the
# fallback used where `python3 -m venv` lacks ensurepip (Debian without python3-venv).
set -euo pipefail

start=$(date +%s)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/jsonbus-py.XXXXXX")"
# pip builds a local directory in-tree: remove the build/ and egg-info it leaves, unless they
# were there before.
leftovers=()
for d in "$here/build" "$here/jsonbus.egg-info"; do [ -e "$d" ] || leftovers+=("$d"); done
trap 'rm -rf "$tmp" "${leftovers[@]}"' EXIT
venv="$tmp/venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

echo "== python: $("$py" --version 2>&1) ($(command -v "$py"))"

# 1. A fresh virtual environment with pip in it.
make_venv() {
    if [ -z "${JSONBUS_TEST_NO_ENSUREPIP:-}" ] && "$py" -m venv "$venv" >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$venv"
    if "$py" -m virtualenv --version >/dev/null 2>&1; then
        echo "== venv without ensurepip: using virtualenv"
        "$py" -m virtualenv -q "$venv" && return 0
    fi
    echo "== venv without ensurepip: venv --without-pip, then the system's pip"
    "$py" -m venv --without-pip "$venv"
    if "$py" -m pip --version >/dev/null 2>&1; then
        # The system's pip installs itself into the venv (pip >= 22.3 knows --python).
        if "$py" -m pip --python "$venv/bin/python" install -q pip 2>/dev/null; then
            return 0
        fi
    fi
    echo "error: no pip for $py: install python3-venv or pip" >&2
    return 1
}
make_venv
vpy="$venv/bin/python"
"$vpy" -m pip --version

# 2. Build the wheel (isolated build, as pip does for any user) and install it.
echo "== building the wheel"
"$vpy" -m pip wheel -q --no-deps -w "$tmp/dist" "$here"
wheel="$(ls "$tmp"/dist/jsonbus-*.whl)"
echo "== wheel: $(basename "$wheel")"
case "$(basename "$wheel")" in
    *-none-any.whl) echo "error: the wheel is pure; it must be platform-specific" >&2; exit 1 ;;
esac
"$vpy" -m zipfile -l "$wheel" | grep -E "jsonbus/_lib/(lib)?jsonbus\.(so|dylib|dll)" \
    || { echo "error: the wheel does not carry the shared library" >&2; exit 1; }
"$vpy" -m pip install -q "$wheel" pytest

# 3. Tests against the installed package: run from an empty directory, with importlib import
#    mode, so that python/ never lands on sys.path.
echo "== pytest"
cd "$tmp"
JSONBUS_EXPECT_INSTALLED=1 "$vpy" -c "import jsonbus, sys; print('jsonbus', jsonbus.version(), 'from', jsonbus.__file__, 'library', jsonbus.library_path)"
JSONBUS_EXPECT_INSTALLED=1 timeout 600 "$vpy" -m pytest -q -p no:cacheprovider \
    --import-mode=importlib --rootdir "$here" -c "$here/pyproject.toml" "$here/tests"

# 4. The examples: the quickstart, as the README shows it, and (Linux) a hub and a peer in two
#    processes, with a private name directory.
echo "== examples/quickstart.py"
"$vpy" "$here/examples/quickstart.py"
if [ "$(uname -s)" = Linux ]; then
    echo "== examples/across_processes.py"
    XDG_RUNTIME_DIR="$tmp" "$vpy" "$here/examples/across_processes.py"
fi

echo "== python bindings: all passed in $(( $(date +%s) - start )) s"
