/*
 * test_end_notice: a subscription's end notice (contract guarantee 13, 16, 17; Part 1: 6, 7).
 *
 * Every subscription's user_data is malloc'd and freed by its end notice (ASan catches a
 * callback or a second notice that touches it). Per-id flags, kept outside user_data, check
 * that the notice runs exactly once, with the right reason, never while the callback runs and
 * with no invocation of the callback after it began (Dekker-style: the callback raises "in
 * callback" and then looks at "end began"; the notice raises "end began" and then looks at
 * "in callback"). Inside every notice jsonbus_subscription_stats works and shows "ended" as
 * the reason's name, and jsonbus_flush / jsonbus_close on its own bus return
 * JSONBUS_ERR_DEADLOCK; a publish from it works (or says CLOSED when the bus is closing).
 *
 *  1. each way to end: jsonbus_unsubscribe from outside (idle, and while the callback runs:
 *     the notice has run, on the calling thread, before it returns), a callback returning
 *     JSONBUS_UNSUBSCRIBE, a callback unsubscribing itself, max_failures, on_full "end",
 *     jsonbus_close, jsonbus_free (on the closing thread, before they return);
 *  2. races, many times: unsubscribe vs close, vs the callback's own JSONBUS_UNSUBSCRIBE, vs
 *     max_failures, vs on_full "end" (the unsubscribe's delay adapts so that both sides win
 *     often); unsubscribe from another subscription's callback (does not wait; the notice
 *     runs on a dispatcher thread once the running invocation returns);
 *  3. jsonbus_subscribe is jsonbus_subscribe_with(bus, pattern, NULL, cb, NULL, user_data);
 *     jsonbus_end_reason_name.
 */
#include "sub_check.h"

#define MAX_IDS (1 << 16)
#define MAGIC 0x0e0d0e0du

static atomic_int g_in_cb[MAX_IDS], g_end_began[MAX_IDS], g_ends[MAX_IDS], g_reason[MAX_IDS];
static atomic_int g_calls[MAX_IDS], g_late[MAX_IDS], g_rc[MAX_IDS];
static atomic_int g_on_dispatcher[MAX_IDS];
static pthread_t g_end_thread[MAX_IDS];
static atomic_int pings; /* messages the end notices published */

enum mode {
    PLAIN,      /* returns OK */
    RETURN_AT,  /* returns JSONBUS_UNSUBSCRIBE on call n */
    SELF_AT,    /* calls jsonbus_unsubscribe on itself on call n */
    FAIL_ALL,   /* returns -1 */
    GATED,      /* waits at the gate on every call */
    KILLER,     /* unsubscribes `victim` */
};

struct state {
    unsigned magic;
    jsonbus *bus;
    enum mode mode;
    int n;
    long spin_us;
    struct gate *gate;
    int64_t victim;
    double killer_ms; /* how long the unsubscribe of the victim took */
};

static void check_id(int64_t id) {
    if (id <= 0 || id >= MAX_IDS) FAIL("subscription id %lld out of the test's range", (long long)id);
}

static struct state *new_state(jsonbus *bus, enum mode mode, int n) {
    struct state *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    s->magic = MAGIC;
    s->bus = bus;
    s->mode = mode;
    s->n = n;
    return s;
}

static int32_t callback(const jsonbus_message *msg, void *user_data) {
    int64_t id = msg->subscription;
    check_id(id);
    atomic_store(&g_in_cb[id], 1);
    if (atomic_load(&g_end_began[id])) {
        /* user_data may be freed: do not touch it */
        atomic_fetch_add(&g_late[id], 1);
        atomic_store(&g_in_cb[id], 0);
        return JSONBUS_OK;
    }
    struct state *s = user_data;
    if (s->magic != MAGIC) FAIL("user_data of %lld is not alive in its callback", (long long)id);
    int k = atomic_fetch_add(&g_calls[id], 1) + 1;
    int32_t rc = JSONBUS_OK;
    switch (s->mode) {
    case PLAIN:
        break;
    case RETURN_AT:
        if (k == s->n) rc = JSONBUS_UNSUBSCRIBE;
        break;
    case SELF_AT:
        if (k == s->n) {
            atomic_store(&g_rc[id], jsonbus_unsubscribe(s->bus, id));
            if (atomic_load(&g_ends[id]) || atomic_load(&g_end_began[id]))
                FAIL("the end notice ran inside the callback that unsubscribed itself");
        }
        break;
    case FAIL_ALL:
        rc = -1;
        break;
    case GATED:
        gate_wait(s->gate);
        break;
    case KILLER: {
        double t0 = now_ms();
        atomic_store(&g_rc[id], jsonbus_unsubscribe(s->bus, s->victim));
        s->killer_ms = now_ms() - t0;
        break;
    }
    }
    if (s->spin_us) spin_us(s->spin_us);
    atomic_store(&g_in_cb[id], 0);
    return rc;
}

