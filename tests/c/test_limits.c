/*
 * test_limits: per-subscription queue limits and max_failures (contract guarantee 12, 13, 16).
 *
 * A slow callback subscription with queue_limit 4 next to an unlimited one, both on "lim.>",
 * with 4 publisher threads (payload {"t":thread,"n":counter}):
 *
 *  1. Exact, for "drop_oldest", "drop_new" and "end": the slow callback is held at a gate on
 *     its first message while the publishers run on a bus with publish_timeout_ms 0, so any
 *     publish that waited would fail: every publish succeeds and returns while the gate is
 *     still closed, the unlimited subscription gets everything meanwhile, and the slow one
 *     gets exactly {1, 2..5} (drop_new), {1, the last 4} (drop_oldest), or {1} and then ends
 *     as slow with 4 + 1 dropped (end). Drops reconcile exactly: per subscription
 *     delivered + dropped == routed, bus dropped == the sum of the subscriptions' drops.
 *  2. The same policies and "block" with a sleeping callback: what each subscription gets is in
 *     seq order and in each publisher's order; the counts reconcile; "block" loses nothing and
 *     both subscriptions see the same seqs; "end" gets 1..d and then ends once.
 *  3. "block": at the limit a publish with publish_timeout_ms 0 fails at once with FULL naming
 *     the subscription, and nothing of it reaches the other subscription; with a timeout it
 *     waits (and succeeds once the slow one takes a message); from a callback of the same bus
 *     it fails at once even with publish_timeout_ms -1; with a 1 ms timeout and 4 publishers
 *     some fail, and both subscriptions see exactly the accepted messages.
 *  4. max_failures: ends with JSONBUS_END_FAILED after exactly N negative returns in a row; a
 *     success (or any non-negative return) in between resets the count.
 */
#include "sub_check.h"

#define PUBLISHERS 4
#define LIMIT 4
#define LIMIT_STR "4"

/* ---- a recording subscription ---------------------------------------------------------- */
struct rec {
    uint64_t seq;
    int t, n;
};

struct recorder {
    struct rec *recs;
    int cap;
    atomic_int count;
    long sleep_us;     /* per message */
    struct gate *gate; /* if set, the first invocation waits at it */
    atomic_int in_cb;
    /* end notice */
    jsonbus *bus;
    atomic_int ends;
    atomic_int end_reason;
    atomic_int end_began;
    atomic_int late; /* invocations that began after the end notice did */
    char end_stats[1024];
};

static void recorder_init(struct recorder *r, jsonbus *bus, int cap) {
    memset(r, 0, sizeof *r);
    r->recs = calloc((size_t)cap, sizeof *r->recs);
    CHECK(r->recs != NULL);
    r->cap = cap;
    r->bus = bus;
}

static void recorder_free(struct recorder *r) {
    free(r->recs);
    r->recs = NULL;
}

static int32_t record_cb(const jsonbus_message *msg, void *user_data) {
    struct recorder *r = user_data;
    if (atomic_load(&r->end_began)) atomic_fetch_add(&r->late, 1);
    if (atomic_exchange(&r->in_cb, 1)) FAIL("callback of subscription %lld runs twice at once",
                                            (long long)msg->subscription);
    int k = atomic_load(&r->count);
    if (k >= r->cap) FAIL("more messages than published (%d)", r->cap);
    int t, n;
    if (!parse_tn(msg->json, &t, &n)) FAIL("unexpected payload %s", msg->json);
    if (strlen(msg->json) != msg->json_len) FAIL("json_len %zu for %s", msg->json_len, msg->json);
    r->recs[k].seq = msg->seq;
    r->recs[k].t = t;
    r->recs[k].n = n;
    atomic_store(&r->count, k + 1);
    if (r->gate && k == 0) gate_wait(r->gate);
    if (r->sleep_us) sleep_us(r->sleep_us);
    atomic_store(&r->in_cb, 0);
    return JSONBUS_OK;
}

static void record_end(int64_t id, int32_t reason, void *user_data) {
    struct recorder *r = user_data;
    atomic_store(&r->end_began, 1);
    if (atomic_load(&r->in_cb)) FAIL("end notice of %lld began while its callback ran", (long long)id);
    char *s = jsonbus_subscription_stats(r->bus, id);
    if (s == NULL) FAIL("jsonbus_subscription_stats(%lld) inside the end notice: NULL", (long long)id);
    snprintf(r->end_stats, sizeof r->end_stats, "%s", s);
    jsonbus_string_free(s);
    atomic_store(&r->end_reason, reason);
    atomic_fetch_add(&r->ends, 1);
}

/* What a recorder got is in seq order and, per publisher, in counter order. */
static void check_order(const struct recorder *r, const char *what) {
    int n = atomic_load(&r->count);
    int last[PUBLISHERS + 1];
    for (int i = 0; i <= PUBLISHERS; i++) last[i] = -1;
    for (int i = 0; i < n; i++) {
        const struct rec *x = &r->recs[i];
        if (i > 0 && x->seq <= r->recs[i - 1].seq)
            FAIL("%s: seq %llu after seq %llu", what, (unsigned long long)x->seq,
                 (unsigned long long)r->recs[i - 1].seq);
        if (x->t < 0 || x->t > PUBLISHERS) FAIL("%s: publisher %d", what, x->t);
        if (x->n <= last[x->t])
            FAIL("%s: publisher %d's message %d after its message %d", what, x->t, x->n,
                 last[x->t]);
        last[x->t] = x->n;
    }
}

