/* test_timers: Part 2B timers (guarantee 21) - never early, in setting order, counted against
 * queue_capacity from the call, not waited for by flush, discarded and counted by close,
 * cancel racing firing (exactly one of "fired" or "cancelled"), 100,000 pending timers. */
#include "check.h"

typedef struct {
    atomic_int count;
    atomic_int bad_order;
    atomic_int early;
    long long last;           /* the last payload number seen (callbacks are serial) */
    uint64_t due_ns[4096];    /* per payload number: earliest allowed delivery */
} receiver;

/* Payloads are numbers i; a message must not arrive before due_ns[i]. */
static int32_t on_timer(const jsonbus_message *m, void *ud) {
    receiver *r = ud;
    uint64_t now = jsonbus_now_ns();
    long long i = strtoll(m->json, NULL, 10);
    if (i >= 0 && i < 4096 && now < r->due_ns[i]) atomic_fetch_add(&r->early, 1);
    if (i < r->last) atomic_fetch_add(&r->bad_order, 1);
    r->last = i;
    atomic_fetch_add(&r->count, 1);
    return JSONBUS_OK;
}

static int64_t arm(jsonbus *bus, const char *topic, long long i, int64_t delay_ms) {
    char body[32];
    int n = snprintf(body, sizeof body, "%lld", i);
    int64_t id = jsonbus_publish_after(bus, topic, body, (size_t)n, delay_ms);
    CHECK_MSG(id > 0, "jsonbus_publish_after returned %lld", (long long)id);
    CHECK_CLEARED();
    return id;
}