static void on_end(int64_t id, int32_t reason, void *user_data) {
    check_id(id);
    atomic_store(&g_end_began[id], 1);
    if (atomic_load(&g_in_cb[id]))
        FAIL("end notice of %lld began while its callback ran", (long long)id);
    if (atomic_load(&g_ends[id]))
        FAIL("second end notice of %lld (reason %s)", (long long)id,
             jsonbus_end_reason_name(reason));
    struct state *s = user_data;
    if (s->magic != MAGIC) FAIL("user_data of %lld is not alive in its end notice", (long long)id);

    /* its stats work in here and say why it ended */
    char *st = jsonbus_subscription_stats(s->bus, id);
    if (st == NULL)
        FAIL("jsonbus_subscription_stats(%lld) in its end notice: NULL", (long long)id);
    char ended[64];
    json_ended(st, ended, sizeof ended);
    if (strcmp(ended, jsonbus_end_reason_name(reason)) != 0)
        FAIL("end notice %s, but its stats say \"ended\": %s (%s)", jsonbus_end_reason_name(reason),
             ended, st);
    if (json_int_after(st, NULL, "id") != id) FAIL("stats of another subscription: %s", st);
    jsonbus_string_free(st);

    /* waiting for its own bus would deadlock */
    int32_t rc = jsonbus_flush(s->bus, 1000);
    if (rc != JSONBUS_ERR_DEADLOCK)
        FAIL("jsonbus_flush in an end notice returned %s", jsonbus_status_name(rc));
    rc = jsonbus_close(s->bus, 1000);
    if (rc != JSONBUS_ERR_DEADLOCK)
        FAIL("jsonbus_close in an end notice returned %s", jsonbus_status_name(rc));
    if (jsonbus_last_status() != JSONBUS_ERR_DEADLOCK) FAIL("last status not DEADLOCK");
    /* it may call what a callback may call */
    rc = jsonbus_publish(s->bus, "ping", "{}", 2);
    if (reason == JSONBUS_END_CLOSED) {
        if (rc != JSONBUS_ERR_CLOSED)
            FAIL("publish from an end notice during close returned %s", jsonbus_status_name(rc));
    } else if (rc != JSONBUS_OK && rc != JSONBUS_ERR_CLOSED) { /* CLOSED: a close is racing */
        FAIL("publish from an end notice returned %s", jsonbus_status_name(rc));
    }

    g_end_thread[id] = pthread_self();
    atomic_store(&g_on_dispatcher[id], on_dispatcher_thread());
    sleep_us(300); /* a notice that takes a moment: callers that must wait for it do */
    atomic_store(&g_reason[id], reason);
    s->magic = 0;
    free(s); /* allowed: no callback of the subscription runs after this began */
    atomic_fetch_add(&g_ends[id], 1);
}

static int32_t count_ping(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&pings, 1);
    return JSONBUS_OK;
}

static int64_t subscribe_state(jsonbus *bus, const char *pattern, const char *options,
                               struct state *s) {
    int64_t id = SUBSCRIBE_WITH(bus, pattern, options, callback, on_end, s);
    check_id(id);
    return id;
}

/* The end notice of `id` ran exactly once (now, and a moment later), for `reason`. */
#define CHECK_ENDED_ONCE(id, reason)                                                       \
    do {                                                                                   \
        CHECK_MSG(atomic_load(&g_ends[id]) == 1, "end notice of %lld ran %d times",         \
                  (long long)(id), atomic_load(&g_ends[id]));                               \
        CHECK_MSG(atomic_load(&g_reason[id]) == (reason), "ended with %s, expected %s",      \
                  jsonbus_end_reason_name(atomic_load(&g_reason[id])),                      \
                  jsonbus_end_reason_name(reason));                                         \
        CHECK_EQ(atomic_load(&g_late[id]), 0);                                             \
    } while (0)

