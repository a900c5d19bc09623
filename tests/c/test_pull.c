/*
 * test_pull: pull subscriptions (contract guarantee 14, 12, 16).
 *
 *  1. jsonbus_next hands out messages in seq order (4 publisher threads; each publisher's in
 *     its order), with every field of the message right; stats count them.
 *  2. JSONBUS_ERR_TIMEOUT with timeout 0 (at once) and a small timeout (after it); *msg NULL
 *     after a failure; a message that arrives during the wait is returned at once.
 *  3. JSONBUS_ERR_ENDED: a thread waiting in jsonbus_next(-1) is woken by an unsubscribe and by
 *     a close with ENDED; after jsonbus_unsubscribe the subscription is released (NOT_FOUND);
 *     one that on_full "end" ended on its own says ENDED (with the reason) until
 *     jsonbus_unsubscribe returns OK, then NOT_FOUND.
 *  4. 4 threads drain one pull subscription: every message exactly once, each thread's in seq
 *     order; jsonbus_flush waits for them to be released.
 *  5. Handed-out messages count as held: flush says TIMEOUT while one is held, OK once it is
 *     released; queue_capacity counts them.
 *  6. jsonbus_pull_fd polls readable exactly while a message waits or the subscription has
 *     ended (poll(2) with timeout 0 after every step); the same fd each time; an event loop's
 *     poll wakes when a message arrives; it is closed when the subscription is released or the
 *     bus freed. (Windows: jsonbus_pull_fd is JSONBUS_ERR_UNSUPPORTED, with its message.)
 *  7. Bad calls: a callback subscription or an unknown id -> NOT_FOUND, NULL msg -> NULL.
 *  8. Messages still held when the bus is freed stay valid to read and release (ASan).
 *  9. queue_limit on a pull subscription: "block" holds a publish until a puller takes a
 *     message; "drop_oldest" / "drop_new" keep the newest / oldest.
 */
#include "sub_check.h"

/* Windows has no pollable descriptor for jsonbus_pull_fd (it is JSONBUS_ERR_UNSUPPORTED
 * there, which test_fd checks instead); the rest of the test is the same. */
#ifndef _WIN32
#define HAVE_PULL_FD 1
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#endif

#define PUBLISHERS 4

#ifdef HAVE_PULL_FD
static int readable(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, 0);
    CHECK_MSG(n >= 0, "poll failed: %s", strerror(errno));
    CHECK_MSG(!(p.revents & (POLLNVAL | POLLERR)), "poll: revents 0x%x", (unsigned)p.revents);
    return n == 1 && (p.revents & POLLIN);
}

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

#define CHECK_READABLE(fd, want)                                                           \
    CHECK_MSG(readable(fd) == (want), "pull descriptor is %s, expected %s",                \
              (want) ? "not readable" : "readable", (want) ? "readable" : "not readable")
#endif

/* jsonbus_next that must hand out a message. */
#define NEXT(bus, id, timeout) check_next(__FILE__, __LINE__, bus, id, timeout)
static jsonbus_message *check_next(const char *file, int line, jsonbus *bus, int64_t id,
                                   int timeout) {
    jsonbus_message *m = NULL;
    int32_t rc = jsonbus_next(bus, id, timeout, &m);
    if (rc != JSONBUS_OK)
        check_fail(file, line, "jsonbus_next(%lld) returned %s", (long long)id,
                   jsonbus_status_name(rc));
    if (m == NULL) check_fail(file, line, "jsonbus_next returned OK and no message");
    if (jsonbus_last_status() != JSONBUS_OK) check_fail(file, line, "last status not cleared");
    return m;
}

/* jsonbus_next that must fail with `code`, leaving *msg NULL. */
#define CHECK_NEXT_ERR(bus, id, timeout, code)                                             \
    do {                                                                                   \
        jsonbus_message *check_m_ = (jsonbus_message *)&check_m_;                           \
        CHECK_ERR(jsonbus_next(bus, id, timeout, &check_m_), code);                         \
        CHECK_MSG(check_m_ == NULL, "*msg is not NULL after a failed jsonbus_next");        \
    } while (0)

/* ---- publishers ------------------------------------------------------------------------ */
struct pub_job {
    jsonbus *bus;
    int t, count;
};

static void *publisher(void *arg) {
    struct pub_job *j = arg;
    char topic[32], json[64];
    snprintf(topic, sizeof topic, "p.t%d", j->t);
    for (int i = 0; i < j->count; i++) {
        int len = format_tn(json, sizeof json, j->t, i);
        int32_t rc = jsonbus_publish(j->bus, topic, json, (size_t)len);
        if (rc != JSONBUS_OK) FAIL("publish returned %s", jsonbus_status_name(rc));
    }
    return NULL;
}

