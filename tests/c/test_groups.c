/*
 * test_groups: queue groups (contract guarantee 15, 12, 3) and a slow subscriber among many.
 *
 *  1. A group of 4 callback members on one pattern splits N messages from 4 publisher threads:
 *     every message to exactly one member (sum == N, no duplicates), each member's in seq
 *     order, and every member gets a fair part of the work; a subscription outside the group
 *     on the same pattern still gets all N. Members on different patterns share only what
 *     they both match.
 *  2. A member at its queue_limit (its callback held at a gate) is passed over while another
 *     member has room: nothing is dropped or refused, and it gets no more than the limit
 *     allows; once every member is at its limit, "block" with publish_timeout_ms 0 says FULL.
 *  3. Mixed pull and callback members share a group's messages, each exactly once.
 *  4. Members ending (unsubscribed from outside, returning JSONBUS_UNSUBSCRIBE) do not lose
 *     the group's later messages; what was queued for them is counted as dropped, and
 *     delivered + dropped == published.
 *  5. Among 1,000 subscriptions, a slow one with queue_limit 2 and on_full "end" does not
 *     hold up the others: they all get every message while its callback still sleeps, it ends
 *     as slow with 2 + 1 dropped, and a flush completes in a bounded time.
 */
#include "sub_check.h"

#define PUBLISHERS 4

/* ---- a recording member ------------------------------------------------------------------ */
enum { MAX_SEQ = 20000 };
static atomic_int seen[MAX_SEQ + 1]; /* deliveries of each seq to the group's members */

struct member {
    atomic_int count;
    uint64_t last_seq;
    long spin_us;
    struct gate *gate;      /* if set, the first invocation waits at it */
    atomic_int stop_next;   /* return JSONBUS_UNSUBSCRIBE on the next message */
    int counts_seen;        /* counts in seen[] (group members) */
};

static int32_t member_cb(const jsonbus_message *msg, void *user_data) {
    struct member *m = user_data;
    if (msg->seq <= m->last_seq)
        FAIL("subscription %lld: seq %llu after %llu", (long long)msg->subscription,
             (unsigned long long)msg->seq, (unsigned long long)m->last_seq);
    m->last_seq = msg->seq;
    if (msg->seq > MAX_SEQ) FAIL("seq %llu beyond the test's range", (unsigned long long)msg->seq);
    if (m->counts_seen) atomic_fetch_add(&seen[msg->seq], 1);
    int n = atomic_fetch_add(&m->count, 1) + 1;
    if (m->gate && n == 1) gate_wait(m->gate);
    if (m->spin_us) spin_us(m->spin_us);
    if (atomic_load(&m->stop_next)) return JSONBUS_UNSUBSCRIBE;
    return JSONBUS_OK;
}

static void reset_seen(void) {
    for (int i = 0; i <= MAX_SEQ; i++) atomic_store(&seen[i], 0);
}

/* Every seq in [from, to] was delivered to exactly one member. */
static void check_each_once(int from, int to, const char *what) {
    for (int s = from; s <= to; s++)
        CHECK_MSG(atomic_load(&seen[s]) == 1, "%s: seq %d delivered to %d members", what, s,
                  atomic_load(&seen[s]));
}

struct pub_job {
    jsonbus *bus;
    const char *topic;
    int count;
};

static void *publisher(void *arg) {
    struct pub_job *j = arg;
    for (int i = 0; i < j->count; i++) {
        int32_t rc = jsonbus_publish(j->bus, j->topic, "{}", 2);
        if (rc != JSONBUS_OK) FAIL("publish returned %s", jsonbus_status_name(rc));
    }
    return NULL;
}

