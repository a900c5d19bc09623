/*
 * sub_check.h - helpers for the tests of subscriptions with options (contract Part 2A):
 * subscribe_with / subscribe_pull that must succeed, per-subscription stats, payloads that
 * carry a publisher id and counter, and the name of the calling thread.
 */
#ifndef JSONBUS_TEST_SUB_CHECK_H
#define JSONBUS_TEST_SUB_CHECK_H

#include "check.h"

/* A check that reports and lets the test go on (main thread only); CHECK_SOFT_DONE() at the
 * end of main fails the program. For checks that a known library bug fails, so that the
 * rest of the test still runs. */
#define SOFT_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) check_soft_fail(__FILE__, __LINE__, __VA_ARGS__);                     \
    } while (0)

/* jsonbus_subscribe_with that must succeed: evaluates to the id (> 0). */
#define SUBSCRIBE_WITH(bus, pattern, options, cb, on_end, ud)                              \
    check_subscribe_with(__FILE__, __LINE__, bus, pattern, options, cb, on_end, ud)
static CHECK_UNUSED int64_t check_subscribe_with(const char *file, int line, jsonbus *bus,
                                                 const char *pattern, const char *options,
                                                 jsonbus_callback cb, jsonbus_end_callback on_end,
                                                 void *ud) {
    int64_t id = jsonbus_subscribe_with(bus, pattern, options, cb, on_end, ud);
    if (id <= 0)
        check_fail(file, line, "jsonbus_subscribe_with(\"%s\", %s) returned %s (%lld)", pattern,
                   options ? options : "NULL", jsonbus_status_name((int32_t)id), (long long)id);
    if (jsonbus_last_status() != JSONBUS_OK || jsonbus_last_error()[0] != '\0')
        check_fail(file, line, "jsonbus_subscribe_with succeeded but did not clear the last error");
    return id;
}

/* jsonbus_subscribe_pull that must succeed: evaluates to the id (> 0). */
#define SUBSCRIBE_PULL(bus, pattern, options)                                              \
    check_subscribe_pull(__FILE__, __LINE__, bus, pattern, options)
static CHECK_UNUSED int64_t check_subscribe_pull(const char *file, int line, jsonbus *bus,
                                                 const char *pattern, const char *options) {
    int64_t id = jsonbus_subscribe_pull(bus, pattern, options);
    if (id <= 0)
        check_fail(file, line, "jsonbus_subscribe_pull(\"%s\", %s) returned %s (%lld)", pattern,
                   options ? options : "NULL", jsonbus_status_name((int32_t)id), (long long)id);
    if (jsonbus_last_status() != JSONBUS_OK || jsonbus_last_error()[0] != '\0')
        check_fail(file, line, "jsonbus_subscribe_pull succeeded but did not clear the last error");
    return id;
}

/* The "ended" member of subscription stats text: "null", or the reason's name without its
 * quotes, into out; "?" when missing. */