static void run_publishers(jsonbus *bus, int count) {
    pthread_t th[PUBLISHERS];
    struct pub_job jobs[PUBLISHERS];
    for (int t = 0; t < PUBLISHERS; t++) {
        jobs[t].bus = bus;
        jobs[t].t = t;
        jobs[t].count = count;
        START_THREAD(th[t], publisher, &jobs[t]);
    }
    for (int t = 0; t < PUBLISHERS; t++) JOIN_THREAD(th[t]);
}

/* ---- 1. order ---------------------------------------------------------------------------- */
static void test_order(void) {
    enum { M = 500 };
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "p.>", NULL);
    int64_t other = SUBSCRIBE_PULL(bus, "q", "{}");
    uint64_t t_start = jsonbus_now_ns();
    run_publishers(bus, M);
    CHECK_EQ(STAT(bus, "queued"), PUBLISHERS * M);
    CHECK_EQ(SUB_STAT(bus, id, "queued"), PUBLISHERS * M);
    CHECK_EQ(SUB_STAT(bus, id, "max_queued"), PUBLISHERS * M);
    CHECK_NEXT_ERR(bus, other, 0, JSONBUS_ERR_TIMEOUT);
    uint64_t last_seq = 0;
    int last_n[PUBLISHERS] = {-1, -1, -1, -1};
    for (int i = 0; i < PUBLISHERS * M; i++) {
        jsonbus_message *m = NEXT(bus, id, 0);
        CHECK_MSG(m->seq > last_seq, "seq %llu after %llu", (unsigned long long)m->seq,
                  (unsigned long long)last_seq);
        last_seq = m->seq;
        int t, n;
        CHECK_MSG(parse_tn(m->json, &t, &n), "payload %s", m->json);
        CHECK(t >= 0 && t < PUBLISHERS);
        CHECK_MSG(n == last_n[t] + 1, "publisher %d: message %d after %d", t, n, last_n[t]);
        last_n[t] = n;
        char topic[32], json[64];
        snprintf(topic, sizeof topic, "p.t%d", t);
        format_tn(json, sizeof json, t, n);
        CHECK_STREQ(m->topic, topic);
        CHECK_EQ(m->topic_len, strlen(topic));
        CHECK_STREQ(m->json, json);
        CHECK_EQ(m->json_len, strlen(json));
        CHECK_EQ(m->subscription, id);
        CHECK(m->published_ns >= t_start && m->published_ns <= jsonbus_now_ns());
        jsonbus_message_release(m);
    }
    CHECK_EQ(last_seq, PUBLISHERS * M);
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_TIMEOUT);
    char *st = SUB_STATS(bus, id);
    CHECK_CONTAINS(st, "\"kind\":\"pull\"");
    CHECK_CONTAINS(st, "\"ended\":null");
    CHECK_EQ(json_int_after(st, NULL, "delivered"), PUBLISHERS * M);
    CHECK_EQ(json_int_after(st, NULL, "queued"), 0);
    CHECK_EQ(json_int_after(st, NULL, "dropped"), 0);
    jsonbus_string_free(st);
    CHECK_EQ(STAT(bus, "delivered"), PUBLISHERS * M);
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_OK(jsonbus_flush(bus, 1000));
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 2. timeouts ------------------------------------------------------------------------- */
static void *publish_later(void *arg) {
    sleep_ms(30);
    jsonbus *bus = arg;
    PUBLISH(bus, "p.late", "{\"late\":true}");
    return NULL;
}

static void test_timeouts(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "p.>", NULL);
    double t0 = now_ms();
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_TIMEOUT);
    CHECK_MSG(now_ms() - t0 < 200, "jsonbus_next with timeout 0 waited %.0f ms", now_ms() - t0);
    t0 = now_ms();
    CHECK_NEXT_ERR(bus, id, 60, JSONBUS_ERR_TIMEOUT);
    double ms = now_ms() - t0;
    CHECK_MSG(ms >= 55 && ms < 3000, "jsonbus_next with timeout 60 returned after %.0f ms", ms);
    /* a message arriving during the wait ends it */
    pthread_t th;
    START_THREAD(th, publish_later, bus);
    t0 = now_ms();
    jsonbus_message *m = NEXT(bus, id, 5000);
    ms = now_ms() - t0;
    JOIN_THREAD(th);
    CHECK_STREQ(m->json, "{\"late\":true}");
    CHECK_MSG(ms >= 20 && ms < 2500, "took %.0f ms", ms);
    jsonbus_message_release(m);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 3. ended ---------------------------------------------------------------------------- */
