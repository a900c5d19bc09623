/*
 * soak: jsonbus under mixed load for a while, with every delivery checked (issue 4:
 * never crash, never lose a message, never call a callback after it was told not to).
 *
 * Usage: soak [seconds]        (or JSONBUS_SOAK_SECONDS; default 5; ctest runs 5 s,
 *                               the full run in tests/sanitizers.sh is 60 s)
 *        JSONBUS_SOAK_FLUSH_MS  how long each flush may take (default 20000)
 *
 * 8 threads for the whole run:
 *   4 publishers  publish {"p":P,"n":N,...} on "t.P.K" (K = N % 4) into one of 3 bus slots;
 *                 N counts the messages publisher P got accepted on that slot's bus (0, 1,
 *                 2, ...: a refused publish reuses its N). Now and then flush(bus, 0).
 *   2 subscribers subscribe with a random pattern (t.>, t.P.>, t.*.K, t.P.K, >, t.*.*),
 *                 live 0-15 ms, then flush and unsubscribe, and check the subscription got
 *                 every matching message that was published after subscribe returned and
 *                 whose publish returned before the flush began, exactly once and in order.
 *                 Some subscriptions end themselves after a budget of messages: by
 *                 returning JSONBUS_UNSUBSCRIBE or by calling jsonbus_unsubscribe(own id).
 *   1 monitor     snapshots what publishers got accepted, flushes, checks the bus's witness
 *                 subscription got at least that; checks stats "queued" <= queue_capacity
 *                 and the process RSS.
 *   1 churner     closes a slot's bus (time limit 0-50 ms) while the others keep using it,
 *                 checks what close promised, frees it and makes a new one with random
 *                 options; uses the quick API on the default bus and shuts it down.
 * Every bus has a witness subscription on "t.>" (checks each publisher's N arrive as 0, 1,
 * 2, ... with no gap or repeat), an echo subscription that re-publishes some messages into its
 * own bus ("e.P", re-entrant publish) and into the default bus (push_json), and sometimes
 * subscribes a child from inside the callback that ends itself after 3 messages; an "e.>"
 * witness counts echoes.
 *
 * Per subscription: its state is poisoned right after it is known to be final (unsubscribe
 * returned OK, or it ended itself and its last callback finished, or its bus was closed) and
 * freed later (a quarantine of 4096): a callback that runs afterwards fails the magic check,
 * or under AddressSanitizer is a use-after-free. A flag catches a callback overlapping itself.
 *
 * At the end: every bus closed with no time limit must have delivered everything; delivered
 * in the stats = callback invocations; thread count back to the start; counts printed.
 */
#define _GNU_SOURCE 1
#include "../c/check.h"

#ifdef _WIN32
#define PSAPI_VERSION 2 /* K32GetProcessMemoryInfo, in kernel32 */
#include <psapi.h>
#else
#include <unistd.h>
#endif

#define NPUB 4
#define NSLOT 3
#define QUARANTINE 4096
#define MAGIC_LIVE 0x5eb5c0de11fe00dULL
#define MAGIC_DEAD 0xdeaddeaddeaddeadULL

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* ---- random ------------------------------------------------------------------------------ */
static _Thread_local uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ULL + 1; }
static uint32_t rnd(uint32_t n) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return n ? (uint32_t)((x >> 11) % n) : 0;
}

/* ---- global counters ---------------------------------------------------------------------- */
static atomic_int stop;
static atomic_llong n_published, n_echo_published, n_echo_full, n_callbacks, n_subs, n_subs_checked,
    n_budget_ended, n_self_unsub, n_children, n_buses, n_closes_timeout, n_flush_checks,
    n_default_pushes, n_default_received, n_rejected_closed, n_rejected_full, n_checked_msgs;

/* ---- per-bus context ---------------------------------------------------------------------- */
struct sub;
struct busctx {
    jsonbus *bus;
    int slot;
    long long gen;
    long capacity;
    atomic_llong invocations; /* callback invocations on this bus (= stats "delivered") */
    atomic_llong echo_accepted;
    atomic_int closing; /* set before jsonbus_close is called */
    atomic_int closed;  /* set after jsonbus_close returned */
    atomic_llong accepted[NPUB]; /* messages of publisher P accepted on this bus */
    pthread_mutex_t lock;        /* children and graveyard */
    struct sub *final_at_close;  /* states freed once close has returned */
    struct sub *witness, *ewitness, *echo;
};

