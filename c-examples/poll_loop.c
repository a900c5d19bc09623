/*
 * poll_loop.c - jsonbus inside your own event loop: pull subscriptions and poll(2).
 *
 * Callbacks run on jsonbus's threads. A program built around an event loop (poll, epoll,
 * libuv, GLib) would rather handle messages on the loop's own thread, next to its sockets
 * and timers, without locks. A pull subscription has no callback: it queues messages until
 * you take them.
 *
 *   jsonbus_subscribe_pull(bus, pattern, options)   a subscription without a callback
 *   jsonbus_pull_fd(bus, id)                        readable while a message waits
 *   jsonbus_next(bus, id, 0, &msg)                  take one (0 = don't wait)
 *   jsonbus_message_release(msg)                    give it back, once per message
 *
 * A producer thread publishes orders and a few alerts; the loop waits on both descriptors
 * and on a 250 ms timer (poll's timeout), and stops after each stream's last message
 * ("orders.done", "alerts.done"). POSIX only: on Windows jsonbus_pull_fd returns
 * JSONBUS_ERR_UNSUPPORTED.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonbus.h"

#define ORDERS 3000
#define ALERT_EVERY 600 /* one alert per 600 orders: 5 in all */
#define TICK_MS 250

static jsonbus *bus;
static uint64_t amount_sent; /* written by the producer, read after pthread_join */

/* Calls that can fail return < 0 on error; jsonbus_last_error() says why. */
static int64_t check(const char *what, int64_t rc) {
    if (rc < 0) {
        fprintf(stderr, "poll_loop: %s failed: %s: %s\n", what,
                jsonbus_status_name((int32_t)rc), jsonbus_last_error());
        exit(1);
    }
    return rc;
}

static void publish(const char *topic, const char *json) {
    check("jsonbus_publish", jsonbus_publish(bus, topic, json, strlen(json)));
}

/* The producer: about 1.5 s of orders, then one last message on each stream. */
static void *producer(void *arg) {
    (void)arg;
    char json[64];
    for (int i = 1; i <= ORDERS; i++) {
        snprintf(json, sizeof json, "{\"id\":%d,\"amount\":%d}", i, i % 100);
        publish("orders.new", json);
        amount_sent += (uint64_t)(i % 100);
        if (i % ALERT_EVERY == 0) {
            snprintf(json, sizeof json, "{\"after_order\":%d}", i);
            publish("alerts.volume", json);
        }
        if (i % 4 == 0) {
            nanosleep(&(struct timespec){0, 2000000L}, NULL); /* 2 ms */
        }
    }
    publish("orders.done", "{}");
    publish("alerts.done", "{}");
    return NULL;
}

/* What the loop knows about one pull subscription. Only the loop's thread touches it. */
struct stream {
    int64_t id;
    uint64_t taken, amount, last_seq;
    int done, in_order;
};

/* Handle one message, on the loop's thread. */
static void handle(struct stream *s, const jsonbus_message *msg) {
    s->in_order &= msg->seq > s->last_seq; /* a subscription hands out in seq order... */
    s->last_seq = msg->seq;
    if (strstr(msg->topic, ".done") != NULL) {
        s->done = 1; /* ...so everything before this on the stream has been taken */
        return;
    }
    s->taken++;
    const char *amount = strstr(msg->json, "\"amount\":");
    if (amount != NULL) {
        s->amount += strtoull(amount + 9, NULL, 10);
    } else {
        printf("  alert #%" PRIu64 " on %s: %s\n", msg->seq, msg->topic, msg->json);
    }
}

/* The descriptor said "readable": take everything waiting, without blocking the loop. */
static void drain(struct stream *s) {
    jsonbus_message *msg;
    int32_t rc;
    while ((rc = jsonbus_next(bus, s->id, 0, &msg)) == JSONBUS_OK) {
        handle(s, msg);
        jsonbus_message_release(msg); /* until then it counts against queue_capacity */
    }
    if (rc != JSONBUS_ERR_TIMEOUT) { /* TIMEOUT: nothing more for now */
        check("jsonbus_next", rc);   /* ENDED: the subscription ended (the message says why) */
    }
}

