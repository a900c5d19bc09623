/*
 * test_default_bus: the process-wide default bus and the quick API (guarantee 9).
 *
 *  - jsonbus_default() is always the same pointer;
 *  - add() wraps;
 *  - register_callback = subscribe ">" on the default bus; push_json publishes on "default";
 *  - after jsonbus_shutdown a fresh bus (stats reset, old callbacks gone) serves push_json;
 *  - jsonbus_close(jsonbus_default(), t) is jsonbus_shutdown(t), and jsonbus_free of it is
 *    jsonbus_shutdown(-1);
 *  - shutdown with a time limit drops what it cannot deliver;
 *  - pushes racing with shutdowns either succeed or fail with JSONBUS_ERR_CLOSED.
 */
#include "check.h"

#include <sched.h>

struct seen {
    atomic_int calls;
    atomic_int bad;
};

static int32_t quick_callback(const jsonbus_message *msg, void *user_data) {
    struct seen *s = user_data;
    if (strcmp(msg->topic, "default") != 0 || msg->topic_len != 7 ||
        strcmp(msg->json, "{\"quick\":1}") != 0 || msg->json_len != 11)
        atomic_fetch_add(&s->bad, 1);
    atomic_fetch_add(&s->calls, 1);
    return JSONBUS_OK;
}

static int32_t slow_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    sleep_ms(20);
    atomic_fetch_add((atomic_int *)user_data, 1);
    return JSONBUS_OK;
}

static atomic_int stop_racing;
static atomic_int race_ok, race_closed;

static void *racing_pusher(void *arg) {
    (void)arg;
    unsigned n = 0;
    while (!atomic_load(&stop_racing)) {
        /* Under valgrind, which runs one thread at a time, two pushers that never block can keep
         * the main thread from its next shutdown for many minutes (87 million pushes once):
         * yielding now and then lets it in. */
        if ((++n & 1023) == 0) sched_yield();
        int32_t rc = push_json("[\"race\"]");
        if (rc == JSONBUS_OK) atomic_fetch_add(&race_ok, 1);
        else if (rc == JSONBUS_ERR_CLOSED) atomic_fetch_add(&race_closed, 1);
        else FAIL("push_json racing with jsonbus_shutdown returned %s", jsonbus_status_name(rc));
    }
    return NULL;
}

