/*
 * coordinator.c - one owner of shared state, many requesters: the seed 002 program in C.
 *
 * The Go seed serialises access to a map through one coordinator goroutine that reads
 * requests from a channel and answers each requester. With jsonbus the coordinator is a
 * subscription: its callback never runs concurrently with itself (guarantee 3), so it may own
 * a plain C hash table with no lock at all, and jsonbus_reply answers each request on the
 * requester's own reply topic - no shared responses channel to get mixed up.
 *
 * Part 1: 10 requester threads send "set" and "get" requests (jsonbus_request blocks until
 *         the reply) to the coordinator on "kv"; each checks that it reads back what it set.
 * Part 2: 4 stateless workers in one queue group ("workers") share a stream of "square"
 *         requests: each request goes to exactly one of them.
 *
 * Run: coordinator        (exits 0 only if every answer was right)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonbus.h"

#define REQUESTERS 10
#define KEYS_EACH 50
#define WORKERS 4
#define SQUARES_EACH 100

static jsonbus *bus;
static atomic_int wrong;

/* ---- the coordinator's state: a plain open-addressing table, touched by one callback ---- */

#define SLOTS 1024 /* more than REQUESTERS * KEYS_EACH */
static struct {
    char key[32];
    long value;
    int used;
} table[SLOTS];

static unsigned slot_of(const char *key) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (const char *c = key; *c; c++) h = (h ^ (unsigned char)*c) * 16777619u;
    unsigned i = h % SLOTS;
    while (table[i].used && strcmp(table[i].key, key) != 0) i = (i + 1) % SLOTS;
    return i;
}

/* Pulls "key":"..." and "value":n out of a request we wrote ourselves (a real program would
 * use its JSON parser; jsonbus has already checked that the text is valid JSON). */