struct waiter {
    jsonbus *bus;
    int64_t id;
    atomic_int done;
    int32_t rc;
    char error[512];
    jsonbus_message *msg;
};

static void *wait_next(void *arg) {
    struct waiter *w = arg;
    w->msg = (jsonbus_message *)w;
    w->rc = jsonbus_next(w->bus, w->id, -1, &w->msg);
    snprintf(w->error, sizeof w->error, "%s", jsonbus_last_error());
    atomic_store(&w->done, 1);
    return NULL;
}

static void test_ended(void) {
    jsonbus *bus = NEW_BUS(NULL);

    /* released by unsubscribe: NOT_FOUND from then on */
    int64_t id = SUBSCRIBE_PULL(bus, "e", NULL);
    PUBLISH(bus, "e", "1");
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_pull_fd(bus, id), JSONBUS_ERR_NOT_FOUND);
    CHECK(jsonbus_subscription_stats(bus, id) == NULL);
    CHECK_RC(jsonbus_last_status(), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
    CHECK_EQ(STAT(bus, "dropped"), 1);

    /* a thread waiting without limit is woken by the unsubscribe */
    struct waiter w;
    memset(&w, 0, sizeof w);
    w.bus = bus;
    w.id = id = SUBSCRIBE_PULL(bus, "e", NULL);
    pthread_t th;
    START_THREAD(th, wait_next, &w);
    sleep_ms(50);
    CHECK_MSG(!atomic_load(&w.done), "jsonbus_next(-1) returned with nothing to take");
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_MSG(wait_for(&w.done, 1, 5000), "jsonbus_next(-1) not woken by jsonbus_unsubscribe");
    JOIN_THREAD(th);
    CHECK_RC(w.rc, JSONBUS_ERR_ENDED);
    CHECK_MSG(w.msg == NULL, "*msg not NULL");
    CHECK_CONTAINS(w.error, "JSONBUS_END_UNSUBSCRIBED");

    /* ended on its own (on_full "end"): ENDED until unsubscribe returns OK */
    id = SUBSCRIBE_PULL(bus, "e", "{\"queue_limit\":2,\"on_full\":\"end\"}");
    PUBLISH(bus, "e", "1");
    PUBLISH(bus, "e", "2");
    CHECK_SUB_ENDED(bus, id, "null");
    PUBLISH(bus, "e", "3"); /* ends it: 2 discarded + this one */
    CHECK_SUB_ENDED(bus, id, "JSONBUS_END_SLOW");
    CHECK_EQ(SUB_STAT(bus, id, "dropped"), 3);
    CHECK_EQ(SUB_STAT(bus, id, "queued"), 0);
    CHECK_EQ(STAT(bus, "subscriptions"), 0);
    PUBLISH(bus, "e", "4"); /* not routed to it */
    CHECK_EQ(SUB_STAT(bus, id, "dropped"), 3);
    for (int i = 0; i < 3; i++) {
        double t0 = now_ms();
        CHECK_NEXT_ERR(bus, id, i == 0 ? 0 : 1000, JSONBUS_ERR_ENDED);
        CHECK_CONTAINS(jsonbus_last_error(), "JSONBUS_END_SLOW");
        CHECK_MSG(now_ms() - t0 < 500, "jsonbus_next on an ended subscription waited");
    }
#ifdef HAVE_PULL_FD
    int fd = jsonbus_pull_fd(bus, id);
    CHECK(fd >= 0);
    CHECK_READABLE(fd, 1);
#endif
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
#ifdef HAVE_PULL_FD
    CHECK_MSG(!fd_is_open(fd), "the descriptor is still open after the subscription was released");
#endif

    /* a thread waiting without limit is woken by close */
    memset(&w, 0, sizeof w);
    w.bus = bus;
    w.id = id = SUBSCRIBE_PULL(bus, "e", NULL);
#ifdef HAVE_PULL_FD
    fd = jsonbus_pull_fd(bus, id);
    CHECK(fd >= 0);
#endif
    START_THREAD(th, wait_next, &w);
    sleep_ms(50);
    CHECK(!atomic_load(&w.done));
    CHECK_OK(jsonbus_close(bus, 2000));
    CHECK_MSG(wait_for(&w.done, 1, 5000), "jsonbus_next(-1) not woken by jsonbus_close");
    JOIN_THREAD(th);
    CHECK_RC(w.rc, JSONBUS_ERR_ENDED);
    CHECK_CONTAINS(w.error, "JSONBUS_END_CLOSED");
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_ENDED);
    CHECK_NEXT_ERR(bus, id, -1, JSONBUS_ERR_ENDED);
#ifdef HAVE_PULL_FD
    CHECK_READABLE(fd, 1);
