/*
 * timeout.c - wait for an answer or a deadline, whichever comes first: the seed 003 shape.
 *
 * The Go seed's process selects on a reply channel and time.After. Here a process asks for
 * an approval with jsonbus_request_async (its callback gets the answer on a dispatcher
 * thread) and arms its own deadline with jsonbus_publish_after, a message to itself on
 * "deadline.<n>" that a subscription of its own receives. Exactly one of the two wins:
 *
 *   - the answer comes first: its callback cancels the timer; jsonbus_cancel returning
 *     JSONBUS_OK proves the deadline message will never be published;
 *   - the deadline comes first: jsonbus_cancel returns JSONBUS_ERR_NOT_FOUND (the timer has
 *     fired), and the deadline's subscription has taken the decision.
 *
 * The approver answers later from a thread of its own: its callback only copies reply_to
 * (valid during the callback only), and the thread publishes the answer on it after
 * "thinking". Attempt 1 is answered in 10 ms against a 200 ms deadline; attempt 2 in 300 ms
 * against 50 ms.
 *
 * Run: timeout        (exits 0 only if attempt 1 is approved and attempt 2 hits its deadline)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonbus.h"

static jsonbus *bus;

/* ---- the approver: takes requests, answers each after its think time ---- */

struct pending {
    char reply_to[300];
    int think_ms;
};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static struct pending inbox[8];
static int queued, stopping;

static int32_t approver(const jsonbus_message *req, void *user_data) {
    (void)user_data;
    const char *think = strstr(req->json, "\"think_ms\":");
    pthread_mutex_lock(&lock);
    if (queued < 8) {
        /* copy reply_to now: the message is gone once this callback returns */
        memcpy(inbox[queued].reply_to, req->reply_to, req->reply_to_len + 1);
        inbox[queued].think_ms = think ? atoi(think + 11) : 0;
        queued++;
        pthread_cond_signal(&more);
    }
    pthread_mutex_unlock(&lock);
    return JSONBUS_OK;
}

static void *approver_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (queued == 0 && !stopping) pthread_cond_wait(&more, &lock);
        if (queued == 0) break;
        struct pending p = inbox[0];
        memmove(inbox, inbox + 1, sizeof inbox[0] * (size_t)--queued);
        pthread_mutex_unlock(&lock);
        struct timespec ts = {p.think_ms / 1000, (long)(p.think_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        /* any thread may answer, any time later: publish on the copied reply topic */
        jsonbus_publish(bus, p.reply_to, "{\"approved\":true}", 17);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* ---- the process: one attempt = a request and a deadline ---- */

enum { UNDECIDED, APPROVED, DEADLINE };

struct attempt {
    int n;
    int64_t timer;      /* the deadline's timer id */
    atomic_int outcome; /* UNDECIDED until one side wins */
    atomic_int answers; /* reply callbacks run (exactly one per request) */
};
static struct attempt attempts[2];

/* The request's callback: the approval, or TIMEOUT / CLOSED (not used here: -1 below). */
static void on_answer(int32_t status, const jsonbus_message *reply, void *user_data) {
    struct attempt *a = user_data;
    if (status == JSONBUS_OK && jsonbus_cancel(bus, a->timer) == JSONBUS_OK) {
        int expected = UNDECIDED;
        atomic_compare_exchange_strong(&a->outcome, &expected, APPROVED);
        printf("attempt %d: approved (%s), deadline cancelled\n", a->n, reply->json);
    } else {
        printf("attempt %d: the answer came after the deadline (%s), ignored\n", a->n,
               status == JSONBUS_OK ? reply->json : jsonbus_status_name(status));
    }
    atomic_fetch_add(&a->answers, 1);
}

/* The deadline's subscription: the timer fired before an answer cancelled it. */
static int32_t on_deadline(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    int n = atoi(msg->topic + strlen("deadline."));
    int expected = UNDECIDED;
    if (atomic_compare_exchange_strong(&attempts[n - 1].outcome, &expected, DEADLINE))
        printf("attempt %d: deadline passed, giving up\n", n);
    return JSONBUS_OK;
}

static int ask(int n, int think_ms, int deadline_ms) {
    struct attempt *a = &attempts[n - 1];
    a->n = n;
    char topic[32], body[64];
    snprintf(topic, sizeof topic, "deadline.%d", n);
    int len = snprintf(body, sizeof body, "{\"attempt\":%d}", n);
    /* the deadline first, so that the answer's callback always has a timer to cancel */
    a->timer = jsonbus_publish_after(bus, topic, body, (size_t)len, deadline_ms);
    if (a->timer <= 0) return 0;
    len = snprintf(body, sizeof body, "{\"attempt\":%d,\"think_ms\":%d}", n, think_ms);
    /* timeout_ms -1: the deadline timer above is the time limit this example shows (the
     * request's own timeout_ms would give on_answer JSONBUS_ERR_TIMEOUT instead) */
    return jsonbus_request_async(bus, "approvals", body, (size_t)len, -1, on_answer, a) ==
           JSONBUS_OK;
}

int main(void) {
    bus = jsonbus_new(NULL);
    if (bus == NULL) return 1;
    pthread_t approver_th;
    pthread_create(&approver_th, NULL, approver_thread, NULL);
    if (jsonbus_subscribe(bus, "approvals", approver, NULL) <= 0) return 1;
    if (jsonbus_subscribe(bus, "deadline.*", on_deadline, NULL) <= 0) return 1;

    int sent = ask(1, 10, 200) && ask(2, 300, 50);
    /* wait for both answers (the late one too), then stop */
    for (int i = 0; sent && i < 5000 && (atomic_load(&attempts[0].answers) < 1 ||
                                         atomic_load(&attempts[1].answers) < 1);
         i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    jsonbus_flush(bus, 5000);
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&more);
    pthread_mutex_unlock(&lock);
    pthread_join(approver_th, NULL);
    jsonbus_close(bus, -1);
    jsonbus_free(bus);

    int ok = sent && atomic_load(&attempts[0].outcome) == APPROVED &&
             atomic_load(&attempts[1].outcome) == DEADLINE &&
             atomic_load(&attempts[0].answers) == 1 && atomic_load(&attempts[1].answers) == 1;
    printf("%s\n", ok ? "ok: attempt 1 approved, attempt 2 hit its deadline" : "FAILED");
    return ok ? 0 : 1;
}
