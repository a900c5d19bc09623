/*
 * c-queue: the hand-written C baseline, doing fan-out by hand the way a competent C
 * programmer would for a broadcast server: one queue per subscriber, one shared copy of each
 * message, a small fixed pool of consumer threads.  No validation, no limits.  Exports the
 * same symbols as jsonbus's quick API (plus a pull subscription: jsonbus_subscribe_pull,
 * jsonbus_next, jsonbus_message_release, jsonbus_pull_fd) so the benchmark driver can load it.
 *
 *   gcc -O2 -fPIC -shared -pthread cqueue.c -o libcqueue.so
 *
 * - push_json mallocs ONE copy of the payload with an atomic reference count (= number of
 *   subscribers) and appends a pointer to it to every subscriber's own queue (a growable ring
 *   of pointers, each under the subscriber's own mutex).  With several subscribers a publish
 *   mutex is held across the fan-out of one message so that every subscriber sees messages
 *   in seq order even with several publishers (the guarantee jsonbus gives; uncontended with
 *   one publisher); with one subscriber its queue's mutex alone orders them.
 * - A subscriber with messages is put on a run queue (mutex + condvar) once, when its queue
 *   goes from "not scheduled" to "scheduled".  CQUEUE_THREADS consumer threads (default 1,
 *   the same as jsonbus's default dispatcher count) take a subscriber off the run queue,
 *   take up to BATCH of its messages out of its ring under its mutex, run its callback on
 *   each outside any lock, drop their references (the last one frees the copy), and put the
 *   subscriber back at the tail of the run queue if more arrived (fairness, like jsonbus).
 *   Idle consumer threads sleep on the condvar; there is no spinning.
 * - A pull subscriber has its own condvar: jsonbus_next pops with pthread_cond_wait, and
 *   jsonbus_pull_fd gives an eventfd kept readable exactly while its queue is non-empty
 *   (raised on empty -> non-empty, lowered on non-empty -> empty, under its mutex).  Each
 *   handed-out message is a small malloc'd handle holding a reference (jsonbus does the same).
 * - jsonbus_flush waits until every message pushed has been delivered to every subscriber and
 *   released (a count of messages whose reference count has not reached zero).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct jsonbus_message {
    const char *topic;
    size_t topic_len;
    const char *json;
    size_t json_len;
    uint64_t seq;
    uint64_t published_ns;
    int64_t subscription;
} jsonbus_message;

typedef int32_t (*jsonbus_callback)(const jsonbus_message *msg, void *user_data);

/* one shared copy of a published message */
typedef struct msg {
    _Atomic uint32_t refs;
    size_t len;
    uint64_t seq;
    uint64_t published_ns;
    char json[];
} msg;

typedef struct sub {
    pthread_mutex_t mu;
    msg **ring; /* capacity cap (a power of two), count entries from head */
    size_t cap, head, count;
    int scheduled; /* on the run queue or being served (callback subscribers) */
    struct sub *next_ready;
    jsonbus_callback cb; /* NULL: a pull subscriber */
    void *ud;
    int64_t id;
    /* pull subscribers */
    pthread_cond_t cv;
    int waiters;
    int efd;
    int raised;
    char pad[64];
} sub;

/* a message handed out by jsonbus_next */
typedef struct pulled {
    jsonbus_message m;
    msg *owner;
} pulled;

#define MAX_SUBS 65536
#define BATCH 256
#define MAX_THREADS 64

static sub *subs[MAX_SUBS];
static _Atomic int nsubs;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t next_seq;

/* run queue of scheduled subscribers, and flush */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_idle = PTHREAD_COND_INITIALIZER;
static sub *ready_head, *ready_tail;
static int sleepers;
static _Atomic int flush_waiters;
static _Atomic uint64_t outstanding; /* messages not yet released by every subscriber */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int dummy_bus;

uint64_t jsonbus_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void msg_unref(msg *m) {
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) return;
    free(m);
    if (atomic_fetch_sub(&outstanding, 1) == 1 && atomic_load(&flush_waiters)) {
        pthread_mutex_lock(&mu);
        pthread_cond_broadcast(&cv_idle);
        pthread_mutex_unlock(&mu);
    }
}

static void ready_push(sub *s) { /* with mu held */
    s->next_ready = NULL;
    if (ready_tail)
        ready_tail->next_ready = s;
    else
        ready_head = s;
    ready_tail = s;
    if (sleepers) pthread_cond_signal(&cv_work);
}