#endif
    CHECK_SUB_ENDED(bus, id, "JSONBUS_END_CLOSED");
    jsonbus_free(bus);
#ifdef HAVE_PULL_FD
    CHECK_MSG(!fd_is_open(fd), "the descriptor is still open after the bus was freed");
#endif
}

/* ---- 4. four pullers --------------------------------------------------------------------- */
enum { DRAIN_N = 4000, PULLERS = 4 };
static atomic_int drain_seen[DRAIN_N + 1];

struct puller {
    jsonbus *bus;
    int64_t id;
    int got;
    int32_t last_rc;
};

static void *puller(void *arg) {
    struct puller *p = arg;
    uint64_t last = 0;
    for (;;) {
        jsonbus_message *m = NULL;
        int32_t rc = jsonbus_next(p->bus, p->id, -1, &m);
        if (rc == JSONBUS_ERR_ENDED || rc == JSONBUS_ERR_NOT_FOUND) {
            p->last_rc = rc;
            return NULL;
        }
        if (rc != JSONBUS_OK || m == NULL) FAIL("jsonbus_next returned %s", jsonbus_status_name(rc));
        if (m->seq <= last) FAIL("a puller got seq %llu after %llu", (unsigned long long)m->seq,
                                 (unsigned long long)last);
        last = m->seq;
        if (m->seq < 1 || m->seq > DRAIN_N) FAIL("seq %llu", (unsigned long long)m->seq);
        atomic_fetch_add(&drain_seen[m->seq], 1);
        p->got++;
        if ((m->seq & 7) == 0) sleep_us(10);
        jsonbus_message_release(m);
    }
}

static void test_four_pullers(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "d", NULL);
    struct puller p[PULLERS];
    pthread_t th[PULLERS];
    for (int i = 0; i < PULLERS; i++) {
        p[i].bus = bus;
        p[i].id = id;
        p[i].got = 0;
        p[i].last_rc = 0;
        START_THREAD(th[i], puller, &p[i]);
    }
    char json[32];
    for (int i = 0; i < DRAIN_N; i++) {
        snprintf(json, sizeof json, "%d", i);
        PUBLISH(bus, "d", json);
    }
    /* flush returns once every message was handed out and released */
    CHECK_OK(jsonbus_flush(bus, 20000));
    int total = 0;
    for (int s = 1; s <= DRAIN_N; s++) {
        CHECK_MSG(atomic_load(&drain_seen[s]) == 1, "seq %d handed out %d times", s,
                  atomic_load(&drain_seen[s]));
        total++;
    }
    CHECK_EQ(SUB_STAT(bus, id, "delivered"), DRAIN_N);
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    int sum = 0;
    for (int i = 0; i < PULLERS; i++) {
        JOIN_THREAD(th[i]);
        sum += p[i].got;
    }
    CHECK_EQ(sum, DRAIN_N);
    CHECK_EQ(total, DRAIN_N);
    printf("4 pullers got %d, %d, %d, %d\n", p[0].got, p[1].got, p[2].got, p[3].got);
    CHECK_EQ(STAT(bus, "delivered"), DRAIN_N);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 5. held messages -------------------------------------------------------------------- */
struct flusher {
    jsonbus *bus;
    atomic_int done;
    int32_t rc;
};

static void *flush_thread(void *arg) {
    struct flusher *f = arg;
    f->rc = jsonbus_flush(f->bus, -1);
    atomic_store(&f->done, 1);
    return NULL;
}

