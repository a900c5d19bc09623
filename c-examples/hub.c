/*
 * hub.c - a price server that other processes use through jsonbus: the seed 001 program
 * (two programs sharing a struct in named shared memory, calling each other back) without the
 * shared struct.
 *
 * The seed maps one named block of shared memory into two programs, writes a struct into it
 * from one and reads it from the other, and stores function pointers there for callbacks. That
 * works only while both sides agree on the struct's layout, need their own locks and events
 * to know when to read, and a function pointer means nothing in another process.
 *
 * With jsonbus the server makes an ordinary bus and serves it under a name. Any process of the
 * same user can attach to that name and gets a `jsonbus *` that works as if the bus were in
 * its own process: publish, subscribe, request. The data travels through shared memory that
 * jsonbus manages, every message is JSON that was validated before it was accepted, and the
 * serving process (the hub) numbers all messages in one order. Callbacks always run in the
 * process that subscribed.
 *
 *   jsonbus_new + jsonbus_serve(bus, "prices", NULL)   this program: the hub
 *   jsonbus_attach("prices", NULL)                     peer.c: the other processes
 *
 * What this hub does:
 *   - publishes a tick {"symbol":"ACME","price":...} on "prices.ACME" every 100 ms;
 *   - answers requests on "quote.*" (quote.ACME) with the latest price;
 *   - prints the orders that peers publish on "orders.new".
 *
 * Run: hub [SECONDS]     (default 10; Ctrl-C stops it earlier). Then, in other terminals,
 *      peer watch        and   peer orders      (see HUB.md)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonbus.h"

#define BUS_NAME "prices"

static void die(const char *what, int64_t rc) {
    fprintf(stderr, "hub: %s failed: %s (%" PRId64 "): %s\n", what,
            jsonbus_status_name((int32_t)rc), rc, jsonbus_last_error());
    exit(1);
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* The latest price, in cents: written by main's tick loop, read by the quote responder on a
 * dispatcher thread. One atomic is all the sharing there is - and it stays in this process. */
static atomic_long price_cents = 10000;
static atomic_int orders_seen;

static jsonbus *bus;

/* ------------------------------------------------------------------------------------------
 * Requests on "quote.*": the last token is the symbol. The request may come from any process
 * attached to the bus; jsonbus_reply sends the answer to that requester only.
 * ------------------------------------------------------------------------------------------ */
static int32_t on_quote(const jsonbus_message *req, void *user_data) {
    (void)user_data;
    const char *symbol = req->topic + strlen("quote.");
    char answer[128];
    int n;
    if (strcmp(symbol, "ACME") == 0) {
        long c = atomic_load(&price_cents);
        n = snprintf(answer, sizeof answer, "{\"symbol\":\"ACME\",\"price\":%ld.%02ld}", c / 100,
                     c % 100);
    } else {
        n = snprintf(answer, sizeof answer, "{\"symbol\":\"%.32s\",\"error\":\"unknown symbol\"}",
                     symbol);
    }
    return jsonbus_reply(bus, req, answer, (size_t)n);
}

/* Orders published by peers: msg->json is valid JSON (checked in the publishing process and
 * again here, before it was accepted). */
static int32_t on_order(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    atomic_fetch_add(&orders_seen, 1);
    printf("hub: order (seq %" PRIu64 "): %s\n", msg->seq, msg->json);
    fflush(stdout);
    return JSONBUS_OK;
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    /* 1. An ordinary bus (2 dispatcher threads: quotes are answered while orders print). */
    bus = jsonbus_new("{\"dispatcher_threads\":2}");
    if (bus == NULL) die("jsonbus_new", jsonbus_last_status());

    /* 2. Its callbacks, before serving, so that no request finds nobody to answer. */
    int64_t id = jsonbus_subscribe(bus, "quote.*", on_quote, NULL);
    if (id <= 0) die("jsonbus_subscribe(quote.*)", id);
    id = jsonbus_subscribe(bus, "orders.>", on_order, NULL);
    if (id <= 0) die("jsonbus_subscribe(orders.>)", id);

    /* 3. Serve it: from now on other processes can jsonbus_attach("prices"). Only one process
     *    serves a name at a time (JSONBUS_ERR_NAME_IN_USE otherwise); the name lives in
     *    $XDG_RUNTIME_DIR/jsonbus/ (or /tmp/jsonbus-<uid>/), private to this user. */
    int32_t rc = jsonbus_serve(bus, BUS_NAME, NULL);
    if (rc != JSONBUS_OK) die("jsonbus_serve(\"" BUS_NAME "\")", rc);
    printf("hub: serving \"%s\" for %d s\n", BUS_NAME, seconds);
    fflush(stdout);

    /* 4. The ticks: a random walk, published every 100 ms to whoever subscribed, in any
     *    process. A publish to a topic nobody subscribes to is fine (counted as unrouted). */
    srand((unsigned)time(NULL));
    int ticks = 0;
    for (int i = 0; i < seconds * 10 && !stop; i++) {
        long c = atomic_load(&price_cents) + (rand() % 21) - 10;
        if (c < 100) c = 100;
        atomic_store(&price_cents, c);
        char tick[96];
        int n = snprintf(tick, sizeof tick, "{\"symbol\":\"ACME\",\"price\":%ld.%02ld}", c / 100,
                         c % 100);
        rc = jsonbus_publish(bus, "prices.ACME", tick, (size_t)n);
        if (rc != JSONBUS_OK) die("jsonbus_publish(prices.ACME)", rc);
        ticks++;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    /* 5. The stats count for the whole logical bus; "peers" are the processes attached now. */
    char *stats = jsonbus_stats(bus);
    if (stats != NULL) {
        printf("hub: %d ticks, %d orders; stats: %s\n", ticks, atomic_load(&orders_seen), stats);
        jsonbus_string_free(stats);
    }

    /* 6. Freeing the bus stops serving: attached processes get JSONBUS_ERR_DISCONNECTED, their
     *    subscriptions end with JSONBUS_END_PEER_GONE, and the name's files are removed. */
    jsonbus_free(bus);
    return 0;
}
