/*
 * topics.c - a bus of your own, topics and wildcard subscriptions.
 *
 * Topics are NATS-style: tokens separated by dots, e.g. "orders.eu.new".
 * A subscription pattern may use two wildcards, each as a whole token:
 *   "*"  matches exactly one token:        "orders.*.new" matches "orders.eu.new"
 *   ">"  (last only) one or more tokens:   "orders.>"     matches "orders.eu.new.bulk"
 * A topic you publish on never contains wildcards.
 *
 * What this shows: jsonbus_new with options, jsonbus_subscribe, jsonbus_publish,
 * jsonbus_unsubscribe, jsonbus_flush, jsonbus_stats and jsonbus_close/jsonbus_free.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonbus.h"

static void die(const char *what, int64_t rc) {
    fprintf(stderr, "topics: %s failed: %s: %s\n", what, jsonbus_status_name((int32_t)rc),
            jsonbus_last_error());
    exit(1);
}

/* Each subscription gets its own user_data: a name to print and a counter. */
struct listener {
    const char *name;
    atomic_int received;
};

/* With 4 dispatcher threads, callbacks of different subscriptions run in parallel, so lines
 * of different listeners may interleave; each listener alone sees its messages in publish
 * order (msg->seq increases). */
static int32_t on_message(const jsonbus_message *msg, void *user_data) {
    struct listener *listener = user_data;
    atomic_fetch_add(&listener->received, 1);
    printf("  %-14s got seq %" PRIu64 " on %-20s %s\n", listener->name, msg->seq, msg->topic,
           msg->json);
    return JSONBUS_OK;
}

static void publish(jsonbus *bus, const char *topic, const char *json) {
    /* The payload is passed with its length: it need not be NUL-terminated. */
    int32_t rc = jsonbus_publish(bus, topic, json, strlen(json));
    if (rc != JSONBUS_OK) {
        die("jsonbus_publish", rc);
    }
}

int main(void) {
    /* Options are a JSON object; anything left out keeps its default. */
    jsonbus *bus = jsonbus_new("{\"dispatcher_threads\":4}");
    if (bus == NULL) {
        die("jsonbus_new", jsonbus_last_status());
    }

    struct listener new_orders = {"orders.*.new", 0};
    struct listener all_orders = {"orders.>", 0};
    struct listener europe = {"*.eu.*", 0};
    struct listener *listeners[] = {&new_orders, &all_orders, &europe};
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        /* Here each listener's name is also its pattern. */
        ids[i] = jsonbus_subscribe(bus, listeners[i]->name, on_message, listeners[i]);
        if (ids[i] <= 0) {
            die("jsonbus_subscribe", ids[i]);
        }
    }

    printf("publishing:\n");
    publish(bus, "orders.us.new", "{\"id\":1,\"qty\":10}");       /* orders.*.new, orders.> */
    publish(bus, "orders.eu.new", "{\"id\":2,\"qty\":5}");        /* all three */
    publish(bus, "orders.eu.cancel", "{\"id\":2}");              /* orders.>, *.eu.* */
    publish(bus, "stock.eu.low", "{\"sku\":\"A-17\",\"left\":3}"); /* *.eu.* */
    publish(bus, "orders.us.new.bulk", "[{\"id\":3},{\"id\":4}]");  /* orders.> (4 tokens) */
    publish(bus, "orders", "{\"note\":\"no token after orders\"}"); /* nobody: '>' needs 1+ */

    /* Wait until the callbacks of everything above have returned. */
    int32_t rc = jsonbus_flush(bus, -1);
    if (rc != JSONBUS_OK) {
        die("jsonbus_flush", rc);
    }

    /* Unsubscribing from outside a callback waits for a running call of that callback to
     * finish; once it returns, user_data may be freed. */
    rc = jsonbus_unsubscribe(bus, ids[1]);
    if (rc != JSONBUS_OK) {
        die("jsonbus_unsubscribe", rc);
    }
    printf("unsubscribed %s; publishing orders.us.cancel, which no one receives\n",
           all_orders.name);
    publish(bus, "orders.us.cancel", "{\"id\":1}");
    rc = jsonbus_flush(bus, -1);
    if (rc != JSONBUS_OK) {
        die("jsonbus_flush", rc);
    }

    for (int i = 0; i < 3; i++) {
        printf("%-14s received %d\n", listeners[i]->name, atomic_load(&listeners[i]->received));
    }

    /* "unrouted" counts the two messages that matched no subscription. */
    char *stats = jsonbus_stats(bus);
    if (stats == NULL) {
        die("jsonbus_stats", jsonbus_last_status());
    }
    printf("stats: %s\n", stats);
    jsonbus_string_free(stats);

    /* Close: stop accepting, deliver what is queued (here: up to 1 s), join the threads.
     * Then free the handle. (jsonbus_free alone would also close, without a time limit.) */
    rc = jsonbus_close(bus, 1000);
    if (rc != JSONBUS_OK) {
        die("jsonbus_close", rc);
    }
    jsonbus_free(bus);

    int ok = atomic_load(&new_orders.received) == 2 && atomic_load(&all_orders.received) == 4 &&
             atomic_load(&europe.received) == 3;
    if (!ok) {
        fprintf(stderr, "topics: unexpected counts (expected 2, 4 and 3)\n");
        return 1;
    }
    return 0;
}
