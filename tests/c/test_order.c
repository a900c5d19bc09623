/*
 * test_order: exactly-once delivery and ordering (contract guarantees 1, 2, 3).
 *
 * 4 publisher threads, 2 dispatcher threads, 5 subscriptions with overlapping patterns.
 * Each payload carries its publisher id and counter. For every subscription we check:
 *   - it got exactly the messages its pattern matches, each exactly once;
 *   - per publisher, counters arrive in publish order;
 *   - seq strictly increases; msg->subscription is its id; topic/json fields are consistent;
 *   - a message shared by several subscriptions has the same seq in all of them, so they
 *     all see shared messages in the same order;
 *   - seq numbers of all messages are exactly 1..N (every accepted message takes the next).
 */
#include "check.h"

#define PUBLISHERS 4
#define PER_PUBLISHER 25000
#define TOTAL (PUBLISHERS * PER_PUBLISHER)

/* topics: "t.<p>.even" / "t.<p>.odd" by the counter's parity */
struct sub {
    const char *pattern;
    int64_t id;
    int (*matches)(int p, int n);
    /* written only by the subscription's own (serial) callback; read after flush */
    uint64_t last_seq;
    long count;
    int next_expected[PUBLISHERS]; /* smallest counter that may come next */
    long per_pub[PUBLISHERS];
    uint64_t *seq_of; /* [p * PER_PUBLISHER + n] = seq seen, 0 = not seen */
    atomic_int errors;
    char first_error[256];
};

static int m_all(int p, int n) { (void)p; (void)n; return 1; }
static int m_even(int p, int n) { (void)p; return n % 2 == 0; }
static int m_pub1(int p, int n) { (void)n; return p == 1; }
static int m_odd_pub2(int p, int n) { return p == 2 && n % 2 == 1; }

static struct sub subs[] = {
    {">", 0, m_all, 0, 0, {0}, {0}, NULL, 0, ""},
    {"t.>", 0, m_all, 0, 0, {0}, {0}, NULL, 0, ""},
    {"t.*.even", 0, m_even, 0, 0, {0}, {0}, NULL, 0, ""},
    {"t.1.*", 0, m_pub1, 0, 0, {0}, {0}, NULL, 0, ""},
    {"t.2.odd", 0, m_odd_pub2, 0, 0, {0}, {0}, NULL, 0, ""},
};
#define NSUBS ((int)(sizeof subs / sizeof subs[0]))

static jsonbus *bus;
static uint64_t start_ns;
static pthread_t main_thread;

static void sub_error(struct sub *s, const char *fmt, ...) {
    if (atomic_fetch_add(&s->errors, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->first_error, sizeof s->first_error, fmt, ap);
        va_end(ap);
    }
}

static int32_t on_message(const jsonbus_message *msg, void *user_data) {
    struct sub *s = user_data;
    int p = -1, n = -1;
    if (pthread_equal(pthread_self(), main_thread)) sub_error(s, "callback on main thread");
    if (msg->subscription != s->id)
        sub_error(s, "msg->subscription %lld != id %lld", (long long)msg->subscription,
                  (long long)s->id);
    if (strlen(msg->json) != msg->json_len || strlen(msg->topic) != msg->topic_len)
        sub_error(s, "json_len/topic_len wrong (%d, %d)", (int)msg->json_len,
                  (int)msg->topic_len);
    if (sscanf(msg->json, "{\"p\":%d,\"n\":%d}", &p, &n) != 2 || p < 0 || p >= PUBLISHERS ||
        n < 0 || n >= PER_PUBLISHER) {
        sub_error(s, "bad payload p=%d n=%d", p, n);
        return -1;
    }
    char topic[64];
    snprintf(topic, sizeof topic, "t.%d.%s", p, n % 2 ? "odd" : "even");
    if (strcmp(topic, msg->topic) != 0) sub_error(s, "wrong topic for p=%d n=%d", p, n);
    if (!s->matches(p, n)) sub_error(s, "got p=%d n=%d, which it does not match", p, n);
    if (msg->seq <= s->last_seq)
        sub_error(s, "seq not increasing at p=%d n=%d: seq %llu", p, n,
                  (unsigned long long)msg->seq);
    s->last_seq = msg->seq;
    if (msg->published_ns < start_ns || msg->published_ns > jsonbus_now_ns())
        sub_error(s, "published_ns out of range at p=%d n=%d", p, n);
    if (n < s->next_expected[p])
        sub_error(s, "publisher %d: counter %d after a later one (dup/reorder)", p, n);
    s->next_expected[p] = n + 1;
    if (s->seq_of[p * PER_PUBLISHER + n] != 0) sub_error(s, "p=%d n=%d delivered twice", p, n);
    s->seq_of[p * PER_PUBLISHER + n] = msg->seq;
    s->per_pub[p]++;
    s->count++;
    return JSONBUS_OK;
}

