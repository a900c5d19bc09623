/*
 * check.h - tiny assertion and helper kit for the jsonbus C tests.
 *
 * Every failed check prints file:line, what was expected, the thread's last jsonbus status
 * and error, and ends the process with exit status 1 (also from a callback thread).
 * Define CHECK_NO_JSONBUS before including it in a program that loads the library with
 * dlopen and must not link it.
 */
#ifndef JSONBUS_TEST_CHECK_H
#define JSONBUS_TEST_CHECK_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#ifdef _WIN32
/* Windows (mingw-w64): winpthreads gives pthread, clock_gettime and nanosleep; the thread
 * counts come from Toolhelp32. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#include <tlhelp32.h>
/* <windows.h>'s 16-bit relics, empty macros that would swallow variables of these names */
#undef far
#undef near
#else
#include <dirent.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonbus.h"

#if defined(__GNUC__)
#define CHECK_UNUSED __attribute__((unused))
#else
#define CHECK_UNUSED
#endif

/* ---- failure reporting ------------------------------------------------------------------ */

static CHECK_UNUSED void check_vreport(const char *file, int line, const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: FAILED: ", file, line);
    vfprintf(stderr, fmt, ap);
#ifndef CHECK_NO_JSONBUS
    {
        int32_t st = jsonbus_last_status();
        fprintf(stderr, "\n    jsonbus_last_status() = %s (%d), jsonbus_last_error() = \"%s\"",
                jsonbus_status_name(st), (int)st, jsonbus_last_error());
    }
#endif
    fprintf(stderr, "\n");
    fflush(stderr);
}

/* Reports a failure and ends the process (from any thread). */
static CHECK_UNUSED void check_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    check_vreport(file, line, fmt, ap);
    va_end(ap);
    _Exit(1);
}

/* Table-driven checks (one input after another, main thread only) report and go on, so
 * that one run lists every wrong input; CHECK_SOFT_DONE() then fails the program. */
static int check_soft_failures;
static CHECK_UNUSED void check_soft_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    check_vreport(file, line, fmt, ap);
    va_end(ap);
    check_soft_failures++;
}
/* In a void helper: report softly and return. */
#define SOFT_RETURN(...)                                                                   \
    do {                                                                                   \
        check_soft_fail(__VA_ARGS__);                                                      \
        return;                                                                            \
    } while (0)
#define CHECK_SOFT_DONE()                                                                  \
    do {                                                                                   \
        if (check_soft_failures) {                                                         \
            fprintf(stderr, "%d check(s) failed\n", check_soft_failures);                  \
            _Exit(1);                                                                      \
        }                                                                                  \
    } while (0)

#define FAIL(...) check_fail(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) FAIL("CHECK(%s)", #cond);                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                               \
    do {                                                                                   \
        if (!(cond)) FAIL(__VA_ARGS__);                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
        if (check_a_ != check_b_)                                                          \
            FAIL("CHECK_EQ(%s, %s): %lld != %lld", #a, #b, check_a_, check_b_);            \
    } while (0)

#define CHECK_STREQ(a, b)                                                                  \
    do {                                                                                   \
        const char *check_a_ = (a), *check_b_ = (b);                                        \
        if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0)        \
            FAIL("CHECK_STREQ(%s, %s): \"%s\" != \"%s\"", #a, #b,                           \
                 check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");           \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                   \
    do {                                                                                   \
        const char *check_h_ = (haystack), *check_n_ = (needle);                           \
        if (check_h_ == NULL || strstr(check_h_, check_n_) == NULL)                         \
            FAIL("%s = \"%s\" does not contain \"%s\"", #haystack,                          \
                 check_h_ ? check_h_ : "(null)", check_n_);                                 \
    } while (0)

#ifndef CHECK_NO_JSONBUS

/* expr must return exactly the status `expected` (compared and printed by name). */
#define CHECK_RC(expr, expected)                                                           \
    do {                                                                                   \
        long long check_rc_ = (long long)(expr), check_ex_ = (long long)(expected);        \
        if (check_rc_ != check_ex_)                                                        \
            FAIL("%s returned %s (%lld), expected %s (%lld)", #expr,                        \
                 jsonbus_status_name((int32_t)check_rc_), check_rc_,                       \
                 jsonbus_status_name((int32_t)check_ex_), check_ex_);                      \
    } while (0)

/* expr must succeed (JSONBUS_OK) and leave the last status/error cleared. */
#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        CHECK_RC(expr, JSONBUS_OK);                                                        \
        CHECK_CLEARED();                                                                   \
    } while (0)

/* The thread's last status/error are cleared, as after a successful call. */
#define CHECK_CLEARED()                                                                    \
    do {                                                                                   \
        CHECK_RC(jsonbus_last_status(), JSONBUS_OK);                                       \
        CHECK_STREQ(jsonbus_last_error(), "");                                             \
    } while (0)

