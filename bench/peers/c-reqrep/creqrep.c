/*
 * c-reqrep: request/reply written by hand in C, the way a competent C programmer does it
 * without a bus: a mutex + condvar request queue served by one consumer thread, and a
 * per-request reply slot (its own mutex + condition variable) that the reply fills and
 * signals while the requester waits on it.  Exports the symbols of jsonbus's request/reply
 * API that the benchmark driver's `request` workload resolves, with the same signatures and
 * the same jsonbus_message layout:
 *
 *   jsonbus_default, jsonbus_now_ns, jsonbus_subscribe, jsonbus_request, jsonbus_reply,
 *   jsonbus_string_free
 *
 *   gcc -O2 -fPIC -shared -pthread creqrep.c -o libcreqrep.so
 *
 * - jsonbus_subscribe registers a responder for one exact topic (no wildcards); the first
 *   call starts the consumer thread.
 * - jsonbus_request finds the responder (none: -15, JSONBUS_ERR_NO_RESPONDERS, at once),
 *   mallocs ONE block holding the request node, a copy of the payload and the reply slot
 *   (mutex, condvar, reply pointer, done flag, a reference count of 2: requester + consumer),
 *   appends it to the FIFO queue under the queue mutex, signals the consumer if it sleeps,
 *   and then waits on the slot's condvar (pthread_cond_timedwait on CLOCK_MONOTONIC when
 *   timeout_ms >= 0; -7 on timeout).  The reply it returns is a malloc'd NUL-terminated
 *   copy, freed with jsonbus_string_free (free).
 * - The consumer thread takes the whole queue in one lock (FIFO order kept), and for each
 *   request calls the responder's callback outside any lock with a jsonbus_message whose
 *   reply_to is "_INBOX.<16 hex digits>", the slot's address encoded as text.
 * - jsonbus_reply decodes reply_to back to the slot, mallocs a NUL-terminated copy of the
 *   reply and, under the slot's mutex, stores it and signals the requester.  The first reply
 *   wins; a later one, or one for a requester that timed out, is freed.  A reply must be
 *   made during the responder's callback (the consumer drops its reference to the slot when
 *   the callback returns); the driver's echo responder does that.
 * - Whoever drops the last reference (requester or consumer) frees the block, so a requester
 *   that times out never leaves the consumer writing into freed memory.
 * - No validation of the JSON and no limits (like c-queue).  Idle threads sleep on their
 *   condvars; nothing spins.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct jsonbus_message {
    const char *topic;
    size_t topic_len;
    const char *json;
    size_t json_len;
    uint64_t seq;
    uint64_t published_ns;
    int64_t subscription;
    const char *reply_to;
    size_t reply_to_len;
} jsonbus_message;

typedef int32_t (*jsonbus_callback)(const jsonbus_message *msg, void *user_data);

#define ERR_NULL (-1)
#define ERR_TIMEOUT (-7)
#define ERR_NOT_FOUND (-9)
#define ERR_INTERNAL (-12)
#define ERR_NO_RESPONDERS (-15) /* JSONBUS_ERR_NO_RESPONDERS */

#define MAX_SUBS 64
#define TOPIC_MAX 256
#define INBOX_LEN (7 + 16) /* "_INBOX." + 16 hex digits */

typedef struct responder {
    char topic[TOPIC_MAX + 1];
    size_t topic_len;
    jsonbus_callback cb;
    void *ud;
    int64_t id;
} responder;

/* one request: queue node + reply slot + payload copy, one malloc */
typedef struct request {
    struct request *next;
    responder *to;
    uint64_t seq;
    uint64_t published_ns;
    _Atomic int refs; /* requester + consumer */
    /* the reply slot */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;      /* a reply arrived */
    int abandoned; /* the requester timed out */
    char *reply;
    size_t reply_len;
    char inbox[INBOX_LEN + 1];
    size_t len;
    char json[];
} request;

static responder subs[MAX_SUBS];
static _Atomic int nsubs;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static request *q_head, *q_tail;
static int q_sleeping;
static uint64_t next_seq;

static pthread_condattr_t mono_attr;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int dummy_bus;

uint64_t jsonbus_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void *jsonbus_default(void) { return &dummy_bus; }

void jsonbus_string_free(char *s) { free(s); }

static void request_unref(request *r) {
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
    free(r->reply); /* a reply nobody took (requester timed out) */
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void *consumer_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q_mu);
        while (!q_head) {
            q_sleeping = 1;
            pthread_cond_wait(&q_cv, &q_mu);
            q_sleeping = 0;
        }
        request *r = q_head; /* take the whole queue */
        q_head = q_tail = NULL;
        pthread_mutex_unlock(&q_mu);
        while (r) {
            request *next = r->next;
            responder *s = r->to;
            jsonbus_message m = {s->topic, s->topic_len, r->json, r->len, r->seq,
                                 r->published_ns, s->id, r->inbox, INBOX_LEN};
            s->cb(&m, s->ud);
            request_unref(r);
            r = next;
        }
    }
    return NULL;
}

