/*
 * broadcast.c - one publisher, a thousand clients, and the ones that cannot keep up.
 *
 * The situation (a websocket server, as in the Go seed): every change goes to every
 * connected client. Most clients are fine; one has hung up, so writing to it fails; two are
 * on slow links. In Go you keep a mutex-protected set of channels and must notice dead
 * clients yourself. With jsonbus each client is a subscription with its own options:
 *
 *   {"max_failures":3}                          ends it after 3 failed sends in a row
 *   {"queue_limit":64,"on_full":"drop_oldest"}  a slow client skips old updates
 *   {"queue_limit":64,"on_full":"end"}          a slow client is disconnected
 *
 * and jsonbus_subscribe_with's end notice (on_end) tells you once, whatever ended it, when
 * the client's state may be freed. A policy that drops or ends never makes a publish wait.
 *
 * Run: broadcast [updates]   (default 2000, i.e. 2 million deliveries; try 10000)
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
#include <time.h>

#include "jsonbus.h"

#define CLIENTS 1000
#define DEAD_AFTER 50 /* the dead client's peer hangs up after this many updates */

enum kind { HEALTHY, DEAD, SLOW_DROP, SLOW_END };
static const char *const kind_names[] = {"healthy", "dead", "slow drop_oldest", "slow end"};
static const char *const kind_options[] = {
    NULL, /* the defaults: no limit of its own (the bus's queue_capacity bounds all) */
    "{\"max_failures\":3}",
    "{\"queue_limit\":64,\"on_full\":\"drop_oldest\"}",
    "{\"queue_limit\":64,\"on_full\":\"end\"}",
};
static const int32_t expected_end[] = {JSONBUS_END_CLOSED, JSONBUS_END_FAILED,
                                       JSONBUS_END_CLOSED, JSONBUS_END_SLOW};

static jsonbus *bus;
static uint64_t updates = 2000;

/* One connected client, malloc'd per subscription. Its callback and its end notice never
 * run at the same time, so plain fields do; totals shared by all clients are atomic. */
struct client {
    enum kind kind;
    uint64_t received, last_seq; /* callback invocations; the seq of the last one */
    int in_order;                /* healthy: seq 1, 2, 3...; the others: increasing */
    char socket[128];            /* stands in for the connection: the last frame written */
};

static atomic_int end_notices, ended_by[8], healthy_complete, problems;
/* Per kind. Read only after jsonbus_free, which has run every end notice (jsonbus_flush waits
 * for deliveries, not for an end notice that a dispatcher thread runs). */
static char *final_stats[4];

/* Calls that can fail return < 0 on error; jsonbus_last_error() says why. */
static int64_t check(const char *what, int64_t rc) {
    if (rc < 0) {
        fprintf(stderr, "broadcast: %s failed: %s: %s\n", what,
                jsonbus_status_name((int32_t)rc), jsonbus_last_error());
        exit(1);
    }
    return rc;
}

/* "Write to the client's socket": fails once the dead client's peer has gone. */
static int send_frame(struct client *c, const jsonbus_message *msg) {
    if (c->kind == DEAD && c->received > DEAD_AFTER) {
        return -1;
    }
    snprintf(c->socket, sizeof c->socket, "%s %s", msg->topic, msg->json);
    return 0;
}

/* The callback: runs on a dispatcher thread, serially for each client, in seq order. */
static int32_t on_update(const jsonbus_message *msg, void *user_data) {
    struct client *c = user_data;
    c->received++;
    if (c->kind == HEALTHY ? msg->seq != c->last_seq + 1 : msg->seq <= c->last_seq) {
        c->in_order = 0;
    }
    c->last_seq = msg->seq;
    if (c->kind == SLOW_DROP || c->kind == SLOW_END) {
        nanosleep(&(struct timespec){0, 10000000L}, NULL); /* a slow link: 10 ms per frame */
    }
    /* A negative return counts as a failure; max_failures of them in a row end it. */
    return send_frame(c, msg) == 0 ? JSONBUS_OK : -1;
}

/* The end notice: once per subscription, after its last callback returned; nothing of the
 * subscription runs after it. Its stats still work here: take them before forgetting it. */
static void on_end(int64_t id, int32_t reason, void *user_data) {
    struct client *c = user_data;
    atomic_fetch_add(&end_notices, 1);
    atomic_fetch_add(&ended_by[reason & 7], 1);
    if (reason != expected_end[c->kind] || !c->in_order) {
        atomic_fetch_add(&problems, 1);
    }
    if (c->kind == HEALTHY && c->received == updates) {
        atomic_fetch_add(&healthy_complete, 1);
    }
    if (c->kind == DEAD || c->kind == SLOW_END) {
        final_stats[c->kind] = jsonbus_subscription_stats(bus, id);
        printf("%s client ended after %" PRIu64 " updates: %s\n", kind_names[c->kind],
               c->received, jsonbus_end_reason_name(reason));
    }
    free(c);
}

