#!/usr/bin/env bash
# tests/windows.sh - cross-builds jsonbus.dll for x86_64-pc-windows-gnu with mingw-w64, builds
# the C examples and C tests with cmake/mingw-w64-x86_64.cmake, and runs them (ctest) and the
# Rust tests (cargo test --target x86_64-pc-windows-gnu) under Wine. Headless: no X display
# is needed. Exits non-zero when anything fails; prints how long each step took.
#
#   bash tests/windows.sh            (as root on Debian it installs what is missing)
#
# Environment:
#   JSONBUS_WINDOWS_BUILD   build directory (default: build-windows in the repository)
#   WINEPREFIX              Wine prefix (default: <build directory>/wineprefix, made here, with
#                           a wineserver of its own for the run, ended at the end)
#   JSONBUS_WINDOWS_CARGO_TEST=0   skip the Rust tests under Wine
#   JSONBUS_WINDOWS_CTEST_EXCLUDE  ctest -E regex of tests to leave out (default: none)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${JSONBUS_WINDOWS_BUILD:-$ROOT/build-windows}"
TARGET=x86_64-pc-windows-gnu
EXCLUDE="${JSONBUS_WINDOWS_CTEST_EXCLUDE-}"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T_START=$(now)
step() { # step "name": starts timing a step
    step_name="$1"
    step_start=$(now)
    echo "==> $step_name"
}
step_done() { echo "<== $step_name: $(since "$step_start") s"; }

# ---- 1. tools -----------------------------------------------------------------------------
step "tools (apt: cmake, mingw-w64, wine; rustup: $TARGET)"
need=()
for pkg in cmake gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine wine64; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        need+=("$pkg")
    fi
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${need[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${need[@]}"
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
step_done

# ---- 2. Wine prefix (headless) ------------------------------------------------------------
step "wine prefix"
own_prefix=0
if [ -z "${WINEPREFIX:-}" ]; then
    own_prefix=1
    export WINEPREFIX="$BUILD/wineprefix"
fi
export WINEDEBUG=-all
# console programs need no display; without DISPLAY wineboot makes no windows either
unset DISPLAY WAYLAND_DISPLAY
export WINEDLLOVERRIDES="mscoree,mshtml=" # no Mono/Gecko install prompts
mkdir -p "$BUILD"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    timeout 300 wineboot -i
fi
if [ "$own_prefix" = 1 ]; then
    # One wineserver for the whole run, ended at the end: by default it exits 3 s after its
    # last program, and a program that starts just then fails ("wine client error: recvmsg:
    # Connection reset by peer").
    timeout 60 wineserver -w # wineboot's server, if it is still there
    timeout 60 wineserver -p
    trap 'wineserver -k 2>/dev/null || true' EXIT
    # Wine's services start with the first program and inherit its output: start them here,
    # not in a test that ctest or cargo test would then wait for (CMake has a fixture too)
    timeout 120 wine cmd /c exit 0 </dev/null >/dev/null 2>&1
else
    trap 'timeout 60 wineserver -w 2>/dev/null || true' EXIT
fi
step_done

# ---- 3. build -----------------------------------------------------------------------------
step "cmake configure"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/mingw-w64-x86_64.cmake" \
    -DCMAKE_BUILD_TYPE=Release >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
step_done

step "build: cargo build --release --target $TARGET, the C programs (-j2)"
cmake --build "$BUILD" -j2
step_done

# ---- 4. tests under Wine ------------------------------------------------------------------
status=0
step "ctest under wine"
ctest_args=(--test-dir "$BUILD" -j2 --output-on-failure)
if [ -n "$EXCLUDE" ]; then
    echo "left out: $EXCLUDE (see the top of tests/windows.sh)"
    ctest_args+=(-E "$EXCLUDE")
fi
ctest "${ctest_args[@]}" || status=1
step_done

step "cmake --install, a consumer project (find_package, shared and static) under wine"
prefix="$BUILD/prefix"
rm -rf "$prefix" "$BUILD/consumer"
cmake --install "$BUILD" --prefix "$prefix" >/dev/null
[ -f "$prefix/bin/jsonbus.dll" ] && [ -f "$prefix/lib/libjsonbus.dll.a" ] &&
    [ -f "$prefix/lib/libjsonbus.a" ] || { echo "install: a library is missing" >&2; status=1; }
# the toolchain file confines find_package to the mingw root: name the package's directory
cmake -S "$ROOT/tests/consumer" -B "$BUILD/consumer" \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/mingw-w64-x86_64.cmake" \
    -Djsonbus_DIR="$prefix/lib/cmake/jsonbus" >"$BUILD/consumer.log" 2>&1 &&
    cmake --build "$BUILD/consumer" -j2 --target app_shared app_static >>"$BUILD/consumer.log" 2>&1 ||
    { cat "$BUILD/consumer.log"; status=1; }
cp "$prefix/bin/jsonbus.dll" "$BUILD/bcryptprimitives.dll" "$BUILD/consumer/" 2>/dev/null || true
for app in app_shared app_static; do
    (cd "$BUILD/consumer" && timeout 120 wine "./$app.exe") || { echo "$app failed" >&2; status=1; }
done
step_done

if [ "${JSONBUS_WINDOWS_CARGO_TEST:-1}" != 0 ]; then
    step "cargo test --target $TARGET under wine"
    # the test executables find the bcryptprimitives.dll stand-in through WINEPATH
    standin_dir="$BUILD/tests/c"
    export WINEPATH="Z:${standin_dir//\//\\}"
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
    (cd "$ROOT" && cargo test --target "$TARGET" -j2 -- --test-threads=2) || status=1
    step_done
fi

echo "windows.sh: $([ $status = 0 ] && echo passed || echo FAILED) in $(since "$T_START") s"
exit $status