static void *consumer_main(void *arg) {
    (void)arg;
    msg *batch[BATCH];
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!ready_head) {
            sleepers++;
            pthread_cond_wait(&cv_work, &mu);
            sleepers--;
        }
        sub *s = ready_head;
        ready_head = s->next_ready;
        if (!ready_head) ready_tail = NULL;
        pthread_mutex_unlock(&mu);

        pthread_mutex_lock(&s->mu);
        size_t k = s->count < BATCH ? s->count : BATCH;
        for (size_t i = 0; i < k; i++) batch[i] = s->ring[(s->head + i) & (s->cap - 1)];
        s->head = (s->head + k) & (s->cap - 1);
        s->count -= k;
        pthread_mutex_unlock(&s->mu);

        jsonbus_message m = {"default", 7, NULL, 0, 0, 0, s->id};
        for (size_t i = 0; i < k; i++) {
            m.json = batch[i]->json;
            m.json_len = batch[i]->len;
            m.seq = batch[i]->seq;
            m.published_ns = batch[i]->published_ns;
            s->cb(&m, s->ud);
            msg_unref(batch[i]);
        }

        pthread_mutex_lock(&s->mu);
        int again = s->count > 0;
        if (!again) s->scheduled = 0;
        pthread_mutex_unlock(&s->mu);
        if (again) {
            pthread_mutex_lock(&mu);
            ready_push(s);
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

static void start(void) {
    int n = 1;
    const char *e = getenv("CQUEUE_THREADS");
    if (e && atoi(e) > 0) n = atoi(e);
    if (n > MAX_THREADS) n = MAX_THREADS;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, consumer_main, NULL);
        pthread_detach(t);
    }
}

void *jsonbus_default(void) { return &dummy_bus; }

int32_t add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static int64_t add_sub(jsonbus_callback cb, void *user_data) {
    pthread_once(&once, start);
    sub *s = aligned_alloc(64, (sizeof(sub) + 63) & ~(size_t)63);
    if (!s) return -1;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->cap = 64;
    s->ring = malloc(s->cap * sizeof(msg *));
    s->cb = cb;
    s->ud = user_data;
    s->efd = -1;
    pthread_mutex_lock(&reg_mu);
    int k = atomic_load(&nsubs);
    if (k == MAX_SUBS) {
        pthread_mutex_unlock(&reg_mu);
        free(s->ring);
        free(s);
        return -1;
    }
    s->id = k + 1;
    subs[k] = s;
    atomic_store_explicit(&nsubs, k + 1, memory_order_release);
    pthread_mutex_unlock(&reg_mu);
    return k + 1;
}

int64_t register_callback(jsonbus_callback cb, void *user_data) {
    if (!cb) return -1;
    return add_sub(cb, user_data);
}

/* pattern and options are ignored: every message, no limit */
int64_t jsonbus_subscribe_pull(void *bus, const char *pattern, const char *options_json) {
    (void)bus;
    (void)pattern;
    (void)options_json;
    return add_sub(NULL, NULL);
}

static void ring_push(sub *s, msg *m) { /* with s->mu held */
    if (s->count == s->cap) {
        msg **r = malloc(2 * s->cap * sizeof(msg *));
        for (size_t i = 0; i < s->count; i++) r[i] = s->ring[(s->head + i) & (s->cap - 1)];
        free(s->ring);
        s->ring = r;
        s->head = 0;
        s->cap *= 2;
    }
    s->ring[(s->head + s->count) & (s->cap - 1)] = m;
    s->count++;
}

/* with s->mu held: queue m for s and say whether s must be put on the run queue */
static int deliver_to(sub *s, msg *m) {
    ring_push(s, m);
    if (s->cb) {
        if (s->scheduled) return 0;
        s->scheduled = 1;
        return 1;
    }
    if (s->waiters) pthread_cond_signal(&s->cv);
    if (s->efd >= 0 && !s->raised) {
        uint64_t one = 1;
        if (write(s->efd, &one, 8) == 8) s->raised = 1;
    }
    return 0;
}

static void schedule(sub *s) {
    pthread_mutex_lock(&mu);
    ready_push(s);
    pthread_mutex_unlock(&mu);
}

