/* bench/handoff.c: what this machine allows for handing one message from a publishing core
 * to a consuming core - the bound issue 11 asks for.  No validation, no routing, no order
 * beyond one ring, no capacity accounting: a producer thread copies SIZE bytes into the next
 * slot of a single-producer single-consumer ring of pre-allocated slots (the LMAX Disruptor's
 * shape) and publishes its cursor with a release store; a consumer thread follows the cursor,
 * reads each message's length and first byte (as the benchmark's callback does) and publishes
 * its own cursor every BATCH messages (or half the ring, if smaller).  Both spin; each thread pinned to its own core.
 *
 *   gcc -O2 -Wall -Wextra -pthread bench/handoff.c -o bench/build/handoff
 *   bench/build/handoff [SIZE] [N] [SLOTS]        (defaults 200 2000000 4096)
 *
 * Prints messages/s, ns per message and MB/s.  Also the same with a cache-line ping-pong
 * (one shared counter bumped alternately) to show the cost of one round trip between cores. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64

typedef struct {
    _Alignas(128) _Atomic uint64_t head; /* written by the producer */
    _Alignas(128) _Atomic uint64_t tail; /* written by the consumer */
    _Alignas(128) size_t size, slots, slot_bytes;
    uint64_t n, batch;
    unsigned char *ring;
    const char *payload;
    uint64_t checksum;
} ring_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *producer(void *a_) {
    ring_t *r = a_;
    pin(0);
    uint64_t tail_seen = 0;
    for (uint64_t i = 0; i < r->n; i++) {
        while (i - tail_seen >= r->slots) tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        unsigned char *slot = r->ring + (i % r->slots) * r->slot_bytes;
        memcpy(slot, &r->size, sizeof r->size);
        memcpy(slot + sizeof r->size, r->payload, r->size);
        atomic_store_explicit(&r->head, i + 1, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *a_) {
    ring_t *r = a_;
    pin(1);
    uint64_t i = 0, head = 0, sum = 0;
    while (i < r->n) {
        while (head == i) head = atomic_load_explicit(&r->head, memory_order_acquire);
        for (; i < head; i++) {
            const unsigned char *slot = r->ring + (i % r->slots) * r->slot_bytes;
            size_t len;
            memcpy(&len, slot, sizeof len);
            sum += len + slot[sizeof len];
            if ((i + 1) % r->batch == 0) atomic_store_explicit(&r->tail, i + 1, memory_order_release);
        }
    }
    atomic_store_explicit(&r->tail, i, memory_order_release);
    r->checksum = sum;
    return NULL;
}

static _Atomic uint64_t pong;
static uint64_t rounds;

static void *bouncer(void *a_) {
    int me = (int)(intptr_t)a_;
    pin(me);
    for (uint64_t i = (uint64_t)me; i < 2 * rounds; i += 2) {
        while (atomic_load_explicit(&pong, memory_order_acquire) != i) {
        }
        atomic_store_explicit(&pong, i + 1, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    ring_t r = {0};
    r.size = argc > 1 ? (size_t)atol(argv[1]) : 200;
    r.n = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
    r.slots = argc > 3 ? (size_t)atol(argv[3]) : 4096;
    if (r.slots < 2) r.slots = 2;
    r.batch = r.slots / 2 < BATCH ? r.slots / 2 : BATCH;
    r.slot_bytes = (r.size + sizeof(size_t) + 63) / 64 * 64;
    r.ring = aligned_alloc(64, r.slots * r.slot_bytes);
    memset(r.ring, 0, r.slots * r.slot_bytes);
    char *payload = malloc(r.size);
    memset(payload, 'x', r.size);
    payload[0] = '{';
    r.payload = payload;
    pthread_t p, c;
    uint64_t t0 = now_ns();
    pthread_create(&c, NULL, consumer, &r);
    pthread_create(&p, NULL, producer, &r);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    uint64_t t1 = now_ns();
    double s = (t1 - t0) / 1e9;
    if (r.checksum != r.n * (r.size + '{')) {
        fprintf(stderr, "handoff: checksum mismatch\n");
        return 1;
    }
    rounds = 1000000;
    pthread_t a, b;
    uint64_t t2 = now_ns();
    pthread_create(&a, NULL, bouncer, (void *)0);
    pthread_create(&b, NULL, bouncer, (void *)1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    uint64_t t3 = now_ns();
    printf("{\"workload\":\"handoff\",\"size\":%zu,\"messages\":%llu,\"slots\":%zu,\"msgs_per_s\":%.1f,"
           "\"ns_per_msg\":%.1f,\"mb_per_s\":%.1f,\"line_round_trip_ns\":%.1f}\n",
           r.size, (unsigned long long)r.n, r.slots, r.n / s, s * 1e9 / r.n, r.n * (double)r.size / s / 1e6,
           (t3 - t2) / (double)rounds);
    return 0;
}