/* ---- subscription state --------------------------------------------------------------------- */
enum kind { K_WATCH, K_BUDGET, K_SELF_UNSUB, K_WITNESS, K_EWITNESS, K_ECHO, K_CHILD };

struct sub {
    uint64_t magic;
    atomic_int in_cb;
    atomic_int done; /* set as the last touch of the state by a callback that ended it */
    enum kind kind;
    struct busctx *ctx;
    int64_t id;
    int pfilter; /* -1 any publisher */
    int kfilter; /* -1 any K */
    int t_only;  /* pattern matches only t.* topics */
    int budget;
    int count;
    atomic_llong first[NPUB], last[NPUB]; /* the witness's are read by the monitor */
    long long received;
    struct sub *next; /* in busctx.final_at_close */
};

static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sub *quarantine[QUARANTINE];
static int quarantine_pos;

/* The state is final: no callback may touch it again. Poison now, free later. */
static void retire(struct sub *s) {
    s->magic = MAGIC_DEAD;
    s->kind = (enum kind)-1;
    s->ctx = NULL;
    pthread_mutex_lock(&quarantine_lock);
    struct sub *old = quarantine[quarantine_pos];
    quarantine[quarantine_pos] = s;
    quarantine_pos = (quarantine_pos + 1) % QUARANTINE;
    pthread_mutex_unlock(&quarantine_lock);
    free(old);
}

static struct sub *new_sub(enum kind kind, struct busctx *ctx) {
    struct sub *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    s->magic = MAGIC_LIVE;
    s->kind = kind;
    s->ctx = ctx;
    s->pfilter = -1;
    s->kfilter = -1;
    for (int p = 0; p < NPUB; p++) s->first[p] = s->last[p] = -1;
    return s;
}

static void defer_to_close(struct busctx *ctx, struct sub *s) {
    pthread_mutex_lock(&ctx->lock);
    s->next = ctx->final_at_close;
    ctx->final_at_close = s;
    pthread_mutex_unlock(&ctx->lock);
}

/* ---- slots --------------------------------------------------------------------------------- */
/* A writer-preferring read/write lock from portable pieces (glibc's
 * PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP is not elsewhere): readers pass a turnstile
 * mutex on their way in, and a writer holds the turnstile while it waits, so the churner is
 * not starved by the publishers' back-to-back read locks. Like the glibc kind, not recursive:
 * a thread never takes a read lock it already holds. */
struct wlock {
    pthread_mutex_t turnstile;
    pthread_rwlock_t rw;
};
static void wlock_init(struct wlock *l) {
    CHECK_EQ(pthread_mutex_init(&l->turnstile, NULL), 0);
    CHECK_EQ(pthread_rwlock_init(&l->rw, NULL), 0);
}
static void wlock_destroy(struct wlock *l) {
    pthread_rwlock_destroy(&l->rw);
    pthread_mutex_destroy(&l->turnstile);
}
static void wlock_read(struct wlock *l) {
    pthread_mutex_lock(&l->turnstile);
    pthread_mutex_unlock(&l->turnstile);
    pthread_rwlock_rdlock(&l->rw);
}
static void wlock_write(struct wlock *l) {
    pthread_mutex_lock(&l->turnstile);
    pthread_rwlock_wrlock(&l->rw);
    pthread_mutex_unlock(&l->turnstile);
}
static void wlock_unlock(struct wlock *l) { pthread_rwlock_unlock(&l->rw); }

struct slot {
    struct wlock lock; /* read: using the bus; write: freeing/replacing it */
    struct busctx *ctx;
    /* per publisher: N of the publish in flight (started) and of the last accepted (returned) */
    atomic_llong started[NPUB], returned[NPUB];
};
static struct slot slots[NSLOT];

static int32_t callback(const jsonbus_message *msg, void *user_data);

/* ---- the callback ---------------------------------------------------------------------------- */

static int parse(const jsonbus_message *msg, int *p, long long *n) {
    if (msg->topic[0] != 't' && msg->topic[0] != 'e') FAIL("unexpected topic %s", msg->topic);
    if (sscanf(msg->json, "{\"p\":%d,\"n\":%lld", p, n) != 2 || *p < 0 || *p >= NPUB || *n < 0)
        FAIL("unexpected payload %s on %s", msg->json, msg->topic);
    if (msg->json[msg->json_len] != '\0') FAIL("payload not NUL-terminated");
    return msg->topic[0] == 't';
}