/* A recorder got seqs 1..total, all of them, every publisher's 0..per_pub-1 in order. */
static void check_complete(const struct recorder *r, int total, int per_pub, const char *what) {
    check_order(r, what);
    int n = atomic_load(&r->count);
    CHECK_MSG(n == total, "%s got %d messages of %d", what, n, total);
    int seen[PUBLISHERS] = {0};
    for (int i = 0; i < n; i++) {
        CHECK_MSG(r->recs[i].seq == (uint64_t)(i + 1), "%s: message %d has seq %llu", what, i,
                  (unsigned long long)r->recs[i].seq);
        if (r->recs[i].t < PUBLISHERS) seen[r->recs[i].t]++;
    }
    for (int t = 0; t < PUBLISHERS; t++)
        CHECK_MSG(seen[t] == per_pub, "%s got %d of publisher %d's %d", what, seen[t], t, per_pub);
}

/* ---- publishers ------------------------------------------------------------------------ */
struct pub_job {
    jsonbus *bus;
    int t;
    int count;
    int allow_full;     /* FULL is allowed (counted); anything else but OK fails */
    int64_t full_names; /* a FULL must name this subscription */
    int accepted;
    int full;
    unsigned char *ok; /* ok[i]: message i was accepted */
};

static void *publisher(void *arg) {
    struct pub_job *j = arg;
    char topic[32], json[64], name[48];
    snprintf(topic, sizeof topic, "lim.p%d", j->t);
    snprintf(name, sizeof name, "subscription %lld", (long long)j->full_names);
    for (int i = 0; i < j->count; i++) {
        int len = format_tn(json, sizeof json, j->t, i);
        int32_t rc = jsonbus_publish(j->bus, topic, json, (size_t)len);
        if (rc == JSONBUS_OK) {
            j->accepted++;
            if (j->ok) j->ok[i] = 1;
        } else if (rc == JSONBUS_ERR_FULL && j->allow_full) {
            j->full++;
            if (strstr(jsonbus_last_error(), name) == NULL)
                FAIL("FULL does not name the blocking %s: \"%s\"", name, jsonbus_last_error());
        } else {
            FAIL("publisher %d: publish %d returned %s", j->t, i, jsonbus_status_name(rc));
        }
    }
    return NULL;
}

/* Runs PUBLISHERS publisher threads of `count` messages each and joins them. */
static void run_publishers(struct pub_job *jobs, jsonbus *bus, int count, int allow_full,
                           int64_t full_names) {
    pthread_t th[PUBLISHERS];
    for (int t = 0; t < PUBLISHERS; t++) {
        memset(&jobs[t], 0, sizeof jobs[t]);
        jobs[t].bus = bus;
        jobs[t].t = t;
        jobs[t].count = count;
        jobs[t].allow_full = allow_full;
        jobs[t].full_names = full_names;
        if (allow_full) {
            jobs[t].ok = calloc((size_t)count, 1);
            CHECK(jobs[t].ok != NULL);
        }
    }
    for (int t = 0; t < PUBLISHERS; t++) START_THREAD(th[t], publisher, &jobs[t]);
    for (int t = 0; t < PUBLISHERS; t++) JOIN_THREAD(th[t]);
}

/* The message that starts the slow subscription's first (gated) invocation. */
static void publish_start(jsonbus *bus) {
    char json[64];
    format_tn(json, sizeof json, PUBLISHERS, 0);
    PUBLISH(bus, "lim.start", json);
}

static const char *slow_options(const char *policy) {
    static char buf[128];
    snprintf(buf, sizeof buf, "{\"queue_limit\":" LIMIT_STR ",\"on_full\":\"%s\"}", policy);
    return buf;
}

