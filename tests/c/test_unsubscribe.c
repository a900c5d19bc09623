/*
 * test_unsubscribe: unsubscribe is final (contract guarantee 6, 2).
 *
 *  1. jsonbus_unsubscribe from another thread while the callback is running waits for it;
 *     after it returns the callback never runs again (user_data is freed right away, so
 *     ASan catches a late call; a global flag catches it without ASan); messages still
 *     queued for it are dropped and counted.
 *  2. a callback returning JSONBUS_UNSUBSCRIBE, and one unsubscribing itself by id.
 *  3. from inside another subscription's callback, unsubscribe does not wait.
 *  4. stress: unsubscribe racing with a publishing thread, 200 times.
 *  5. double unsubscribe and unknown ids: JSONBUS_ERR_NOT_FOUND.
 */
#include "check.h"

#include <sched.h>

#define MAGIC 0x5ca1ab1eu

struct blocker {
    unsigned magic;
    atomic_int entered;
    atomic_int release;
    atomic_int calls;
};

static atomic_int unsubscribed;  /* set right after jsonbus_unsubscribe returned */
static atomic_int late_calls;    /* callbacks that started after that */

static int32_t blocking_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    if (atomic_load(&unsubscribed)) {
        atomic_fetch_add(&late_calls, 1);
        return JSONBUS_OK; /* do not touch user_data: it is freed */
    }
    struct blocker *b = user_data;
    if (b->magic != MAGIC) FAIL("user_data corrupted: callback after free?");
    atomic_fetch_add(&b->calls, 1);
    atomic_store(&b->entered, 1);
    double end = now_ms() + 10000;
    while (!atomic_load(&b->release) && now_ms() < end) sleep_us(200);
    sleep_ms(20); /* still running a little after the release */
    if (atomic_load(&unsubscribed)) FAIL("jsonbus_unsubscribe returned while the callback ran");
    return JSONBUS_OK;
}

static jsonbus *bus;

struct unsub_job {
    int64_t id;
    struct blocker *b;
    atomic_int done;
    int32_t rc;
};

static void *unsubscriber(void *arg) {
    struct unsub_job *job = arg;
    job->rc = jsonbus_unsubscribe(bus, job->id);
    if (job->rc == JSONBUS_OK) {
        atomic_store(&unsubscribed, 1);
        job->b->magic = 0;
        free(job->b); /* the contract says we may */
        job->b = NULL;
    }
    atomic_store(&job->done, 1);
    return NULL;
}

static void test_unsubscribe_while_running(void) {
    struct blocker *b = calloc(1, sizeof *b);
    CHECK(b != NULL);
    b->magic = MAGIC;
    int64_t id = SUBSCRIBE(bus, "x", blocking_callback, b);
    PUBLISH(bus, "x", "{\"n\":0}");
    CHECK_MSG(wait_for(&b->entered, 1, 5000), "callback never started");
    for (int i = 1; i <= 10; i++) PUBLISH(bus, "x", "{\"n\":1}"); /* queued behind it */
    CHECK_EQ(STAT(bus, "queued"), 11); /* held: the running one and 10 waiting */

    struct unsub_job job = {id, b, 0, 0};
    pthread_t th;
    START_THREAD(th, unsubscriber, &job);
    sleep_ms(150);
    CHECK_MSG(!atomic_load(&job.done),
              "jsonbus_unsubscribe returned while the subscription's callback was running");
    atomic_store(&b->release, 1); /* b is freed by the unsubscriber from here on */
    JOIN_THREAD(th);
    CHECK_RC(job.rc, JSONBUS_OK);

    for (int i = 0; i < 100; i++) PUBLISH(bus, "x", "{\"n\":2}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    sleep_ms(50);
    CHECK_EQ(atomic_load(&late_calls), 0);
    CHECK_EQ(STAT(bus, "subscriptions"), 0);
    CHECK_EQ(STAT(bus, "published"), 111);
    CHECK_EQ(STAT(bus, "delivered"), 1);
    CHECK_EQ(STAT(bus, "dropped"), 10);   /* queued for it when it ended */
    CHECK_EQ(STAT(bus, "unrouted"), 100); /* published after it ended */
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND); /* second time */
    atomic_store(&unsubscribed, 0);
}

/* ---- a callback that ends its own subscription ---- */
struct self_ender {
    atomic_int calls;
    int by_id; /* 0: return JSONBUS_UNSUBSCRIBE; 1: call jsonbus_unsubscribe on itself */
    atomic_int unsub_rc;
    atomic_int ended; /* set just before it ends itself */
};

static int32_t ends_itself_on_third(const jsonbus_message *msg, void *user_data) {
    struct self_ender *s = user_data;
    if (atomic_load(&s->ended)) FAIL("callback ran again after it ended its subscription");
    int n = atomic_fetch_add(&s->calls, 1) + 1;
    if (n < 3) return JSONBUS_OK;
    atomic_store(&s->ended, 1);
    if (s->by_id) {
        atomic_store(&s->unsub_rc, jsonbus_unsubscribe(bus, msg->subscription));
        return JSONBUS_OK;
    }
    return JSONBUS_UNSUBSCRIBE;
}