/* Per-publisher order: after the first message of P this subscription saw, each next one of
 * P must be exactly the next matching N (no gap: nothing lost; no repeat; in order). */
static void check_order(struct sub *s, int p, long long n, const char *topic) {
    long long step = s->kfilter >= 0 ? 4 : 1;
    if (s->pfilter >= 0 && p != s->pfilter) FAIL("sub %lld (P=%d) got %s", (long long)s->id, s->pfilter, topic);
    if (s->kfilter >= 0 && n % 4 != s->kfilter) FAIL("sub %lld (K=%d) got %s n=%lld", (long long)s->id, s->kfilter, topic, n);
    if (s->last[p] >= 0 && n != s->last[p] + step)
        FAIL("subscription %lld (kind %d, bus gen %lld): publisher %d's message %lld after %lld "
             "(expected %lld): lost, repeated or out of order",
             (long long)s->id, (int)s->kind, s->ctx->gen, p, n, s->last[p], s->last[p] + step);
    if (s->first[p] < 0) s->first[p] = n;
    s->last[p] = n;
}

static int32_t default_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&n_default_received, 1);
    return JSONBUS_OK;
}

static int32_t callback(const jsonbus_message *msg, void *user_data) {
    struct sub *s = user_data;
    if (s->magic != MAGIC_LIVE)
        FAIL("callback for subscription %lld after it was final (state poisoned)",
             (long long)msg->subscription);
    if (atomic_exchange(&s->in_cb, 1) != 0)
        FAIL("callback of subscription %lld overlaps itself", (long long)msg->subscription);
    if (atomic_load(&s->done)) FAIL("callback of subscription %lld after it ended itself", (long long)msg->subscription);
    if (s->id != 0 && s->id != msg->subscription)
        FAIL("msg->subscription %lld, expected %lld", (long long)msg->subscription, (long long)s->id);
    struct busctx *ctx = s->ctx;
    atomic_fetch_add(&ctx->invocations, 1);
    atomic_fetch_add(&n_callbacks, 1);
    int p;
    long long n;
    int is_t = parse(msg, &p, &n);
    s->received++;
    int32_t ret = JSONBUS_OK;
    switch (s->kind) {
    case K_WITNESS:
    case K_WATCH:
        if (is_t) check_order(s, p, n, msg->topic);
        else if (s->t_only) FAIL("t-only subscription got %s", msg->topic);
        break;
    case K_EWITNESS:
        if (is_t) FAIL("e.> got %s", msg->topic);
        break;
    case K_BUDGET:
    case K_SELF_UNSUB:
    case K_CHILD:
        if (is_t) check_order(s, p, n, msg->topic);
        if (++s->count == s->budget) {
            if (s->kind == K_SELF_UNSUB) {
                int32_t rc = jsonbus_unsubscribe(ctx->bus, msg->subscription);
                /* NOT_FOUND when its owner unsubscribed it meanwhile (that call waits for
                 * this callback) or the bus is closing */
                if (rc != JSONBUS_OK && rc != JSONBUS_ERR_NOT_FOUND)
                    FAIL("self-unsubscribe: %s", jsonbus_status_name(rc));
                atomic_fetch_add(&n_self_unsub, 1);
            } else {
                ret = JSONBUS_UNSUBSCRIBE;
                atomic_fetch_add(&n_budget_ended, 1);
            }
            atomic_store(&s->in_cb, 0);
            atomic_store(&s->done, 1); /* last touch of s */
            return ret;
        }
        break;
    case K_ECHO:
        if (is_t && n % 8 == 0) {
            /* re-entrant publish into the own bus: never waits; FULL at once if full */
            int32_t rc = jsonbus_publish(ctx->bus, msg->topic[2] == '0' ? "e.0" : "e.x", msg->json,
                                         msg->json_len);
            if (rc == JSONBUS_OK) {
                atomic_fetch_add(&ctx->echo_accepted, 1);
                atomic_fetch_add(&n_echo_published, 1);
            } else if (rc == JSONBUS_ERR_FULL) {
                atomic_fetch_add(&n_echo_full, 1);
            } else if (rc != JSONBUS_ERR_CLOSED) {
                FAIL("echo publish: %s: %s", jsonbus_status_name(rc), jsonbus_last_error());
            }
        }
        if (is_t && n % 64 == 0) {
            /* into another bus: the default one (may be shutting down meanwhile) */
            int32_t rc = push_json(msg->json);
            if (rc != JSONBUS_OK && rc != JSONBUS_ERR_CLOSED && rc != JSONBUS_ERR_FULL)
                FAIL("push_json from a callback: %s", jsonbus_status_name(rc));
        }
        if (is_t && n % 128 == 0) {
            /* subscribe from inside a callback: a child that ends itself after 3 messages */
            struct sub *c = new_sub(K_CHILD, ctx);
            c->budget = 3;
            c->t_only = 1;
            c->pfilter = p;
            char pattern[32];
            snprintf(pattern, sizeof pattern, "t.%d.>", p);
            int64_t id = jsonbus_subscribe(ctx->bus, pattern, callback, c);
            if (id > 0) {
                atomic_fetch_add(&n_children, 1);
                defer_to_close(ctx, c); /* freed once the bus is closed */
            } else if (id == JSONBUS_ERR_CLOSED) {
                retire(c);
            } else {
                FAIL("subscribe from a callback: %s", jsonbus_status_name((int32_t)id));
            }
            /* c may have ended itself already (it only takes messages from now on, though) */
        }
        break;
    default:
        FAIL("bad kind");
    }
    atomic_store(&s->in_cb, 0);
    return ret;
}