static void test_held(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "h", NULL);
    PUBLISH(bus, "h", "1");
    CHECK_ERR(jsonbus_flush(bus, 50), JSONBUS_ERR_TIMEOUT); /* not taken yet */
    jsonbus_message *m = NEXT(bus, id, 0);
    CHECK_ERR(jsonbus_flush(bus, 0), JSONBUS_ERR_TIMEOUT);
    CHECK_ERR(jsonbus_flush(bus, 50), JSONBUS_ERR_TIMEOUT); /* taken, not released */
    CHECK_EQ(STAT(bus, "queued"), 1);
    CHECK_EQ(SUB_STAT(bus, id, "queued"), 0);
    jsonbus_message_release(m);
    CHECK_OK(jsonbus_flush(bus, 50));
    CHECK_EQ(STAT(bus, "queued"), 0);

    /* a flush waiting on another thread returns once the message is released */
    PUBLISH(bus, "h", "2");
    m = NEXT(bus, id, 0);
    struct flusher f = {bus, 0, 12345};
    pthread_t th;
    START_THREAD(th, flush_thread, &f);
    sleep_ms(60);
    CHECK_MSG(!atomic_load(&f.done), "jsonbus_flush returned while a pulled message was held");
    jsonbus_message_release(m);
    JOIN_THREAD(th);
    CHECK_RC(f.rc, JSONBUS_OK);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);

    /* queue_capacity counts held messages */
    bus = NEW_BUS("{\"queue_capacity\":2,\"publish_timeout_ms\":0}");
    id = SUBSCRIBE_PULL(bus, "h", NULL);
    PUBLISH(bus, "h", "1");
    PUBLISH(bus, "h", "2");
    jsonbus_message *a = NEXT(bus, id, 0), *b = NEXT(bus, id, 0);
    CHECK_EQ(STAT(bus, "queued"), 2);
    CHECK_ERR(jsonbus_publish(bus, "h", "3", 1), JSONBUS_ERR_FULL);
    jsonbus_message_release(a);
    PUBLISH(bus, "h", "4");
    CHECK_ERR(jsonbus_publish(bus, "h", "5", 1), JSONBUS_ERR_FULL);
    jsonbus_message_release(b);
    a = NEXT(bus, id, 0);
    CHECK_STREQ(a->json, "4");
    CHECK_EQ(a->seq, 3);
    jsonbus_message_release(a);
    CHECK_EQ(REJECTED(bus, "full"), 2);
    CHECK_OK(jsonbus_flush(bus, 1000));
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 6. the descriptor ------------------------------------------------------------------- */
#ifndef HAVE_PULL_FD
/* Windows: JSONBUS_ERR_UNSUPPORTED with a message that says so, every time, for every live
 * pull subscription (also an ended one); an unknown id is still NOT_FOUND; and the
 * subscription goes on working through jsonbus_next. */
static void test_fd(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "f", NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_ERR(jsonbus_pull_fd(bus, id), JSONBUS_ERR_UNSUPPORTED);
        CHECK_CONTAINS(jsonbus_last_error(), "not supported on Windows");
        CHECK_CONTAINS(jsonbus_last_error(), "jsonbus_next");
    }
    PUBLISH(bus, "f", "1");
    CHECK_ERR(jsonbus_pull_fd(bus, id), JSONBUS_ERR_UNSUPPORTED);
    jsonbus_message *m = NEXT(bus, id, 0);
    CHECK_STREQ(m->json, "1");
    jsonbus_message_release(m);
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_TIMEOUT);
    int64_t id3 = SUBSCRIBE_PULL(bus, "g", "{\"queue_limit\":1,\"on_full\":\"end\"}");
    PUBLISH(bus, "g", "1");
    PUBLISH(bus, "g", "2"); /* ends it */
    CHECK_SUB_ENDED(bus, id3, "JSONBUS_END_SLOW");
    CHECK_ERR(jsonbus_pull_fd(bus, id3), JSONBUS_ERR_UNSUPPORTED);
    CHECK_OK(jsonbus_unsubscribe(bus, id3));
    CHECK_ERR(jsonbus_pull_fd(bus, id3), JSONBUS_ERR_NOT_FOUND);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_ERR(jsonbus_pull_fd(bus, id), JSONBUS_ERR_UNSUPPORTED); /* ended by close */
    jsonbus_free(bus);
}
#else
static void *publish_later_fd(void *arg) {
    sleep_ms(40);
    PUBLISH((jsonbus *)arg, "f", "\"wake\"");
    return NULL;
}