int main(void) {
    int threads0 = thread_count();

    /* add wraps and never traps */
    CHECK_EQ(add(2, 3), 5);
    CHECK_EQ(add(-7, 7), 0);
    CHECK_EQ(add(INT32_MAX, 1), INT32_MIN);
    CHECK_EQ(add(INT32_MIN, -1), INT32_MAX);
    CHECK_EQ(add(INT32_MAX, INT32_MAX), -2);

    jsonbus *d = jsonbus_default();
    CHECK(d != NULL);
    CHECK(jsonbus_default() == d);

    struct seen first = {0, 0};
    int64_t id = register_callback(quick_callback, &first);
    CHECK_MSG(id > 0, "register_callback returned %s", jsonbus_status_name((int32_t)id));
    CHECK_CLEARED();
    for (int i = 0; i < 10; i++) CHECK_OK(push_json("{\"quick\":1}"));
    CHECK_ERR(push_json(NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(push_json("{quick}"), JSONBUS_ERR_JSON);
    CHECK_ERR(register_callback(NULL, NULL), JSONBUS_ERR_NULL);
    CHECK_OK(jsonbus_flush(jsonbus_default(), 5000));
    CHECK_EQ(atomic_load(&first.calls), 10);
    CHECK_EQ(atomic_load(&first.bad), 0);
    CHECK_EQ(STAT(d, "published"), 10);
    CHECK_EQ(REJECTED(d, "json"), 1);
    CHECK_EQ(STAT(d, "subscriptions"), 1);
    /* register_callback is a ">" subscription: other topics reach it too */
    PUBLISH(d, "some.other.topic", "{\"quick\":1}");
    CHECK_OK(jsonbus_flush(d, 5000));
    CHECK_EQ(atomic_load(&first.calls), 11);

    /* shutdown: a fresh bus next time, same pointer, stats reset, old callbacks gone */
    CHECK_OK(jsonbus_shutdown(-1));
    CHECK(jsonbus_default() == d);
    CHECK_OK(push_json("{\"quick\":1}"));
    CHECK_OK(jsonbus_flush(d, 5000));
    CHECK_EQ(atomic_load(&first.calls), 11);
    CHECK_EQ(STAT(d, "published"), 1);
    CHECK_EQ(STAT(d, "unrouted"), 1);
    CHECK_EQ(REJECTED(d, "json"), 0);
    CHECK_EQ(STAT(d, "subscriptions"), 0);
    CHECK_EQ(STAT(d, "dispatcher_threads"), 1); /* default options */
    CHECK_ERR(jsonbus_unsubscribe(d, id), JSONBUS_ERR_NOT_FOUND);

    /* jsonbus_close(jsonbus_default(), t) is jsonbus_shutdown(t) */
    struct seen second = {0, 0};
    CHECK(register_callback(quick_callback, &second) > 0);
    CHECK_OK(push_json("{\"quick\":1}"));
    CHECK_OK(jsonbus_close(jsonbus_default(), 5000));
    CHECK_EQ(atomic_load(&second.calls), 1); /* delivered before close returned */
    CHECK_OK(push_json("{\"quick\":1}"));     /* reopened, not CLOSED */
    CHECK_OK(jsonbus_flush(d, 5000));
    CHECK_EQ(atomic_load(&second.calls), 1);
    CHECK_EQ(STAT(d, "published"), 1);

    /* jsonbus_free(jsonbus_default()) is jsonbus_shutdown(-1) */
    struct seen third = {0, 0};
    CHECK(register_callback(quick_callback, &third) > 0);
    for (int i = 0; i < 5; i++) CHECK_OK(push_json("{\"quick\":1}"));
    jsonbus_free(jsonbus_default());
    CHECK_EQ(atomic_load(&third.calls), 5);
    CHECK(jsonbus_default() == d);
    CHECK_OK(push_json("{\"quick\":1}"));
    CHECK_OK(jsonbus_flush(d, 5000));
    CHECK_EQ(atomic_load(&third.calls), 5);
    CHECK_EQ(STAT(d, "published"), 1);

    /* shutdown with a time limit drops what it cannot deliver */
    atomic_int slow_calls = 0;
    CHECK(register_callback(slow_callback, &slow_calls) > 0);
    for (int i = 0; i < 50; i++) CHECK_OK(push_json("0"));
    double t0 = now_ms();
    CHECK_ERR(jsonbus_shutdown(50), JSONBUS_ERR_TIMEOUT);
    double ms = now_ms() - t0;
    int delivered = atomic_load(&slow_calls);
    printf("shutdown(50): %.0f ms, %d of 50 delivered\n", ms, delivered);
    CHECK(delivered < 50);
    CHECK_MSG(ms < 1000, "shutdown(50) took %.0f ms", ms);
    sleep_ms(50);
    CHECK_EQ(atomic_load(&slow_calls), delivered); /* nothing runs after it returned */

    /* shutdown twice, and with nothing open */
    CHECK_OK(jsonbus_shutdown(-1));
    CHECK_OK(jsonbus_shutdown(0));

    /* pushes racing with shutdowns: OK on the old or the new bus, or CLOSED */
    pthread_t racers[2];
    for (int i = 0; i < 2; i++) START_THREAD(racers[i], racing_pusher, NULL);
    for (int i = 0; i < 20; i++) {
        sleep_ms(5);
        int32_t rc = jsonbus_shutdown(1000);
        CHECK_MSG(rc == JSONBUS_OK, "shutdown while others push returned %s",
                  jsonbus_status_name(rc));
    }
    atomic_store(&stop_racing, 1);
    for (int i = 0; i < 2; i++) JOIN_THREAD(racers[i]);
    printf("racing pushes: %d OK, %d CLOSED\n", atomic_load(&race_ok), atomic_load(&race_closed));
    CHECK(atomic_load(&race_ok) > 0);

    CHECK_OK(jsonbus_shutdown(-1));
    int threads1 = wait_thread_count(threads0, 1000);
    if (threads1 != threads0) print_threads();
    CHECK_MSG(threads1 == threads0, "%d threads after jsonbus_shutdown, %d at start", threads1,
              threads0);
    printf("ok\n");
    return 0;
}
