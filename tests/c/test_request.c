/* test_request: Part 2B requests (guarantees 18-20) - no responders at once and counted,
 * time-out, first reply wins and later ones are counted, DEADLOCK for a blocking request from a
 * callback while request_async works there with one dispatcher, a reply published later from
 * another thread, close answering pending async requests CLOSED exactly once, wildcards never
 * seeing _INBOX traffic, and 8 requesters against a group of responders. */
#include "check.h"

/* ---- responders ------------------------------------------------------------------------- */

typedef struct {
    jsonbus *bus;
    atomic_int calls;
    int replies; /* how many times each request is answered */
} responder;

/* Echoes each request `replies` times. */
static int32_t on_echo(const jsonbus_message *m, void *ud) {
    responder *r = ud;
    atomic_fetch_add(&r->calls, 1);
    CHECK(m->reply_to != NULL);
    CHECK_EQ(strlen(m->reply_to), m->reply_to_len);
    CHECK(strncmp(m->reply_to, "_INBOX.", 7) == 0);
    for (int i = 0; i < r->replies; i++) CHECK_OK(jsonbus_reply(r->bus, m, m->json, m->json_len));
    return JSONBUS_OK;
}

/* Never answers. */
static int32_t on_silent(const jsonbus_message *m, void *ud) {
    (void)m;
    atomic_fetch_add(&((responder *)ud)->calls, 1);
    return JSONBUS_OK;
}

/* ---- reply callbacks -------------------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    atomic_int status;
    char json[256];
} answer;

static void on_answer(int32_t status, const jsonbus_message *reply, void *ud) {
    answer *a = ud;
    CHECK_MSG((status == JSONBUS_OK) == (reply != NULL), "status %d with reply %p", (int)status,
              (const void *)reply);
    if (reply != NULL) {
        CHECK_EQ(reply->subscription, 0);
        snprintf(a->json, sizeof a->json, "%s", reply->json);
    }
    atomic_store(&a->status, status);
    atomic_fetch_add(&a->calls, 1);
}

/* ---- the tests -------------------------------------------------------------------------- */

static void no_responders_at_once_and_counted(void) {
    jsonbus *bus = NEW_BUS(NULL);
    char *reply = (char *)1;
    size_t len = 99;
    double t0 = now_ms();
    CHECK_ERR(jsonbus_request(bus, "svc.none", "1", 1, -1, &reply, &len),
              JSONBUS_ERR_NO_RESPONDERS);
    CHECK(now_ms() - t0 < 1000);
    CHECK(reply == NULL && len == 0);
    CHECK_CONTAINS(jsonbus_last_error(), "svc.none");
    answer a = {0};
    CHECK_ERR(jsonbus_request_async(bus, "svc.none", "1", 1, 100, on_answer, &a),
              JSONBUS_ERR_NO_RESPONDERS);
    CHECK_EQ(STAT(bus, "no_responders"), 2);
    CHECK_EQ(STAT(bus, "requests"), 2);
    CHECK_EQ(STAT(bus, "requests_waiting"), 0);
    /* a responder for another topic is no responder of svc.none */
    responder r = {bus, 0, 1};
    SUBSCRIBE(bus, "svc.other", on_echo, &r);
    CHECK_ERR(jsonbus_request(bus, "svc.none", "1", 1, -1, &reply, NULL), JSONBUS_ERR_NO_RESPONDERS);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&a.calls), 0);
    jsonbus_free(bus);
}