/* How long a flush may take: 20 s, or $JSONBUS_SOAK_FLUSH_MS (the valgrind run, where a full
 * 65,536-message bus drains 50-100 times slower, gives 180 s). */
static int32_t flush_ms = 20000;

/* ---- buses ------------------------------------------------------------------------------------ */

static struct busctx *make_bus(int slot, long long gen) {
    static const long caps[] = {4, 64, 1024, 65536};
    static const int timeouts[] = {-1, 0, 5};
    struct busctx *ctx = calloc(1, sizeof *ctx);
    CHECK(ctx != NULL);
    ctx->slot = slot;
    ctx->gen = gen;
    ctx->capacity = caps[rnd(4)];
    pthread_mutex_init(&ctx->lock, NULL);
    char options[200];
    snprintf(options, sizeof options,
             "{\"dispatcher_threads\":%u,\"queue_capacity\":%ld,\"publish_timeout_ms\":%d}",
             1 + rnd(3), ctx->capacity, timeouts[rnd(3)]);
    ctx->bus = NEW_BUS(options);
    ctx->witness = new_sub(K_WITNESS, ctx);
    ctx->witness->t_only = 1;
    ctx->witness->id = SUBSCRIBE(ctx->bus, "t.>", callback, ctx->witness);
    ctx->ewitness = new_sub(K_EWITNESS, ctx);
    ctx->ewitness->id = SUBSCRIBE(ctx->bus, "e.>", callback, ctx->ewitness);
    ctx->echo = new_sub(K_ECHO, ctx);
    ctx->echo->id = SUBSCRIBE(ctx->bus, "t.*.0", callback, ctx->echo);
    atomic_fetch_add(&n_buses, 1);
    return ctx;
}

/* Closes (time limit timeout_ms) while others may still use it; the caller then holds the write
 * lock of the slot and this checks what close promised and frees everything. */
static int32_t close_bus(struct busctx *ctx, int timeout_ms) {
    atomic_store(&ctx->closing, 1);
    int32_t rc = jsonbus_close(ctx->bus, timeout_ms);
    atomic_store(&ctx->closed, 1);
    if (rc != JSONBUS_OK && rc != JSONBUS_ERR_TIMEOUT)
        FAIL("jsonbus_close: %s: %s", jsonbus_status_name(rc), jsonbus_last_error());
    return rc;
}