static void never_early_and_in_order(void) {
    jsonbus *bus = NEW_BUS(NULL);
    static receiver r;
    memset(&r, 0, sizeof r);
    r.last = -1;
    SUBSCRIBE(bus, "tick", on_timer, &r);
    /* 200 timers, due every 0.25 ms in setting order: delays grow with i */
    uint64_t t0 = jsonbus_now_ns();
    for (int i = 0; i < 200; i++) {
        int64_t delay = 5 + i / 4;
        r.due_ns[i] = jsonbus_now_ns() + (uint64_t)delay * 1000000u;
        arm(bus, "tick", i, delay);
    }
    /* same delay, set one after the other: fire in the order they were set */
    for (int i = 200; i < 400; i++) {
        r.due_ns[i] = jsonbus_now_ns() + 80 * 1000000u;
        arm(bus, "tick", i, 80);
    }
    CHECK(STAT(bus, "timers") > 0);
    /* flush does not wait for timers not yet due: with one due in 60 s it returns OK within
     * its 5 s limit (and its time-out would say TIMEOUT if it waited) */
    int64_t far = arm(bus, "tick", 4000, 60000);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_OK(jsonbus_cancel(bus, far));
    for (int waited = 0; atomic_load(&r.count) < 400 && waited < 10000; waited++) sleep_ms(1);
    CHECK_EQ(atomic_load(&r.count), 400);
    CHECK_EQ(atomic_load(&r.early), 0);
    CHECK_EQ(atomic_load(&r.bad_order), 0);
    CHECK_EQ(STAT(bus, "timers"), 0);
    CHECK_EQ(STAT(bus, "published"), 400);
    printf("400 timers delivered %.1f ms after the first was set\n",
           (double)(jsonbus_now_ns() - t0) / 1e6);
    /* delay 0 and negative: at once */
    arm(bus, "tick", 400, 0);
    arm(bus, "tick", 401, -5);
    for (int waited = 0; atomic_load(&r.count) < 402 && waited < 5000; waited++) sleep_ms(1);
    CHECK_EQ(atomic_load(&r.count), 402);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

static void held_against_capacity_and_discarded_by_close(void) {
    jsonbus *bus = NEW_BUS("{\"queue_capacity\":4,\"publish_timeout_ms\":0}");
    int64_t ids[4];
    for (int i = 0; i < 4; i++) ids[i] = arm(bus, "later", i, 60000);
    CHECK_EQ(STAT(bus, "queued"), 4);
    CHECK_EQ(STAT(bus, "timers"), 4);
    CHECK_ERR(jsonbus_publish(bus, "now", "1", 1), JSONBUS_ERR_FULL);
    CHECK_ERR(jsonbus_publish_after(bus, "later", "1", 1, 10), JSONBUS_ERR_FULL);
    CHECK_OK(jsonbus_cancel(bus, ids[0]));
    CHECK_ERR(jsonbus_cancel(bus, ids[0]), JSONBUS_ERR_NOT_FOUND);
    CHECK_EQ(STAT(bus, "timers"), 3);
    PUBLISH(bus, "now", "1"); /* the cancelled timer's room */
    CHECK_ERR(jsonbus_cancel(bus, 0), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_cancel(bus, -1), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_cancel(bus, INT64_MAX), JSONBUS_ERR_NOT_FOUND);
    long long dropped = STAT(bus, "dropped");
    CHECK_OK(jsonbus_close(bus, 1000)); /* discarding timers is not a failure of close */
    CHECK_EQ(STAT(bus, "dropped"), dropped + 3);
    CHECK_EQ(STAT(bus, "timers"), 0);
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_ERR(jsonbus_cancel(bus, ids[1]), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_publish_after(bus, "later", "1", 1, 10), JSONBUS_ERR_CLOSED);
    jsonbus_free(bus);
}

/* Cancel races firing: each timer either fires (delivered) or is cancelled (OK), never both. */
static void cancel_races_firing(void) {
    enum { N = 3000 };
    jsonbus *bus = NEW_BUS("{\"queue_capacity\":10000}");
    static receiver r;
    memset(&r, 0, sizeof r);
    r.last = -1;
    SUBSCRIBE(bus, "race", on_timer, &r);
    static int64_t ids[N];
    int cancelled = 0;
    /* batches of 100 timers due in 2 ms, cancelled 1.5 to 2.5 ms later: about when they fire */
    for (int b = 0; b < N / 100; b++) {
        for (int i = b * 100; i < (b + 1) * 100; i++) ids[i] = arm(bus, "race", 0, 2);
        sleep_us(1500 + (b * 37) % 1000);
        for (int i = b * 100; i < (b + 1) * 100; i++) {
            int32_t rc = jsonbus_cancel(bus, ids[i]);
            CHECK_MSG(rc == JSONBUS_OK || rc == JSONBUS_ERR_NOT_FOUND, "cancel returned %d",
                      (int)rc);
            cancelled += rc == JSONBUS_OK;
        }
    }
    for (int waited = 0; STAT(bus, "timers") > 0 && waited < 10000; waited++) sleep_ms(1);
    CHECK_OK(jsonbus_flush(bus, 10000));
    CHECK_EQ(atomic_load(&r.count) + cancelled, N);
    CHECK_EQ(STAT(bus, "published"), atomic_load(&r.count));
    CHECK_EQ(STAT(bus, "queued"), 0);
    printf("cancel race: %d fired, %d cancelled\n", atomic_load(&r.count), cancelled);
#ifndef _WIN32
    /* Under Wine sleeps come in whole milliseconds, so a run may see only one outcome; the
     * exactly-once checks above hold either way. */
    CHECK(atomic_load(&r.count) > 0 && cancelled > 0);
#endif
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

static void a_hundred_thousand_pending_timers(void) {
    enum { N = 100000 };
    jsonbus *bus = NEW_BUS("{\"queue_capacity\":200000}");
    static int64_t ids[N];
    double t0 = now_ms();
    for (int i = 0; i < N; i++) ids[i] = arm(bus, "far", i, 600000 + (i * 7919) % 100000);
    double set_ms = now_ms() - t0;
    CHECK_EQ(STAT(bus, "timers"), N);
    t0 = now_ms();
    for (int i = 0; i < N; i += 2) CHECK_OK(jsonbus_cancel(bus, ids[i]));
    double cancel_ms = now_ms() - t0;
    CHECK_EQ(STAT(bus, "timers"), N / 2);
    CHECK_EQ(STAT(bus, "queued"), N / 2);
    printf("100000 timers: set in %.1f ms, 50000 cancelled in %.1f ms\n", set_ms, cancel_ms);
    /* idle: the timer thread sleeps (its CPU time does not grow) - checked by the soak run's
     * CPU figures; here the bus simply keeps working */
    int64_t soon = arm(bus, "far", 1, 1);
    (void)soon;
    for (int waited = 0; STAT(bus, "published") < 1 && waited < 5000; waited++) sleep_ms(1);
    CHECK_EQ(STAT(bus, "published"), 1);
    long long dropped = STAT(bus, "dropped");
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(STAT(bus, "dropped"), dropped + N / 2);
    CHECK_EQ(STAT(bus, "queued"), 0);
    jsonbus_free(bus);
}

static void bad_arguments(void) {
    jsonbus *bus = NEW_BUS(NULL);
    CHECK_ERR(jsonbus_publish_after(NULL, "t", "1", 1, 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish_after(bus, NULL, "1", 1, 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish_after(bus, "t", NULL, 1, 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish_after(bus, "t.>", "1", 1, 1), JSONBUS_ERR_TOPIC);
    CHECK_ERR(jsonbus_publish_after(bus, "t", "[1,", 3, 1), JSONBUS_ERR_JSON);
    CHECK_ERR(jsonbus_publish_after(bus, "t", "\"\xff\"", 3, 1), JSONBUS_ERR_UTF8);
    CHECK_ERR(jsonbus_cancel(NULL, 1), JSONBUS_ERR_NULL);
    CHECK_EQ(STAT(bus, "timers"), 0);
    CHECK_EQ(STAT(bus, "queued"), 0);
    /* a huge delay is accepted (taken as 2^40 ms) and discarded by close */
    CHECK(jsonbus_publish_after(bus, "t", "1", 1, INT64_MAX) > 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

int main(void) {
    never_early_and_in_order();
    held_against_capacity_and_discarded_by_close();
    cancel_races_firing();
    a_hundred_thousand_pending_timers();
    bad_arguments();
    printf("test_timers: ok\n");
    return 0;
}