static void start(void) {
    pthread_condattr_init(&mono_attr);
    pthread_condattr_setclock(&mono_attr, CLOCK_MONOTONIC);
    pthread_t t;
    pthread_create(&t, NULL, consumer_main, NULL);
    pthread_detach(t);
}

int64_t jsonbus_subscribe(void *bus, const char *pattern, jsonbus_callback cb, void *user_data) {
    (void)bus;
    if (!pattern || !cb) return ERR_NULL;
    size_t n = strlen(pattern);
    if (n == 0 || n > TOPIC_MAX) return -4;
    pthread_once(&once, start);
    pthread_mutex_lock(&reg_mu);
    int k = atomic_load(&nsubs);
    if (k == MAX_SUBS) {
        pthread_mutex_unlock(&reg_mu);
        return ERR_INTERNAL;
    }
    memcpy(subs[k].topic, pattern, n + 1);
    subs[k].topic_len = n;
    subs[k].cb = cb;
    subs[k].ud = user_data;
    subs[k].id = k + 1;
    atomic_store_explicit(&nsubs, k + 1, memory_order_release);
    pthread_mutex_unlock(&reg_mu);
    return k + 1;
}

static responder *find(const char *topic) {
    int k = atomic_load_explicit(&nsubs, memory_order_acquire);
    for (int i = 0; i < k; i++)
        if (!strcmp(subs[i].topic, topic)) return &subs[i];
    return NULL;
}

static void encode_inbox(char *out, const void *p) {
    static const char hex[] = "0123456789abcdef";
    uintptr_t v = (uintptr_t)p;
    memcpy(out, "_INBOX.", 7);
    for (int i = 15; i >= 0; i--) {
        out[7 + i] = hex[v & 15];
        v >>= 4;
    }
    out[INBOX_LEN] = 0;
}

static request *decode_inbox(const char *s, size_t len) {
    if (!s || len != INBOX_LEN || memcmp(s, "_INBOX.", 7)) return NULL;
    uintptr_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[7 + i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return NULL;
        v = v << 4 | (uintptr_t)d;
    }
    return (request *)v;
}

int32_t jsonbus_request(void *bus, const char *topic, const char *json, size_t json_len,
                        int32_t timeout_ms, char **reply, size_t *reply_len) {
    (void)bus;
    if (!topic || !json || !reply || !reply_len) return ERR_NULL;
    *reply = NULL;
    *reply_len = 0;
    responder *to = find(topic);
    if (!to) return ERR_NO_RESPONDERS;
    request *r = malloc(sizeof *r + json_len + 1);
    if (!r) return ERR_INTERNAL;
    r->next = NULL;
    r->to = to;
    r->published_ns = jsonbus_now_ns();
    atomic_init(&r->refs, 2);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, &mono_attr);
    r->done = r->abandoned = 0;
    r->reply = NULL;
    r->reply_len = 0;
    encode_inbox(r->inbox, r);
    r->len = json_len;
    memcpy(r->json, json, json_len);
    r->json[json_len] = 0;

    struct timespec deadline;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }

    pthread_mutex_lock(&q_mu);
    r->seq = ++next_seq;
    if (q_tail)
        q_tail->next = r;
    else
        q_head = r;
    q_tail = r;
    if (q_sleeping) pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);

    int32_t rc = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT && !r->done) {
            r->abandoned = 1;
            rc = ERR_TIMEOUT;
            break;
        }
    }
    if (r->done) {
        *reply = r->reply;
        *reply_len = r->reply_len;
        r->reply = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    request_unref(r);
    return rc;
}

int32_t jsonbus_reply(void *bus, const jsonbus_message *request_msg, const char *json,
                      size_t json_len) {
    (void)bus;
    if (!request_msg || !json) return ERR_NULL;
    request *r = decode_inbox(request_msg->reply_to, request_msg->reply_to_len);
    if (!r) return ERR_NOT_FOUND;
    char *copy = malloc(json_len + 1);
    if (!copy) return ERR_INTERNAL;
    memcpy(copy, json, json_len);
    copy[json_len] = 0;
    pthread_mutex_lock(&r->mu);
    if (r->done || r->abandoned) { /* first reply wins; nobody waits any more */
        pthread_mutex_unlock(&r->mu);
        free(copy);
        return 0;
    }
    r->reply = copy;
    r->reply_len = json_len;
    r->done = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}