static void check_and_free_bus(struct busctx *ctx, int32_t close_rc) {
    /* only called with the slot's write lock: no publish in flight */
    long long accepted = 0;
    for (int p = 0; p < NPUB; p++) {
        long long a = atomic_load(&ctx->accepted[p]);
        accepted += a;
        long long last = ctx->witness->last[p];
        if (close_rc == JSONBUS_OK && last != a - 1)
            FAIL("bus gen %lld closed without discarding, but its witness got publisher %d's "
                 "messages up to %lld of %lld",
                 ctx->gen, p, last, a - 1);
        if (last > a - 1) FAIL("witness got more than was accepted");
    }
    long long echoes = atomic_load(&ctx->echo_accepted);
    if (close_rc == JSONBUS_OK && ctx->ewitness->received != echoes)
        FAIL("bus gen %lld: %lld echoes accepted, e-witness got %lld", ctx->gen, echoes,
             ctx->ewitness->received);
    long long published = STAT(ctx->bus, "published");
    long long delivered = STAT(ctx->bus, "delivered");
    long long dropped = STAT(ctx->bus, "dropped");
    long long queued = STAT(ctx->bus, "queued");
    long long subs = STAT(ctx->bus, "subscriptions");
    CHECK_EQ(published, accepted + echoes);
    CHECK_EQ(delivered, atomic_load(&ctx->invocations));
    CHECK_EQ(queued, 0);
    CHECK_EQ(subs, 0);
    if (close_rc == JSONBUS_ERR_TIMEOUT) {
        CHECK_MSG(dropped > 0, "close returned TIMEOUT but nothing was dropped");
        atomic_fetch_add(&n_closes_timeout, 1);
    }
    /* After close returned no callback runs: every state of this bus is final. */
    CHECK_EQ(jsonbus_unsubscribe(ctx->bus, ctx->witness->id), JSONBUS_ERR_NOT_FOUND);
    jsonbus_free(ctx->bus);
    retire(ctx->witness);
    retire(ctx->ewitness);
    retire(ctx->echo);
    struct sub *s = ctx->final_at_close;
    while (s) {
        struct sub *next = s->next;
        retire(s);
        s = next;
    }
    pthread_mutex_destroy(&ctx->lock);
    memset(ctx, 0xa5, sizeof *ctx);
    free(ctx);
}

/* ---- threads ---------------------------------------------------------------------------------- */

static void *publisher(void *arg) {
    int p = (int)(intptr_t)arg;
    rng_seed(100 + (uint64_t)p);
    char json[400];
    char pad[257];
    memset(pad, 'x', 256);
    pad[256] = 0;
    while (!atomic_load(&stop)) {
        int si = (int)rnd(NSLOT);
        struct slot *sl = &slots[si];
        wlock_read(&sl->lock);
        struct busctx *ctx = sl->ctx;
        for (int burst = 1 + (int)rnd(64); burst > 0 && !atomic_load(&stop); burst--) {
            long long n = atomic_load(&ctx->accepted[p]);
            char topic[32];
            snprintf(topic, sizeof topic, "t.%d.%lld", p, n % 4);
            int len = snprintf(json, sizeof json, "{\"p\":%d,\"n\":%lld,\"g\":%lld,\"pad\":\"%.*s\"}", p,
                               n, ctx->gen, (int)rnd(200), pad);
            atomic_store(&sl->started[p], n);
            int32_t rc = jsonbus_publish(ctx->bus, topic, json, (size_t)len);
            if (rc == JSONBUS_OK) {
                atomic_store(&ctx->accepted[p], n + 1);
                atomic_store(&sl->returned[p], n);
                atomic_fetch_add(&n_published, 1);
            } else if (rc == JSONBUS_ERR_CLOSED) {
                atomic_fetch_add(&n_rejected_closed, 1);
                break;
            } else if (rc == JSONBUS_ERR_FULL) {
                atomic_fetch_add(&n_rejected_full, 1);
                sleep_us(100);
            } else {
                FAIL("publish: %s: %s", jsonbus_status_name(rc), jsonbus_last_error());
            }
        }
        if (rnd(16) == 0) {
            int32_t rc = jsonbus_flush(ctx->bus, 0);
            if (rc != JSONBUS_OK && rc != JSONBUS_ERR_TIMEOUT && rc != JSONBUS_ERR_CLOSED)
                FAIL("flush(0): %s", jsonbus_status_name(rc));
        }
        wlock_unlock(&sl->lock);
    }
    return NULL;
}

