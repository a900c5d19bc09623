#!/usr/bin/env bash
# Sanitizer and valgrind runs of the C examples and tests (issue 4: never crash, never lose a
# message, never call a callback after it was told not to). Exits non-zero on any failure.
#
#   tests/sanitizers.sh --quick   what CI runs (a few minutes): AddressSanitizer +
#                                 UndefinedBehaviorSanitizer build of every C program and its
#                                 ctest run (with a check that the runtime is really linked and
#                                 really stops at a report), valgrind memcheck on fast C tests,
#                                 and ThreadSanitizer on the tests of buses shared across
#                                 processes (test_process, test_process_unload).
#   tests/sanitizers.sh           full: the above, every C test and example under valgrind, a
#                                 60 s soak (under ASan) and 1,000 dlopen cycles (also with host
#                                 threads that end after the dlclose), and ThreadSanitizer.
#
# The Rust library is built by cargo in release without sanitizers: ASan/UBSan/valgrind check
# the C programs and every byte they hand to or get from the library (a callback reading freed
# user_data, a message read past its end, leaks the library makes through malloc, ...).
# ThreadSanitizer needs the library instrumented too, or it reports the library's own
# synchronisation (invisible to it) as races in the C tests: the full mode builds libjsonbus
# with RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=thread cargo build -Zbuild-std (needs the
# rust-src component: `rustup component add rust-src`; without it TSan is skipped with a note,
# or fails with JSONBUS_SAN_REQUIRE_TSAN=1).
#
# Build directories: $JSONBUS_SAN_DIR (default build/sanitizers)/{asan,plain,tsan}.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=full
[ "${1:-}" = "--quick" ] && MODE=quick
DIR=${JSONBUS_SAN_DIR:-$ROOT/build/sanitizers}
JOBS=${JSONBUS_SAN_JOBS:-2}
EXCLUDE=()
# RSS grows by itself under ASan's quarantine and valgrind; these runs check leaks directly.
export JSONBUS_SKIP_RSS_CHECK=1
FAILED=()
START=$(date +%s)

step() { echo; echo "== $*"; }
fail() { echo "FAILED: $*"; FAILED+=("$*"); }

command -v cmake >/dev/null || apt-get install -y cmake
command -v valgrind >/dev/null || apt-get install -y valgrind

configure_build() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
    cmake --build "$dir" -j"$JOBS" >"$dir.build.log" 2>&1 ||
    { tail -30 "$dir.build.log"; return 1; }
}

# ---- AddressSanitizer + UndefinedBehaviorSanitizer -----------------------------------------
step "ASan+UBSan build of the C examples and tests (-fsanitize=address,undefined -fno-sanitize-recover=all)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if configure_build "$DIR/asan" -DJSONBUS_SANITIZE=address,undefined; then
  step "ctest under ASan+UBSan (includes sanitizer_runtime_linked and the canaries)"
  ctest --test-dir "$DIR/asan" --output-on-failure -j"$JOBS" "${EXCLUDE[@]}" ||
    fail "ctest under ASan+UBSan"
else
  fail "ASan+UBSan build"
fi

# ---- valgrind memcheck --------------------------------------------------------------------
step "plain build for valgrind"
configure_build "$DIR/plain" || fail "plain build"
# Each program: no invalid access, no definitely lost bytes; suppressions: tests/c/valgrind.supp
VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --keep-debuginfo=yes --suppressions="$ROOT/tests/c/valgrind.supp")
vg() { # name, program, args...
  local name=$1; shift
  local t0=$SECONDS
  if "${VG[@]}" "$@" >"$DIR/vg-$name.log" 2>&1; then
    echo "valgrind ok: $name ($((SECONDS - t0)) s)"
  else
    tail -40 "$DIR/vg-$name.log"
    fail "valgrind: $name (log: $DIR/vg-$name.log)"
  fi
}
T=$DIR/plain/tests/c
if [ "$MODE" = quick ]; then
  step "valgrind memcheck on fast C and C++ tests"
  for t in test_errors test_json test_topics test_options test_stats test_reentrant \
           test_unsubscribe test_bad_input test_request; do
    vg "$t" "$T/$t"
  done
  vg test_dlopen_cycles "$T/test_dlopen_cycles" --cycles 20
  vg test_cxx "$DIR/plain/tests/cxx/test_cxx"