static void wait_ended(int64_t id) {
    CHECK_MSG(wait_for(&g_ends[id], 1, 5000), "end notice of %lld never ran", (long long)id);
}

/* ---- 1. each way to end ---------------------------------------------------------------- */
static void *open_gate_later(void *arg) {
    sleep_ms(60);
    atomic_store(&((struct gate *)arg)->open, 1);
    return NULL;
}

static pthread_t unsubscribing_thread;

static void *unsubscribe_thread(void *arg) {
    int64_t *args = arg; /* {bus as intptr, id, rc out, ends seen right after} */
    jsonbus *bus = (jsonbus *)(intptr_t)args[0];
    unsubscribing_thread = pthread_self();
    args[2] = jsonbus_unsubscribe(bus, args[1]);
    args[3] = atomic_load(&g_ends[args[1]]);
    return NULL;
}

static void test_each_end(void) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    SUBSCRIBE(bus, "ping", count_ping, NULL);
    int expected_pings = 0;

    /* unsubscribe from outside, idle: ran on this thread before it returned */
    int64_t id = subscribe_state(bus, "e.a", NULL, new_state(bus, PLAIN, 0));
    for (int i = 0; i < 5; i++) PUBLISH(bus, "e.a", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_ENDED_ONCE(id, JSONBUS_END_UNSUBSCRIBED);
    /* the header: it runs on "the thread of a jsonbus_unsubscribe ... that ended the
     * subscription from outside the bus's callbacks" */
    SOFT_CHECK(pthread_equal(g_end_thread[id], pthread_self()),
               "the end notice of an unsubscribe from a host thread (the subscription idle) ran "
               "on another thread (%s a dispatcher thread)",
               atomic_load(&g_on_dispatcher[id]) ? "on" : "not on");
    CHECK_EQ(atomic_load(&g_calls[id]), 5);
    expected_pings++;
    CHECK(jsonbus_subscription_stats(bus, id) == NULL);
    CHECK_RC(jsonbus_last_status(), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);

    /* unsubscribe from outside while the callback runs: waits for it, then the notice */
    struct gate gate = {0, 0};
    struct state *s = new_state(bus, GATED, 0);
    s->gate = &gate;
    id = subscribe_state(bus, "e.b", NULL, s);
    PUBLISH(bus, "e.b", "{}");
    CHECK_MSG(wait_for(&gate.waiting, 1, 5000), "callback never started");
    PUBLISH(bus, "e.b", "{}"); /* queued: dropped by the unsubscribe */
    int64_t args[4] = {(int64_t)(intptr_t)bus, id, 12345, -1};
    pthread_t th;
    START_THREAD(th, unsubscribe_thread, args);
    sleep_ms(100);
    CHECK_MSG(atomic_load(&g_ends[id]) == 0 && atomic_load(&g_end_began[id]) == 0,
              "end notice ran while the callback was running");
    atomic_store(&gate.open, 1);
    JOIN_THREAD(th);
    CHECK_RC(args[2], JSONBUS_OK);
    CHECK_MSG(args[3] == 1, "jsonbus_unsubscribe returned before the end notice had run");
    CHECK_ENDED_ONCE(id, JSONBUS_END_UNSUBSCRIBED);
    CHECK_EQ(atomic_load(&g_calls[id]), 1);
    /* the header: it runs on "the thread of a jsonbus_unsubscribe ... that ended the
     * subscription from outside the bus's callbacks" */
    SOFT_CHECK(pthread_equal(g_end_thread[id], unsubscribing_thread),
               "the end notice of an unsubscribe from a host thread, made while the callback "
               "ran, ran on another thread (%s a dispatcher thread), not on the unsubscribing "
               "thread", atomic_load(&g_on_dispatcher[id]) ? "on" : "not on");
    expected_pings++;

    /* the callback returns JSONBUS_UNSUBSCRIBE: on a dispatcher thread, after it returned */
    id = subscribe_state(bus, "e.c", NULL, new_state(bus, RETURN_AT, 3));
    for (int i = 0; i < 10; i++) PUBLISH(bus, "e.c", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    wait_ended(id);
    CHECK_ENDED_ONCE(id, JSONBUS_END_RETURNED);
    CHECK_EQ(atomic_load(&g_calls[id]), 3);
    CHECK_MSG(atomic_load(&g_on_dispatcher[id]), "notice after JSONBUS_UNSUBSCRIBE not on a dispatcher thread");
    expected_pings++;
    WAIT_FORGOTTEN(bus, id);
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);

    /* the callback unsubscribes itself: JSONBUS_END_UNSUBSCRIBED, once it returned */
    id = subscribe_state(bus, "e.d", NULL, new_state(bus, SELF_AT, 2));
    atomic_store(&g_rc[id], 12345);
    for (int i = 0; i < 10; i++) PUBLISH(bus, "e.d", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    wait_ended(id);
    CHECK_RC(atomic_load(&g_rc[id]), JSONBUS_OK);
    CHECK_ENDED_ONCE(id, JSONBUS_END_UNSUBSCRIBED);
    CHECK_EQ(atomic_load(&g_calls[id]), 2);
    CHECK(atomic_load(&g_on_dispatcher[id]));
    expected_pings++;

    /* max_failures */
    id = subscribe_state(bus, "e.e", "{\"max_failures\":4}", new_state(bus, FAIL_ALL, 0));
    for (int i = 0; i < 10; i++) PUBLISH(bus, "e.e", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    wait_ended(id);
    CHECK_ENDED_ONCE(id, JSONBUS_END_FAILED);
    CHECK_EQ(atomic_load(&g_calls[id]), 4);
    CHECK(atomic_load(&g_on_dispatcher[id]));
    expected_pings++;

    /* on_full "end": ended by a publish while its callback runs; the notice follows the
     * callback's return, on a dispatcher thread */
    struct gate gate2 = {0, 0};
    s = new_state(bus, GATED, 0);
    s->gate = &gate2;
    id = subscribe_state(bus, "e.f", "{\"queue_limit\":1,\"on_full\":\"end\"}", s);
    PUBLISH(bus, "e.f", "{}");
    CHECK_MSG(wait_for(&gate2.waiting, 1, 5000), "callback never started");
    PUBLISH(bus, "e.f", "{}"); /* queued: at the limit */
    PUBLISH(bus, "e.f", "{}"); /* ends it */
    CHECK_SUB_ENDED(bus, id, "JSONBUS_END_SLOW");
    CHECK_EQ(SUB_STAT(bus, id, "dropped"), 2);
    sleep_ms(50);
    CHECK_MSG(atomic_load(&g_end_began[id]) == 0, "end notice began while the callback ran");
    atomic_store(&gate2.open, 1);
    CHECK_OK(jsonbus_flush(bus, 5000));
    wait_ended(id);
    CHECK_ENDED_ONCE(id, JSONBUS_END_SLOW);
    CHECK_EQ(atomic_load(&g_calls[id]), 1);
    CHECK(atomic_load(&g_on_dispatcher[id]));
    expected_pings++;

    /* close: every notice has run, on the closing thread, before it returns; one of them while
     * its callback is still running when the close begins */
    int64_t ids[4];
    for (int i = 0; i < 3; i++) ids[i] = subscribe_state(bus, "e.g", NULL, new_state(bus, PLAIN, 0));
    struct gate gate3 = {0, 0};
    s = new_state(bus, GATED, 0);
    s->gate = &gate3;
    ids[3] = subscribe_state(bus, "e.h", NULL, s);
    for (int i = 0; i < 20; i++) PUBLISH(bus, "e.g", "{}");
    PUBLISH(bus, "e.h", "{}");
    CHECK_MSG(wait_for(&gate3.waiting, 1, 5000), "callback never started");
    pthread_t opener;
    START_THREAD(opener, open_gate_later, &gate3);
    double t0 = now_ms();
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_MSG(now_ms() - t0 >= 40, "close returned while a callback was still running");
    JOIN_THREAD(opener);
    for (int i = 0; i < 4; i++) {
        CHECK_ENDED_ONCE(ids[i], JSONBUS_END_CLOSED);
        CHECK_MSG(pthread_equal(g_end_thread[ids[i]], pthread_self()),
                  "end notice of a close ran on another thread");
        CHECK_EQ(atomic_load(&g_calls[ids[i]]), i < 3 ? 20 : 1);
    }
    CHECK_EQ(atomic_load(&pings), expected_pings);
    jsonbus_free(bus);

    /* free of an open bus */
    bus = NEW_BUS("{\"dispatcher_threads\":1}");
    for (int i = 0; i < 3; i++) ids[i] = subscribe_state(bus, "e.i", NULL, new_state(bus, PLAIN, 0));
    for (int i = 0; i < 10; i++) PUBLISH(bus, "e.i", "{}");
    jsonbus_free(bus);
    for (int i = 0; i < 3; i++) {
        CHECK_ENDED_ONCE(ids[i], JSONBUS_END_CLOSED);
        CHECK(pthread_equal(g_end_thread[ids[i]], pthread_self()));
        CHECK_EQ(atomic_load(&g_calls[ids[i]]), 10);
    }
}

/* ---- 2. races ---------------------------------------------------------------------------- */
static unsigned rng = 12345;
static unsigned next_rand(void) {
    rng = rng * 1103515245u + 12345u;
    return (rng >> 16) & 0x7fff;
}

/* A delay that follows the race: longer after the unsubscribe won, shorter after it lost, so
 * that both sides win often and many rounds land close to the tie. */
struct adaptive {
    long us, step;
};
static long adaptive_delay(const struct adaptive *a) { return a->us + (long)(next_rand() % 8); }
static void adaptive_update(struct adaptive *a, int unsubscribe_won) {
    if (unsubscribe_won) a->us += a->step;
    else if (a->us > a->step) a->us -= a->step;
    else a->us = 0;
}

struct racer {
    jsonbus *bus;
    int64_t id;
    atomic_int *go;
    int close; /* 0: unsubscribe, 1: close */
    long delay_us;
    int32_t rc;
    int ends_after; /* end notices of id that had run when the call returned */
};

static void *racer_thread(void *arg) {
    struct racer *r = arg;
    while (!atomic_load(r->go)) {
    }
    if (r->delay_us) spin_us(r->delay_us);
    r->rc = r->close ? jsonbus_close(r->bus, -1) : jsonbus_unsubscribe(r->bus, r->id);
    r->ends_after = atomic_load(&g_ends[r->id]);
    return NULL;
}

static void race_unsubscribe_close(int rounds) {
    int by[8] = {0};
    struct adaptive delay = {0, 25};
    for (int i = 0; i < rounds; i++) {
        jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
        struct state *s = new_state(bus, PLAIN, 0);
        s->spin_us = 20;
        int64_t id = subscribe_state(bus, "r", NULL, s);
        for (int k = 0; k < 10; k++) PUBLISH(bus, "r", "{}");
        atomic_int go = 0;
        struct racer u = {bus, id, &go, 0, adaptive_delay(&delay), 12345, -1},
                     c = {bus, id, &go, 1, 0, 12345, -1};
        pthread_t tu, tc;
        START_THREAD(tu, racer_thread, &u);
        START_THREAD(tc, racer_thread, &c);
        atomic_store(&go, 1);
        JOIN_THREAD(tu);
        JOIN_THREAD(tc);
        CHECK_RC(c.rc, JSONBUS_OK);
        CHECK_MSG(c.ends_after == 1, "close returned before the end notice had run");
        CHECK_MSG(u.rc == JSONBUS_OK || u.rc == JSONBUS_ERR_NOT_FOUND, "unsubscribe: %s",
                  jsonbus_status_name(u.rc));
        if (u.rc == JSONBUS_OK)
            CHECK_MSG(u.ends_after == 1, "unsubscribe returned OK before the end notice had run");
        CHECK_EQ(atomic_load(&g_ends[id]), 1);
        CHECK_EQ(atomic_load(&g_late[id]), 0);
        int reason = atomic_load(&g_reason[id]);
        CHECK_MSG(reason == JSONBUS_END_UNSUBSCRIBED || reason == JSONBUS_END_CLOSED, "reason %s",
                  jsonbus_end_reason_name(reason));
        by[reason]++;
        adaptive_update(&delay, reason == JSONBUS_END_UNSUBSCRIBED);
        jsonbus_free(bus);
        CHECK_EQ(atomic_load(&g_ends[id]), 1);
    }
    printf("unsubscribe vs close: %d unsubscribed, %d closed\n", by[JSONBUS_END_UNSUBSCRIBED],
           by[JSONBUS_END_CLOSED]);
}

/* jsonbus_unsubscribe from this thread racing an end of the subscription's own making. */
static void race_unsubscribe_own_end(jsonbus *bus, const char *what, enum mode mode,
                                     const char *options, int publishes, int other_reason,
                                     int rounds) {
    int by[8] = {0};
    struct adaptive delay = {0, 3};
    for (int i = 0; i < rounds; i++) {
        struct state *s = new_state(bus, mode, 1);
        s->spin_us = next_rand() % 20;
        int64_t id = subscribe_state(bus, "own", options, s);
        int n = mode == PLAIN ? 1 + (int)(next_rand() % publishes) : publishes;
        for (int k = 0; k < n; k++) PUBLISH(bus, "own", "{}");
        long d = adaptive_delay(&delay);
        if (d) spin_us(d);
        int32_t rc = jsonbus_unsubscribe(bus, id);
        int ends_after = atomic_load(&g_ends[id]);
        CHECK_MSG(rc == JSONBUS_OK || rc == JSONBUS_ERR_NOT_FOUND, "%s: unsubscribe: %s", what,
                  jsonbus_status_name(rc));
        /* OK: the notice has run before it returned; NOT_FOUND: it was forgotten, which
         * happens once its notice has returned */
        CHECK_MSG(ends_after == 1, "%s: unsubscribe returned %s before the end notice had run",
                  what, jsonbus_status_name(rc));
        CHECK_EQ(atomic_load(&g_late[id]), 0);
        int reason = atomic_load(&g_reason[id]);
        CHECK_MSG(reason == JSONBUS_END_UNSUBSCRIBED || reason == other_reason,
                  "%s: reason %s", what, jsonbus_end_reason_name(reason));
        if (reason == other_reason && mode != PLAIN) CHECK_EQ(atomic_load(&g_calls[id]), 1);
        CHECK_MSG(atomic_load(&g_calls[id]) <= publishes, "%s: %d calls", what,
                  atomic_load(&g_calls[id]));
        by[reason]++;
        adaptive_update(&delay, reason == JSONBUS_END_UNSUBSCRIBED);
    }
    CHECK_OK(jsonbus_flush(bus, 5000));
    sleep_ms(5);
    printf("unsubscribe vs %s: %d unsubscribed, %d %s\n", what, by[JSONBUS_END_UNSUBSCRIBED],
           by[other_reason], jsonbus_end_reason_name(other_reason));
}

static int wait_not(atomic_int *v, int value, int timeout_ms) {
    double end = now_ms() + timeout_ms;
    while (atomic_load(v) == value) {
        if (now_ms() > end) return 0;
        sleep_us(100);
    }
    return 1;
}

/* Unsubscribe of another subscription from a callback: no wait; the victim's notice runs on a
 * dispatcher thread once its running invocation returned. */
static void race_unsubscribe_from_callback(jsonbus *bus, int rounds) {
    /* deterministic: the victim is held at a gate */
    struct gate gate = {0, 0};
    struct state *v = new_state(bus, GATED, 0);
    v->gate = &gate;
    int64_t victim = subscribe_state(bus, "v.gated", NULL, v);
    struct state *k = new_state(bus, KILLER, 0);
    k->victim = victim;
    int64_t killer = subscribe_state(bus, "k.gated", NULL, k);
    atomic_store(&g_rc[killer], 12345);
    PUBLISH(bus, "v.gated", "{}");
    CHECK_MSG(wait_for(&gate.waiting, 1, 5000), "victim never started");
    PUBLISH(bus, "v.gated", "{}"); /* queued for it: dropped */
    PUBLISH(bus, "k.gated", "{}");
    CHECK_MSG(wait_not(&g_rc[killer], 12345, 5000),
              "jsonbus_unsubscribe of another subscription from a callback waited for its "
              "running invocation");
    CHECK_RC(atomic_load(&g_rc[killer]), JSONBUS_OK);
    PUBLISH(bus, "v.gated", "{}"); /* not routed to it any more */
    sleep_ms(50);
    CHECK_MSG(atomic_load(&g_end_began[victim]) == 0,
              "the victim's end notice began while its invocation was still running");
    atomic_store(&gate.open, 1);
    wait_ended(victim);
    CHECK_ENDED_ONCE(victim, JSONBUS_END_UNSUBSCRIBED);
    CHECK_MSG(atomic_load(&g_on_dispatcher[victim]), "victim's end notice not on a dispatcher thread");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&g_calls[victim]), 1);
    CHECK_OK(jsonbus_unsubscribe(bus, killer));
    CHECK_ENDED_ONCE(killer, JSONBUS_END_UNSUBSCRIBED);

    /* racing: the victim spins a little on each of a few messages while it is unsubscribed */
    for (int i = 0; i < rounds; i++) {
        char vt[32], kt[32];
        snprintf(vt, sizeof vt, "v.%d", i);
        snprintf(kt, sizeof kt, "k.%d", i);
        v = new_state(bus, PLAIN, 0);
        v->spin_us = 20 + next_rand() % 100;
        victim = subscribe_state(bus, vt, NULL, v);
        k = new_state(bus, KILLER, 0);
        k->victim = victim;
        killer = subscribe_state(bus, kt, NULL, k);
        atomic_store(&g_rc[killer], 12345);
        for (int m = 0; m < 3; m++) PUBLISH(bus, vt, "{}");
        spin_us(next_rand() % 100);
        PUBLISH(bus, kt, "{}");
        CHECK_MSG(wait_not(&g_rc[killer], 12345, 5000), "killer never ran");
        CHECK_RC(atomic_load(&g_rc[killer]), JSONBUS_OK);
        wait_ended(victim);
        sleep_us(500);
        CHECK_ENDED_ONCE(victim, JSONBUS_END_UNSUBSCRIBED);
        CHECK_MSG(atomic_load(&g_on_dispatcher[victim]),
                  "victim's end notice not on a dispatcher thread");
        CHECK(atomic_load(&g_calls[victim]) <= 3);
        CHECK_OK(jsonbus_unsubscribe(bus, killer));
        CHECK_ENDED_ONCE(killer, JSONBUS_END_UNSUBSCRIBED);
    }
    CHECK_OK(jsonbus_flush(bus, 5000));
}

