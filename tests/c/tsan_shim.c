/*
 * tsan_shim.c - only in ThreadSanitizer builds against a TSan-instrumented libjsonbus.
 *
 * rustc (LLVM) instruments copies in the Rust library as calls to __tsan_memcpy,
 * __tsan_memmove and __tsan_memset; GCC 12's libtsan does not export those (newer LLVM
 * compiler-rt does). Each one here calls the libc function, which libtsan intercepts, so
 * the copy is still checked for races. Linked with -rdynamic so that a dlopen'ed library
 * finds them too.
 */
#include <stddef.h>
#include <string.h>

void *__tsan_memcpy(void *dst, const void *src, size_t n);
void *__tsan_memmove(void *dst, const void *src, size_t n);
void *__tsan_memset(void *dst, int c, size_t n);

void *__tsan_memcpy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }
void *__tsan_memmove(void *dst, const void *src, size_t n) { return memmove(dst, src, n); }
void *__tsan_memset(void *dst, int c, size_t n) { return memset(dst, c, n); }