/* ---- 1. exact drops, with the slow one held at a gate ----------------------------------- */
static void test_exact(const char *policy) {
    enum { M = 1000 };
    const int total = PUBLISHERS * M + 1; /* with the start message */
    int is_end = strcmp(policy, "end") == 0, is_oldest = strcmp(policy, "drop_oldest") == 0;
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2,\"publish_timeout_ms\":0}");
    struct gate gate = {0, 0};
    struct recorder slow, fast;
    recorder_init(&slow, bus, total);
    recorder_init(&fast, bus, total);
    slow.gate = &gate;
    int64_t slow_id =
        SUBSCRIBE_WITH(bus, "lim.>", slow_options(policy), record_cb, record_end, &slow);
    int64_t fast_id = SUBSCRIBE_WITH(bus, "lim.>", NULL, record_cb, record_end, &fast);

    publish_start(bus);
    CHECK_MSG(wait_for(&gate.waiting, 1, 5000), "slow callback never started");
    struct pub_job jobs[PUBLISHERS];
    run_publishers(jobs, bus, M, 0, 0); /* every publish OK: checked in the thread */
    /* all returned while the slow callback is still held */
    CHECK_MSG(!atomic_load(&gate.open), "gate opened early");
    CHECK_EQ(atomic_load(&slow.count), 1);
    CHECK_MSG(wait_for(&fast.count, total, 10000),
              "%s: the unlimited subscription got %d of %d while the slow one was held", policy,
              atomic_load(&fast.count), total);
    CHECK_EQ(STAT(bus, "published"), total);
    CHECK_EQ(REJECTED(bus, "full"), 0);
    CHECK_EQ(SUB_STAT(bus, slow_id, "queued"), is_end ? 0 : LIMIT);
    CHECK_EQ(SUB_STAT(bus, slow_id, "max_queued"), LIMIT);
    {
        char *st = SUB_STATS(bus, slow_id), want[64];
        CHECK_EQ(json_int_after(st, NULL, "id"), slow_id);
        CHECK_CONTAINS(st, "\"pattern\":\"lim.>\"");
        CHECK_CONTAINS(st, "\"kind\":\"callback\"");
        CHECK_CONTAINS(st, "\"group\":null");
        snprintf(want, sizeof want, "\"on_full\":\"%s\"", policy);
        CHECK_CONTAINS(st, want);
        CHECK_EQ(json_int_after(st, NULL, "queue_limit"), LIMIT);
        CHECK_EQ(json_int_after(st, NULL, "max_failures"), 0);
        CHECK_EQ(json_int_after(st, NULL, "callback_failures"), 0);
        jsonbus_string_free(st);
    }
    if (is_end) {
        /* ended at seq 6 (4 waiting and the running one): 4 discarded + seq 6 dropped */
        CHECK_SUB_ENDED(bus, slow_id, "JSONBUS_END_SLOW");
        CHECK_EQ(SUB_STAT(bus, slow_id, "dropped"), LIMIT + 1);
        CHECK_EQ(STAT(bus, "subscriptions"), 1);
        sleep_ms(30);
        CHECK_MSG(atomic_load(&slow.ends) == 0,
                  "the end notice ran while the subscription's callback was still running");
    } else {
        CHECK_SUB_ENDED(bus, slow_id, "null");
        CHECK_EQ(SUB_STAT(bus, slow_id, "dropped"), total - 1 - LIMIT);
    }
    CHECK_EQ(STAT(bus, "dropped"), is_end ? LIMIT + 1 : total - 1 - LIMIT);

    atomic_store(&gate.open, 1);
    CHECK_OK(jsonbus_flush(bus, 10000));
    check_complete(&fast, total, M, "unlimited subscription");
    check_order(&slow, policy);
    int got = atomic_load(&slow.count);
    if (is_end) {
        CHECK_MSG(wait_for(&slow.ends, 1, 5000), "end notice of the slow subscription never ran");
        CHECK_EQ(got, 1);
        CHECK_EQ(slow.recs[0].seq, 1);
        CHECK_EQ(atomic_load(&slow.end_reason), JSONBUS_END_SLOW);
        char ended[64];
        json_ended(slow.end_stats, ended, sizeof ended);
        CHECK_STREQ(ended, "JSONBUS_END_SLOW");
        CHECK_EQ(TEXT_STAT(slow.end_stats, "delivered"), 1);
        CHECK_EQ(TEXT_STAT(slow.end_stats, "dropped"), LIMIT + 1);
        CHECK_EQ(TEXT_STAT(slow.end_stats, "queued"), 0);
        /* routed to it: seqs 1..6 */
        CHECK_EQ(TEXT_STAT(slow.end_stats, "delivered") + TEXT_STAT(slow.end_stats, "dropped"),
                 LIMIT + 2);
        /* forgotten once its end notice returned */
        WAIT_FORGOTTEN(bus, slow_id);
        CHECK_ERR(jsonbus_unsubscribe(bus, slow_id), JSONBUS_ERR_NOT_FOUND);
    } else {
        CHECK_EQ(got, 1 + LIMIT);
        CHECK_EQ(slow.recs[0].seq, 1);
        for (int i = 1; i <= LIMIT; i++) {
            uint64_t want = is_oldest ? (uint64_t)(total - LIMIT + i) : (uint64_t)(1 + i);
            CHECK_MSG(slow.recs[i].seq == want, "%s: message %d has seq %llu, expected %llu",
                      policy, i, (unsigned long long)slow.recs[i].seq,
                      (unsigned long long)want);
        }
        CHECK_EQ(SUB_STAT(bus, slow_id, "delivered"), 1 + LIMIT);
        CHECK_EQ(SUB_STAT(bus, slow_id, "dropped"), total - 1 - LIMIT);
        CHECK_EQ(SUB_STAT(bus, slow_id, "delivered") + SUB_STAT(bus, slow_id, "dropped"), total);
        CHECK_EQ(SUB_STAT(bus, slow_id, "queued"), 0);
        CHECK_EQ(atomic_load(&slow.ends), 0);
    }
    CHECK_EQ(SUB_STAT(bus, fast_id, "delivered"), total);
    CHECK_EQ(SUB_STAT(bus, fast_id, "dropped"), 0);
    CHECK_EQ(STAT(bus, "delivered"), total + got);
    CHECK_EQ(STAT(bus, "dropped"), is_end ? LIMIT + 1 : total - 1 - LIMIT);
    CHECK_EQ(STAT(bus, "unrouted"), 0);
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_EQ(atomic_load(&slow.late), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&fast.ends), 1);
    CHECK_EQ(atomic_load(&fast.end_reason), JSONBUS_END_CLOSED);
    CHECK_EQ(atomic_load(&slow.ends), 1);
    if (!is_end) CHECK_EQ(atomic_load(&slow.end_reason), JSONBUS_END_CLOSED);
    jsonbus_free(bus);
    recorder_free(&slow);
    recorder_free(&fast);
}