static void replies_and_the_first_one_wins(void) {
    jsonbus *bus = NEW_BUS(NULL);
    responder r = {bus, 0, 3};
    SUBSCRIBE(bus, "svc.echo", on_echo, &r);
    char *reply = NULL;
    size_t len = 0;
    CHECK_OK(jsonbus_request(bus, "svc.echo", "{\"n\":1}", 7, 5000, &reply, &len));
    CHECK_STREQ(reply, "{\"n\":1}");
    CHECK_EQ(len, 7);
    jsonbus_string_free(reply);
    /* reply_len may be NULL */
    CHECK_OK(jsonbus_request(bus, "svc.echo", "[2]", 3, 5000, &reply, NULL));
    CHECK_STREQ(reply, "[2]");
    jsonbus_string_free(reply);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(STAT(bus, "late_replies"), 4); /* 2 requests x (3 replies - 1) */
    CHECK_EQ(STAT(bus, "requests_waiting"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

static void a_request_times_out(void) {
    jsonbus *bus = NEW_BUS(NULL);
    responder r = {bus, 0, 0};
    SUBSCRIBE(bus, "svc.silent", on_silent, &r);
    char *reply = NULL;
    double t0 = now_ms();
    CHECK_ERR(jsonbus_request(bus, "svc.silent", "1", 1, 50, &reply, NULL), JSONBUS_ERR_TIMEOUT);
    double waited = now_ms() - t0;
    CHECK_MSG(waited >= 49.0 && waited < 2000, "waited %.1f ms for a 50 ms time-out", waited);
    CHECK(reply == NULL);
    answer a = {0};
    t0 = now_ms();
    CHECK_OK(jsonbus_request_async(bus, "svc.silent", "1", 1, 30, on_answer, &a));
    CHECK_MSG(wait_for(&a.calls, 1, 5000), "the async request never timed out");
    CHECK_MSG(now_ms() - t0 >= 29.0, "timed out early");
    CHECK_RC(atomic_load(&a.status), JSONBUS_ERR_TIMEOUT);
    sleep_ms(50);
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(atomic_load(&r.calls), 2);
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_EQ(atomic_load(&a.calls), 1);
    jsonbus_free(bus);
}

/* A callback of the bus: a blocking request is DEADLOCK, an async one works. */
typedef struct {
    jsonbus *bus;
    answer a;
    atomic_int done;
} from_callback;

static int32_t on_trigger(const jsonbus_message *m, void *ud) {
    (void)m;
    from_callback *f = ud;
    char *reply = (char *)1;
    CHECK_ERR(jsonbus_request(f->bus, "svc.echo", "1", 1, 1000, &reply, NULL),
              JSONBUS_ERR_DEADLOCK);
    CHECK(reply == NULL);
    CHECK_OK(jsonbus_request_async(f->bus, "svc.echo", "\"async\"", 7, 5000, on_answer, &f->a));
    atomic_store(&f->done, 1);
    return JSONBUS_OK;
}

static void from_a_callback_with_one_dispatcher(void) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":1}");
    responder r = {bus, 0, 1};
    SUBSCRIBE(bus, "svc.echo", on_echo, &r);
    from_callback f = {bus, {0}, 0};
    SUBSCRIBE(bus, "trigger", on_trigger, &f);
    PUBLISH(bus, "trigger", "0");
    /* flush waits for the trigger, the request, its responder and the reply callback */
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&f.done), 1);
    CHECK_EQ(atomic_load(&f.a.calls), 1);
    CHECK_RC(atomic_load(&f.a.status), JSONBUS_OK);
    CHECK_STREQ(f.a.json, "\"async\"");
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* The responder copies reply_to; another thread answers later with jsonbus_publish. */
typedef struct {
    jsonbus *bus;
    pthread_mutex_t lock;
    char reply_to[300];
    atomic_int have;
} later;

static int32_t on_keep(const jsonbus_message *m, void *ud) {
    later *l = ud;
    pthread_mutex_lock(&l->lock);
    memcpy(l->reply_to, m->reply_to, m->reply_to_len + 1);
    pthread_mutex_unlock(&l->lock);
    atomic_store(&l->have, 1);
    return JSONBUS_OK;
}