static void test_fd(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "f", NULL);
    int fd = jsonbus_pull_fd(bus, id);
    CHECK_MSG(fd >= 0, "jsonbus_pull_fd returned %s", jsonbus_status_name(fd));
    CHECK_CLEARED();
    CHECK_EQ(jsonbus_pull_fd(bus, id), fd);
    CHECK_READABLE(fd, 0);
    PUBLISH(bus, "f", "1");
    CHECK_READABLE(fd, 1);
    CHECK_READABLE(fd, 1); /* polling does not consume it */
    jsonbus_message *m = NEXT(bus, id, 0);
    CHECK_READABLE(fd, 0); /* empty again, although the message is still held */
    jsonbus_message_release(m);
    CHECK_READABLE(fd, 0);
    PUBLISH(bus, "f", "2");
    PUBLISH(bus, "f", "3");
    CHECK_READABLE(fd, 1);
    m = NEXT(bus, id, 0);
    CHECK_STREQ(m->json, "2");
    CHECK_READABLE(fd, 1); /* one still waits */
    jsonbus_message_release(m);
    CHECK_EQ(jsonbus_pull_fd(bus, id), fd);
    CHECK_READABLE(fd, 1);
    m = NEXT(bus, id, 0);
    CHECK_STREQ(m->json, "3");
    CHECK_READABLE(fd, 0);
    jsonbus_message_release(m);
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_TIMEOUT);
    CHECK_READABLE(fd, 0);

    /* an event loop: poll wakes when a message arrives */
    pthread_t th;
    START_THREAD(th, publish_later_fd, bus);
    struct pollfd p = {fd, POLLIN, 0};
    double t0 = now_ms();
    int n = poll(&p, 1, 5000);
    double ms = now_ms() - t0;
    JOIN_THREAD(th);
    CHECK_EQ(n, 1);
    CHECK(p.revents & POLLIN);
    CHECK_MSG(ms < 2500, "poll woke after %.0f ms", ms);
    for (int k = 0;; k++) { /* drain as the header says: next(0) until TIMEOUT */
        jsonbus_message *x = NULL;
        int32_t rc = jsonbus_next(bus, id, 0, &x);
        if (rc == JSONBUS_ERR_TIMEOUT) {
            CHECK_EQ(k, 1);
            break;
        }
        CHECK_RC(rc, JSONBUS_OK);
        jsonbus_message_release(x);
    }
    CHECK_READABLE(fd, 0);

    /* a descriptor asked for while messages wait is readable at once */
    int64_t id2 = SUBSCRIBE_PULL(bus, "f", NULL);
    PUBLISH(bus, "f", "4");
    int fd2 = jsonbus_pull_fd(bus, id2);
    CHECK(fd2 >= 0 && fd2 != fd);
    CHECK_READABLE(fd2, 1);
    CHECK_READABLE(fd, 1);
    m = NEXT(bus, id, 0);
    jsonbus_message_release(m);
    CHECK_READABLE(fd, 0);
    CHECK_READABLE(fd2, 1);

    /* ended -> readable, and stays so */
    int64_t id3 = SUBSCRIBE_PULL(bus, "g", "{\"queue_limit\":1,\"on_full\":\"end\"}");
    int fd3 = jsonbus_pull_fd(bus, id3);
    CHECK(fd3 >= 0);
    CHECK_READABLE(fd3, 0);
    PUBLISH(bus, "g", "1");
    CHECK_READABLE(fd3, 1);
    m = NEXT(bus, id3, 0);
    CHECK_READABLE(fd3, 0);
    PUBLISH(bus, "g", "2");
    PUBLISH(bus, "g", "3"); /* ends it */
    CHECK_SUB_ENDED(bus, id3, "JSONBUS_END_SLOW");
    CHECK_READABLE(fd3, 1);
    CHECK_NEXT_ERR(bus, id3, 0, JSONBUS_ERR_ENDED);
    CHECK_READABLE(fd3, 1);
    CHECK_EQ(jsonbus_pull_fd(bus, id3), fd3);
    CHECK_READABLE(fd3, 1);
    jsonbus_message_release(m);
    CHECK_READABLE(fd3, 1);

    /* released -> closed */
    CHECK_OK(jsonbus_unsubscribe(bus, id3));
    CHECK_MSG(!fd_is_open(fd3), "descriptor left open after jsonbus_unsubscribe");
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_MSG(!fd_is_open(fd), "descriptor left open after jsonbus_unsubscribe");
    CHECK(fd_is_open(fd2));
    /* ended by close: readable; the message waiting in it is discarded */
    CHECK_ERR(jsonbus_close(bus, 0), JSONBUS_ERR_TIMEOUT);
    CHECK_EQ(SUB_STAT(bus, id2, "dropped"), 1);
    CHECK_READABLE(fd2, 1);
    CHECK_EQ(jsonbus_pull_fd(bus, id2), fd2);
    jsonbus_free(bus);
    CHECK_MSG(!fd_is_open(fd2), "descriptor left open after jsonbus_free");
}
#endif /* HAVE_PULL_FD */

/* ---- 7. bad calls ------------------------------------------------------------------------ */
static int32_t noop_cb(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    return JSONBUS_OK;
}