static void *subscriber(void *arg) {
    int me = (int)(intptr_t)arg;
    rng_seed(200 + (uint64_t)me);
    while (!atomic_load(&stop)) {
        int si = (int)rnd(NSLOT);
        struct slot *sl = &slots[si];
        wlock_read(&sl->lock);
        struct busctx *ctx = sl->ctx;
        int which = (int)rnd(6);
        uint32_t r = rnd(10);
        enum kind kind = r < 6 ? K_WATCH : r < 8 ? K_BUDGET : K_SELF_UNSUB;
        struct sub *s = new_sub(kind, ctx);
        s->budget = 1 + (int)rnd(100);
        char pattern[32];
        int P = (int)rnd(NPUB), K = (int)rnd(4);
        switch (which) {
        case 0: snprintf(pattern, sizeof pattern, "t.>"); break;
        case 1: snprintf(pattern, sizeof pattern, "t.%d.>", P); s->pfilter = P; break;
        case 2: snprintf(pattern, sizeof pattern, "t.*.%d", K); s->kfilter = K; break;
        case 3: snprintf(pattern, sizeof pattern, "t.%d.%d", P, K); s->pfilter = P; s->kfilter = K; break;
        case 4: snprintf(pattern, sizeof pattern, ">"); break;
        default: snprintf(pattern, sizeof pattern, "t.*.*"); break;
        }
        s->t_only = which != 4;
        /* s->id stays 0 ("not known"): the callback may run before subscribe returns */
        int64_t id = jsonbus_subscribe(ctx->bus, pattern, callback, s);
        if (id == JSONBUS_ERR_CLOSED) {
            retire(s);
            wlock_unlock(&sl->lock);
            sleep_ms(1);
            continue;
        }
        CHECK_MSG(id > 0, "subscribe(%s): %s", pattern, jsonbus_status_name((int32_t)id));
        atomic_fetch_add(&n_subs, 1);
        long long lo[NPUB], hi[NPUB];
        for (int p = 0; p < NPUB; p++) lo[p] = atomic_load(&sl->started[p]);
        sleep_us((long)rnd(15000));
        for (int p = 0; p < NPUB; p++) hi[p] = atomic_load(&sl->returned[p]);
        int closing_before = atomic_load(&ctx->closing), closed_before = atomic_load(&ctx->closed);
        int32_t frc = jsonbus_flush(ctx->bus, flush_ms);
        int closed_after_flush = atomic_load(&ctx->closed);
        CHECK_MSG(frc == JSONBUS_OK || frc == JSONBUS_ERR_CLOSED, "flush: %s: %s",
                  jsonbus_status_name(frc), jsonbus_last_error());
        int32_t urc = jsonbus_unsubscribe(ctx->bus, id);
        if (urc == JSONBUS_OK) {
            /* final now: no callback runs or will run. Check, then poison. */
            if (atomic_load(&s->in_cb)) FAIL("callback still running after unsubscribe returned");
            if (kind == K_WATCH && frc == JSONBUS_OK) {
                /* every matching message published after subscribe returned and accepted
                 * before the flush began, exactly once, in order (gaps fail in the callback) */
                for (int p = 0; p < NPUB; p++) {
                    if (s->pfilter >= 0 && p != s->pfilter) continue;
                    long long need_lo = -1, need_hi = -1; /* smallest / largest required N */
                    for (long long n = lo[p] + 1; n <= hi[p]; n++)
                        if (s->kfilter < 0 || n % 4 == s->kfilter) { need_lo = n; break; }
                    for (long long n = hi[p]; n > lo[p]; n--)
                        if (s->kfilter < 0 || n % 4 == s->kfilter) { need_hi = n; break; }
                    if (need_lo < 0) continue;
                    if (s->first[p] < 0 || s->first[p] > need_lo || s->last[p] < need_hi)
                        FAIL("subscription %lld (%s, bus gen %lld) got publisher %d's %lld..%lld; "
                             "it must have got %lld..%lld (published while it was live, "
                             "flushed before unsubscribe); bus closing before the flush: %d, "
                             "close had returned before the flush: %d, after it: %d, now: %d",
                             (long long)id, pattern, ctx->gen, p, (long long)s->first[p],
                             (long long)s->last[p], need_lo, need_hi, closing_before,
                             closed_before, closed_after_flush, atomic_load(&ctx->closed));
                    atomic_fetch_add(&n_checked_msgs, (need_hi - need_lo) / (s->kfilter < 0 ? 1 : 4) + 1);
                }
                atomic_fetch_add(&n_subs_checked, 1);
            }
            retire(s);
        } else if (urc == JSONBUS_ERR_NOT_FOUND) {
            /* it ended itself (budget), or the bus was closed meanwhile */
            double end = now_ms() + 200;
            while (!atomic_load(&s->done) && now_ms() < end) sleep_us(100);
            if (atomic_load(&s->done)) retire(s);
            else defer_to_close(ctx, s); /* the bus is closing: final once close returned */
        } else {
            FAIL("unsubscribe: %s: %s", jsonbus_status_name(urc), jsonbus_last_error());
        }
        /* a second unsubscribe is always NOT_FOUND */
        CHECK_EQ(jsonbus_unsubscribe(ctx->bus, id), JSONBUS_ERR_NOT_FOUND);
        wlock_unlock(&sl->lock);
    }
    return NULL;
}