/* expr must fail with `code`, and the thread's last status/error must say so. */
#define CHECK_ERR(expr, code)                                                              \
    do {                                                                                   \
        CHECK_RC(expr, code);                                                              \
        CHECK_RC(jsonbus_last_status(), code);                                             \
        CHECK_MSG(jsonbus_last_error() != NULL && jsonbus_last_error()[0] != '\0',          \
                  "%s failed with %s but jsonbus_last_error() is empty", #expr, #code);     \
    } while (0)

/* jsonbus_subscribe that must succeed: evaluates to the id (> 0). */
#define SUBSCRIBE(bus, pattern, cb, ud) check_subscribe(__FILE__, __LINE__, bus, pattern, cb, ud)
static CHECK_UNUSED int64_t check_subscribe(const char *file, int line, jsonbus *bus,
                                            const char *pattern, jsonbus_callback cb, void *ud) {
    int64_t id = jsonbus_subscribe(bus, pattern, cb, ud);
    if (id <= 0)
        check_fail(file, line, "jsonbus_subscribe(\"%s\") returned %s (%lld)", pattern,
                   jsonbus_status_name((int32_t)id), (long long)id);
    if (jsonbus_last_status() != JSONBUS_OK || jsonbus_last_error()[0] != '\0')
        check_fail(file, line, "jsonbus_subscribe succeeded but did not clear the last error");
    return id;
}

/* jsonbus_publish of a NUL-terminated payload that must succeed. */
#define PUBLISH(bus, topic, json)                                                          \
    do {                                                                                   \
        const char *check_j_ = (json);                                                     \
        CHECK_OK(jsonbus_publish(bus, topic, check_j_, strlen(check_j_)));                 \
    } while (0)

/* jsonbus_new that must succeed. */
#define NEW_BUS(options) check_new_bus(__FILE__, __LINE__, options)
static CHECK_UNUSED jsonbus *check_new_bus(const char *file, int line, const char *options) {
    jsonbus *bus = jsonbus_new(options);
    if (bus == NULL)
        check_fail(file, line, "jsonbus_new(%s) returned NULL", options ? options : "NULL");
    return bus;
}

/* ---- stats ------------------------------------------------------------------------------ */

/* Integer value of "key" in the JSON object text, searched from `from`; -1 when missing. */
static CHECK_UNUSED long long json_int_after(const char *text, const char *from,
                                             const char *key) {
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *p = from ? from : text;
    while ((p = strstr(p, quoted)) != NULL) {
        const char *q = p + strlen(quoted);
        while (*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r') q++;
        if (*q == ':') {
            q++;
            while (*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r') q++;
            char *end;
            long long v = strtoll(q, &end, 10);
            if (end == q) return -1;
            return v;
        }
        p = q;
    }
    return -1;
}

/* A top-level stats counter of `bus`, or rejected.<key> when `rejected` is non-zero. */
static CHECK_UNUSED long long stat_of(const char *file, int line, jsonbus *bus, const char *key,
                                      int rejected) {
    char *s = jsonbus_stats(bus);
    if (s == NULL) check_fail(file, line, "jsonbus_stats returned NULL");
    const char *from = s;
    if (rejected) {
        from = strstr(s, "\"rejected\"");
        if (from == NULL) check_fail(file, line, "stats have no \"rejected\": %s", s);
    }
    long long v = json_int_after(s, from, key);
    if (v < 0) check_fail(file, line, "stats have no integer \"%s\": %s", key, s);
    jsonbus_string_free(s);
    return v;
}
#define STAT(bus, key) stat_of(__FILE__, __LINE__, bus, key, 0)
#define REJECTED(bus, key) stat_of(__FILE__, __LINE__, bus, key, 1)

static CHECK_UNUSED void print_stats(const char *label, jsonbus *bus) {
    char *s = jsonbus_stats(bus);
    printf("%s: %s\n", label, s ? s : "(null)");
    jsonbus_string_free(s);
}

#endif /* CHECK_NO_JSONBUS */

/* ---- time, threads ---------------------------------------------------------------------- */

static CHECK_UNUSED double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#ifdef _WIN32
/* Sleeps at least `us`. winpthreads' nanosleep truncates to whole milliseconds (a 400 us sleep
 * returns at once, 1600 us sleeps 1.45 ms), so: Sleep() in whole milliseconds, rounded up,
 * until the monotonic clock says the time is over. */
static CHECK_UNUSED void sleep_us(long us) {
    double end = now_ms() + (double)us / 1000.0;
    for (;;) {
        double left = end - now_ms();
        if (left <= 0) return;
        Sleep((DWORD)left + 1);
    }
}
#else
static CHECK_UNUSED void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
#endif

static CHECK_UNUSED void sleep_ms(long ms) { sleep_us(ms * 1000); }

/* Busy work of about `us` microseconds, without sleeping. */
static CHECK_UNUSED void spin_us(long us) {
    double end = now_ms() + (double)us / 1000.0;
    while (now_ms() < end) {
    }
}

/* Waits until *flag >= value or timeout_ms passes; returns whether it got there. */
static CHECK_UNUSED int wait_for(atomic_int *flag, int value, int timeout_ms) {
    double end = now_ms() + timeout_ms;
    while (atomic_load(flag) < value) {
        if (now_ms() > end) return 0;
        sleep_us(200);
    }
    return 1;
}

#ifdef _WIN32
/* Windows: GetThreadDescription (Windows 10 1607+, Wine 5+) looked up at run time, so the
 * programs still start where it is missing; the name as UTF-8 in `out`, "?" when unknown. */
typedef HRESULT(WINAPI *check_get_thread_description_fn)(HANDLE, PWSTR *);
static CHECK_UNUSED void check_thread_description(HANDLE thread, char *out, size_t n) {
    snprintf(out, n, "?");
    HMODULE k = GetModuleHandleA("kernel32.dll");
    FARPROC proc = k ? GetProcAddress(k, "GetThreadDescription") : NULL;
    if (proc == NULL) return;
    check_get_thread_description_fn get;
    memcpy(&get, &proc, sizeof get);
    PWSTR w = NULL;
    if (FAILED(get(thread, &w)) || w == NULL) return;
    if (WideCharToMultiByte(CP_UTF8, 0, w, -1, out, (int)n, NULL, NULL) == 0) snprintf(out, n, "?");
    LocalFree(w);
}

/* Calls fn(thread id, arg) for each thread of this process (a Toolhelp32 snapshot of every
 * thread of the system, filtered by th32OwnerProcessID); returns their number. A snapshot
 * that fails ends the test: a count of -1 would make every "no thread left" check vacuous. */
static CHECK_UNUSED int check_for_each_thread(void (*fn)(DWORD, void *), void *arg) {
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
    if (snap == INVALID_HANDLE_VALUE)
        check_fail(__FILE__, __LINE__, "CreateToolhelp32Snapshot failed: error %lu",
                   (unsigned long)GetLastError());
    DWORD pid = GetCurrentProcessId();
    THREADENTRY32 te;
    memset(&te, 0, sizeof te);
    te.dwSize = sizeof te;
    int n = 0;
    if (Thread32First(snap, &te)) {
        do {
            if (te.dwSize >= offsetof(THREADENTRY32, th32OwnerProcessID) + sizeof te.th32OwnerProcessID &&
                te.th32OwnerProcessID == pid) {
                n++;
                if (fn) fn(te.th32ThreadID, arg);
            }
            te.dwSize = sizeof te;
        } while (Thread32Next(snap, &te));
    }
    CloseHandle(snap);
    if (n < 1) check_fail(__FILE__, __LINE__, "Toolhelp32 found no thread of this process");
    return n;
}

/* Number of threads of this process. */
static CHECK_UNUSED int thread_count(void) { return check_for_each_thread(NULL, NULL); }

static CHECK_UNUSED void check_print_thread(DWORD tid, void *arg) {
    (void)arg;
    char name[128] = "?";
    HANDLE h = OpenThread(THREAD_QUERY_LIMITED_INFORMATION, FALSE, tid);
    if (h != NULL) {
        check_thread_description(h, name, sizeof name);
        CloseHandle(h);
    }
    fprintf(stderr, " %lu(%s)", (unsigned long)tid, name);
}

/* Prints the ids and names of this process's threads (for failure messages). */
static CHECK_UNUSED void print_threads(void) {
    fprintf(stderr, "threads:");
    check_for_each_thread(check_print_thread, NULL);
    fprintf(stderr, "\n");
}
#else
/* Number of threads of this process (entries of /proc/self/task). */
static CHECK_UNUSED int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n;
}

/* Prints the names of this process's threads (for failure messages). */
static CHECK_UNUSED void print_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return;
    struct dirent *e;
    fprintf(stderr, "threads:");
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], name[64] = "?";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = 0;
            fclose(f);
        }
        fprintf(stderr, " %s(%s)", e->d_name, name);
    }
    fprintf(stderr, "\n");
    closedir(d);
}
#endif