/* ---- 1. sharing ------------------------------------------------------------------------ */
static void test_share(void) {
    enum { M = 1000, N = PUBLISHERS * M, MEMBERS = 4 };
    reset_seen();
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    struct member members[MEMBERS], outsider;
    int64_t ids[MEMBERS];
    memset(members, 0, sizeof members);
    memset(&outsider, 0, sizeof outsider);
    for (int i = 0; i < MEMBERS; i++) {
        members[i].counts_seen = 1;
        members[i].spin_us = 2;
        ids[i] = SUBSCRIBE_WITH(bus, "work.>", "{\"group\":\"g\"}", member_cb, NULL, &members[i]);
    }
    int64_t out_id = SUBSCRIBE(bus, "work.>", member_cb, &outsider);
    pthread_t th[PUBLISHERS];
    struct pub_job jobs[PUBLISHERS];
    const char *topics[PUBLISHERS] = {"work.a", "work.b", "work.c.d", "work.e"};
    for (int t = 0; t < PUBLISHERS; t++) {
        jobs[t] = (struct pub_job){bus, topics[t], M};
        START_THREAD(th[t], publisher, &jobs[t]);
    }
    for (int t = 0; t < PUBLISHERS; t++) JOIN_THREAD(th[t]);
    CHECK_OK(jsonbus_flush(bus, 20000));
    check_each_once(1, N, "group of 4");
    int sum = 0;
    for (int i = 0; i < MEMBERS; i++) {
        int c = atomic_load(&members[i].count);
        sum += c;
        CHECK_EQ(SUB_STAT(bus, ids[i], "delivered"), c);
        char *st = SUB_STATS(bus, ids[i]);
        CHECK_CONTAINS(st, "\"group\":\"g\"");
        jsonbus_string_free(st);
        CHECK_MSG(c >= N / 16, "member %d got only %d of %d messages", i, c, N);
    }
    printf("group of 4 got %d, %d, %d, %d of %d\n", atomic_load(&members[0].count),
           atomic_load(&members[1].count), atomic_load(&members[2].count),
           atomic_load(&members[3].count), N);
    CHECK_EQ(sum, N);
    CHECK_EQ(atomic_load(&outsider.count), N);
    CHECK_EQ(outsider.last_seq, N);
    char *st = SUB_STATS(bus, out_id);
    CHECK_CONTAINS(st, "\"group\":null");
    jsonbus_string_free(st);
    CHECK_EQ(STAT(bus, "delivered"), 2 * N);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_EQ(STAT(bus, "unrouted"), 0);

    /* members on different patterns share only what both match */
    reset_seen();
    struct member a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int64_t published0 = STAT(bus, "published");
    SUBSCRIBE_WITH(bus, "mix.a", "{\"group\":\"h\"}", member_cb, NULL, &a);
    SUBSCRIBE_WITH(bus, "mix.>", "{\"group\":\"h\"}", member_cb, NULL, &b);
    for (int i = 0; i < 100; i++) {
        PUBLISH(bus, "mix.a", "1");
        PUBLISH(bus, "mix.b", "2");
    }
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&a.count) + atomic_load(&b.count), 200);
    CHECK_MSG(atomic_load(&a.count) > 0 && atomic_load(&a.count) <= 100, "mix.a member got %d",
              atomic_load(&a.count));
    CHECK_EQ(STAT(bus, "published") - published0, 200);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 2. a member at its limit is passed over ------------------------------------------- */