static int field(const char *json, const char *name, char *out, size_t size) {
    char pattern[40];
    snprintf(pattern, sizeof pattern, "\"%s\":", name);
    const char *p = strstr(json, pattern);
    if (p == NULL) return 0;
    p += strlen(pattern);
    size_t n = strcspn(p, ",}");
    if (*p == '"') p++, n = strcspn(p, "\"");
    if (n >= size) return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

/* The coordinator: one request at a time, in order, on a dispatcher thread. */
static int32_t coordinator(const jsonbus_message *req, void *user_data) {
    (void)user_data;
    char op[8], key[32], value[24], answer[96];
    int n;
    if (!field(req->json, "op", op, sizeof op) || !field(req->json, "key", key, sizeof key)) {
        n = snprintf(answer, sizeof answer, "{\"ok\":false,\"error\":\"bad request\"}");
    } else if (strcmp(op, "set") == 0 && field(req->json, "value", value, sizeof value)) {
        unsigned i = slot_of(key);
        table[i].used = 1;
        snprintf(table[i].key, sizeof table[i].key, "%s", key);
        table[i].value = atol(value);
        n = snprintf(answer, sizeof answer, "{\"ok\":true}");
    } else {
        unsigned i = slot_of(key);
        n = table[i].used ? snprintf(answer, sizeof answer, "{\"ok\":true,\"value\":%ld}",
                                     table[i].value)
                          : snprintf(answer, sizeof answer, "{\"ok\":false}");
    }
    /* the answer goes to req->reply_to: only this request's requester gets it */
    return jsonbus_reply(bus, req, answer, (size_t)n);
}

/* ---- part 1: requesters ---- */

static void *requester(void *arg) {
    int id = (int)(intptr_t)arg, right = 0;
    for (int k = 0; k < KEYS_EACH; k++) {
        char req[96], *reply = NULL;
        long value = id * 1000 + k;
        int n = snprintf(req, sizeof req, "{\"op\":\"set\",\"key\":\"k%d_%d\",\"value\":%ld}",
                         id, k, value);
        if (jsonbus_request(bus, "kv", req, (size_t)n, 5000, &reply, NULL) != JSONBUS_OK) {
            fprintf(stderr, "set: %s\n", jsonbus_last_error());
            atomic_fetch_add(&wrong, 1);
            continue;
        }
        jsonbus_string_free(reply);
        n = snprintf(req, sizeof req, "{\"op\":\"get\",\"key\":\"k%d_%d\"}", id, k);
        if (jsonbus_request(bus, "kv", req, (size_t)n, 5000, &reply, NULL) != JSONBUS_OK) {
            fprintf(stderr, "get: %s\n", jsonbus_last_error());
            atomic_fetch_add(&wrong, 1);
            continue;
        }
        char expected[64];
        snprintf(expected, sizeof expected, "{\"ok\":true,\"value\":%ld}", value);
        if (strcmp(reply, expected) == 0) right++;
        else atomic_fetch_add(&wrong, 1);
        jsonbus_string_free(reply);
    }
    /* a key nobody set */
    char *reply = NULL;
    const char *missing = "{\"op\":\"get\",\"key\":\"nobody\"}";
    if (jsonbus_request(bus, "kv", missing, strlen(missing), 5000, &reply, NULL) == JSONBUS_OK &&
        strcmp(reply, "{\"ok\":false}") == 0)
        right++;
    else
        atomic_fetch_add(&wrong, 1);
    jsonbus_string_free(reply);
    printf("requester %d: %d of %d answers right\n", id, right, KEYS_EACH + 1);
    return NULL;
}

/* ---- part 2: a group of stateless workers ---- */

static atomic_int answered[WORKERS];

static int32_t worker(const jsonbus_message *req, void *user_data) {
    int me = (int)(intptr_t)user_data;
    long x = atol(req->json); /* the request is a number */
    char answer[32];
    int n = snprintf(answer, sizeof answer, "%ld", x * x);
    atomic_fetch_add(&answered[me], 1);
    return jsonbus_reply(bus, req, answer, (size_t)n);
}

static void *squarer(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < SQUARES_EACH; i++) {
        long x = id * SQUARES_EACH + i;
        char req[24], *reply = NULL;
        int n = snprintf(req, sizeof req, "%ld", x);
        if (jsonbus_request(bus, "square", req, (size_t)n, 5000, &reply, NULL) != JSONBUS_OK ||
            atol(reply) != x * x)
            atomic_fetch_add(&wrong, 1);
        jsonbus_string_free(reply);
    }
    return NULL;
}

static void run_threads(void *(*body)(void *)) {
    pthread_t threads[REQUESTERS];
    for (intptr_t i = 0; i < REQUESTERS; i++) pthread_create(&threads[i], NULL, body, (void *)i);
    for (int i = 0; i < REQUESTERS; i++) pthread_join(threads[i], NULL);
}

int main(void) {
    bus = jsonbus_new("{\"dispatcher_threads\":2}");
    if (bus == NULL) return 1;

    /* part 1: one coordinator owns the table */
    if (jsonbus_subscribe(bus, "kv", coordinator, NULL) <= 0) return 1;
    run_threads(requester);

    /* part 2: four workers share the requests on "square", each answered by one */
    for (intptr_t w = 0; w < WORKERS; w++)
        if (jsonbus_subscribe_with(bus, "square", "{\"group\":\"workers\"}", worker, NULL,
                                   (void *)w) <= 0)
            return 1;
    run_threads(squarer);
    int total = 0;
    for (int w = 0; w < WORKERS; w++) {
        printf("worker %d answered %d requests\n", w, atomic_load(&answered[w]));
        total += atomic_load(&answered[w]);
    }

    char *stats = jsonbus_stats(bus);
    printf("stats: %s\n", stats);
    jsonbus_string_free(stats);
    jsonbus_close(bus, -1);
    jsonbus_free(bus);

    int ok = atomic_load(&wrong) == 0 && total == REQUESTERS * SQUARES_EACH;
    printf("%s: %d requests to the coordinator, %d squares, %d wrong\n", ok ? "ok" : "FAILED",
           REQUESTERS * (2 * KEYS_EACH + 1), total, atomic_load(&wrong));
    return ok ? 0 : 1;
}