/* Waits up to timeout_ms for the thread count to be `expected`; returns the last count.
 * (A thread that pthread_join has already reaped can stay listed in /proc/self/task for a
 * moment: the kernel wakes the joiner before it removes the task. So "no threads left" is
 * checked with a short grace period; a thread that was really left running stays.) */
static CHECK_UNUSED int wait_thread_count(int expected, int timeout_ms) {
    double end = now_ms() + timeout_ms;
    int n;
    while ((n = thread_count()) != expected && now_ms() < end) sleep_ms(1);
    return n;
}

/* ThreadSanitizer's runtime starts a background thread of its own at the first
 * pthread_create. Start it before main, so that the thread counts the tests compare (a
 * baseline taken in main against the end) see it in both. */
#if defined(__SANITIZE_THREAD__)
static void *check_tsan_noop(void *arg) { return arg; }
__attribute__((constructor)) static void check_tsan_start_background_thread(void) {
    pthread_t th;
    if (pthread_create(&th, NULL, check_tsan_noop, NULL) == 0) pthread_join(th, NULL);
}
#endif

#define START_THREAD(th, fn, arg) CHECK_EQ(pthread_create(&(th), NULL, fn, arg), 0)
#define JOIN_THREAD(th) CHECK_EQ(pthread_join(th, NULL), 0)

#endif /* JSONBUS_TEST_CHECK_H */