static void *answer_later(void *arg) {
    later *l = arg;
    CHECK(wait_for(&l->have, 1, 5000));
    sleep_ms(20);
    pthread_mutex_lock(&l->lock);
    CHECK_OK(jsonbus_publish(l->bus, l->reply_to, "\"later\"", 7));
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static void a_reply_published_later_from_another_thread(void) {
    jsonbus *bus = NEW_BUS(NULL);
    later l = {bus, PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    SUBSCRIBE(bus, "svc.later", on_keep, &l);
    pthread_t th;
    START_THREAD(th, answer_later, &l);
    char *reply = NULL;
    CHECK_OK(jsonbus_request(bus, "svc.later", "1", 1, 5000, &reply, NULL));
    CHECK_STREQ(reply, "\"later\"");
    jsonbus_string_free(reply);
    JOIN_THREAD(th);
    /* jsonbus_reply on a message without reply_to */
    jsonbus_message plain = {"t", 1, "1", 1, 1, 0, 1, NULL, 0};
    CHECK_ERR(jsonbus_reply(bus, &plain, "1", 1), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_reply(bus, NULL, "1", 1), JSONBUS_ERR_NULL);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

static void close_answers_pending_async_requests_once(void) {
    enum { N = 50 };
    for (int freeing = 0; freeing < 2; freeing++) {
        jsonbus *bus = NEW_BUS(NULL);
        responder r = {bus, 0, 0};
        SUBSCRIBE(bus, "svc.silent", on_silent, &r);
        static answer a[N];
        memset(a, 0, sizeof a);
        for (int i = 0; i < N; i++) {
            int timeout = i % 2 ? -1 : 60000;
            CHECK_OK(jsonbus_request_async(bus, "svc.silent", "1", 1, timeout, on_answer, &a[i]));
        }
        CHECK_OK(jsonbus_flush(bus, 5000));
        CHECK_EQ(STAT(bus, "requests_waiting"), N);
        if (freeing) {
            jsonbus_free(bus);
        } else {
            CHECK_OK(jsonbus_close(bus, -1));
        }
        for (int i = 0; i < N; i++) {
            CHECK_EQ(atomic_load(&a[i].calls), 1);
            CHECK_RC(atomic_load(&a[i].status), JSONBUS_ERR_CLOSED);
        }
        if (!freeing) {
            answer late = {0};
            CHECK_ERR(jsonbus_request_async(bus, "svc.silent", "1", 1, -1, on_answer, &late),
                      JSONBUS_ERR_CLOSED);
            char *reply = NULL;
            CHECK_ERR(jsonbus_request(bus, "svc.silent", "1", 1, -1, &reply, NULL),
                      JSONBUS_ERR_CLOSED);
            jsonbus_free(bus);
            CHECK_EQ(atomic_load(&late.calls), 0);
        }
    }
}

/* A blocking request waiting when the bus closes gets CLOSED. */
typedef struct {
    jsonbus *bus;
    atomic_int rc;
} blocked;

static void *request_forever(void *arg) {
    blocked *b = arg;
    char *reply = NULL;
    atomic_store(&b->rc, jsonbus_request(b->bus, "svc.silent", "1", 1, -1, &reply, NULL));
    CHECK(reply == NULL);
    return NULL;
}

static void close_ends_a_blocked_request(void) {
    jsonbus *bus = NEW_BUS(NULL);
    responder r = {bus, 0, 0};
    SUBSCRIBE(bus, "svc.silent", on_silent, &r);
    blocked b = {bus, 1};
    pthread_t th;
    START_THREAD(th, request_forever, &b);
    CHECK(wait_for(&r.calls, 1, 5000));
    CHECK_OK(jsonbus_close(bus, -1));
    JOIN_THREAD(th);
    CHECK_RC(atomic_load(&b.rc), JSONBUS_ERR_CLOSED);
    jsonbus_free(bus);
}

/* Wildcard subscribers never see replies; a pattern naming _INBOX does. */
static atomic_int seen_by_wildcards, seen_by_inbox;

static int32_t on_wild(const jsonbus_message *m, void *ud) {
    (void)ud;
    CHECK_MSG(strncmp(m->topic, "_INBOX", 6) != 0, "a wildcard saw %s", m->topic);
    atomic_fetch_add(&seen_by_wildcards, 1);
    return JSONBUS_OK;
}

static int32_t on_inbox(const jsonbus_message *m, void *ud) {
    (void)ud;
    CHECK(strncmp(m->topic, "_INBOX.", 7) == 0);
    atomic_fetch_add(&seen_by_inbox, 1);
    return JSONBUS_OK;
}

static void wildcards_never_see_inbox_traffic(void) {
    jsonbus *bus = NEW_BUS(NULL);
    responder r = {bus, 0, 1};
    SUBSCRIBE(bus, "svc.echo", on_echo, &r);
    SUBSCRIBE(bus, ">", on_wild, NULL);
    SUBSCRIBE(bus, "*.>", on_wild, NULL);
    SUBSCRIBE(bus, "*.*.*", on_wild, NULL);
    SUBSCRIBE(bus, "_INBOX.>", on_inbox, NULL);
    for (int i = 0; i < 10; i++) {
        char *reply = NULL;
        CHECK_OK(jsonbus_request(bus, "svc.echo", "1", 1, 5000, &reply, NULL));
        jsonbus_string_free(reply);
    }
    PUBLISH(bus, "_INBOX.x.y", "2"); /* no request: only the _INBOX pattern gets it */
    CHECK_OK(jsonbus_flush(bus, 5000));
    /* 10 requests seen by > and *.> (two tokens: not *.*.*) */
    CHECK_EQ(atomic_load(&seen_by_wildcards), 20);
    CHECK_EQ(atomic_load(&seen_by_inbox), 11);
    /* the quick API's register_callback is a `>` subscription too (default bus) */
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

/* 8 requesters, each with its own numbers, against a group of 4 responders. */
typedef struct {
    jsonbus *bus;
    int id;
} requester;

enum { REQUESTERS = 8, EACH = 300 };

static void *request_many(void *arg) {
    requester *q = arg;
    for (int i = 0; i < EACH; i++) {
        char body[64];
        int n = snprintf(body, sizeof body, "[%d,%d]", q->id, i);
        char *reply = NULL;
        size_t len = 0;
        CHECK_OK(jsonbus_request(q->bus, "svc.group", body, (size_t)n, 10000, &reply, &len));
        CHECK_STREQ(reply, body);
        CHECK_EQ(len, n);
        jsonbus_string_free(reply);
    }
    return NULL;
}

static void eight_requesters_against_a_group(void) {
    jsonbus *bus = NEW_BUS("{\"dispatcher_threads\":2}");
    responder r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (responder){bus, 0, 1};
        CHECK(jsonbus_subscribe_with(bus, "svc.group", "{\"group\":\"echo\"}", on_echo, NULL,
                                     &r[i]) > 0);
    }
    pthread_t th[REQUESTERS];
    requester q[REQUESTERS];
    for (int i = 0; i < REQUESTERS; i++) {
        q[i] = (requester){bus, i};
        START_THREAD(th[i], request_many, &q[i]);
    }
    for (int i = 0; i < REQUESTERS; i++) JOIN_THREAD(th[i]);
    int total = 0;
    for (int i = 0; i < 4; i++) total += atomic_load(&r[i].calls);
    CHECK_EQ(total, REQUESTERS * EACH); /* exactly one member answered each */
    CHECK_EQ(STAT(bus, "late_replies"), 0);
    CHECK_EQ(STAT(bus, "requests"), REQUESTERS * EACH);
    printf("group answers: %d %d %d %d\n", atomic_load(&r[0].calls), atomic_load(&r[1].calls),
           atomic_load(&r[2].calls), atomic_load(&r[3].calls));
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

static void bad_arguments(void) {
    jsonbus *bus = NEW_BUS(NULL);
    char *reply = NULL;
    CHECK_ERR(jsonbus_request(NULL, "a", "1", 1, 0, &reply, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_request(bus, "a", "1", 1, 0, NULL, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_request(bus, NULL, "1", 1, 0, &reply, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_request(bus, "a.*", "1", 1, 0, &reply, NULL), JSONBUS_ERR_TOPIC);
    CHECK_ERR(jsonbus_request(bus, "a", "{", 1, 0, &reply, NULL), JSONBUS_ERR_JSON);
    CHECK_ERR(jsonbus_request_async(bus, "a", "1", 1, 0, NULL, NULL), JSONBUS_ERR_NULL);
    CHECK_EQ(STAT(bus, "requests"), 0);
    CHECK_EQ(REJECTED(bus, "json"), 1);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
}

int main(void) {
    no_responders_at_once_and_counted();
    replies_and_the_first_one_wins();
    a_request_times_out();
    from_a_callback_with_one_dispatcher();
    a_reply_published_later_from_another_thread();
    close_answers_pending_async_requests_once();
    close_ends_a_blocked_request();
    wildcards_never_see_inbox_traffic();
    eight_requesters_against_a_group();
    bad_arguments();
    printf("test_request: ok\n");
    return 0;
}