/* ---- 2. a sleeping slow subscription under 4 publishers --------------------------------- */
static void test_sleeping(const char *policy, int per_pub, long slow_us) {
    const int total = PUBLISHERS * per_pub;
    int is_end = strcmp(policy, "end") == 0, is_block = strcmp(policy, "block") == 0;
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    struct recorder slow, fast;
    recorder_init(&slow, bus, total);
    recorder_init(&fast, bus, total);
    slow.sleep_us = slow_us;
    int64_t slow_id =
        SUBSCRIBE_WITH(bus, "lim.>", slow_options(policy), record_cb, record_end, &slow);
    int64_t fast_id = SUBSCRIBE_WITH(bus, "lim.>", "{}", record_cb, record_end, &fast);
    struct pub_job jobs[PUBLISHERS];
    double t0 = now_ms();
    run_publishers(jobs, bus, per_pub, 0, 0);
    double pub_ms = now_ms() - t0;
    CHECK_OK(jsonbus_flush(bus, 20000));
    check_complete(&fast, total, per_pub, "unlimited subscription");
    check_order(&slow, policy);
    int got = atomic_load(&slow.count);
    long long slow_dropped;
    if (is_end) {
        CHECK_MSG(wait_for(&slow.ends, 1, 5000), "the slow subscription never ended");
        CHECK_EQ(atomic_load(&slow.end_reason), JSONBUS_END_SLOW);
        /* it got 1..d, then its queue (at most the limit) and the message that found it full
         * were dropped */
        for (int i = 0; i < got; i++) CHECK_EQ(slow.recs[i].seq, i + 1);
        CHECK_EQ(TEXT_STAT(slow.end_stats, "delivered"), got);
        slow_dropped = TEXT_STAT(slow.end_stats, "dropped");
        CHECK_MSG(slow_dropped >= 1 && slow_dropped <= LIMIT + 1, "dropped %lld", slow_dropped);
        CHECK_MSG(TEXT_STAT(slow.end_stats, "max_queued") <= LIMIT, "%s", slow.end_stats);
        CHECK_MSG(got + slow_dropped <= total, "%d + %lld > %d", got, slow_dropped, total);
    } else {
        CHECK_SUB_ENDED(bus, slow_id, "null");
        CHECK_EQ(SUB_STAT(bus, slow_id, "delivered"), got);
        slow_dropped = SUB_STAT(bus, slow_id, "dropped");
        /* routed to it: every message (it was live and matching throughout) */
        CHECK_EQ(got + slow_dropped, total);
        CHECK_MSG(SUB_STAT(bus, slow_id, "max_queued") <= LIMIT, "max_queued over the limit");
        CHECK_EQ(SUB_STAT(bus, slow_id, "queued"), 0);
        if (is_block) {
            check_complete(&slow, total, per_pub, "blocking subscription");
            CHECK_EQ(slow_dropped, 0);
        } else if (strcmp(policy, "drop_oldest") == 0) {
            CHECK_MSG(got > 0 && slow.recs[got - 1].seq == (uint64_t)total,
                      "drop_oldest dropped the newest message");
        } else {
            CHECK_MSG(got > 0 && slow.recs[0].seq == 1, "drop_new dropped the first message");
        }
    }
    CHECK_EQ(SUB_STAT(bus, fast_id, "delivered"), total);
    CHECK_EQ(SUB_STAT(bus, fast_id, "dropped"), 0);
    CHECK_EQ(STAT(bus, "published"), total);
    CHECK_EQ(STAT(bus, "delivered"), total + got);
    CHECK_EQ(STAT(bus, "dropped"), slow_dropped); /* the sum of the subscriptions' drops */
    CHECK_EQ(STAT(bus, "unrouted"), 0);
    CHECK_EQ(REJECTED(bus, "full"), 0);
    CHECK_EQ(atomic_load(&slow.late), 0);
    printf("%-11s slow got %5d of %5d, dropped %5lld; publishing took %.0f ms\n", policy, got,
           total, slow_dropped, pub_ms);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&slow.ends), 1);
    jsonbus_free(bus);
    recorder_free(&slow);
    recorder_free(&fast);
}