static void test_self_unsubscribe(int by_id) {
    long long published0 = STAT(bus, "published"), delivered0 = STAT(bus, "delivered");
    long long dropped0 = STAT(bus, "dropped"), unrouted0 = STAT(bus, "unrouted");
    struct self_ender *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    s->by_id = by_id;
    atomic_store(&s->unsub_rc, 12345);
    int64_t id = SUBSCRIBE(bus, "self", ends_itself_on_third, s);
    for (int i = 0; i < 10; i++) PUBLISH(bus, "self", "[]");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&s->calls), 3);
    if (by_id) CHECK_RC(atomic_load(&s->unsub_rc), JSONBUS_OK);
    CHECK_EQ(STAT(bus, "subscriptions"), 0);
    CHECK_EQ(STAT(bus, "published") - published0, 10);
    CHECK_EQ(STAT(bus, "delivered") - delivered0, 3);
    /* the other 7 were queued for it (dropped) or published after it ended (unrouted) */
    CHECK_EQ(STAT(bus, "dropped") - dropped0 + STAT(bus, "unrouted") - unrouted0, 7);
    CHECK_EQ(STAT(bus, "callback_failures"), 0);
    free(s); /* allowed once it returned JSONBUS_UNSUBSCRIBE / unsubscribed itself */
    for (int i = 0; i < 10; i++) PUBLISH(bus, "self", "[]");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
}

/* ---- unsubscribing another subscription from inside a callback ---- */
static struct blocker victim;
static atomic_int killer_done;
static atomic_int killer_rc;
static int64_t victim_id;

static int32_t killer_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_store(&killer_rc, jsonbus_unsubscribe(bus, victim_id)); /* must not wait */
    atomic_store(&killer_done, 1);
    return JSONBUS_OK;
}

static void test_unsubscribe_other_from_callback(void) {
    jsonbus *saved = bus;
    bus = NEW_BUS("{\"dispatcher_threads\":2}");
    victim.magic = MAGIC;
    victim_id = SUBSCRIBE(bus, "victim", blocking_callback, &victim);
    SUBSCRIBE(bus, "killer", killer_callback, NULL);
    PUBLISH(bus, "victim", "1");
    CHECK_MSG(wait_for(&victim.entered, 1, 5000), "victim callback never started");
    PUBLISH(bus, "victim", "2"); /* queued: must never be delivered */
    PUBLISH(bus, "killer", "3");
    CHECK_MSG(wait_for(&killer_done, 1, 5000),
              "jsonbus_unsubscribe of another subscription from inside a callback waited for "
              "that subscription's running callback");
    CHECK_RC(atomic_load(&killer_rc), JSONBUS_OK);
    atomic_store(&victim.release, 1);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&victim.calls), 1);
    CHECK_EQ(STAT(bus, "dropped"), 1);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    bus = saved;
}

/* ---- stress: unsubscribe racing with publishes ---- */
static atomic_int stop_publishing;
static atomic_int stress_gone;  /* id of the subscription already unsubscribed */
static atomic_int stress_late;

static int32_t stress_callback(const jsonbus_message *msg, void *user_data) {
    int *cookie = user_data;
    if (atomic_load(&stress_gone) == (int)msg->subscription) atomic_fetch_add(&stress_late, 1);
    else if (*cookie != 42) atomic_fetch_add(&stress_late, 1);
    spin_us(5);
    return JSONBUS_OK;
}

static void *stress_publisher(void *arg) {
    (void)arg;
    for (unsigned n = 1; !atomic_load(&stop_publishing); n++) {
        int32_t rc = jsonbus_publish(bus, "stress", "{}", 2);
        if (rc != JSONBUS_OK) FAIL("publish returned %s", jsonbus_status_name(rc));
        /* let the unsubscribing thread run now and then: valgrind runs one thread at a time,
         * and a publisher that never blocks made this test take up to 12 minutes there */
        if (n % 64 == 0) sched_yield();
    }
    return NULL;
}

static void test_unsubscribe_stress(void) {
    jsonbus *saved = bus;
    bus = NEW_BUS("{\"dispatcher_threads\":2,\"queue_capacity\":256}");
    pthread_t th;
    START_THREAD(th, stress_publisher, NULL);
    for (int round = 0; round < 200; round++) {
        int *cookie = malloc(sizeof *cookie);
        CHECK(cookie != NULL);
        *cookie = 42;
        int64_t id = SUBSCRIBE(bus, "stress", stress_callback, cookie);
        sleep_us(500);
        CHECK_OK(jsonbus_unsubscribe(bus, id));
        atomic_store(&stress_gone, (int)id);
        *cookie = 0;
        free(cookie);
    }
    atomic_store(&stop_publishing, 1);
    JOIN_THREAD(th);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(atomic_load(&stress_late), 0);
    CHECK_EQ(STAT(bus, "subscriptions"), 0);
    CHECK_EQ(STAT(bus, "published"),
             STAT(bus, "delivered") + STAT(bus, "dropped") + STAT(bus, "unrouted"));
    print_stats("stress", bus);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    bus = saved;
}

int main(void) {
    bus = NEW_BUS("{\"dispatcher_threads\":1}");
    test_unsubscribe_while_running();
    test_self_unsubscribe(0);
    test_self_unsubscribe(1);
    test_unsubscribe_other_from_callback();
    test_unsubscribe_stress();

    /* unknown ids, and ids of a closed bus */
    CHECK_ERR(jsonbus_unsubscribe(bus, 987654321), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_unsubscribe(bus, 0), JSONBUS_ERR_NOT_FOUND);
    CHECK_ERR(jsonbus_unsubscribe(bus, -1), JSONBUS_ERR_NOT_FOUND);
    int64_t id = SUBSCRIBE(bus, "y", ends_itself_on_third, NULL);
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_ERR(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
    int64_t id2 = SUBSCRIBE(bus, "y", ends_itself_on_third, NULL);
    CHECK_MSG(id2 != id, "a subscription id was reused");
    CHECK_OK(jsonbus_close(bus, -1));
    CHECK_ERR(jsonbus_unsubscribe(bus, id2), JSONBUS_ERR_NOT_FOUND);
    jsonbus_free(bus);
    printf("ok\n");
    return 0;
}
