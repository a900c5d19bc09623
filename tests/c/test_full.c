/*
 * test_full: bounded queue and publish_timeout_ms (contract guarantee 4, options, 7).
 *
 * queue_capacity 2 and a blocked callback: the running message and one queued one fill the
 * bus; the next publish:
 *   publish_timeout_ms 0    -> JSONBUS_ERR_FULL at once
 *   publish_timeout_ms 300  -> JSONBUS_ERR_FULL after about 300 ms; OK if room appears
 *   publish_timeout_ms -1   -> waits until there is room
 * and a publish from a callback into its own full bus fails at once with FULL even with -1.
 */
#include "check.h"

static atomic_int entered, release_flag, calls;

static int32_t blocking_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&calls, 1);
    atomic_store(&entered, 1);
    double end = now_ms() + 10000;
    while (!atomic_load(&release_flag) && now_ms() < end) sleep_us(200);
    return JSONBUS_OK;
}

static void reset(void) {
    atomic_store(&entered, 0);
    atomic_store(&release_flag, 0);
    atomic_store(&calls, 0);
}

/* New bus with capacity 2 whose only subscription is blocked on its first message and has
 * one more queued: the bus is full. */
static jsonbus *full_bus(int timeout_ms) {
    char options[128];
    snprintf(options, sizeof options,
             "{\"queue_capacity\":2,\"publish_timeout_ms\":%d,\"dispatcher_threads\":1}",
             timeout_ms);
    reset();
    jsonbus *bus = NEW_BUS(options);
    SUBSCRIBE(bus, "x", blocking_callback, NULL);
    PUBLISH(bus, "x", "1");
    CHECK_MSG(wait_for(&entered, 1, 5000), "callback never started");
    PUBLISH(bus, "x", "2");
    CHECK_EQ(STAT(bus, "queued"), 2);
    return bus;
}

static void *release_later(void *arg) {
    sleep_ms((long)(intptr_t)arg);
    atomic_store(&release_flag, 1);
    return NULL;
}

static void finish(jsonbus *bus) {
    atomic_store(&release_flag, 1);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- publish from a callback into its own full bus ---- */
static jsonbus *self_bus;
static int32_t self_publish_rc = 12345;
static double self_publish_ms = -1;
static atomic_int self_done;

static int32_t self_publishing_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    if (atomic_load(&self_done)) return JSONBUS_OK;
    double t0 = now_ms();
    self_publish_rc = jsonbus_publish(self_bus, "y", "3", 1);
    self_publish_ms = now_ms() - t0;
    atomic_store(&self_done, 1);
    return JSONBUS_OK;
}

int main(void) {
    /* publish_timeout_ms 0: fails at once */
    jsonbus *bus = full_bus(0);
    double t0 = now_ms();
    CHECK_ERR(jsonbus_publish(bus, "x", "3", 1), JSONBUS_ERR_FULL);
    double ms = now_ms() - t0;
    printf("timeout 0: FULL after %.1f ms\n", ms);
    CHECK_MSG(ms < 100, "publish_timeout_ms 0 waited %.0f ms", ms);
    CHECK_EQ(REJECTED(bus, "full"), 1);
    CHECK_EQ(STAT(bus, "published"), 2);
    finish(bus);

    /* publish_timeout_ms 300: waits about that long, then fails */
    bus = full_bus(300);
    t0 = now_ms();
    CHECK_ERR(jsonbus_publish(bus, "x", "3", 1), JSONBUS_ERR_FULL);
    ms = now_ms() - t0;
    printf("timeout 300: FULL after %.1f ms\n", ms);
    CHECK_MSG(ms >= 280 && ms < 2000, "publish_timeout_ms 300 failed after %.0f ms", ms);
    CHECK_EQ(REJECTED(bus, "full"), 1);
    /* ... and succeeds when room appears within the time */
    pthread_t th;
    START_THREAD(th, release_later, (void *)(intptr_t)100);
    t0 = now_ms();
    CHECK_OK(jsonbus_publish(bus, "x", "4", 1));
    ms = now_ms() - t0;
    JOIN_THREAD(th);
    printf("timeout 300, room after 100 ms: OK after %.1f ms\n", ms);
    CHECK_MSG(ms >= 80 && ms < 300, "publish returned after %.0f ms", ms);
    finish(bus);

    /* publish_timeout_ms -1: waits until there is room (here after 150 ms) */
    bus = full_bus(-1);
    START_THREAD(th, release_later, (void *)(intptr_t)150);
    t0 = now_ms();
    CHECK_OK(jsonbus_publish(bus, "x", "5", 1));
    ms = now_ms() - t0;
    JOIN_THREAD(th);
    printf("timeout -1, room after 150 ms: OK after %.1f ms\n", ms);
    CHECK_MSG(ms >= 130, "publish_timeout_ms -1 did not wait for room (%.0f ms)", ms);
    CHECK_EQ(REJECTED(bus, "full"), 0);
    finish(bus);
    CHECK_EQ(atomic_load(&calls), 3);

    /* a callback publishing into its own full bus: FULL at once despite -1 */
    reset();
    self_bus = NEW_BUS("{\"queue_capacity\":1,\"publish_timeout_ms\":-1}");
    SUBSCRIBE(self_bus, "x", self_publishing_callback, NULL);
    SUBSCRIBE(self_bus, "y", self_publishing_callback, NULL);
    PUBLISH(self_bus, "x", "1");
    CHECK_MSG(wait_for(&self_done, 1, 5000),
              "publish from a callback into its own full bus hung (publish_timeout_ms -1)");
    printf("self publish into full bus: %s after %.1f ms\n", jsonbus_status_name(self_publish_rc),
           self_publish_ms);
    CHECK_RC(self_publish_rc, JSONBUS_ERR_FULL);
    CHECK_MSG(self_publish_ms < 100, "it waited %.0f ms", self_publish_ms);
    CHECK_OK(jsonbus_flush(self_bus, 5000));
    CHECK_EQ(REJECTED(self_bus, "full"), 1);
    CHECK_OK(jsonbus_close(self_bus, -1));
    jsonbus_free(self_bus);
    printf("ok\n");
    return 0;
}
