/*
 * test_flush: jsonbus_flush = WaitGroup.Wait (contract guarantee 5).
 *
 *  - on an idle bus: OK at once, also with timeout 0;
 *  - with work pending: timeout 0 -> JSONBUS_ERR_TIMEOUT at once, a short timeout ->
 *    TIMEOUT after about that long, -1 -> OK once every earlier message's callback returned;
 *  - several threads flushing their own publishes at once;
 *  - messages other threads publish meanwhile do not hold a flush up;
 *  - what a callback wrote to plain (non-atomic) memory is visible once the flush returns:
 *    the flush synchronises with the callbacks it waited for. ThreadSanitizer checks this
 *    (tests/sanitizers.sh); it once missed it because atomic max/min are invisible to it.
 */
#include "check.h"

static atomic_int in_flight, done;

static int32_t slow_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&in_flight, 1);
    sleep_ms(5);
    atomic_fetch_add(&done, 1);
    atomic_fetch_sub(&in_flight, 1);
    return JSONBUS_OK;
}

/* ---- plain memory written by callbacks, read after flush ---- */
static int plain_last; /* deliberately not atomic */

static int32_t plain_callback(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    spin_us(1); /* about as long as a flush takes to start waiting: both orders happen */
    plain_last = atoi(msg->json);
    return JSONBUS_OK;
}

/* ---- per-thread publish + flush ---- */
#define FLUSHERS 4
#define PER_FLUSHER 200
static jsonbus *bus;
static atomic_int per_thread[FLUSHERS];

static int32_t per_thread_callback(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    int t = msg->json[0] - '0';
    spin_us(20);
    atomic_fetch_add(&per_thread[t], 1);
    return JSONBUS_OK;
}

static void *publish_and_flush(void *arg) {
    int t = (int)(intptr_t)arg;
    char json[2] = {(char)('0' + t), 0};
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < PER_FLUSHER / 4; i++) PUBLISH(bus, "pt", json);
        CHECK_OK(jsonbus_flush(bus, 10000));
        int got = atomic_load(&per_thread[t]);
        CHECK_MSG(got == (round + 1) * PER_FLUSHER / 4,
                  "thread %d: flush returned with %d of its %d messages handled", t, got,
                  (round + 1) * PER_FLUSHER / 4);
    }
    return NULL;
}

/* ---- background publisher that keeps the bus full ---- */
static atomic_int stop_bg;
static atomic_int bg_calls;

static int32_t bg_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    sleep_us(100);
    atomic_fetch_add(&bg_calls, 1);
    return JSONBUS_OK;
}

static void *bg_publisher(void *arg) {
    jsonbus *b = arg;
    double end = now_ms() + 20000;
    while (!atomic_load(&stop_bg) && now_ms() < end) {
        int32_t rc = jsonbus_publish(b, "bg", "{\"bg\":1}", 8);
        if (rc != JSONBUS_OK) FAIL("background publish: %s", jsonbus_status_name(rc));
    }
    return NULL;
}

int main(void) {
    bus = NEW_BUS("{\"dispatcher_threads\":2}");

    /* idle bus */
    CHECK_OK(jsonbus_flush(bus, 0));
    CHECK_OK(jsonbus_flush(bus, -1));
    /* only unrouted messages: nothing to wait for */
    for (int i = 0; i < 10; i++) PUBLISH(bus, "nobody", "1");
    CHECK_OK(jsonbus_flush(bus, 1000));

    SUBSCRIBE(bus, "slow", slow_callback, NULL);
    for (int i = 0; i < 40; i++) PUBLISH(bus, "slow", "1");
    double t0 = now_ms();
    CHECK_ERR(jsonbus_flush(bus, 0), JSONBUS_ERR_TIMEOUT);
    double ms = now_ms() - t0;
    CHECK_MSG(ms < 200, "flush(bus, 0) took %.0f ms", ms);
    t0 = now_ms();
    CHECK_ERR(jsonbus_flush(bus, 30), JSONBUS_ERR_TIMEOUT);
    ms = now_ms() - t0;
    printf("flush(bus, 30) with work pending: TIMEOUT after %.1f ms\n", ms);
    CHECK_MSG(ms >= 25 && ms < 1000, "flush(bus, 30) took %.0f ms", ms);
    CHECK_OK(jsonbus_flush(bus, -1));
    CHECK_EQ(atomic_load(&done), 40);
    CHECK_EQ(atomic_load(&in_flight), 0); /* every callback has returned */
    CHECK_EQ(STAT(bus, "queued"), 0);

    /* plain memory: each round's callback wrote plain_last before the flush returned */
    SUBSCRIBE(bus, "plain", plain_callback, NULL);
    for (int i = 1; i <= 5000; i++) {
        char json[16];
        snprintf(json, sizeof json, "%d", i);
        PUBLISH(bus, "plain", json);
        CHECK_OK(jsonbus_flush(bus, -1));
        CHECK_EQ(plain_last, i);
    }

    /* several threads, each waiting for its own publishes */
    SUBSCRIBE(bus, "pt", per_thread_callback, NULL);
    pthread_t th[FLUSHERS];
    for (int t = 0; t < FLUSHERS; t++) START_THREAD(th[t], publish_and_flush, (void *)(intptr_t)t);
    for (int t = 0; t < FLUSHERS; t++) JOIN_THREAD(th[t]);

    /* later publishes by another thread do not hold a flush up: the background publisher
     * keeps a bus of capacity 500 full all the time, so "wait until idle" would never end */
    jsonbus *busy = NEW_BUS("{\"queue_capacity\":500}");
    SUBSCRIBE(busy, "bg", bg_callback, NULL);
    pthread_t bg;
    START_THREAD(bg, bg_publisher, busy);
    sleep_ms(200);
    int before = atomic_load(&bg_calls);
    t0 = now_ms();
    int32_t rc = jsonbus_flush(busy, 8000);
    ms = now_ms() - t0;
    int after = atomic_load(&bg_calls);
    atomic_store(&stop_bg, 1);
    JOIN_THREAD(bg);
    printf("flush while another thread keeps publishing: %s after %.0f ms (%d callbacks ran)\n",
           jsonbus_status_name(rc), ms, after - before);
    CHECK_MSG(rc == JSONBUS_OK,
              "flush returned %s: messages published after it began held it up",
              jsonbus_status_name(rc));
    CHECK_OK(jsonbus_flush(busy, -1));
    CHECK_OK(jsonbus_close(busy, -1));
    jsonbus_free(busy);

    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    printf("ok\n");
    return 0;
}