/* ---- 3. "block" ------------------------------------------------------------------------- */
/* A bus whose slow "block" subscription is held at its gate with its queue at the limit. */
struct blocked_bus {
    jsonbus *bus;
    struct gate gate;
    struct recorder slow, fast;
    int64_t slow_id, fast_id;
};

static void blocked_bus_open(struct blocked_bus *b, const char *bus_options) {
    memset(b, 0, sizeof *b);
    b->bus = NEW_BUS(bus_options);
    recorder_init(&b->slow, b->bus, 1000);
    recorder_init(&b->fast, b->bus, 1000);
    b->slow.gate = &b->gate;
    b->slow_id = SUBSCRIBE_WITH(b->bus, "lim.>", slow_options("block"), record_cb, record_end,
                                &b->slow);
    b->fast_id = SUBSCRIBE_WITH(b->bus, "lim.>", NULL, record_cb, record_end, &b->fast);
    publish_start(b->bus);
    CHECK_MSG(wait_for(&b->gate.waiting, 1, 5000), "slow callback never started");
    char json[64];
    for (int i = 1; i <= LIMIT; i++) {
        format_tn(json, sizeof json, PUBLISHERS, i);
        PUBLISH(b->bus, "lim.start", json);
    }
    CHECK_EQ(SUB_STAT(b->bus, b->slow_id, "queued"), LIMIT);
    CHECK_MSG(wait_for(&b->fast.count, LIMIT + 1, 5000), "unlimited subscription is behind");
}

static void blocked_bus_close(struct blocked_bus *b) {
    atomic_store(&b->gate.open, 1);
    CHECK_OK(jsonbus_flush(b->bus, 10000));
    /* same seqs for both */
    int n = atomic_load(&b->fast.count);
    CHECK_EQ(atomic_load(&b->slow.count), n);
    for (int i = 0; i < n; i++) CHECK_EQ(b->slow.recs[i].seq, b->fast.recs[i].seq);
    CHECK_EQ(SUB_STAT(b->bus, b->slow_id, "dropped"), 0);
    CHECK_EQ(STAT(b->bus, "dropped"), 0);
    CHECK_OK(jsonbus_close(b->bus, -1));
    jsonbus_free(b->bus);
    recorder_free(&b->slow);
    recorder_free(&b->fast);
}

static void *open_gate_later(void *arg) {
    struct gate *g = arg;
    sleep_ms(80);
    atomic_store(&g->open, 1);
    return NULL;
}

/* publish from a callback of the same bus */
static jsonbus *cb_bus;
static atomic_int cb_done;
static int32_t cb_rc;
static double cb_ms;
static char cb_error[256];

static int32_t publishing_cb(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    double t0 = now_ms();
    cb_rc = jsonbus_publish(cb_bus, "lim.cb", "{\"t\":4,\"n\":99}", 14);
    cb_ms = now_ms() - t0;
    snprintf(cb_error, sizeof cb_error, "%s", jsonbus_last_error());
    atomic_store(&cb_done, 1);
    return JSONBUS_OK;
}

