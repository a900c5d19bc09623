// C side of go-seed: the callback registry, the trampoline that calls the C callbacks,
// and the helpers the benchmark driver needs (jsonbus_default, jsonbus_now_ns).
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
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

#define MAX_CB 4096
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static jsonbus_callback cbs[MAX_CB];
static void *uds[MAX_CB];
static _Atomic int ncb;
static int dummy_bus;

uint64_t jsonbus_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void *jsonbus_default(void) { return &dummy_bus; }

int64_t register_callback(jsonbus_callback cb, void *user_data) {
    if (!cb) return -1;
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

void seed_deliver(const char *json, size_t len, uint64_t seq, uint64_t published_ns) {
    int k = atomic_load_explicit(&ncb, memory_order_acquire);
    jsonbus_message m = {"default", 7, json, len, seq, published_ns, 0};
    for (int i = 0; i < k; i++) {
        m.subscription = i + 1;
        cbs[i](&m, uds[i]);
    }
}
