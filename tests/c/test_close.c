/*
 * test_close: jsonbus_close and jsonbus_free (contract guarantees 2, 5, 6, 8).
 *
 *  1. close with a time limit: slow callback, many queued messages; close(bus, 50) returns
 *     JSONBUS_ERR_TIMEOUT; stats: dropped = what was not delivered,
 *     published = delivered + dropped + unrouted; no callback after close returns; the
 *     bus's threads are gone; then publish/subscribe -> CLOSED, unsubscribe -> NOT_FOUND,
 *     flush and a second close -> OK, stats still work.
 *  2. close in time -> OK, everything delivered.
 *  3. jsonbus_free of an open bus delivers everything first.
 *  4. a flush waiting when close discards its messages returns JSONBUS_ERR_CLOSED.
 *  5. close always waits for a running callback, even with timeout 0.
 */
#include "check.h"

static atomic_int calls;
static atomic_int closed_flag; /* set right after close returned */
static atomic_int late_calls;
static atomic_int entered, release_flag;

static int32_t slow_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    if (atomic_load(&closed_flag)) atomic_fetch_add(&late_calls, 1);
    atomic_store(&entered, 1);
    sleep_ms(10);
    atomic_fetch_add(&calls, 1);
    return JSONBUS_OK;
}

static int32_t blocking_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    if (atomic_load(&closed_flag)) atomic_fetch_add(&late_calls, 1);
    atomic_store(&entered, 1);
    double end = now_ms() + 10000;
    while (!atomic_load(&release_flag) && now_ms() < end) sleep_us(200);
    sleep_ms(20);
    atomic_fetch_add(&calls, 1);
    return JSONBUS_OK;
}

static void reset(void) {
    atomic_store(&calls, 0);
    atomic_store(&closed_flag, 0);
    atomic_store(&late_calls, 0);
    atomic_store(&entered, 0);
    atomic_store(&release_flag, 0);
}

static void test_close_timeout(void) {
    reset();
    int threads0 = thread_count();
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    int64_t id = SUBSCRIBE(bus, "x", slow_callback, NULL);
    for (int i = 0; i < 5; i++) PUBLISH(bus, "nobody", "0");
    for (int i = 0; i < 200; i++) PUBLISH(bus, "x", "{\"slow\":true}");
    CHECK_MSG(wait_for(&entered, 1, 5000), "callback never started");

    double t0 = now_ms();
    CHECK_ERR(jsonbus_close(bus, 50), JSONBUS_ERR_TIMEOUT);
    double ms = now_ms() - t0;
    atomic_store(&closed_flag, 1);
    int delivered = atomic_load(&calls);
    printf("close(50) took %.0f ms; %d of 200 delivered\n", ms, delivered);
    CHECK_MSG(ms >= 40 && ms < 1000, "close(bus, 50) took %.0f ms", ms);
    CHECK(delivered >= 1 && delivered < 200);
    print_stats("after close", bus);
    CHECK_EQ(STAT(bus, "published"), 205);
    CHECK_EQ(STAT(bus, "unrouted"), 5);
    CHECK_EQ(STAT(bus, "delivered"), delivered);
    CHECK_EQ(STAT(bus, "dropped"), 200 - delivered);
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_EQ(STAT(bus, "published"),
             STAT(bus, "delivered") + STAT(bus, "dropped") + STAT(bus, "unrouted"));

    /* the bus has no threads left */
    int threads1 = wait_thread_count(threads0, 1000);
    if (threads1 != threads0) print_threads();
    CHECK_MSG(threads1 == threads0, "%d threads after close, %d before jsonbus_new", threads1,
              threads0);

    /* after close */
    CHECK_ERR(jsonbus_publish(bus, "x", "1", 1), JSONBUS_ERR_CLOSED);
    CHECK_ERR(jsonbus_publish(bus, "nobody", "1", 1), JSONBUS_ERR_CLOSED);
    CHECK_EQ(REJECTED(bus, "closed"), 2);
    CHECK_ERR(jsonbus_subscribe(bus, "x", slow_callback, NULL), JSONBUS_ERR_CLOSED);
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
    CHECK_OK(jsonbus_flush(bus, -1));
    CHECK_OK(jsonbus_flush(bus, 0));
    CHECK_OK(jsonbus_close(bus, 50));
    CHECK_OK(jsonbus_close(bus, -1));
    char *s = jsonbus_stats(bus);
    CHECK(s != NULL);
    CHECK_CLEARED();
    jsonbus_string_free(s);
    sleep_ms(50);
    CHECK_EQ(atomic_load(&calls), delivered);
    CHECK_EQ(atomic_load(&late_calls), 0);
    jsonbus_free(bus);
}