static void test_block(void) {
    struct blocked_bus b;
    char name[48];

    /* publish_timeout_ms 0: FULL at once, naming the subscription; nothing queued anywhere */
    blocked_bus_open(&b, "{\"dispatcher_threads\":2,\"publish_timeout_ms\":0}");
    snprintf(name, sizeof name, "subscription %lld", (long long)b.slow_id);
    double t0 = now_ms();
    CHECK_ERR(jsonbus_publish(b.bus, "lim.x", "{\"t\":4,\"n\":100}", 15), JSONBUS_ERR_FULL);
    CHECK_CONTAINS(jsonbus_last_error(), name);
    CHECK_MSG(now_ms() - t0 < 500, "publish with publish_timeout_ms 0 waited %.0f ms",
              now_ms() - t0);
    /* a subscription on another topic is not affected */
    PUBLISH(b.bus, "other", "{}");
    struct pub_job jobs[PUBLISHERS];
    run_publishers(jobs, b.bus, 50, 1, b.slow_id);
    for (int t = 0; t < PUBLISHERS; t++) {
        CHECK_EQ(jobs[t].accepted, 0);
        CHECK_EQ(jobs[t].full, 50);
        free(jobs[t].ok);
    }
    CHECK_EQ(REJECTED(b.bus, "full"), 1 + PUBLISHERS * 50);
    CHECK_EQ(STAT(b.bus, "published"), LIMIT + 2); /* the refused ones took no seq */
    sleep_ms(20);
    CHECK_EQ(atomic_load(&b.fast.count), LIMIT + 1);
    CHECK_EQ(SUB_STAT(b.bus, b.slow_id, "queued"), LIMIT);
    blocked_bus_close(&b);

    /* publish_timeout_ms 200: waits, then FULL; succeeds once the slow one takes a message */
    blocked_bus_open(&b, "{\"dispatcher_threads\":2,\"publish_timeout_ms\":200}");
    snprintf(name, sizeof name, "subscription %lld", (long long)b.slow_id);
    t0 = now_ms();
    CHECK_ERR(jsonbus_publish(b.bus, "lim.x", "{\"t\":4,\"n\":100}", 15), JSONBUS_ERR_FULL);
    double waited = now_ms() - t0;
    CHECK_MSG(waited >= 190, "publish_timeout_ms 200 gave up after %.0f ms", waited);
    CHECK_CONTAINS(jsonbus_last_error(), name);
    pthread_t th;
    START_THREAD(th, open_gate_later, &b.gate);
    t0 = now_ms();
    CHECK_OK(jsonbus_publish(b.bus, "lim.x", "{\"t\":4,\"n\":101}", 15));
    waited = now_ms() - t0;
    JOIN_THREAD(th);
    CHECK_MSG(waited >= 60, "publish at the limit returned after %.0f ms, before there was room",
              waited);
    blocked_bus_close(&b);

    /* from a callback of the same bus: FULL at once although publish_timeout_ms is -1 */
    blocked_bus_open(&b, "{\"dispatcher_threads\":2}");
    cb_bus = b.bus;
    SUBSCRIBE(b.bus, "trigger", publishing_cb, NULL);
    PUBLISH(b.bus, "trigger", "{}");
    CHECK_MSG(wait_for(&cb_done, 1, 5000),
              "a publish from a callback waited for a blocking subscription at its limit");
    CHECK_RC(cb_rc, JSONBUS_ERR_FULL);
    CHECK_MSG(cb_ms < 500, "publish from a callback took %.0f ms", cb_ms);
    snprintf(name, sizeof name, "subscription %lld", (long long)b.slow_id);
    CHECK_CONTAINS(cb_error, name);
    CHECK_EQ(STAT(b.bus, "published"), LIMIT + 2);
    blocked_bus_close(&b);

    /* 4 publishers, publish_timeout_ms 1, a sleeping "block" subscription with limit 1: some
     * publishes fail; both subscriptions get exactly the accepted ones, in order */
    enum { M = 150 };
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2,\"publish_timeout_ms\":1}");
    struct recorder slow, fast;
    recorder_init(&slow, bus, PUBLISHERS * M);
    recorder_init(&fast, bus, PUBLISHERS * M);
    slow.sleep_us = 400;
    int64_t slow_id = SUBSCRIBE_WITH(bus, "lim.>", "{\"queue_limit\":1}", record_cb, NULL, &slow);
    SUBSCRIBE_WITH(bus, "lim.>", NULL, record_cb, NULL, &fast);
    run_publishers(jobs, bus, M, 1, slow_id);
    CHECK_OK(jsonbus_flush(bus, 10000));
    int accepted = 0, full = 0;
    for (int t = 0; t < PUBLISHERS; t++) {
        accepted += jobs[t].accepted;
        full += jobs[t].full;
    }
    CHECK_EQ(accepted + full, PUBLISHERS * M);
    CHECK_MSG(full > 0, "no publish found the blocking subscription at its limit of 1");
    CHECK_MSG(accepted > 0, "no publish was accepted");
    CHECK_EQ(STAT(bus, "published"), accepted);
    CHECK_EQ(REJECTED(bus, "full"), full);
    CHECK_EQ(atomic_load(&slow.count), accepted);
    CHECK_EQ(atomic_load(&fast.count), accepted);
    check_order(&slow, "blocking subscription");
    check_order(&fast, "unlimited subscription");
    /* the same messages, exactly the accepted ones */
    unsigned char *seen = calloc((size_t)(PUBLISHERS * M), 1);
    CHECK(seen != NULL);
    for (int i = 0; i < accepted; i++) {
        CHECK_EQ(slow.recs[i].seq, i + 1);
        CHECK_EQ(fast.recs[i].seq, i + 1);
        CHECK_EQ(slow.recs[i].t, fast.recs[i].t);
        CHECK_EQ(slow.recs[i].n, fast.recs[i].n);
        int t = fast.recs[i].t, n = fast.recs[i].n;
        CHECK(t >= 0 && t < PUBLISHERS && n >= 0 && n < M);
        CHECK_MSG(jobs[t].ok[n], "publisher %d's message %d was delivered but refused", t, n);
        CHECK(!seen[t * M + n]);
        seen[t * M + n] = 1;
    }
    free(seen);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_MSG(SUB_STAT(bus, slow_id, "max_queued") <= 1, "max_queued over the limit of 1");
    printf("block, publish_timeout_ms 1: %d accepted, %d FULL\n", accepted, full);
    for (int t = 0; t < PUBLISHERS; t++) free(jobs[t].ok);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    recorder_free(&slow);
    recorder_free(&fast);
}

/* A publish waiting at a "block" limit lets others publish elsewhere, goes on once the
 * blocking subscription ends (without waiting for its running callback), and is woken by a
 * close with CLOSED. */
struct async_call {
    jsonbus *bus;
    int64_t id;
    int what; /* 0: publish on lim.x, 1: unsubscribe id, 2: close */
    atomic_int done;
    int32_t rc;
};