static void *publisher(void *arg) {
    int p = (int)(intptr_t)arg;
    char json[64], topic[32];
    for (int n = 0; n < PER_PUBLISHER; n++) {
        /* the same buffers are reused at once: the bus must have copied the payload */
        int len = snprintf(json, sizeof json, "{\"p\":%d,\"n\":%d}", p, n);
        snprintf(topic, sizeof topic, "t.%d.%s", p, n % 2 ? "odd" : "even");
        int32_t rc = jsonbus_publish(bus, topic, json, (size_t)len);
        if (rc != JSONBUS_OK) FAIL("publisher %d: publish %d returned %s", p, n, jsonbus_status_name(rc));
        memset(json, 'x', sizeof json - 1);
    }
    return NULL;
}

int main(void) {
    main_thread = pthread_self();
    bus = NEW_BUS("{\"dispatcher_threads\":2}");
    for (int i = 0; i < NSUBS; i++) {
        subs[i].seq_of = calloc(TOTAL, sizeof(uint64_t));
        CHECK(subs[i].seq_of != NULL);
        subs[i].id = SUBSCRIBE(bus, subs[i].pattern, on_message, &subs[i]);
        for (int j = 0; j < i; j++) CHECK(subs[i].id != subs[j].id);
    }
    start_ns = jsonbus_now_ns();
    double t0 = now_ms();
    pthread_t th[PUBLISHERS];
    for (int p = 0; p < PUBLISHERS; p++) START_THREAD(th[p], publisher, (void *)(intptr_t)p);
    for (int p = 0; p < PUBLISHERS; p++) JOIN_THREAD(th[p]);
    CHECK_OK(jsonbus_flush(bus, 30000));
    printf("%d messages x %d subscriptions in %.0f ms\n", TOTAL, NSUBS, now_ms() - t0);

    for (int i = 0; i < NSUBS; i++) {
        struct sub *s = &subs[i];
        CHECK_MSG(atomic_load(&s->errors) == 0, "subscription \"%s\": %d errors, first: %s",
                  s->pattern, atomic_load(&s->errors), s->first_error);
        long expected_total = 0;
        for (int p = 0; p < PUBLISHERS; p++) {
            long expected = 0;
            for (int n = 0; n < PER_PUBLISHER; n++) {
                int m = s->matches(p, n);
                expected += m;
                CHECK_MSG((s->seq_of[p * PER_PUBLISHER + n] != 0) == m,
                          "subscription \"%s\": message p=%d n=%d %s", s->pattern, p, n,
                          m ? "never delivered" : "delivered but not matching");
            }
            CHECK_EQ(s->per_pub[p], expected);
            expected_total += expected;
        }
        CHECK_EQ(s->count, expected_total);
    }

    /* The same message has the same seq everywhere; seqs are exactly 1..TOTAL, and
     * per publisher they increase with the counter (publish order). */
    uint8_t *seen = calloc(TOTAL + 1, 1);
    CHECK(seen != NULL);
    for (int p = 0; p < PUBLISHERS; p++) {
        uint64_t prev = 0;
        for (int n = 0; n < PER_PUBLISHER; n++) {
            uint64_t seq = subs[0].seq_of[p * PER_PUBLISHER + n];
            CHECK_MSG(seq >= 1 && seq <= TOTAL, "seq %llu out of 1..%d", (unsigned long long)seq, TOTAL);
            CHECK_MSG(!seen[seq], "seq %llu used twice", (unsigned long long)seq);
            seen[seq] = 1;
            CHECK_MSG(seq > prev, "publisher %d: message %d has seq %llu <= previous %llu", p, n,
                      (unsigned long long)seq, (unsigned long long)prev);
            prev = seq;
            for (int i = 1; i < NSUBS; i++) {
                uint64_t other = subs[i].seq_of[p * PER_PUBLISHER + n];
                CHECK_MSG(other == 0 || other == seq,
                          "message p=%d n=%d has seq %llu in \">\" but %llu in \"%s\"", p, n,
                          (unsigned long long)seq, (unsigned long long)other, subs[i].pattern);
            }
        }
    }
    free(seen);

    CHECK_EQ(STAT(bus, "published"), TOTAL);
    long long delivered = 0;
    for (int i = 0; i < NSUBS; i++) delivered += subs[i].count;
    CHECK_EQ(STAT(bus, "delivered"), delivered);
    CHECK_EQ(STAT(bus, "unrouted"), 0);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_EQ(STAT(bus, "subscriptions"), NSUBS);
    CHECK_EQ(STAT(bus, "callback_failures"), 0);
    CHECK_EQ(STAT(bus, "dispatcher_threads"), 2);
    print_stats("stats", bus);

    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    for (int i = 0; i < NSUBS; i++) free(subs[i].seq_of);
    printf("ok\n");
    return 0;
}
