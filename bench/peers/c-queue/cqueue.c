/*
 * c-queue: the hand-written C baseline.  A mutex + condition variable + one consumer
 * thread, a linked list of malloc'd copies, no validation.  Exports the same symbols as
 * jsonbus's quick API so the benchmark driver can load it.
 *
 *   gcc -O2 -fPIC -shared -pthread cqueue.c -o libcqueue.so
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
} jsonbus_message;

typedef int32_t (*jsonbus_callback)(const jsonbus_message *msg, void *user_data);

typedef struct node {
    struct node *next;
    size_t len;
    uint64_t seq;
    uint64_t published_ns;
    char json[];
} node;

#define MAX_CB 256

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_idle = PTHREAD_COND_INITIALIZER;
static node *head, *tail;
static uint64_t next_seq;
static int consumer_waiting, consumer_busy, flush_waiters;
static jsonbus_callback cbs[MAX_CB];
static void *uds[MAX_CB];
static _Atomic int ncb;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_t consumer;
static int dummy_bus;

uint64_t jsonbus_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *consumer_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!head) {
            consumer_busy = 0;
            if (flush_waiters) pthread_cond_broadcast(&cv_idle);
            consumer_waiting = 1;
            pthread_cond_wait(&cv_work, &mu);
            consumer_waiting = 0;
        }
        node *n = head;
        head = n->next;
        if (!head) tail = NULL;
        consumer_busy = 1;
        pthread_mutex_unlock(&mu);

        int k = atomic_load_explicit(&ncb, memory_order_acquire);
        jsonbus_message m = {"default", 7, n->json, n->len, n->seq, n->published_ns, 0};
        for (int i = 0; i < k; i++) {
            m.subscription = i + 1;
            cbs[i](&m, uds[i]);
        }
        free(n);
        pthread_mutex_lock(&mu);
    }
    return NULL;
}

static void start(void) { pthread_create(&consumer, NULL, consumer_main, NULL); }

void *jsonbus_default(void) { return &dummy_bus; }

int32_t add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

int64_t register_callback(jsonbus_callback cb, void *user_data) {
    if (!cb) return -1;
    pthread_once(&once, start);
    pthread_mutex_lock(&mu);
    int k = atomic_load(&ncb);
    if (k == MAX_CB) {
        pthread_mutex_unlock(&mu);
        return -1;
    }
    cbs[k] = cb;
    uds[k] = user_data;
    atomic_store_explicit(&ncb, k + 1, memory_order_release);
    pthread_mutex_unlock(&mu);
    return k + 1;
}

int32_t push_json(const char *json) {
    if (!json) return -1;
    pthread_once(&once, start);
    size_t len = strlen(json);
    node *n = malloc(sizeof(node) + len + 1);
    if (!n) return -1;
    memcpy(n->json, json, len + 1);
    n->len = len;
    n->next = NULL;
    n->published_ns = jsonbus_now_ns();
    pthread_mutex_lock(&mu);
    n->seq = ++next_seq;
    if (tail)
        tail->next = n;
    else
        head = n;
    tail = n;
    if (consumer_waiting) pthread_cond_signal(&cv_work);
    pthread_mutex_unlock(&mu);
    return 0;
}

int32_t jsonbus_flush(void *bus, int32_t timeout_ms) {
    (void)bus;
    struct timespec deadline;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&mu);
    flush_waiters++;
    while (head || consumer_busy) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&cv_idle, &mu);
        } else if (pthread_cond_timedwait(&cv_idle, &mu, &deadline) == ETIMEDOUT) {
            rc = (head || consumer_busy) ? -1 : 0;
            break;
        }
    }
    flush_waiters--;
    pthread_mutex_unlock(&mu);
    return rc;
}
