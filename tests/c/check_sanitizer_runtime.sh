#!/bin/sh
# check_sanitizer_runtime.sh <sanitizers> <program>...: fails unless each program really has
# the runtime of each sanitizer in the comma-separated list (address, undefined, thread,
# leak): its entry symbol is defined in the program (static runtime, clang) or the program
# needs it from a shared runtime library it is linked to (GCC).
set -u
sanitizers=$1
shift
status=0
for prog in "$@"; do
  syms=$( (nm "$prog" 2>/dev/null; nm -D "$prog" 2>/dev/null) | awk '{print $NF}' | sort -u)
  libs=$(ldd "$prog" 2>/dev/null || true)
  for san in $(echo "$sanitizers" | tr ',' ' '); do
    case $san in
      address)   sym=__asan_init; lib=libasan ;;
      undefined) sym=__ubsan_handle_; lib=libubsan ;;
      thread)    sym=__tsan_init; lib=libtsan ;;
      leak)      sym=__lsan_do_leak_check; lib=liblsan ;;
      *) echo "skip: no check for -fsanitize=$san"; continue ;;
    esac
    if ! echo "$syms" | grep -q "^$sym"; then
      echo "FAIL: $prog has no $sym: built without -fsanitize=$san?"
      status=1
    elif echo "$syms" | grep -q "^$sym" && ! nm "$prog" 2>/dev/null | grep -q " [TtWw] $sym" \
         && ! echo "$libs" | grep -q "$lib"; then
      echo "FAIL: $prog needs $sym but is not linked to $lib"
      status=1
    else
      echo "ok: $(basename "$prog"): $san runtime ($sym$(echo "$libs" | grep -o "$lib[^ ]*" | head -1 | sed 's/^/, /'))"
    fi
  done
done
exit $status
