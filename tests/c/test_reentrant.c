/*
 * test_reentrant: calls into the library from inside callbacks (contract guarantees 5, 7).
 *
 *  - publish / subscribe / unsubscribe / stats / quick API from a callback work;
 *  - flush, close (own bus), shutdown and close of the default bus (from a default-bus
 *    callback) return JSONBUS_ERR_DEADLOCK instead of hanging, and leave the bus usable;
 *  - jsonbus_free of its own bus from a callback does nothing and sets the last status to
 *    JSONBUS_ERR_DEADLOCK;
 *  - flush of ANOTHER bus from a callback is allowed;
 *  - flush waits for messages that callbacks publish, transitively (a -> b -> c);
 *  - an end notice of another bus, run by jsonbus_unsubscribe from a callback, is still inside
 *    that callback: flush, close and free of the callback's bus are DEADLOCK there too.
 */
#include "check.h"

static jsonbus *bus;
static jsonbus *other_bus;

/* results recorded by the callback, checked by main */
struct results {
    int32_t publish_rc, unsub_rc, flush_rc, flush_rc_timeout, close_rc, push_rc, unsub_default_rc;
    int32_t flush_other_rc, after_free_status, publish_after_free_rc, publish_after_close_rc;
    int32_t flush_status, close_status;
    int64_t sub_id, default_sub_id;
    int stats_ok, flush_error_nonempty, free_error_nonempty;
    atomic_int done;
};
static struct results r;

static atomic_int dyn_calls, out_calls, default_calls;

static int32_t count_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    atomic_fetch_add((atomic_int *)user_data, 1);
    return JSONBUS_OK;
}

static int32_t reentrant_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    r.publish_rc = jsonbus_publish(bus, "out", "{\"from\":\"callback\"}", 19);
    r.sub_id = jsonbus_subscribe(bus, "dyn", count_callback, &dyn_calls);
    r.unsub_rc = r.sub_id > 0 ? jsonbus_unsubscribe(bus, r.sub_id) : -1;
    char *s = jsonbus_stats(bus);
    r.stats_ok = s != NULL && s[0] == '{';
    jsonbus_string_free(s);

    r.flush_rc = jsonbus_flush(bus, -1);
    r.flush_status = jsonbus_last_status();
    r.flush_error_nonempty = jsonbus_last_error()[0] != '\0';
    r.flush_rc_timeout = jsonbus_flush(bus, 200);
    r.close_rc = jsonbus_close(bus, -1);
    r.close_status = jsonbus_last_status();
    r.publish_after_close_rc = jsonbus_publish(bus, "out", "2", 1); /* still open */

    jsonbus_free(bus); /* must do nothing */
    r.after_free_status = jsonbus_last_status();
    r.free_error_nonempty = jsonbus_last_error()[0] != '\0';
    r.publish_after_free_rc = jsonbus_publish(bus, "out", "3", 1);

    r.flush_other_rc = jsonbus_flush(other_bus, 2000); /* another bus: allowed */

    r.push_rc = push_json("{\"quick\":true}");
    r.default_sub_id = register_callback(count_callback, &default_calls);
    r.unsub_default_rc =
        r.default_sub_id > 0 ? jsonbus_unsubscribe(jsonbus_default(), r.default_sub_id) : -1;
    atomic_store(&r.done, 1);
    return JSONBUS_OK;
}

/* ---- self-waits on the default bus ---- */
static int32_t default_shutdown_rc, default_close_rc, default_flush_rc, default_free_status;
static int32_t default_push_after_rc;
static atomic_int default_done;

static int32_t default_bus_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    if (atomic_load(&default_done)) return JSONBUS_OK;
    default_shutdown_rc = jsonbus_shutdown(-1);
    default_close_rc = jsonbus_close(jsonbus_default(), 100);
    default_flush_rc = jsonbus_flush(jsonbus_default(), -1);
    jsonbus_free(jsonbus_default());
    default_free_status = jsonbus_last_status();
    default_push_after_rc = push_json("\"still open\"");
    atomic_store(&default_done, 1);
    return JSONBUS_OK;
}

/* ---- chain a -> b -> c ---- */
static atomic_int chain_c;
static atomic_int chain_errors;

static int32_t chain_a(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    sleep_ms(5);
    if (jsonbus_publish(bus, "chain.b", msg->json, msg->json_len) != JSONBUS_OK)
        atomic_fetch_add(&chain_errors, 1);
    return JSONBUS_OK;
}
static int32_t chain_b(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    sleep_ms(5);
    if (jsonbus_publish(bus, "chain.c", msg->json, msg->json_len) != JSONBUS_OK)
        atomic_fetch_add(&chain_errors, 1);
    return JSONBUS_OK;
}
static int32_t chain_c_cb(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    sleep_ms(20);
    atomic_fetch_add(&chain_c, 1);
    return JSONBUS_OK;
}

/* other_bus's subscription `nested_sub` is ended from a callback of `bus`; its end notice
 * then runs inside that callback. */
static int64_t nested_sub;
static int32_t nested_flush_rc, nested_close_rc, nested_free_status;
static atomic_int nested_done;

static void nested_end(int64_t id, int32_t reason, void *user_data) {
    (void)id, (void)reason, (void)user_data;
    nested_flush_rc = jsonbus_flush(bus, -1);
    nested_close_rc = jsonbus_close(bus, -1);
    jsonbus_free(bus);
    nested_free_status = jsonbus_last_status();
    atomic_store(&nested_done, 1);
}

