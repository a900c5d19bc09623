/*
 * test_serial: a subscription's callback never overlaps itself, while different
 * subscriptions do run in parallel on 2 dispatcher threads, and one slow subscription does
 * not hold back the others (contract guarantee 3).
 */
#include "check.h"

#define MESSAGES 150

struct counter {
    atomic_int in_flight;
    atomic_int overlaps;
    atomic_int calls;
};

static atomic_int running_total;  /* callbacks running right now, over all subscriptions */
static atomic_int max_running;    /* the most seen at once */
static pthread_t main_thread;
static atomic_int on_main_thread;

static int32_t busy_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    struct counter *c = user_data;
    if (pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&on_main_thread, 1);
    if (atomic_fetch_add(&c->in_flight, 1) != 0) atomic_fetch_add(&c->overlaps, 1);
    int now = atomic_fetch_add(&running_total, 1) + 1;
    int seen = atomic_load(&max_running);
    while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now)) {
    }
    sleep_us(1000);   /* a little work, partly sleeping ... */
    spin_us(100);     /* ... partly spinning */
    atomic_fetch_sub(&running_total, 1);
    atomic_fetch_sub(&c->in_flight, 1);
    atomic_fetch_add(&c->calls, 1);
    return JSONBUS_OK;
}

static jsonbus *bus;

static void *publish_a(void *arg) {
    (void)arg;
    for (int i = 0; i < MESSAGES; i++) PUBLISH(bus, "a", "{\"k\":\"a\"}");
    return NULL;
}

/* ---- slow subscription does not block others ---- */
static atomic_int slow_entered, slow_release, fast_calls;

static int32_t slow_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_store(&slow_entered, 1);
    double end = now_ms() + 10000;
    while (!atomic_load(&slow_release) && now_ms() < end) sleep_us(200);
    return JSONBUS_OK;
}

static int32_t fast_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&fast_calls, 1);
    return JSONBUS_OK;
}

int main(void) {
    main_thread = pthread_self();
    bus = NEW_BUS("{\"dispatcher_threads\":2}");
    CHECK_EQ(STAT(bus, "dispatcher_threads"), 2);

    /* two subscriptions on "a" and one on "b": each must stay serial */
    struct counter ca1 = {0, 0, 0}, ca2 = {0, 0, 0}, cb = {0, 0, 0};
    SUBSCRIBE(bus, "a", busy_callback, &ca1);
    SUBSCRIBE(bus, "a", busy_callback, &ca2);
    SUBSCRIBE(bus, "b", busy_callback, &cb);

    /* "a" from two threads at once, "b" from this one */
    pthread_t t1, t2;
    double t0 = now_ms();
    START_THREAD(t1, publish_a, NULL);
    START_THREAD(t2, publish_a, NULL);
    for (int i = 0; i < MESSAGES; i++) PUBLISH(bus, "b", "{\"k\":\"b\"}");
    JOIN_THREAD(t1);
    JOIN_THREAD(t2);
    CHECK_OK(jsonbus_flush(bus, 30000));
    double elapsed = now_ms() - t0;

    printf("%.0f ms; calls %d/%d/%d; overlaps %d/%d/%d; max running at once %d\n", elapsed,
           atomic_load(&ca1.calls), atomic_load(&ca2.calls), atomic_load(&cb.calls),
           atomic_load(&ca1.overlaps), atomic_load(&ca2.overlaps), atomic_load(&cb.overlaps),
           atomic_load(&max_running));
    CHECK_EQ(atomic_load(&ca1.calls), 2 * MESSAGES);
    CHECK_EQ(atomic_load(&ca2.calls), 2 * MESSAGES);
    CHECK_EQ(atomic_load(&cb.calls), MESSAGES);
    CHECK_MSG(atomic_load(&ca1.overlaps) == 0 && atomic_load(&ca2.overlaps) == 0 &&
                  atomic_load(&cb.overlaps) == 0,
              "a subscription's callback ran concurrently with itself");
    CHECK_MSG(atomic_load(&max_running) >= 2,
              "with 2 dispatcher threads, callbacks of different subscriptions never ran in "
              "parallel");
    CHECK_MSG(atomic_load(&max_running) <= 2,
              "%d callbacks ran at once with only 2 dispatcher threads",
              atomic_load(&max_running));
    CHECK_MSG(atomic_load(&on_main_thread) == 0, "a callback ran on the publishing thread");

    /* One slow subscription must not hold back another while a dispatcher thread is free. */
    SUBSCRIBE(bus, "slow", slow_callback, NULL);
    SUBSCRIBE(bus, "fast", fast_callback, NULL);
    PUBLISH(bus, "slow", "1");
    CHECK_MSG(wait_for(&slow_entered, 1, 5000), "slow callback never started");
    for (int i = 0; i < 100; i++) PUBLISH(bus, "fast", "2");
    CHECK_MSG(wait_for(&fast_calls, 100, 5000),
              "only %d of 100 messages of another subscription were delivered while one "
              "subscription was blocked (2 dispatcher threads)",
              atomic_load(&fast_calls));
    atomic_store(&slow_release, 1);
    CHECK_OK(jsonbus_flush(bus, 10000));

    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    printf("ok\n");
    return 0;
}