static void test_full_member(const char *policy) {
    reset_seen();
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2,\"publish_timeout_ms\":0}");
    struct gate gate = {0, 0};
    struct member slow, fast;
    memset(&slow, 0, sizeof slow);
    memset(&fast, 0, sizeof fast);
    slow.gate = &gate;
    slow.counts_seen = fast.counts_seen = 1;
    char options[128];
    snprintf(options, sizeof options, "{\"group\":\"s\",\"queue_limit\":1,\"on_full\":\"%s\"}",
             policy);
    int64_t slow_id = SUBSCRIBE_WITH(bus, "job", options, member_cb, NULL, &slow);
    int64_t fast_id = SUBSCRIBE_WITH(bus, "job", "{\"group\":\"s\"}", member_cb, NULL, &fast);
    /* until the slow member holds a message at its gate */
    int published = 0;
    while (atomic_load(&gate.waiting) == 0) {
        CHECK_MSG(published < 50, "the slow member was never given a message");
        PUBLISH(bus, "job", "{}");
        published++;
        sleep_ms(2);
    }
    for (int i = 0; i < 300; i++) {
        PUBLISH(bus, "job", "{}"); /* never FULL, never dropped: the fast member has room */
        published++;
    }
    CHECK_MSG(SUB_STAT(bus, slow_id, "queued") <= 1, "over its queue_limit");
    CHECK_SUB_ENDED(bus, slow_id, "null");
    CHECK_EQ(SUB_STAT(bus, slow_id, "dropped"), 0);
    atomic_store(&gate.open, 1);
    CHECK_OK(jsonbus_flush(bus, 10000));
    check_each_once(1, published, policy);
    int s = atomic_load(&slow.count), f = atomic_load(&fast.count);
    CHECK_MSG(s <= 2, "%s: the member at its limit got %d messages (the held one and one queued "
              "at most)", policy, s);
    CHECK_EQ(s + f, published);
    CHECK_EQ(SUB_STAT(bus, slow_id, "dropped"), 0);
    CHECK_EQ(SUB_STAT(bus, fast_id, "dropped"), 0);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_EQ(REJECTED(bus, "full"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* Every member at its "block" limit: the publish fails with publish_timeout_ms 0. */
static void test_all_members_full(void) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2,\"publish_timeout_ms\":0}");
    struct gate gate = {0, 0};
    struct member a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.gate = b.gate = &gate;
    int64_t ia = SUBSCRIBE_WITH(bus, "job", "{\"group\":\"s\",\"queue_limit\":1}", member_cb, NULL, &a);
    int64_t ib = SUBSCRIBE_WITH(bus, "job", "{\"group\":\"s\",\"queue_limit\":1}", member_cb, NULL, &b);
    int published = 0;
    while (atomic_load(&gate.waiting) < 2) {
        CHECK_MSG(published < 2, "both members should each hold one of the first two");
        PUBLISH(bus, "job", "{}");
        published++;
        CHECK_MSG(wait_for(&gate.waiting, published, 5000), "a member never started");
    }
    PUBLISH(bus, "job", "{}");
    PUBLISH(bus, "job", "{}");
    CHECK_EQ(SUB_STAT(bus, ia, "queued"), 1);
    CHECK_EQ(SUB_STAT(bus, ib, "queued"), 1);
    CHECK_ERR(jsonbus_publish(bus, "job", "{}", 2), JSONBUS_ERR_FULL);
    atomic_store(&gate.open, 1);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&a.count), 2);
    CHECK_EQ(atomic_load(&b.count), 2);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* Every member at its "block" limit and a publish waiting (publish_timeout_ms -1): as soon as
 * one member - whichever - has room again, the waiting publish must go on and give it the
 * message ("a member whose queue is at its limit is passed over while another member has
 * room"). Tried with room made in each of the two members, pull and callback members. */
struct waiting_pub {
    jsonbus *bus;
    const char *topic;
    atomic_int done;
    int32_t rc;
};

static void *waiting_publish(void *arg) {
    struct waiting_pub *w = arg;
    w->rc = jsonbus_publish(w->bus, w->topic, "3", 1);
    atomic_store(&w->done, 1);
    return NULL;
}

static void test_waiting_publish_repicks_pull(int room_in) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t m[2];
    for (int i = 0; i < 2; i++)
        m[i] = SUBSCRIBE_PULL(bus, "wp", "{\"group\":\"w\",\"queue_limit\":1}");
    PUBLISH(bus, "wp", "1");
    PUBLISH(bus, "wp", "2");
    CHECK_EQ(SUB_STAT(bus, m[0], "queued"), 1);
    CHECK_EQ(SUB_STAT(bus, m[1], "queued"), 1);
    struct waiting_pub w = {bus, "wp", 0, 12345};
    pthread_t th;
    START_THREAD(th, waiting_publish, &w);
    sleep_ms(200); /* long enough for the thread to be waiting in the publish */
    CHECK_MSG(!atomic_load(&w.done), "publish did not wait with every member at its limit");
    jsonbus_message *taken = NULL;
    CHECK_OK(jsonbus_next(bus, m[room_in], 0, &taken));
    int went_on = wait_for(&w.done, 1, 1000);
    SOFT_CHECK(went_on,
               "pull group: member %d made room, but the publish waiting for room in the group "
               "still waits (it waits for member %d only)", room_in, 1 - room_in);
    if (!went_on) { /* let it finish */
        jsonbus_message *other = NULL;
        CHECK_OK(jsonbus_next(bus, m[1 - room_in], 0, &other));
        CHECK_MSG(wait_for(&w.done, 1, 5000), "publish never went on");
        jsonbus_message_release(other);
    } else {
        CHECK_EQ(SUB_STAT(bus, m[room_in], "queued"), 1); /* it went to the member with room */
        CHECK_EQ(SUB_STAT(bus, m[1 - room_in], "queued"), 1);
    }
    JOIN_THREAD(th);
    CHECK_RC(w.rc, JSONBUS_OK);
    jsonbus_message_release(taken);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_ERR(jsonbus_close(bus, 0), JSONBUS_ERR_TIMEOUT); /* discards the 2 still waiting */
    jsonbus_free(bus);
}