static void test_races(void) {
    race_unsubscribe_close(100);
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    race_unsubscribe_own_end(bus, "JSONBUS_UNSUBSCRIBE", RETURN_AT, NULL, 2,
                             JSONBUS_END_RETURNED, 300);
    race_unsubscribe_own_end(bus, "max_failures", FAIL_ALL, "{\"max_failures\":1}", 2,
                             JSONBUS_END_FAILED, 300);
    race_unsubscribe_own_end(bus, "on_full end", PLAIN, "{\"queue_limit\":1,\"on_full\":\"end\"}",
                             4, JSONBUS_END_SLOW, 300);
    race_unsubscribe_from_callback(bus, 200);
    CHECK_EQ(STAT(bus, "subscriptions"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 3. Part 1's jsonbus_subscribe ------------------------------------------------------ */
static atomic_int eq_calls[3];

static int32_t eq_cb(const jsonbus_message *msg, void *user_data) {
    int *which = user_data;
    int n = atomic_fetch_add(&eq_calls[*which], 1) + 1;
    if (strcmp(msg->json, "{\"stop\":1}") == 0) return JSONBUS_UNSUBSCRIBE;
    (void)n;
    return JSONBUS_OK;
}

static atomic_int failed_ends;
static void count_end(int64_t id, int32_t reason, void *user_data) {
    (void)id;
    (void)reason;
    (void)user_data;
    atomic_fetch_add(&failed_ends, 1);
}

/* Subscription stats without their "id" member. */
static void stats_without_id(jsonbus *bus, int64_t id, char *out, size_t n) {
    char *st = SUB_STATS(bus, id);
    CHECK_EQ(json_int_after(st, NULL, "id"), id);
    const char *rest = strchr(st, ',');
    CHECK(rest != NULL);
    snprintf(out, n, "%s", rest);
    jsonbus_string_free(st);
}

static void test_part1_subscribe(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int which[3] = {0, 1, 2};
    int64_t a = SUBSCRIBE(bus, "eq.>", eq_cb, &which[0]);
    int64_t b = SUBSCRIBE_WITH(bus, "eq.>", NULL, eq_cb, NULL, &which[1]);
    int64_t c = SUBSCRIBE_WITH(bus, "eq.>", "{}", eq_cb, NULL, &which[2]);
    char sa[1024], sb[1024], sc[1024];
    stats_without_id(bus, a, sa, sizeof sa);
    stats_without_id(bus, b, sb, sizeof sb);
    stats_without_id(bus, c, sc, sizeof sc);
    CHECK_STREQ(sa, sb);
    CHECK_STREQ(sa, sc);
    CHECK_CONTAINS(sa, "\"kind\":\"callback\"");
    CHECK_CONTAINS(sa, "\"group\":null");
    CHECK_CONTAINS(sa, "\"ended\":null");
    CHECK_CONTAINS(sa, "\"on_full\":\"block\"");
    CHECK_EQ(json_int_after(sa, NULL, "queue_limit"), 0);
    CHECK_EQ(json_int_after(sa, NULL, "max_failures"), 0);
    for (int i = 0; i < 10; i++) PUBLISH(bus, "eq.x", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    for (int i = 0; i < 3; i++) {
        int64_t x = i == 0 ? a : i == 1 ? b : c;
        CHECK_EQ(SUB_STAT(bus, x, "delivered"), 10);
        CHECK_EQ(SUB_STAT(bus, x, "dropped"), 0);
        CHECK_SUB_ENDED(bus, x, "null");
    }
    /* both end on JSONBUS_UNSUBSCRIBE and are forgotten */
    PUBLISH(bus, "eq.x", "{\"stop\":1}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    PUBLISH(bus, "eq.x", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    for (int i = 0; i < 3; i++) CHECK_EQ(atomic_load(&eq_calls[i]), 11);
    WAIT_FORGOTTEN(bus, a);
    WAIT_FORGOTTEN(bus, b);
    CHECK_ERR(jsonbus_unsubscribe(bus, a), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_unsubscribe(bus, b), JSONBUS_ERR_NOT_FOUND);
    CHECK_EQ(STAT(bus, "subscriptions"), 0);
    CHECK_EQ(STAT(bus, "unrouted"), 1);
    /* cb is required, on_end is not; a subscribe that fails never calls on_end */
    atomic_store(&failed_ends, 0);
    CHECK_ERR(jsonbus_subscribe_with(bus, "eq", NULL, NULL, count_end, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_subscribe_with(bus, "eq", "{\"queue_limit\":-1}", eq_cb, count_end, NULL),
              JSONBUS_ERR_OPTIONS);
    CHECK_ERR(jsonbus_subscribe_with(bus, "eq", "{\"group\":\"a.b\"}", eq_cb, count_end, NULL),
              JSONBUS_ERR_OPTIONS);
    CHECK_ERR(jsonbus_subscribe_with(bus, "eq..x", NULL, eq_cb, count_end, NULL),
              JSONBUS_ERR_TOPIC);
    CHECK_ERR(jsonbus_subscribe_with(NULL, "eq", NULL, eq_cb, count_end, NULL), JSONBUS_ERR_NULL);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_ERR(jsonbus_subscribe_with(bus, "eq", NULL, eq_cb, count_end, NULL), JSONBUS_ERR_CLOSED);
    jsonbus_free(bus);
    CHECK_EQ(atomic_load(&failed_ends), 0);

    /* end reason names */
    const int reasons[6] = {JSONBUS_END_UNSUBSCRIBED, JSONBUS_END_RETURNED, JSONBUS_END_SLOW,
                            JSONBUS_END_FAILED, JSONBUS_END_CLOSED, JSONBUS_END_PEER_GONE};
    const char *names[6] = {"JSONBUS_END_UNSUBSCRIBED", "JSONBUS_END_RETURNED",
                            "JSONBUS_END_SLOW", "JSONBUS_END_FAILED", "JSONBUS_END_CLOSED",
                            "JSONBUS_END_PEER_GONE"};
    for (int i = 0; i < 6; i++) {
        CHECK(reasons[i] > 0);
        for (int j = 0; j < i; j++) CHECK(reasons[i] != reasons[j]);
        CHECK_STREQ(jsonbus_end_reason_name(reasons[i]), names[i]);
    }
    CHECK_STREQ(jsonbus_end_reason_name(0), "JSONBUS_END_UNKNOWN");
    CHECK_STREQ(jsonbus_end_reason_name(-1), "JSONBUS_END_UNKNOWN");
    CHECK_STREQ(jsonbus_end_reason_name(1000), "JSONBUS_END_UNKNOWN");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_each_end();
    test_races();
    test_part1_subscribe();
    CHECK_SOFT_DONE();
    printf("ok\n");
    return 0;
}