else
  step "valgrind memcheck on every C and C++ test and example"
  for t in test_order test_serial test_unsubscribe test_reentrant test_full test_close \
           test_flush test_default_bus test_errors test_json test_topics test_options \
           test_stats test_bad_input test_limits test_end_notice test_pull test_groups \
           test_request test_timers; do
    vg "$t" "$T/$t"
  done
  vg header_c99 "$T/header_c99"
  vg test_dlopen_cycles "$T/test_dlopen_cycles" --require-unmap --cycles 200
  JSONBUS_SOAK_FLUSH_MS=180000 vg soak "$DIR/plain/tests/soak/soak" 10
  for e in quickstart topics dlopen_example; do vg "$e" "$DIR/plain/c-examples/$e"; done
  vg test_cxx "$DIR/plain/tests/cxx/test_cxx"
  vg quickstart_cpp "$DIR/plain/tests/cxx/quickstart_cpp"

  step "1,000 load/use/unload cycles"
  "$T/test_dlopen_cycles" --require-unmap --check-heap --cycles 1000 || fail "1,000 dlopen cycles"
  step "1,000 load/use/unload cycles, host threads that used the library end after dlclose"
  "$T/test_dlopen_cycles" --require-unmap --host-threads-exit --cycles 1000 ||
    fail "dlopen cycles with host threads ending after dlclose"

  step "60 s soak under ASan+UBSan, then 60 s plain"
  "$DIR/asan/tests/soak/soak" 60 || fail "soak under ASan+UBSan"
  "$DIR/plain/tests/soak/soak" 60 || fail "soak"

fi

# ---- ThreadSanitizer ----------------------------------------------------------------------
# Quick mode: the tests of buses shared across processes (their threads and shared memory are
# the newest synchronisation); full mode: every C and C++ test.
TSAN_SELECT=()
[ "$MODE" = quick ] && TSAN_SELECT=(-L process)
step "ThreadSanitizer: libjsonbus instrumented (-Zsanitizer=thread -Zbuild-std), C programs -fsanitize=thread ${TSAN_SELECT[*]}"
SYSROOT=$(rustc --print sysroot)
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
if [ ! -d "$SYSROOT/lib/rustlib/src/rust/library" ]; then
  echo "TSan skipped: the rust-src component is missing (rustup component add rust-src);"
  echo "a TSan run of the C side alone would see none of the library's synchronisation and"
  echo "report every hand-over of user_data between a callback and its subscriber as a race."
  [ "${JSONBUS_SAN_REQUIRE_TSAN:-0}" = 1 ] && fail "TSan: rust-src missing"
elif ! RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=thread" \
       cargo build --release -Zbuild-std --target "$TRIPLE" --target-dir "$DIR/tsan-target" \
       >"$DIR/tsan-cargo.log" 2>&1; then
  tail -20 "$DIR/tsan-cargo.log"
  fail "TSan: cargo -Zbuild-std build of libjsonbus"
elif configure_build "$DIR/tsan" -DJSONBUS_SANITIZE=thread \
       -DJSONBUS_PREBUILT_DIR="$DIR/tsan-target/$TRIPLE/release"; then
  # TSan reports make a program exit 66; the soak runs 20 s
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} \
    ctest --test-dir "$DIR/tsan" --output-on-failure -j"$JOBS" "${EXCLUDE[@]}" "${TSAN_SELECT[@]}" -E '^soak$' ||
    fail "ctest under TSan"
  if [ "$MODE" = full ]; then
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} "$DIR/tsan/tests/soak/soak" 20 ||
      fail "soak under TSan"
  fi
else
  fail "TSan build of the C programs"
fi

echo
echo "== sanitizers.sh $MODE: $(( $(date +%s) - START )) s"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "all passed"
