#!/usr/bin/env bash
# tests/consumer/run.sh: installs jsonbus into a fresh prefix with `cmake --install` and builds
# programs outside the tree against it, the ways the README shows: find_package (shared, static,
# C++) and pkg-config (shared, static). Checks the installed layout (soname links), what each
# program links (readelf), and runs each. Usage: tests/consumer/run.sh [build-dir]
# (default build; it must have been built with cmake --build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
WORK=$(mktemp -d /tmp/jsonbus-consumer.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
fail() { echo "consumer: FAILED: $*" >&2; exit 1; }
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' '; }

echo "== cmake --install into $PREFIX"
cd "$ROOT"
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
for f in lib/libjsonbus.so.0.1.0 lib/libjsonbus.a include/jsonbus.h include/jsonbus.hpp \
         lib/pkgconfig/jsonbus.pc lib/cmake/jsonbus/jsonbusConfig.cmake \
         lib/cmake/jsonbus/jsonbusConfigVersion.cmake; do
  [ -f "$PREFIX/$f" ] || fail "$f is not installed"
done
[ "$(readlink "$PREFIX/lib/libjsonbus.so.0")" = libjsonbus.so.0.1.0 ] || fail "libjsonbus.so.0 link"
[ "$(readlink "$PREFIX/lib/libjsonbus.so")" = libjsonbus.so.0 ] || fail "libjsonbus.so link"
readelf -d "$PREFIX/lib/libjsonbus.so.0.1.0" | grep -q 'SONAME.*\[libjsonbus.so.0\]' ||
  fail "the installed library's soname is not libjsonbus.so.0"

echo "== find_package(jsonbus 0.1 REQUIRED): shared, static, C++"
cmake -S "$ROOT/tests/consumer" -B "$WORK/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$WORK/cmake" -j2 >/dev/null
case " $(needed "$WORK/cmake/app_shared") " in *" libjsonbus.so.0 "*) ;;
  *) fail "app_shared does not link libjsonbus.so.0: $(needed "$WORK/cmake/app_shared")" ;; esac
case " $(needed "$WORK/cmake/app_static") " in *libjsonbus*) fail "app_static links the shared library" ;; esac
"$WORK/cmake/app_shared"
"$WORK/cmake/app_static"
"$WORK/cmake/app_cxx"
runpath=$(readelf -d "$WORK/cmake/app_shared" | sed -n 's/.*R.*PATH.*\[\(.*\)\]/\1/p')
[ "$runpath" = "$PREFIX/lib" ] || fail "app_shared finds its library through '$runpath', not the prefix"
# versions the package does not offer are refused (0.x: only the same minor version)
for v in 9.0 0.2; do
  mkdir -p "$WORK/v$v"
  printf 'cmake_minimum_required(VERSION 3.16)\nproject(v C)\nfind_package(jsonbus %s REQUIRED)\n' \
    "$v" >"$WORK/v$v/CMakeLists.txt"
  if cmake -S "$WORK/v$v" -B "$WORK/v$v/build" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null 2>&1; then
    fail "find_package(jsonbus $v) was accepted"
  fi
done

echo "== pkg-config --cflags --libs jsonbus: shared, static"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
[ "$(pkg-config --modversion jsonbus)" = 0.1.0 ] || fail "pkg-config --modversion"
cc -Wall -Wextra -Werror -o "$WORK/pc_shared" tests/consumer/app.c $(pkg-config --cflags --libs jsonbus) \
  -Wl,-rpath,"$(pkg-config --variable=libdir jsonbus)"
cc -Wall -Wextra -Werror -o "$WORK/pc_static" tests/consumer/app.c $(pkg-config --cflags jsonbus) \
  $(pkg-config --static --libs jsonbus | sed 's/-ljsonbus\b/-l:libjsonbus.a/')
case " $(needed "$WORK/pc_shared") " in *" libjsonbus.so.0 "*) ;; *) fail "pc_shared does not link libjsonbus.so.0" ;; esac
case " $(needed "$WORK/pc_static") " in *libjsonbus*) fail "pc_static links the shared library" ;; esac
"$WORK/pc_shared"
"$WORK/pc_static"
echo "consumer: all passed"