static void test_close_in_time(void) {
    reset();
    jsonbus *bus = NEW_BUS(NULL);
    SUBSCRIBE(bus, "x", slow_callback, NULL);
    for (int i = 0; i < 10; i++) PUBLISH(bus, "x", "1");
    CHECK_OK(jsonbus_close(bus, 10000));
    atomic_store(&closed_flag, 1);
    CHECK_EQ(atomic_load(&calls), 10);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_EQ(STAT(bus, "delivered"), 10);
    sleep_ms(20);
    CHECK_EQ(atomic_load(&late_calls), 0);
    jsonbus_free(bus);

    /* without a limit */
    reset();
    bus = NEW_BUS(NULL);
    SUBSCRIBE(bus, "x", slow_callback, NULL);
    for (int i = 0; i < 10; i++) PUBLISH(bus, "x", "1");
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&calls), 10);
    jsonbus_free(bus);
}

static void test_free_open_bus(void) {
    reset();
    int threads0 = thread_count();
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":3}");
    SUBSCRIBE(bus, "x", slow_callback, NULL);
    for (int i = 0; i < 20; i++) PUBLISH(bus, "x", "1");
    jsonbus_free(bus); /* closes first, without a time limit */
    atomic_store(&closed_flag, 1);
    CHECK_MSG(atomic_load(&calls) == 20, "jsonbus_free of an open bus delivered %d of 20",
              atomic_load(&calls));
    int threads1 = wait_thread_count(threads0, 1000);
    if (threads1 != threads0) print_threads();
    CHECK_MSG(threads1 == threads0, "%d threads after jsonbus_free, %d before", threads1,
              threads0);
    sleep_ms(20);
    CHECK_EQ(atomic_load(&late_calls), 0);
}

/* ---- a flush that is waiting when close discards its messages ---- */
struct flush_job {
    jsonbus *bus;
    int32_t rc;
};
static void *flusher(void *arg) {
    struct flush_job *job = arg;
    job->rc = jsonbus_flush(job->bus, -1);
    return NULL;
}
static void *release_later(void *arg) {
    sleep_ms((long)(intptr_t)arg);
    atomic_store(&release_flag, 1);
    return NULL;
}

static void test_flush_interrupted_by_close(void) {
    reset();
    jsonbus *bus = NEW_BUS(NULL);
    SUBSCRIBE(bus, "x", blocking_callback, NULL);
    PUBLISH(bus, "x", "1");
    CHECK_MSG(wait_for(&entered, 1, 5000), "callback never started");
    for (int i = 0; i < 10; i++) PUBLISH(bus, "x", "2");
    struct flush_job job = {bus, 12345};
    pthread_t fth, rth;
    START_THREAD(fth, flusher, &job);
    sleep_ms(50);
    START_THREAD(rth, release_later, (void *)(intptr_t)200);
    double t0 = now_ms();
    /* the running callback is always waited for (about 200 ms), then the rest is dropped */
    CHECK_ERR(jsonbus_close(bus, 50), JSONBUS_ERR_TIMEOUT);
    double ms = now_ms() - t0;
    atomic_store(&closed_flag, 1);
    JOIN_THREAD(rth);
    JOIN_THREAD(fth);
    printf("close(50) with a callback blocked for 200 ms took %.0f ms; flush returned %s\n", ms,
           jsonbus_status_name(job.rc));
    CHECK_MSG(ms >= 150, "close returned after %.0f ms, while a callback was still running", ms);
    CHECK_RC(job.rc, JSONBUS_ERR_CLOSED);
    int delivered = atomic_load(&calls);
    CHECK(delivered >= 1);
    CHECK_EQ(STAT(bus, "delivered"), delivered);
    CHECK_EQ(STAT(bus, "dropped"), 11 - delivered);
    CHECK(STAT(bus, "dropped") >= 1);
    sleep_ms(20);
    CHECK_EQ(atomic_load(&late_calls), 0);
    jsonbus_free(bus);
}

static void test_close_zero_waits_running_callback(void) {
    reset();
    jsonbus *bus = NEW_BUS(NULL);
    SUBSCRIBE(bus, "x", blocking_callback, NULL);
    PUBLISH(bus, "x", "1");
    CHECK_MSG(wait_for(&entered, 1, 5000), "callback never started");
    pthread_t rth;
    START_THREAD(rth, release_later, (void *)(intptr_t)100);
    double t0 = now_ms();
    int32_t rc = jsonbus_close(bus, 0);
    double ms = now_ms() - t0;
    atomic_store(&closed_flag, 1);
    JOIN_THREAD(rth);
    /* nothing was discarded: the only message was running and is waited for */
    CHECK_RC(rc, JSONBUS_OK);
    CHECK_MSG(ms >= 80, "close(bus, 0) returned after %.0f ms while a callback was running", ms);
    CHECK_EQ(atomic_load(&calls), 1);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    jsonbus_free(bus);
}

int main(void) {
    test_close_timeout();
    test_close_in_time();
    test_free_open_bus();
    test_flush_interrupted_by_close();
    test_close_zero_waits_running_callback();
    printf("ok\n");
    return 0;
}