static int32_t nested_outer(const jsonbus_message *msg, void *user_data) {
    (void)msg, (void)user_data;
    return jsonbus_unsubscribe(other_bus, nested_sub) == JSONBUS_OK ? JSONBUS_OK : -1;
}

int main(void) {
    bus = NEW_BUS("{\"dispatcher_threads\":2}");
    other_bus = NEW_BUS(NULL);

    SUBSCRIBE(bus, "in", reentrant_callback, NULL);
    SUBSCRIBE(bus, "out", count_callback, &out_calls);
    SUBSCRIBE(bus, "dyn", count_callback, &dyn_calls);
    PUBLISH(bus, "in", "{}");
    CHECK_MSG(wait_for(&r.done, 1, 10000), "re-entrant callback did not finish (deadlock?)");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_OK(jsonbus_flush(jsonbus_default(), 5000));

    CHECK_RC(r.publish_rc, JSONBUS_OK);
    CHECK_MSG(r.sub_id > 0, "subscribe from a callback returned %s",
              jsonbus_status_name((int32_t)r.sub_id));
    CHECK_RC(r.unsub_rc, JSONBUS_OK);
    CHECK(r.stats_ok);
    CHECK_RC(r.flush_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(r.flush_status, JSONBUS_ERR_DEADLOCK);
    CHECK_MSG(r.flush_error_nonempty, "DEADLOCK from flush without a last error message");
    CHECK_RC(r.flush_rc_timeout, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(r.close_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(r.close_status, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(r.publish_after_close_rc, JSONBUS_OK);
    CHECK_RC(r.after_free_status, JSONBUS_ERR_DEADLOCK);
    CHECK_MSG(r.free_error_nonempty, "jsonbus_free from a callback set no last error message");
    CHECK_RC(r.publish_after_free_rc, JSONBUS_OK);
    CHECK_RC(r.flush_other_rc, JSONBUS_OK);
    CHECK_RC(r.push_rc, JSONBUS_OK);
    CHECK_MSG(r.default_sub_id > 0, "register_callback from a callback returned %s",
              jsonbus_status_name((int32_t)r.default_sub_id));
    CHECK_RC(r.unsub_default_rc, JSONBUS_OK);
    CHECK_EQ(atomic_load(&out_calls), 3); /* "out" x 3: the bus stayed open and usable */
    CHECK_EQ(atomic_load(&dyn_calls), 0);
    CHECK_EQ(atomic_load(&default_calls), 0);

    /* the bus is fully usable afterwards */
    PUBLISH(bus, "dyn", "1");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&dyn_calls), 1);

    /* self-waits on the default bus */
    int64_t did = register_callback(default_bus_callback, NULL);
    CHECK(did > 0);
    CHECK_OK(push_json("1"));
    CHECK_MSG(wait_for(&default_done, 1, 10000), "default-bus callback did not finish (deadlock?)");
    CHECK_OK(jsonbus_flush(jsonbus_default(), 5000));
    CHECK_RC(default_shutdown_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(default_close_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(default_flush_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(default_free_status, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(default_push_after_rc, JSONBUS_OK);
    CHECK_OK(jsonbus_unsubscribe(jsonbus_default(), did)); /* still the same bus */
    CHECK_OK(jsonbus_shutdown(-1));

    /* flush waits for a chain of re-publishes: a -> b -> c */
    SUBSCRIBE(bus, "chain.a", chain_a, NULL);
    SUBSCRIBE(bus, "chain.b", chain_b, NULL);
    SUBSCRIBE(bus, "chain.c", chain_c_cb, NULL);
    for (int i = 0; i < 5; i++) PUBLISH(bus, "chain.a", "{\"link\":1}");
    double t0 = now_ms();
    CHECK_OK(jsonbus_flush(bus, 10000));
    int got = atomic_load(&chain_c);
    printf("chain flushed in %.0f ms, c got %d\n", now_ms() - t0, got);
    CHECK_MSG(got == 5,
              "flush returned before the messages published by callbacks (a->b->c) were "
              "handled: c got %d of 5",
              got);
    CHECK_EQ(atomic_load(&chain_errors), 0);

    /* an end notice of other_bus inside a callback of bus: still inside bus's callback */
    nested_sub = jsonbus_subscribe_with(other_bus, "nested.b", NULL, count_callback, nested_end,
                                        NULL);
    CHECK_MSG(nested_sub > 0, "subscribe_with: %s", jsonbus_last_error());
    SUBSCRIBE(bus, "nested.a", nested_outer, NULL);
    PUBLISH(bus, "nested.a", "1");
    for (int i = 0; i < 500 && !atomic_load(&nested_done); i++) sleep_ms(10);
    CHECK_MSG(atomic_load(&nested_done),
              "the end notice of another bus, run from a callback, hung in flush, close or free "
              "of the callback's own bus (5 s)");
    CHECK_RC(nested_flush_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(nested_close_rc, JSONBUS_ERR_DEADLOCK);
    CHECK_RC(nested_free_status, JSONBUS_ERR_DEADLOCK);

    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    CHECK_OK(jsonbus_close(other_bus, -1));
    jsonbus_free(other_bus);
    printf("ok\n");
    return 0;
}