static void *async_call_thread(void *arg) {
    struct async_call *c = arg;
    switch (c->what) {
    case 0:
        c->rc = jsonbus_publish(c->bus, "lim.x", "{\"t\":4,\"n\":200}", 15);
        break;
    case 1:
        c->rc = jsonbus_unsubscribe(c->bus, c->id);
        break;
    default:
        c->rc = jsonbus_close(c->bus, -1);
        break;
    }
    atomic_store(&c->done, 1);
    return NULL;
}

static atomic_int other_calls;
static int32_t count_other(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&other_calls, 1);
    return JSONBUS_OK;
}

static void test_block_wakeups(void) {
    struct blocked_bus b;
    blocked_bus_open(&b, "{\"dispatcher_threads\":2}");
    SUBSCRIBE(b.bus, "other", count_other, NULL);
    struct async_call pub = {b.bus, 0, 0, 0, 12345}, unsub = {b.bus, b.slow_id, 1, 0, 12345};
    pthread_t tp, tu;
    START_THREAD(tp, async_call_thread, &pub);
    sleep_ms(50);
    CHECK_MSG(!atomic_load(&pub.done), "publish did not wait at the block limit (rc %s)",
              jsonbus_status_name(pub.rc));
    /* a publish that matches no full subscription goes on meanwhile */
    double t0 = now_ms();
    PUBLISH(b.bus, "other", "{}");
    CHECK_MSG(now_ms() - t0 < 500, "a publish elsewhere waited behind the blocked one");
    CHECK_MSG(wait_for(&other_calls, 1, 5000), "the other subscription was held up");
    /* the blocking subscription ends: the waiting publish goes on, although the unsubscribe
     * itself still waits for the running callback */
    START_THREAD(tu, async_call_thread, &unsub);
    CHECK_MSG(wait_for(&pub.done, 1, 3000),
              "a publish still waits for a subscription that was unsubscribed");
    CHECK_RC(pub.rc, JSONBUS_OK);
    sleep_ms(20);
    CHECK_MSG(!atomic_load(&unsub.done), "unsubscribe returned while the callback ran");
    atomic_store(&b.gate.open, 1);
    JOIN_THREAD(tp);
    JOIN_THREAD(tu);
    CHECK_RC(unsub.rc, JSONBUS_OK);
    CHECK_OK(jsonbus_flush(b.bus, 5000));
    CHECK_EQ(atomic_load(&b.slow.ends), 1);
    CHECK_EQ(atomic_load(&b.slow.end_reason), JSONBUS_END_UNSUBSCRIBED);
    CHECK_EQ(TEXT_STAT(b.slow.end_stats, "dropped"), LIMIT); /* its queue */
    CHECK_EQ(atomic_load(&b.slow.count), 1);
    CHECK_EQ(atomic_load(&b.fast.count), LIMIT + 2);
    CHECK_EQ(STAT(b.bus, "dropped"), LIMIT);
    CHECK_OK(jsonbus_close(b.bus, -1));
    jsonbus_free(b.bus);
    recorder_free(&b.slow);
    recorder_free(&b.fast);

    /* close wakes a waiting publish with CLOSED (close itself waits for the running callback) */
    blocked_bus_open(&b, "{\"dispatcher_threads\":2}");
    struct async_call pub2 = {b.bus, 0, 0, 0, 12345}, closer = {b.bus, 0, 2, 0, 12345};
    START_THREAD(tp, async_call_thread, &pub2);
    sleep_ms(50);
    CHECK(!atomic_load(&pub2.done));
    START_THREAD(tu, async_call_thread, &closer);
    CHECK_MSG(wait_for(&pub2.done, 1, 3000), "close did not wake a publish waiting at a block limit");
    CHECK_RC(pub2.rc, JSONBUS_ERR_CLOSED);
    sleep_ms(20);
    CHECK_MSG(!atomic_load(&closer.done), "close returned while a callback ran");
    atomic_store(&b.gate.open, 1);
    JOIN_THREAD(tp);
    JOIN_THREAD(tu);
    CHECK_RC(closer.rc, JSONBUS_OK);
    CHECK_EQ(atomic_load(&b.slow.count), LIMIT + 1);
    CHECK_EQ(atomic_load(&b.fast.count), LIMIT + 1);
    CHECK_EQ(REJECTED(b.bus, "closed"), 1);
    jsonbus_free(b.bus);
    recorder_free(&b.slow);
    recorder_free(&b.fast);
}

/* ---- 4. max_failures ------------------------------------------------------------------ */
struct failer {
    struct gate gate;
    atomic_int calls;
    atomic_int ends;
    atomic_int end_reason;
    atomic_int end_began;
    atomic_int late;
    jsonbus *bus;
    char end_stats[1024];
};

/* Returns the payload's integer: {"rc":N}. The first invocation waits at the gate. */
static int32_t failing_cb(const jsonbus_message *msg, void *user_data) {
    struct failer *f = user_data;
    if (atomic_load(&f->end_began)) atomic_fetch_add(&f->late, 1);
    if (atomic_fetch_add(&f->calls, 1) == 0) gate_wait(&f->gate);
    int rc;
    if (sscanf(msg->json, "{\"rc\":%d}", &rc) != 1) FAIL("payload %s", msg->json);
    return rc;
}

