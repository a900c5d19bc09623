/*
 * peer.c - a process that uses the bus another process serves (hub.c): the other half of
 * the seed 001 program, with no shared struct.
 *
 * jsonbus_attach("prices", options) gives a `jsonbus *` on which every jsonbus call works as
 * on a bus of one's own: what this process publishes goes to the subscriptions of every
 * attached process and of the hub; its callbacks run on its own dispatcher threads; requests
 * are answered by whichever process subscribed to the topic. When the hub goes away, calls
 * return JSONBUS_ERR_DISCONNECTED and subscriptions end with JSONBUS_END_PEER_GONE.
 *
 * Run (with hub running, or started within 5 s):
 *   peer orders          publish three orders on "orders.new", ask for a quote ("quote.ACME")
 *                        and print the answer; exit 0 if the hub answered
 *   peer watch [SECONDS] subscribe to everything (">") and print seq, topic and payload of each
 *                        message for SECONDS (default 3); exit 0 if it saw any
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonbus.h"

#define BUS_NAME "prices"

static void die(const char *what, int64_t rc) {
    fprintf(stderr, "peer: %s failed: %s (%" PRId64 "): %s\n", what,
            jsonbus_status_name((int32_t)rc), rc, jsonbus_last_error());
    exit(1);
}

/* Attach, waiting up to 5 s for the hub to serve the name (connect_timeout_ms; -1 would wait
 * for ever, 0 not at all). NULL and JSONBUS_ERR_NO_BUS if nobody serves it by then. */
static jsonbus *attach(void) {
    jsonbus *bus = jsonbus_attach(BUS_NAME, "{\"connect_timeout_ms\":5000}");
    if (bus == NULL) die("jsonbus_attach(\"" BUS_NAME "\")", jsonbus_last_status());
    return bus;
}

/* ------------------------------------------------------------------------------------------
 * peer orders
 * ------------------------------------------------------------------------------------------ */
static int orders(void) {
    jsonbus *bus = attach();

    /* Publish: validated here, handed to the hub, which numbers it and passes it on. */
    for (int i = 1; i <= 3; i++) {
        char order[128];
        int n = snprintf(order, sizeof order,
                         "{\"id\":%d,\"symbol\":\"ACME\",\"side\":\"%s\",\"qty\":%d}", i,
                         i % 2 ? "buy" : "sell", 10 * i);
        int32_t rc = jsonbus_publish(bus, "orders.new", order, (size_t)n);
        if (rc != JSONBUS_OK) die("jsonbus_publish(orders.new)", rc);
        printf("peer: sent order %s\n", order);
    }

    /* Request: blocks until the first reply (or 2 s). The hub's "quote.*" subscription answers;
     * the reply comes back to this process only. */
    char *reply = NULL;
    const char *ask = "{\"want\":\"price\"}";
    int32_t rc = jsonbus_request(bus, "quote.ACME", ask, strlen(ask), 2000, &reply, NULL);
    if (rc != JSONBUS_OK) die("jsonbus_request(quote.ACME)", rc);
    printf("peer: quote.ACME -> %s\n", reply);
    jsonbus_string_free(reply);

    /* The WaitGroup across processes: returns once the orders have been delivered to every
     * subscription in every process (the hub's and the watchers') and their callbacks
     * returned. */
    rc = jsonbus_flush(bus, 5000);
    if (rc != JSONBUS_OK) die("jsonbus_flush", rc);
    printf("peer: every subscriber has the orders\n");

    /* Detach: this process's subscriptions end and the hub forgets it. */
    jsonbus_free(bus);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * peer watch
 * ------------------------------------------------------------------------------------------ */
static atomic_int seen;
static atomic_int hub_gone;

/* Runs on this process's dispatcher thread, in seq order: the one order of the whole bus, the
 * same in every process. */
static int32_t print_message(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    printf("%8" PRIu64 "  %-14s %s\n", msg->seq, msg->topic, msg->json);
    fflush(stdout);
    atomic_fetch_add(&seen, 1);
    return JSONBUS_OK;
}

/* The end notice: JSONBUS_END_PEER_GONE when the hub stops or dies. */
static void on_end(int64_t subscription, int32_t reason, void *user_data) {
    (void)subscription;
    (void)user_data;
    if (reason == JSONBUS_END_PEER_GONE) atomic_store(&hub_gone, 1);
    printf("peer: subscription ended: %s\n", jsonbus_end_reason_name(reason));
    fflush(stdout);
}

static int watch(int seconds) {
    jsonbus *bus = attach();
    /* ">" is every topic (replies on _INBOX.* excepted). Once this returns the subscription is
     * registered at the hub: everything published from now on reaches it. */
    int64_t id = jsonbus_subscribe_with(bus, ">", NULL, print_message, on_end, NULL);
    if (id <= 0) die("jsonbus_subscribe_with(>)", id);
    printf("peer: watching \"%s\" for %d s\n", BUS_NAME, seconds);
    fflush(stdout);

    for (int i = 0; i < seconds * 10 && !atomic_load(&hub_gone); i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    /* free waits for a callback that is running and runs the end notice. */
    jsonbus_free(bus);
    printf("peer: saw %d messages\n", atomic_load(&seen));
    return atomic_load(&seen) > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "orders") == 0) return orders();
    if (argc >= 2 && strcmp(argv[1], "watch") == 0) return watch(argc > 2 ? atoi(argv[2]) : 3);
    fprintf(stderr, "usage: peer orders | peer watch [SECONDS]\n");
    return 2;
}