static long rss_kb(void) {
#ifdef _WIN32
    PROCESS_MEMORY_COUNTERS pmc;
    if (!GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc)) return -1;
    return (long)(pmc.WorkingSetSize / 1024);
#else
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
#endif
}
static atomic_long rss_max;

static void *monitor(void *arg) {
    (void)arg;
    rng_seed(300);
    while (!atomic_load(&stop)) {
        int si = (int)rnd(NSLOT);
        struct slot *sl = &slots[si];
        wlock_read(&sl->lock);
        struct busctx *ctx = sl->ctx;
        long long queued = STAT(ctx->bus, "queued");
        CHECK_MSG(queued <= ctx->capacity, "stats queued %lld > queue_capacity %ld", queued,
                  ctx->capacity);
        long long snap[NPUB];
        for (int p = 0; p < NPUB; p++) snap[p] = atomic_load(&ctx->accepted[p]) - 1;
        int32_t rc = jsonbus_flush(ctx->bus, flush_ms);
        /* A flush that starts after a close returned returns OK even if the close discarded
         * messages (contract, guarantee 8): only a bus that is not closing is checked. */
        if (rc == JSONBUS_OK && !atomic_load(&ctx->closing)) {
            for (int p = 0; p < NPUB; p++) {
                long long got = ctx->witness->last[p];
                if (got >= snap[p]) continue;
                char *st = jsonbus_stats(ctx->bus);
                sleep_ms(200);
                FAIL("flush returned OK but the witness (bus gen %lld, queue_capacity %ld) had "
                     "publisher %d's messages only up to %lld of %lld (200 ms later: %lld); "
                     "stats at the time: %s",
                     ctx->gen, ctx->capacity, p, got, snap[p], (long long)ctx->witness->last[p],
                     st);
            }
            atomic_fetch_add(&n_flush_checks, 1);
        } else if (rc != JSONBUS_OK) {
            CHECK_MSG(rc == JSONBUS_ERR_CLOSED, "flush: %s: %s", jsonbus_status_name(rc),
                      jsonbus_last_error());
        }
        wlock_unlock(&sl->lock);
        long rss = rss_kb();
        if (rss > atomic_load(&rss_max)) atomic_store(&rss_max, rss);
        sleep_ms(2);
    }
    return NULL;
}

static long long gen_counter;

static void replace_bus(int si, int timeout_ms) {
    struct slot *sl = &slots[si];
    struct busctx *old = sl->ctx;
    int32_t rc = close_bus(old, timeout_ms); /* under load: others still use it */
    wlock_write(&sl->lock);
    check_and_free_bus(old, rc);
    sl->ctx = make_bus(si, ++gen_counter);
    for (int p = 0; p < NPUB; p++) {
        atomic_store(&sl->started[p], -1);
        atomic_store(&sl->returned[p], -1);
    }
    wlock_unlock(&sl->lock);
}