static void *publisher(void *arg) {
    (void)arg;
    static const char *const symbols[] = {"ABC", "XYZ", "FOO", "BAR"};
    char topic[32], json[96];
    for (uint64_t i = 0; i < updates; i++) {
        snprintf(topic, sizeof topic, "prices.%s", symbols[i % 4]);
        int len = snprintf(json, sizeof json, "{\"sym\":\"%s\",\"price\":%" PRIu64 ".%02d}",
                           symbols[i % 4], 100 + i % 50, (int)(i % 100));
        check("jsonbus_publish", jsonbus_publish(bus, topic, json, (size_t)len));
    }
    return NULL;
}

/* The integer after "key": in a stats object (enough for this example's checks). */
static uint64_t stat(const char *json, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = json ? strstr(json, needle) : NULL;
    return p ? strtoull(p + strlen(needle), NULL, 10) : 0;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        updates = strtoull(argv[1], NULL, 10);
    }
    /* A slow callback holds a dispatcher thread while it sleeps: give the others some. */
    if ((bus = jsonbus_new("{\"dispatcher_threads\":4}")) == NULL) {
        check("jsonbus_new", jsonbus_last_status());
    }
    /* Client 0 is dead, 1 and 2 are slow, the rest are healthy. */
    int64_t ids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        struct client *c = calloc(1, sizeof *c);
        if (c == NULL) {
            return 1;
        }
        c->kind = i == 0 ? DEAD : i == 1 ? SLOW_DROP : i == 2 ? SLOW_END : HEALTHY;
        c->in_order = 1;
        ids[i] = check("jsonbus_subscribe_with",
                       jsonbus_subscribe_with(bus, "prices.>", kind_options[c->kind], on_update,
                                              on_end, c));
    }

    pthread_t thread;
    if (pthread_create(&thread, NULL, publisher, NULL) != 0) {
        return 1;
    }
    pthread_join(thread, NULL);
    check("jsonbus_flush", jsonbus_flush(bus, -1)); /* each update delivered or dropped */

    /* The live ones' stats, now. (An ended callback subscription is forgotten once its end
     * notice returned: the dead and the slow "end" client's were taken in on_end.) */
    final_stats[SLOW_DROP] = jsonbus_subscription_stats(bus, ids[1]);
    final_stats[HEALTHY] = jsonbus_subscription_stats(bus, ids[3]);
    char *bus_stats = jsonbus_stats(bus);
    /* Freeing the bus ends the 998 live subscriptions (JSONBUS_END_CLOSED); every end notice
     * has run before it returns. */
    jsonbus_free(bus);

    printf("%" PRIu64 " updates to %d clients\n", updates, CLIENTS);
    for (int k = HEALTHY; k <= SLOW_END; k++) {
        printf("%-16s %s\n", kind_names[k], final_stats[k] ? final_stats[k] : "(none)");
    }
    printf("bus              %s\n", bus_stats ? bus_stats : "(none)");
    printf("end notices: %d (", atomic_load(&end_notices));
    for (int32_t r = 1; r < 8; r++) {
        if (atomic_load(&ended_by[r]) > 0) {
            printf(" %d %s", atomic_load(&ended_by[r]), jsonbus_end_reason_name(r));
        }
    }
    printf(" ); healthy clients with every update: %d of %d\n", atomic_load(&healthy_complete),
           CLIENTS - 3);

    /* Reconcile. Each update routed to a subscription was delivered to it or dropped for it;
     * the dead and the slow "end" client were only routed what came while they were live. */
    const char *dead = final_stats[DEAD], *drop = final_stats[SLOW_DROP],
               *end = final_stats[SLOW_END];
    uint64_t routed_dead = stat(dead, "delivered") + stat(dead, "dropped");
    uint64_t routed_end = stat(end, "delivered") + stat(end, "dropped");
    int ok = atomic_load(&end_notices) == CLIENTS && atomic_load(&problems) == 0 &&
             atomic_load(&healthy_complete) == CLIENTS - 3 &&
             stat(bus_stats, "published") == updates &&
             stat(bus_stats, "delivered") + stat(bus_stats, "dropped") ==
                 (CLIENTS - 2) * updates + routed_dead + routed_end &&
             stat(dead, "delivered") == DEAD_AFTER + 3 && stat(dead, "callback_failures") == 3 &&
             routed_dead <= updates && routed_end < updates && stat(drop, "dropped") > 0 &&
             stat(drop, "delivered") + stat(drop, "dropped") == updates &&
             stat(drop, "max_queued") <= 64;
    for (int k = HEALTHY; k <= SLOW_END; k++) {
        jsonbus_string_free(final_stats[k]);
    }
    jsonbus_string_free(bus_stats);
    printf("%s\n", ok ? "all numbers reconcile" : "the numbers do NOT reconcile");
    return ok ? 0 : 1;
}