static CHECK_UNUSED void json_ended(const char *text, char *out, size_t n) {
    snprintf(out, n, "?");
    const char *p = text ? strstr(text, "\"ended\"") : NULL;
    if (p == NULL) return;
    p += strlen("\"ended\"");
    while (*p == ' ' || *p == ':') p++;
    if (strncmp(p, "null", 4) == 0) {
        snprintf(out, n, "null");
        return;
    }
    if (*p != '"') return;
    p++;
    size_t len = strcspn(p, "\"");
    if (len >= n) len = n - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

/* jsonbus_subscription_stats that must succeed; the caller frees it with jsonbus_string_free. */
#define SUB_STATS(bus, id) check_sub_stats(__FILE__, __LINE__, bus, id)
static CHECK_UNUSED char *check_sub_stats(const char *file, int line, jsonbus *bus, int64_t id) {
    char *s = jsonbus_subscription_stats(bus, id);
    if (s == NULL)
        check_fail(file, line, "jsonbus_subscription_stats(%lld) returned NULL", (long long)id);
    if (jsonbus_last_status() != JSONBUS_OK)
        check_fail(file, line, "jsonbus_subscription_stats succeeded but did not clear the status");
    return s;
}

/* An integer counter of subscription `id`. */
#define SUB_STAT(bus, id, key) sub_stat_of(__FILE__, __LINE__, bus, id, key)
static CHECK_UNUSED long long sub_stat_of(const char *file, int line, jsonbus *bus, int64_t id,
                                          const char *key) {
    char *s = check_sub_stats(file, line, bus, id);
    long long v = json_int_after(s, NULL, key);
    if (v < 0) check_fail(file, line, "subscription stats have no integer \"%s\": %s", key, s);
    jsonbus_string_free(s);
    return v;
}

/* An integer counter in stats text captured earlier (e.g. inside an end notice). */
#define TEXT_STAT(text, key) text_stat_of(__FILE__, __LINE__, text, key)
static CHECK_UNUSED long long text_stat_of(const char *file, int line, const char *text,
                                           const char *key) {
    if (text == NULL) check_fail(file, line, "no stats text captured");
    long long v = json_int_after(text, NULL, key);
    if (v < 0) check_fail(file, line, "stats text has no integer \"%s\": %s", key, text);
    return v;
}

/* The "ended" of subscription `id` must be `expected` ("null" or a JSONBUS_END_* name). */
#define CHECK_SUB_ENDED(bus, id, expected)                                                 \
    do {                                                                                   \
        char *check_s_ = SUB_STATS(bus, id);                                               \
        char check_e_[64];                                                                 \
        json_ended(check_s_, check_e_, sizeof check_e_);                                   \
        CHECK_MSG(strcmp(check_e_, (expected)) == 0,                                       \
                  "subscription %lld: \"ended\" is %s, expected %s: %s", (long long)(id),   \
                  check_e_, (expected), check_s_);                                          \
        jsonbus_string_free(check_s_);                                                     \
    } while (0)

/* Waits (up to 2 s) until subscription `id` is forgotten: its stats say NOT_FOUND. A callback
 * subscription is forgotten once its end notice has returned. */
#define WAIT_FORGOTTEN(bus, id) wait_forgotten(__FILE__, __LINE__, bus, id)
static CHECK_UNUSED void wait_forgotten(const char *file, int line, jsonbus *bus, int64_t id) {
    double end = now_ms() + 2000;
    for (;;) {
        char *s = jsonbus_subscription_stats(bus, id);
        if (s == NULL) {
            if (jsonbus_last_status() != JSONBUS_ERR_NOT_FOUND)
                check_fail(file, line, "jsonbus_subscription_stats(%lld): %s", (long long)id,
                           jsonbus_status_name(jsonbus_last_status()));
            return;
        }
        jsonbus_string_free(s);
        if (now_ms() > end)
            check_fail(file, line, "subscription %lld still known 2 s after it ended",
                       (long long)id);
        sleep_us(200);
    }
}

/* Payload {"t":T,"n":N}: publisher T's N-th message. */
static CHECK_UNUSED int format_tn(char *buf, size_t n, int t, int i) {
    return snprintf(buf, n, "{\"t\":%d,\"n\":%d}", t, i);
}
static CHECK_UNUSED int parse_tn(const char *json, int *t, int *n) {
    return sscanf(json, "{\"t\":%d,\"n\":%d}", t, n) == 2;
}

/* The calling thread's name (Linux: /proc/thread-self/comm; Windows: GetThreadDescription,
 * which std's thread names set); "?" when unknown. */
static CHECK_UNUSED void thread_name(char *out, size_t n) {
#ifdef _WIN32
    check_thread_description(GetCurrentThread(), out, n);
#else
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/thread-self/comm", "r");
    if (f == NULL) return;
    if (fgets(out, (int)n, f) == NULL) snprintf(out, n, "?");
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
#endif
}

/* Whether the calling thread is one of jsonbus's dispatcher threads ("jsonbus-N"). */
static CHECK_UNUSED int on_dispatcher_thread(void) {
    char name[64];
    thread_name(name, sizeof name);
    return strncmp(name, "jsonbus-", 8) == 0;
}

/* A one-way gate: callbacks wait at it (up to 10 s) until it is opened. */
struct gate {
    atomic_int open;
    atomic_int waiting; /* callbacks that reached it */
};
static CHECK_UNUSED void gate_wait(struct gate *g) {
    atomic_fetch_add(&g->waiting, 1);
    double end = now_ms() + 10000;
    while (!atomic_load(&g->open) && now_ms() < end) sleep_us(100);
}

#endif /* JSONBUS_TEST_SUB_CHECK_H */