int32_t push_json(const char *json) {
    if (!json) return -1;
    pthread_once(&once, start);
    size_t len = strlen(json);
    msg *m = malloc(sizeof(msg) + len + 1);
    if (!m) return -1;
    memcpy(m->json, json, len + 1);
    m->len = len;
    m->published_ns = jsonbus_now_ns();
    /* subscribers are registered before publishing starts (as in every driver workload) */
    int k = atomic_load_explicit(&nsubs, memory_order_acquire);
    if (k == 0) {
        free(m);
        return 0;
    }
    atomic_store_explicit(&m->refs, (uint32_t)k, memory_order_relaxed);
    atomic_fetch_add(&outstanding, 1);
    if (k == 1) {
        /* one queue: its own mutex orders the messages, no publish mutex needed */
        sub *s = subs[0];
        pthread_mutex_lock(&s->mu);
        m->seq = atomic_fetch_add_explicit(&next_seq, 1, memory_order_relaxed) + 1;
        int wake = deliver_to(s, m);
        pthread_mutex_unlock(&s->mu);
        if (wake) schedule(s);
        return 0;
    }
    /* several queues: the publish mutex keeps the fan-out of one message from interleaving
       with another publisher's, so every subscriber sees seq order */
    pthread_mutex_lock(&pub_mu);
    m->seq = atomic_fetch_add_explicit(&next_seq, 1, memory_order_relaxed) + 1;
    for (int i = 0; i < k; i++) {
        sub *s = subs[i];
        pthread_mutex_lock(&s->mu);
        int wake = deliver_to(s, m);
        pthread_mutex_unlock(&s->mu);
        if (wake) schedule(s);
    }
    pthread_mutex_unlock(&pub_mu);
    return 0;
}

static sub *pull_sub(int64_t id) {
    if (id < 1 || id > atomic_load_explicit(&nsubs, memory_order_acquire)) return NULL;
    sub *s = subs[id - 1];
    return s->cb ? NULL : s;
}

static void deadline_in(struct timespec *d, int32_t timeout_ms) {
    clock_gettime(CLOCK_REALTIME, d);
    d->tv_sec += timeout_ms / 1000;
    d->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (d->tv_nsec >= 1000000000L) {
        d->tv_sec++;
        d->tv_nsec -= 1000000000L;
    }
}

/* 0, -7 (timeout) or -9 (not a pull subscriber), like jsonbus */
int32_t jsonbus_next(void *bus, int64_t id, int32_t timeout_ms, jsonbus_message **out) {
    (void)bus;
    *out = NULL;
    sub *s = pull_sub(id);
    if (!s) return -9;
    struct timespec d;
    if (timeout_ms > 0) deadline_in(&d, timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (s->count == 0) {
        if (timeout_ms == 0) {
            pthread_mutex_unlock(&s->mu);
            return -7;
        }
        s->waiters++;
        int r = timeout_ms < 0 ? pthread_cond_wait(&s->cv, &s->mu)
                               : pthread_cond_timedwait(&s->cv, &s->mu, &d);
        s->waiters--;
        if (r == ETIMEDOUT && s->count == 0) {
            pthread_mutex_unlock(&s->mu);
            return -7;
        }
    }
    msg *m = s->ring[s->head];
    s->head = (s->head + 1) & (s->cap - 1);
    s->count--;
    if (s->count == 0 && s->raised) {
        uint64_t v;
        if (read(s->efd, &v, 8) == 8) s->raised = 0;
    }
    pthread_mutex_unlock(&s->mu);
    pulled *p = malloc(sizeof *p);
    p->m = (jsonbus_message){"default", 7, m->json, m->len, m->seq, m->published_ns, id};
    p->owner = m;
    *out = &p->m;
    return 0;
}

void jsonbus_message_release(jsonbus_message *mm) {
    if (!mm) return;
    pulled *p = (pulled *)mm;
    msg_unref(p->owner);
    free(p);
}

int32_t jsonbus_pull_fd(void *bus, int64_t id) {
    (void)bus;
    sub *s = pull_sub(id);
    if (!s) return -9;
    pthread_mutex_lock(&s->mu);
    if (s->efd < 0) {
        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->efd >= 0 && s->count > 0) {
            uint64_t one = 1;
            if (write(s->efd, &one, 8) == 8) s->raised = 1;
        }
    }
    int fd = s->efd;
    pthread_mutex_unlock(&s->mu);
    return fd < 0 ? -12 : fd;
}

int32_t jsonbus_flush(void *bus, int32_t timeout_ms) {
    (void)bus;
    struct timespec deadline;
    if (timeout_ms >= 0) deadline_in(&deadline, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&mu);
    atomic_fetch_add(&flush_waiters, 1);
    while (atomic_load(&outstanding) != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&cv_idle, &mu);
        } else if (pthread_cond_timedwait(&cv_idle, &mu, &deadline) == ETIMEDOUT) {
            rc = atomic_load(&outstanding) ? -7 : 0;
            break;
        }
    }
    atomic_fetch_sub(&flush_waiters, 1);
    pthread_mutex_unlock(&mu);
    return rc;
}