static void *churner(void *arg) {
    (void)arg;
    rng_seed(400);
    while (!atomic_load(&stop)) {
        sleep_ms(100 + (long)rnd(200));
        if (atomic_load(&stop)) break;
        replace_bus((int)rnd(NSLOT), rnd(3) == 0 ? 0 : (int)rnd(51));
        /* the quick API on the default bus, then shut it down */
        long long before = atomic_load(&n_default_received);
        int64_t id = register_callback(default_callback, NULL);
        CHECK_MSG(id > 0, "register_callback: %s", jsonbus_status_name((int32_t)id));
        for (int i = 0; i < 10; i++) CHECK_OK(push_json("{\"quick\":true}"));
        atomic_fetch_add(&n_default_pushes, 10);
        CHECK_OK(jsonbus_flush(jsonbus_default(), flush_ms));
        CHECK_MSG(atomic_load(&n_default_received) - before >= 10, "default bus lost pushes");
        CHECK_OK(jsonbus_shutdown(-1));
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = 5;
    const char *env = getenv("JSONBUS_SOAK_SECONDS");
    if (env && *env) seconds = atof(env);
    if (argc > 1) seconds = atof(argv[1]);
    if (seconds <= 0) seconds = 5;
    long rss_limit_mb = 768;
    const char *lim = getenv("JSONBUS_SOAK_MAX_RSS_MB");
    if (lim && *lim) rss_limit_mb = atol(lim);
    const char *fl = getenv("JSONBUS_SOAK_FLUSH_MS");
    if (fl && *fl && atol(fl) > 0) flush_ms = (int32_t)atol(fl);

    int threads0 = thread_count();
    long rss0 = rss_kb();
    printf("soak: %.1f s, %d publishers, 2 subscribers, monitor, churner, %d bus slots\n", seconds,
           NPUB, NSLOT);
    fflush(stdout);
    rng_seed(1);
    for (int i = 0; i < NSLOT; i++) {
        wlock_init(&slots[i].lock);
        slots[i].ctx = make_bus(i, ++gen_counter);
        for (int p = 0; p < NPUB; p++) {
            atomic_store(&slots[i].started[p], -1);
            atomic_store(&slots[i].returned[p], -1);
        }
    }
    double t0 = now_ms();
    pthread_t th[8];
    for (int p = 0; p < NPUB; p++) START_THREAD(th[p], publisher, (void *)(intptr_t)p);
    START_THREAD(th[4], subscriber, (void *)(intptr_t)0);
    START_THREAD(th[5], subscriber, (void *)(intptr_t)1);
    START_THREAD(th[6], monitor, NULL);
    START_THREAD(th[7], churner, NULL);
    long rss_warm = -1;
    while (now_ms() - t0 < seconds * 1000) {
        sleep_ms(50);
        if (rss_warm < 0 && now_ms() - t0 > 1000) rss_warm = rss_kb();
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 8; i++) JOIN_THREAD(th[i]);
    double t1 = now_ms();

    /* the end: every bus closed without a time limit delivers everything */
    for (int i = 0; i < NSLOT; i++) {
        int32_t rc = close_bus(slots[i].ctx, -1);
        CHECK_RC(rc, JSONBUS_OK);
        wlock_write(&slots[i].lock);
        check_and_free_bus(slots[i].ctx, rc);
        slots[i].ctx = NULL;
        wlock_unlock(&slots[i].lock);
        wlock_destroy(&slots[i].lock);
    }
    CHECK_OK(jsonbus_shutdown(-1));
    for (int i = 0; i < QUARANTINE; i++) free(quarantine[i]);

    int threads = wait_thread_count(threads0, 2000);
    if (threads != threads0) print_threads();
    CHECK_MSG(threads == threads0, "%d threads at the end, %d at the start", threads, threads0);
    long rss_end = rss_kb();
    long rmax = atomic_load(&rss_max);
    printf("soak: %.1f s: %lld messages published (%lld echoes from callbacks, %lld echoes FULL), "
           "%lld callbacks, %lld delivery ranges checked to the message (%lld messages), "
           "%lld subscriptions (%lld ended by UNSUBSCRIBE, %lld unsubscribed themselves, %lld "
           "subscribed from callbacks), %lld buses (%lld closes ran out of time), %lld flush "
           "checks, %lld publishes refused CLOSED, %lld FULL, %lld default-bus pushes; threads "
           "%d -> %d; VmRSS %ld kB at start, %ld kB after 1 s, max %ld kB, %ld kB at end\n",
           (t1 - t0) / 1000, atomic_load(&n_published) + atomic_load(&n_echo_published),
           atomic_load(&n_echo_published), atomic_load(&n_echo_full), atomic_load(&n_callbacks),
           atomic_load(&n_subs_checked), atomic_load(&n_checked_msgs), atomic_load(&n_subs),
           atomic_load(&n_budget_ended), atomic_load(&n_self_unsub), atomic_load(&n_children),
           atomic_load(&n_buses), atomic_load(&n_closes_timeout), atomic_load(&n_flush_checks),
           atomic_load(&n_rejected_closed), atomic_load(&n_rejected_full),
           atomic_load(&n_default_pushes), threads0, threads, rss0, rss_warm, rmax, rss_end);
    CHECK_MSG(atomic_load(&n_published) > 0 && atomic_load(&n_subs_checked) > 0 &&
                  atomic_load(&n_flush_checks) > 0,
              "the soak did too little to mean anything");
    if (!UNDER_SANITIZER)
        CHECK_MSG(rmax / 1024 < rss_limit_mb, "VmRSS reached %ld MB (limit %ld MB)", rmax / 1024,
                  rss_limit_mb);
    printf("ok\n");
    return 0;
}
