/*
 * quickstart.c - the smallest useful jsonbus program.
 *
 * The situation: a vendor library runs its own thread and pushes JSON strings at you
 * whenever it has data. You want to take each string quickly, do the heavy work elsewhere,
 * and at some point wait until everything received so far has been processed.
 *
 * In Go you would write "cgo //export callback + go process(msg) + sync.WaitGroup".
 * With jsonbus the pieces are:
 *
 *   push_json(json)                        the producer side: validate, copy, enqueue
 *   register_callback(cb, user_data)       the consumer side: cb runs on a jsonbus thread
 *   jsonbus_flush(jsonbus_default(), -1)   WaitGroup.Wait(): every earlier message handled
 *   jsonbus_shutdown(-1)                   stop the bus and its threads before exiting
 *
 * Build (see CMakeLists.txt next to this file), or by hand:
 *   cc -std=c11 -Wall -Wextra -I include quickstart.c -L target/release -ljsonbus -lpthread
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonbus.h"

#define MESSAGE_COUNT 1000000

/* Print why a jsonbus call failed and stop. Every jsonbus function that can fail returns a
 * status (< 0 on error); jsonbus_last_error() tells what exactly went wrong on this thread. */
static void die(const char *what, int64_t rc) {
    fprintf(stderr, "quickstart: %s failed: %s (%" PRId64 "): %s\n", what,
            jsonbus_status_name((int32_t)rc), rc, jsonbus_last_error());
    exit(1);
}

/* ------------------------------------------------------------------------------------------
 * The consumer: what we want done with every message.
 * ------------------------------------------------------------------------------------------ */
struct totals {
    atomic_uint_fast64_t messages; /* how many callbacks ran */
    atomic_uint_fast64_t id_sum;   /* "heavy work": the sum of every message's "id" */
    atomic_uint_fast64_t bad;      /* messages we could not read */
};

/* jsonbus calls this on one of its dispatcher threads, never on the thread that pushed.
 * msg->json is NUL-terminated, already validated as JSON, and valid only during the call:
 * copy what you need to keep. Calls for one subscription never overlap, so plain counters
 * would do here; atomics make it safe to read them from main() at any time. */
static int32_t on_message(const jsonbus_message *msg, void *user_data) {
    struct totals *totals = user_data;

    /* A real program would parse the JSON (cJSON, yyjson, ...). A strstr is enough here. */
    const char *id = strstr(msg->json, "\"id\":");
    if (id == NULL) {
        atomic_fetch_add(&totals->bad, 1);
        return -1; /* a negative return is counted as a callback failure in the stats */
    }
    atomic_fetch_add(&totals->id_sum, strtoull(id + 5, NULL, 10));
    atomic_fetch_add(&totals->messages, 1);
    return JSONBUS_OK; /* stay subscribed (JSONBUS_UNSUBSCRIBE would end the subscription) */
}

/* ------------------------------------------------------------------------------------------
 * The producer: stands in for the vendor library and its own thread.
 * ------------------------------------------------------------------------------------------ */
static void *vendor_thread(void *arg) {
    (void)arg;
    static const char *const symbols[] = {"ABC", "XYZ", "FOO", "BAR"};
    char json[128];
    for (int i = 0; i < MESSAGE_COUNT; i++) {
        snprintf(json, sizeof json, "{\"id\":%d,\"price\":%d.%02d,\"sym\":\"%s\"}", i,
                 100 + i % 50, i % 100, symbols[i % 4]);
        /* push_json publishes on the default bus, topic "default". It validates the JSON on
         * this thread and copies it: the buffer can be reused at once. If the queue is full
         * it waits for room (the default publish_timeout_ms is -1). */
        int32_t rc = push_json(json);
        if (rc != JSONBUS_OK) {
            die("push_json", rc);
        }
    }
    return NULL;
}

int main(void) {
    printf("jsonbus %s\n", jsonbus_version());

    /* 1. Subscribe before anything is pushed: a subscription only gets messages published
     *    after it exists. register_callback subscribes to every topic (">") on the default
     *    bus and returns a subscription id (> 0). */
    struct totals totals;
    atomic_init(&totals.messages, 0);
    atomic_init(&totals.id_sum, 0);
    atomic_init(&totals.bad, 0);
    int64_t subscription = register_callback(on_message, &totals);
    if (subscription <= 0) {
        die("register_callback", subscription);
    }

    /* 2. Let the "vendor" push from its own thread. */
    uint64_t start_ns = jsonbus_now_ns();
    pthread_t vendor;
    if (pthread_create(&vendor, NULL, vendor_thread, NULL) != 0) {
        fprintf(stderr, "quickstart: pthread_create failed\n");
        return 1;
    }
    pthread_join(vendor, NULL);

    /* 3. The WaitGroup: returns once every message pushed before this call has been
     *    delivered and its callback has returned (-1 = no time limit). */
    int32_t rc = jsonbus_flush(jsonbus_default(), -1);
    if (rc != JSONBUS_OK) {
        die("jsonbus_flush", rc);
    }
    uint64_t elapsed_ns = jsonbus_now_ns() - start_ns;

    uint64_t received = atomic_load(&totals.messages);
    uint64_t expected_sum = (uint64_t)MESSAGE_COUNT * (MESSAGE_COUNT - 1) / 2;
    printf("received %" PRIu64 " of %d messages in %.3f s: %.0f messages/second\n", received,
           MESSAGE_COUNT, (double)elapsed_ns / 1e9,
           elapsed_ns ? (double)received * 1e9 / (double)elapsed_ns : 0.0);

    /* 4. The bus counts what it did. jsonbus_stats returns a JSON object that we own and
     *    must give back with jsonbus_string_free. */
    char *stats = jsonbus_stats(jsonbus_default());
    if (stats == NULL) {
        die("jsonbus_stats", jsonbus_last_status());
    }
    printf("stats: %s\n", stats);
    jsonbus_string_free(stats);

    /* 5. Stop the default bus: its threads are joined and no callback runs after this
     *    returns, so `totals` could now be freed. (A later push_json would open a fresh bus.) */
    rc = jsonbus_shutdown(-1);
    if (rc != JSONBUS_OK) {
        die("jsonbus_shutdown", rc);
    }

    if (received != MESSAGE_COUNT || atomic_load(&totals.id_sum) != expected_sum ||
        atomic_load(&totals.bad) != 0) {
        fprintf(stderr, "quickstart: expected %d messages with id sum %" PRIu64 "\n",
                MESSAGE_COUNT, expected_sum);
        return 1;
    }
    return 0;
}