static void failer_end(int64_t id, int32_t reason, void *user_data) {
    struct failer *f = user_data;
    atomic_store(&f->end_began, 1);
    char *s = jsonbus_subscription_stats(f->bus, id);
    if (s == NULL) FAIL("jsonbus_subscription_stats inside the end notice: NULL");
    snprintf(f->end_stats, sizeof f->end_stats, "%s", s);
    jsonbus_string_free(s);
    atomic_store(&f->end_reason, reason);
    atomic_fetch_add(&f->ends, 1);
}

/* Publishes the return values `rcs` (all queued behind the gated first one), then checks that
 * the subscription made with max_failures `max` took `calls` invocations (of which `failures`
 * negative) and then ended as FAILED (ends) or is still live. */
static void run_failures(int max, const int *rcs, int n, int calls, int failures, int ends) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":1}");
    struct failer *f = calloc(1, sizeof *f);
    CHECK(f != NULL);
    f->bus = bus;
    char options[64];
    snprintf(options, sizeof options, "{\"max_failures\":%d}", max);
    int64_t id = SUBSCRIBE_WITH(bus, "fail", options, failing_cb, failer_end, f);
    for (int i = 0; i < n; i++) {
        char json[32];
        snprintf(json, sizeof json, "{\"rc\":%d}", rcs[i]);
        PUBLISH(bus, "fail", json);
        if (i == 0) CHECK_MSG(wait_for(&f->gate.waiting, 1, 5000), "callback never started");
    }
    atomic_store(&f->gate.open, 1);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&f->calls), calls);
    CHECK_EQ(STAT(bus, "callback_failures"), failures);
    CHECK_EQ(STAT(bus, "delivered"), calls);
    if (ends) {
        CHECK_MSG(wait_for(&f->ends, 1, 5000), "max_failures %d did not end the subscription", max);
        CHECK_EQ(atomic_load(&f->end_reason), JSONBUS_END_FAILED);
        char ended[64];
        json_ended(f->end_stats, ended, sizeof ended);
        CHECK_STREQ(ended, "JSONBUS_END_FAILED");
        CHECK_EQ(TEXT_STAT(f->end_stats, "callback_failures"), failures);
        CHECK_EQ(TEXT_STAT(f->end_stats, "delivered"), calls);
        CHECK_EQ(TEXT_STAT(f->end_stats, "dropped"), n - calls); /* queued when it ended */
        CHECK_EQ(TEXT_STAT(f->end_stats, "max_failures"), max);
        CHECK_EQ(STAT(bus, "dropped"), n - calls);
        CHECK_EQ(STAT(bus, "subscriptions"), 0);
        PUBLISH(bus, "fail", "{\"rc\":0}");
        CHECK_OK(jsonbus_flush(bus, 5000));
        CHECK_EQ(atomic_load(&f->calls), calls);
        CHECK_EQ(STAT(bus, "unrouted"), 1);
        WAIT_FORGOTTEN(bus, id);
        CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
    } else {
        CHECK_EQ(atomic_load(&f->ends), 0);
        CHECK_SUB_ENDED(bus, id, "null");
        CHECK_EQ(SUB_STAT(bus, id, "callback_failures"), failures);
        CHECK_EQ(STAT(bus, "subscriptions"), 1);
        CHECK_OK(jsonbus_unsubscribe(bus, id));
        CHECK_EQ(atomic_load(&f->ends), 1);
        CHECK_EQ(atomic_load(&f->end_reason), JSONBUS_END_UNSUBSCRIBED);
    }
    CHECK_EQ(atomic_load(&f->late), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&f->ends), 1);
    jsonbus_free(bus);
    free(f);
}

static void test_max_failures(void) {
    /* always failing: ends after exactly 3 */
    int all[10] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    run_failures(3, all, 10, 3, 3, 1);
    /* max_failures 1: the first failure ends it */
    int first[3] = {-1, 0, 0};
    run_failures(1, first, 3, 1, 1, 1);
    int later[4] = {0, 0, -7, 0};
    run_failures(1, later, 4, 3, 1, 1);
    /* a success (0, or any positive value but JSONBUS_UNSUBSCRIBE) resets the count; any
     * negative value is a failure */
    int reset[11] = {-1, -1, 0, -1, -5, 7, -1, -1, -1, 0, 0};
    run_failures(3, reset, 11, 9, 7, 1);
    /* two in a row never reach 3 */
    int pairs[12] = {-1, -1, 0, -1, -1, 2, -2, -1, 0, -1, -1, 0};
    run_failures(3, pairs, 12, 12, 8, 0);
    /* max_failures 0: never ends */
    run_failures(0, all, 10, 10, 10, 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_exact("drop_new");
    test_exact("drop_oldest");
    test_exact("end");
    test_sleeping("drop_new", 1000, 100);
    test_sleeping("drop_oldest", 1000, 100);
    test_sleeping("end", 1000, 1000);
    test_sleeping("block", 250, 50);
    test_block();
    test_block_wakeups();
    test_max_failures();
    printf("ok\n");
    return 0;
}