static void test_bad_calls(void) {
    jsonbus *bus = NEW_BUS(NULL), *other = NEW_BUS(NULL);
    int64_t cb = SUBSCRIBE(bus, "b", noop_cb, NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "b", NULL);
    int64_t elsewhere = SUBSCRIBE_PULL(other, "b", NULL);
    PUBLISH(bus, "b", "1");
    PUBLISH(other, "b", "1");
    CHECK_NEXT_ERR(bus, cb, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_NEXT_ERR(bus, 987654321, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_NEXT_ERR(bus, 0, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_NEXT_ERR(bus, -1, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_NEXT_ERR(bus, elsewhere, 0, JSONBUS_ERR_NOT_FOUND);
    CHECK_NEXT_ERR(NULL, id, 0, JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_next(bus, id, 0, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_pull_fd(bus, cb), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_pull_fd(bus, 987654321), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_pull_fd(bus, elsewhere), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_pull_fd(NULL, id), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_subscribe_pull(bus, NULL, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_subscribe_pull(NULL, "b", NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_subscribe_pull(bus, "a..b", NULL), JSONBUS_ERR_TOPIC);
    CHECK_ERR(jsonbus_subscribe_pull(bus, "b", "{\"on_full\":\"drop\"}"), JSONBUS_ERR_OPTIONS);
    CHECK_ERR(jsonbus_subscribe_pull(bus, "b", "{\"bogus\":1}"), JSONBUS_ERR_OPTIONS);
    jsonbus_message_release(NULL);
    /* the failures took nothing */
    jsonbus_message *m = NEXT(bus, id, 0);
    CHECK_STREQ(m->json, "1");
    jsonbus_message_release(m);
    m = NEXT(other, elsewhere, 0);
    jsonbus_message_release(m);
    CHECK_OK(jsonbus_close(other, -1));
    CHECK_ERR(jsonbus_subscribe_pull(other, "b", NULL), JSONBUS_ERR_CLOSED);
    jsonbus_free(other);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* ---- 8. held across jsonbus_free --------------------------------------------------------- */
static void test_after_free(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "x.>", NULL);
    const char *payloads[3] = {"{\"a\":[1,2,3]}", "\"a longer string payload, to be read later\"",
                               "12345"};
    for (int i = 0; i < 3; i++) {
        char topic[16];
        snprintf(topic, sizeof topic, "x.%d", i);
        PUBLISH(bus, topic, payloads[i]);
    }
    jsonbus_message *m[3];
    for (int i = 0; i < 3; i++) m[i] = NEXT(bus, id, 0);
    /* close waits for them until its time runs out (this thread holds them): TIMEOUT, and
     * they stay valid; jsonbus_free then has nothing left to close */
    double t0 = now_ms();
    CHECK_ERR(jsonbus_close(bus, 50), JSONBUS_ERR_TIMEOUT);
    CHECK_MSG(now_ms() - t0 >= 45, "close did not wait for the pulled messages");
    CHECK_EQ(STAT(bus, "dropped"), 0); /* nothing was discarded */
    CHECK_NEXT_ERR(bus, id, 0, JSONBUS_ERR_ENDED);
    jsonbus_free(bus);
    for (int i = 0; i < 3; i++) {
        char topic[16];
        snprintf(topic, sizeof topic, "x.%d", i);
        CHECK_STREQ(m[i]->json, payloads[i]);
        CHECK_EQ(m[i]->json_len, strlen(payloads[i]));
        CHECK_STREQ(m[i]->topic, topic);
        CHECK_EQ(m[i]->seq, i + 1);
        CHECK_EQ(m[i]->subscription, id);
    }
    jsonbus_message_release(m[1]);
    jsonbus_message_release(m[0]);
    jsonbus_message_release(m[2]);
}

/* jsonbus_free of an open bus, with one message handed out and two nobody took: nothing may
 * race with free, so nobody can pull; it ends the pull subscription (the two dropped) and does
 * not wait for the handed-out one, which stays valid; a callback subscription still gets
 * everything before free returns. */
static atomic_int g_free_seen;
static int32_t count_cb(const jsonbus_message *msg, void *ud) {
    (void)msg;
    (void)ud;
    atomic_fetch_add(&g_free_seen, 1);
    return JSONBUS_OK;
}

static void test_free_open_bus(void) {
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "f", NULL);
    CHECK(jsonbus_subscribe(bus, "f", count_cb, NULL) > 0);
    for (int i = 0; i < 3; i++) PUBLISH(bus, "f", "[7]");
    jsonbus_message *m = NEXT(bus, id, 0);
    double t0 = now_ms();
    jsonbus_free(bus); /* must not wait for a puller: there is none */
    CHECK_MSG(now_ms() - t0 < 5000, "jsonbus_free waited for pull messages nobody can take");
    CHECK_EQ(atomic_load(&g_free_seen), 3);
    CHECK_STREQ(m->json, "[7]");
    CHECK_EQ(m->seq, 1);
    jsonbus_message_release(m);
}

/* ---- 9. queue_limit on a pull subscription ----------------------------------------------- */
struct blocked_pub {
    jsonbus *bus;
    atomic_int done;
    int32_t rc;
    double ms;
};

static void *blocked_publish(void *arg) {
    struct blocked_pub *b = arg;
    double t0 = now_ms();
    b->rc = jsonbus_publish(b->bus, "l", "3", 1);
    b->ms = now_ms() - t0;
    atomic_store(&b->done, 1);
    return NULL;
}

static void test_limits(void) {
    /* "block": a publish waits until a puller takes a message */
    jsonbus *bus = NEW_BUS(NULL);
    int64_t id = SUBSCRIBE_PULL(bus, "l", "{\"queue_limit\":2}");
    PUBLISH(bus, "l", "1");
    PUBLISH(bus, "l", "2");
    struct blocked_pub b = {bus, 0, 12345, 0};
    pthread_t th;
    START_THREAD(th, blocked_publish, &b);
    sleep_ms(100);
    CHECK_MSG(!atomic_load(&b.done), "publish did not wait for the pull subscription at its limit");
    CHECK_EQ(STAT(bus, "published"), 2);
    jsonbus_message *m1 = NEXT(bus, id, 0);
    CHECK_MSG(wait_for(&b.done, 1, 5000), "publish still waits after a puller took a message");
    JOIN_THREAD(th);
    CHECK_RC(b.rc, JSONBUS_OK);
    CHECK_MSG(b.ms >= 90, "publish returned after %.0f ms", b.ms);
    CHECK_EQ(SUB_STAT(bus, id, "queued"), 2); /* the taken one no longer waits */
    jsonbus_message *m2 = NEXT(bus, id, 0), *m3 = NEXT(bus, id, 0);
    CHECK_STREQ(m1->json, "1");
    CHECK_STREQ(m2->json, "2");
    CHECK_STREQ(m3->json, "3");
    jsonbus_message_release(m1);
    jsonbus_message_release(m2);
    jsonbus_message_release(m3);
    CHECK_EQ(SUB_STAT(bus, id, "dropped"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);

    /* "block" with publish_timeout_ms 0: FULL naming the subscription */
    bus = NEW_BUS("{\"publish_timeout_ms\":0}");
    id = SUBSCRIBE_PULL(bus, "l", "{\"queue_limit\":1,\"on_full\":\"block\"}");
    PUBLISH(bus, "l", "1");
    CHECK_ERR(jsonbus_publish(bus, "l", "2", 1), JSONBUS_ERR_FULL);
    char name[48];
    snprintf(name, sizeof name, "subscription %lld", (long long)id);
    CHECK_CONTAINS(jsonbus_last_error(), name);
    CHECK_ERR(jsonbus_close(bus, 0), JSONBUS_ERR_TIMEOUT); /* the waiting one is discarded */
    jsonbus_free(bus);

    /* drops keep the newest / the oldest, in seq order; never a failed publish */
    bus = NEW_BUS("{\"publish_timeout_ms\":0}");
    int64_t oldest = SUBSCRIBE_PULL(bus, "l", "{\"queue_limit\":2,\"on_full\":\"drop_oldest\"}");
    int64_t newest = SUBSCRIBE_PULL(bus, "l", "{\"queue_limit\":2,\"on_full\":\"drop_new\"}");
    for (int i = 1; i <= 5; i++) {
        char json[8];
        snprintf(json, sizeof json, "%d", i);
        PUBLISH(bus, "l", json);
    }
    CHECK_EQ(SUB_STAT(bus, oldest, "dropped"), 3);
    CHECK_EQ(SUB_STAT(bus, newest, "dropped"), 3);
    CHECK_EQ(SUB_STAT(bus, oldest, "max_queued"), 2);
    CHECK_EQ(STAT(bus, "dropped"), 6);
    jsonbus_message *a = NEXT(bus, oldest, 0), *c = NEXT(bus, oldest, 0);
    CHECK_EQ(a->seq, 4);
    CHECK_EQ(c->seq, 5);
    jsonbus_message_release(a);
    jsonbus_message_release(c);
    a = NEXT(bus, newest, 0);
    c = NEXT(bus, newest, 0);
    CHECK_EQ(a->seq, 1);
    CHECK_EQ(c->seq, 2);
    jsonbus_message_release(a);
    jsonbus_message_release(c);
    CHECK_NEXT_ERR(bus, oldest, 0, JSONBUS_ERR_TIMEOUT);
    CHECK_NEXT_ERR(bus, newest, 0, JSONBUS_ERR_TIMEOUT);
    CHECK_EQ(SUB_STAT(bus, oldest, "delivered") + SUB_STAT(bus, oldest, "dropped"), 5);
    CHECK_EQ(SUB_STAT(bus, newest, "delivered") + SUB_STAT(bus, newest, "dropped"), 5);
    CHECK_OK(jsonbus_flush(bus, 1000)); /* drops count as handled */
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_order();
    test_timeouts();
    test_ended();
    test_four_pullers();
    test_held();
    test_fd();
    test_bad_calls();
    test_after_free();
    test_free_open_bus();
    test_limits();
    printf("ok\n");
    return 0;
}
