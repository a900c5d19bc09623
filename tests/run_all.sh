#!/usr/bin/env bash
# Every test of jsonbus, in the order a failure is cheapest to find: formatting, lints, the
# Rust tests (core, C exports, committed header), the C and C++ examples and tests through CMake,
# the installed library, the README's examples and the Python package. Installs CMake and
# pkg-config if they are missing. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cmake >/dev/null || apt-get install -y cmake
command -v pkg-config >/dev/null || apt-get install -y pkg-config

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
cargo test --release
echo "== committed header is fresh"
git diff --exit-code -- include/jsonbus.h
echo "== CMake build of the C examples and tests (-Wall -Wextra -Werror), ctest"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2
echo "== cmake --install, and a project outside the tree against it: find_package, pkg-config (tests/consumer/run.sh)"
tests/consumer/run.sh build
echo "== the README's examples, run as they stand (tests/readme_blocks.py)"
python3 tests/readme_blocks.py
echo "== the Python package: a wheel from pip install ./python, pytest against it (python/run_tests.sh)"
python/run_tests.sh
echo "== sanitizers: ASan+UBSan build and ctest, valgrind memcheck, TSan on the process tests (tests/sanitizers.sh --quick)"
# ThreadSanitizer instruments the library with -Zbuild-std, which needs the standard library's source
if command -v rustup >/dev/null; then rustup component add rust-src >/dev/null 2>&1 || true; fi
tests/sanitizers.sh --quick
echo "== fuzz smoke: each of the fuzz targets for a few seconds (fuzz/smoke.sh)"
SMOKE_SECONDS=${SMOKE_SECONDS:-5} fuzz/smoke.sh