static void test_waiting_publish_repicks_callback(int room_in) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    struct gate gates[2] = {{0, 0}, {0, 0}};
    struct member mem[2];
    int64_t m[2];
    memset(mem, 0, sizeof mem);
    for (int i = 0; i < 2; i++) {
        mem[i].gate = &gates[i];
        m[i] = SUBSCRIBE_WITH(bus, "wc", "{\"group\":\"w\",\"queue_limit\":1}", member_cb, NULL,
                              &mem[i]);
    }
    /* each member holds one message at its gate and has one queued */
    for (int i = 1; i <= 2; i++) {
        PUBLISH(bus, "wc", "1");
        double end = now_ms() + 5000;
        while (atomic_load(&gates[0].waiting) + atomic_load(&gates[1].waiting) < i) {
            CHECK_MSG(now_ms() < end, "a member never started");
            sleep_us(200);
        }
    }
    CHECK_MSG(atomic_load(&gates[0].waiting) == 1 && atomic_load(&gates[1].waiting) == 1,
              "both idle members should have got one of the first two messages");
    PUBLISH(bus, "wc", "2");
    PUBLISH(bus, "wc", "2");
    CHECK_EQ(SUB_STAT(bus, m[0], "queued"), 1);
    CHECK_EQ(SUB_STAT(bus, m[1], "queued"), 1);
    struct waiting_pub w = {bus, "wc", 0, 12345};
    pthread_t th;
    START_THREAD(th, waiting_publish, &w);
    sleep_ms(200); /* long enough for the thread to be waiting in the publish */
    CHECK_MSG(!atomic_load(&w.done), "publish did not wait with every member at its limit");
    atomic_store(&gates[room_in].open, 1); /* that member drains its queue */
    int went_on = wait_for(&w.done, 1, 1000);
    SOFT_CHECK(went_on,
               "callback group: member %d drained its queue, but the publish waiting for room "
               "in the group still waits (for member %d, held at its gate)", room_in, 1 - room_in);
    atomic_store(&gates[1 - room_in].open, 1);
    JOIN_THREAD(th);
    CHECK_RC(w.rc, JSONBUS_OK);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&mem[0].count) + atomic_load(&mem[1].count), 5);
    if (went_on) CHECK_EQ(atomic_load(&mem[room_in].count), 3);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 3. pull and callback members -------------------------------------------------------- */
struct puller {
    jsonbus *bus;
    int64_t id;
    atomic_int stop;
    atomic_int got;
};

static void *pull_member(void *arg) {
    struct puller *p = arg;
    uint64_t last = 0;
    while (!atomic_load(&p->stop)) {
        jsonbus_message *m = NULL;
        int32_t rc = jsonbus_next(p->bus, p->id, 20, &m);
        if (rc == JSONBUS_ERR_TIMEOUT) continue;
        if (rc != JSONBUS_OK) FAIL("jsonbus_next returned %s", jsonbus_status_name(rc));
        if (m->seq <= last) FAIL("pull member: seq %llu after %llu", (unsigned long long)m->seq,
                                 (unsigned long long)last);
        last = m->seq;
        if (m->seq > MAX_SEQ) FAIL("seq out of range");
        atomic_fetch_add(&seen[m->seq], 1);
        atomic_fetch_add(&p->got, 1);
        jsonbus_message_release(m);
    }
    return NULL;
}

