/*
 * test_flush_during_close: a flush that is waiting when a close discards messages it waits
 * for returns JSONBUS_ERR_CLOSED, never JSONBUS_OK (contract, guarantee 5: "If the bus is
 * closed meanwhile and a message it waited for is discarded, it returns JSONBUS_ERR_CLOSED").
 * Found by the soak test: the library once answered such flushes with OK.
 *
 * Each round: 50 messages for a subscription whose first call blocks for 100 ms; a thread that
 * calls jsonbus_flush(bus, -1); then jsonbus_close(bus, 0), which discards the 49 queued
 * messages at once and then waits for the running call. The flush starts long before the
 * close can finish (it overlaps the close), so it must say CLOSED. A flush after the close
 * returned says OK (guarantee 8).
 */
#include "check.h"

static atomic_int got;
static int32_t slow(const jsonbus_message *msg, void *ud) {
    (void)msg;
    (void)ud;
    if (atomic_fetch_add(&got, 1) == 0) sleep_ms(100);
    return JSONBUS_OK;
}

/* The flusher's result goes back through the caller's struct: a pointer to the thread's own
 * storage (a _Thread_local, say) would dangle once the thread has been joined. */
struct flush_call {
    jsonbus *bus;
    int32_t rc;
};

static void *flusher(void *arg) {
    struct flush_call *call = arg;
    call->rc = jsonbus_flush(call->bus, -1);
    return NULL;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    int closed_seen = 0;
    for (int r = 0; r < rounds; r++) {
        jsonbus *bus = NEW_BUS(NULL);
        atomic_store(&got, 0);
        SUBSCRIBE(bus, "x", slow, NULL);
        for (int i = 0; i < 50; i++) PUBLISH(bus, "x", "1");
        pthread_t th;
        struct flush_call call = {bus, 0};
        START_THREAD(th, flusher, &call);
        while (atomic_load(&got) == 0) sleep_us(100); /* the first call is running */
        sleep_ms(5);                                  /* the flush is very likely waiting */
        int32_t close_rc = jsonbus_close(bus, 0);
        CHECK_EQ(pthread_join(th, NULL), 0);
        int32_t flush_rc = call.rc;
        int n = atomic_load(&got);
        if (n < 50) {
            CHECK_MSG(close_rc == JSONBUS_ERR_TIMEOUT, "round %d: close discarded %d messages "
                      "but returned %s", r, 50 - n, jsonbus_status_name(close_rc));
            CHECK_MSG(flush_rc == JSONBUS_ERR_CLOSED,
                      "round %d: a flush waiting for 50 messages returned %s although the close "
                      "discarded %d of them", r, jsonbus_status_name(flush_rc), 50 - n);
            closed_seen++;
        } else {
            CHECK_MSG(flush_rc == JSONBUS_OK, "round %d: all delivered, flush returned %s", r,
                      jsonbus_status_name(flush_rc));
        }
        CHECK_EQ(jsonbus_flush(bus, -1), JSONBUS_OK); /* after close returned */
        jsonbus_free(bus);
    }
    printf("%d of %d rounds discarded messages; every waiting flush said JSONBUS_ERR_CLOSED\n",
           closed_seen, rounds);
    CHECK_MSG(closed_seen > 0, "no round discarded anything: the test tested nothing");
    printf("ok\n");
    return 0;
}