/* Any monotonic clock will do; jsonbus_now_ns() is one. */
static int64_t now_ms(void) { return (int64_t)(jsonbus_now_ns() / 1000000); }

int main(void) {
    if ((bus = jsonbus_new(NULL)) == NULL) {
        check("jsonbus_new", jsonbus_last_status());
    }
    /* Orders: at most 256 waiting; with "block" (the default on_full) a publish then waits
     * until the loop takes one, so nothing is lost. Alerts: no limit of their own. */
    const char *patterns[2] = {"orders.*", "alerts.*"};
    const char *options[2] = {"{\"queue_limit\":256}", NULL};
    struct stream streams[2] = {{.in_order = 1}, {.in_order = 1}};
    struct pollfd fds[2];
    for (int i = 0; i < 2; i++) {
        streams[i].id = check("jsonbus_subscribe_pull",
                              jsonbus_subscribe_pull(bus, patterns[i], options[i]));
        /* jsonbus owns the descriptor: poll it, never read, write or close it. */
        fds[i].fd = (int)check("jsonbus_pull_fd", jsonbus_pull_fd(bus, streams[i].id));
        fds[i].events = POLLIN;
    }

    pthread_t thread;
    if (pthread_create(&thread, NULL, producer, NULL) != 0) {
        return 1;
    }

    /* The loop. poll's timeout is the timer: it wakes us at the next tick at the latest. */
    int ticks = 0;
    int64_t next_tick = now_ms() + TICK_MS;
    while (!streams[0].done || !streams[1].done) {
        int64_t wait = next_tick - now_ms();
        if (poll(fds, 2, wait > 0 ? (int)wait : 0) < 0 && errno != EINTR) {
            perror("poll");
            return 1;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].revents & POLLIN) { /* level-triggered: readable while a message waits */
                drain(&streams[i]);
            }
        }
        if (now_ms() >= next_tick) {
            next_tick += TICK_MS;
            printf("tick %d: %4" PRIu64 " orders (amount %6" PRIu64 "), %" PRIu64 " alerts\n",
                   ++ticks, streams[0].taken, streams[0].amount, streams[1].taken);
        }
    }
    pthread_join(thread, NULL);

    char *stats = jsonbus_subscription_stats(bus, streams[0].id); /* kind "pull" */
    printf("orders subscription: %s\n", stats ? stats : "(none)");
    jsonbus_string_free(stats);
    /* Unsubscribing releases a pull subscription; jsonbus closes its descriptor. */
    for (int i = 0; i < 2; i++) {
        check("jsonbus_unsubscribe", jsonbus_unsubscribe(bus, streams[i].id));
    }
    /* Every message was handed out once (orders, alerts, the two "done"); none dropped. */
    char expected[64];
    snprintf(expected, sizeof expected, "\"delivered\":%d,", ORDERS + ORDERS / ALERT_EVERY + 2);
    stats = jsonbus_stats(bus);
    printf("bus: %s\n", stats ? stats : "(none)");
    int ok = stats && strstr(stats, expected) && strstr(stats, "\"dropped\":0,");
    jsonbus_string_free(stats);
    jsonbus_free(bus);

    printf("%" PRIu64 " orders (amount %" PRIu64 "), %" PRIu64 " alerts, %d ticks\n",
           streams[0].taken, streams[0].amount, streams[1].taken, ticks);
    ok = ok && streams[0].taken == ORDERS && streams[0].amount == amount_sent &&
         streams[1].taken == ORDERS / ALERT_EVERY && streams[0].in_order && streams[1].in_order;
    if (!ok) {
        fprintf(stderr, "poll_loop: unexpected counts\n");
    }
    return ok ? 0 : 1;
}