static void test_mixed(void) {
    enum { N = 3000 };
    reset_seen();
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    struct member c1, c2;
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    c1.counts_seen = c2.counts_seen = 1;
    c1.spin_us = c2.spin_us = 3;
    SUBSCRIBE_WITH(bus, "mixed", "{\"group\":\"m\"}", member_cb, NULL, &c1);
    SUBSCRIBE_WITH(bus, "mixed", "{\"group\":\"m\"}", member_cb, NULL, &c2);
    struct puller p = {bus, 0, 0, 0};
    p.id = SUBSCRIBE_PULL(bus, "mixed", "{\"group\":\"m\"}");
    char *st = SUB_STATS(bus, p.id);
    CHECK_CONTAINS(st, "\"kind\":\"pull\"");
    CHECK_CONTAINS(st, "\"group\":\"m\"");
    jsonbus_string_free(st);
    pthread_t th;
    START_THREAD(th, pull_member, &p);
    for (int i = 0; i < N; i++) {
        PUBLISH(bus, "mixed", "{}");
        if (i % 64 == 0) sleep_us(50);
    }
    CHECK_OK(jsonbus_flush(bus, 20000)); /* includes the pulled ones' release */
    atomic_store(&p.stop, 1);
    JOIN_THREAD(th);
    check_each_once(1, N, "pull and callback members");
    int a = atomic_load(&c1.count), b = atomic_load(&c2.count), c = atomic_load(&p.got);
    printf("mixed group: callbacks %d, %d; pull %d\n", a, b, c);
    CHECK_EQ(a + b + c, N);
    CHECK_MSG(a > 0 && b > 0 && c > 0, "a member got no work: %d, %d, %d", a, b, c);
    CHECK_EQ(SUB_STAT(bus, p.id, "delivered"), c);
    CHECK_EQ(STAT(bus, "delivered"), N);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 4. members ending ------------------------------------------------------------------- */
static void test_members_ending(void) {
    enum { N = 300 };
    reset_seen();
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    struct member m[3];
    int64_t ids[3];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 3; i++) {
        m[i].counts_seen = 1;
        m[i].spin_us = 5;
        ids[i] = SUBSCRIBE_WITH(bus, "end", "{\"group\":\"e\"}", member_cb, NULL, &m[i]);
    }
    /* phase 1: all live */
    for (int i = 0; i < N; i++) PUBLISH(bus, "end", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    check_each_once(1, N, "phase 1");
    int before[3];
    for (int i = 0; i < 3; i++) before[i] = atomic_load(&m[i].count);
    CHECK_EQ(before[0] + before[1] + before[2], N);

    /* phase 2: while a thread publishes, member 0 is unsubscribed from outside and member 1
     * ends itself on its next message */
    struct pub_job job = {bus, "end", N};
    pthread_t th;
    atomic_store(&m[1].stop_next, 1);
    START_THREAD(th, publisher, &job);
    spin_us(200);
    CHECK_OK(jsonbus_unsubscribe(bus, ids[0]));
    JOIN_THREAD(th);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_MSG(STAT(bus, "subscriptions") == 1,
              "%lld subscriptions live; phase 2 gave the members %d, %d, %d messages",
              STAT(bus, "subscriptions"), atomic_load(&m[0].count) - before[0],
              atomic_load(&m[1].count) - before[1], atomic_load(&m[2].count) - before[2]);
    long long dropped = STAT(bus, "dropped");
    int delivered2 = 0;
    for (int s = N + 1; s <= 2 * N; s++) {
        int k = atomic_load(&seen[s]);
        CHECK_MSG(k <= 1, "seq %d delivered %d times", s, k);
        delivered2 += k;
    }
    CHECK_EQ(delivered2 + dropped, N); /* each was routed to exactly one member */
    CHECK_MSG(atomic_load(&m[1].count) - before[1] <= 1,
              "member 1 got %d messages after it returned JSONBUS_UNSUBSCRIBE",
              atomic_load(&m[1].count) - before[1] - 1);
    CHECK_EQ(STAT(bus, "delivered") + STAT(bus, "dropped"), 2 * N);
    CHECK_EQ(STAT(bus, "unrouted"), 0);

    /* phase 3: every later message reaches the remaining member */
    int c2 = atomic_load(&m[2].count), c0 = atomic_load(&m[0].count),
        c1 = atomic_load(&m[1].count);
    for (int i = 0; i < N; i++) PUBLISH(bus, "end", "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    check_each_once(2 * N + 1, 3 * N, "phase 3");
    CHECK_EQ(atomic_load(&m[2].count) - c2, N);
    CHECK_EQ(atomic_load(&m[0].count), c0);
    CHECK_EQ(atomic_load(&m[1].count), c1);
    CHECK_EQ(STAT(bus, "dropped"), dropped);
    CHECK_EQ(SUB_STAT(bus, ids[2], "dropped"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 5. one slow subscription among 1,000 ------------------------------------------------ */
enum { FAN_SUBS = 1000, FAN_MSGS = 20 };
static atomic_int fan_counts[FAN_SUBS];
static atomic_int fan_total;
static atomic_int fan_published, slow_running, slow_ends, slow_reason;

static int32_t fan_cb(const jsonbus_message *msg, void *user_data) {
    int i = (int)(intptr_t)user_data;
    (void)msg;
    atomic_fetch_add(&fan_counts[i], 1);
    atomic_fetch_add(&fan_total, 1);
    return JSONBUS_OK;
}

/* Runs until the others have all their messages (5 s at most), and 100 ms more: if the
 * others were held up behind it, they only finish after it gave up. */
static int32_t slow_fan_cb(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_store(&slow_running, 1);
    double end = now_ms() + 5000;
    while (!atomic_load(&fan_published) && now_ms() < end) sleep_us(200);
    while (atomic_load(&fan_total) < (FAN_SUBS - 1) * FAN_MSGS && now_ms() < end) sleep_us(200);
    sleep_ms(100);
    atomic_store(&slow_running, 0);
    return JSONBUS_OK;
}

static void slow_fan_end(int64_t id, int32_t reason, void *user_data) {
    (void)id;
    (void)user_data;
    atomic_store(&slow_reason, reason);
    atomic_fetch_add(&slow_ends, 1);
}

static void test_one_slow_among_many(void) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    int64_t slow_id = SUBSCRIBE_WITH(bus, "fan", "{\"queue_limit\":2,\"on_full\":\"end\"}",
                                     slow_fan_cb, slow_fan_end, NULL);
    for (int i = 0; i < FAN_SUBS - 1; i++)
        SUBSCRIBE(bus, "fan", fan_cb, (void *)(intptr_t)i);
    CHECK_EQ(STAT(bus, "subscriptions"), FAN_SUBS);
    PUBLISH(bus, "fan", "0");
    CHECK_MSG(wait_for(&slow_running, 1, 5000), "the slow callback never started");
    for (int i = 1; i < FAN_MSGS; i++) PUBLISH(bus, "fan", "{}");
    double t0 = now_ms();
    atomic_store(&fan_published, 1);
    CHECK_SUB_ENDED(bus, slow_id, "JSONBUS_END_SLOW");
    CHECK_EQ(SUB_STAT(bus, slow_id, "dropped"), 3); /* its queue of 2 and the one that found it full */
    CHECK_MSG(wait_for(&fan_total, (FAN_SUBS - 1) * FAN_MSGS, 10000),
              "the other subscriptions got %d of %d deliveries", atomic_load(&fan_total),
              (FAN_SUBS - 1) * FAN_MSGS);
    double others_ms = now_ms() - t0;
    CHECK_MSG(atomic_load(&slow_running),
              "the others were only done after the slow callback returned (%.0f ms)", others_ms);
    CHECK_OK(jsonbus_flush(bus, 5000));
    double flush_ms = now_ms() - t0;
    CHECK_MSG(flush_ms < 4000, "flush took %.0f ms: longer than the slow one's running callback",
              flush_ms);
    for (int i = 0; i < FAN_SUBS - 1; i++)
        CHECK_MSG(atomic_load(&fan_counts[i]) == FAN_MSGS, "subscription %d got %d of %d", i,
                  atomic_load(&fan_counts[i]), FAN_MSGS);
    CHECK_MSG(wait_for(&slow_ends, 1, 5000), "the slow subscription's end notice never ran");
    CHECK_EQ(atomic_load(&slow_reason), JSONBUS_END_SLOW);
    CHECK_EQ(STAT(bus, "subscriptions"), FAN_SUBS - 1);
    CHECK_EQ(STAT(bus, "delivered"), (FAN_SUBS - 1) * FAN_MSGS + 1);
    CHECK_EQ(STAT(bus, "dropped"), 3);
    printf("1,000 subscriptions: the others done %.0f ms after publishing, flush %.0f ms\n",
           others_ms, flush_ms);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&slow_ends), 1);
    jsonbus_free(bus);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_share();
    test_full_member("block");
    test_full_member("drop_new");
    test_full_member("drop_oldest");
    test_full_member("end");
    test_all_members_full();
    for (int i = 0; i < 2; i++) {
        test_waiting_publish_repicks_pull(i);
        test_waiting_publish_repicks_callback(i);
    }
    test_mixed();
    test_members_ending();
    test_one_slow_among_many();
    CHECK_SOFT_DONE();
    printf("ok\n");
    return 0;
}
