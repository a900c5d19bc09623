/*
 * test_stats: jsonbus_stats (contract: Stats).
 *
 * All documented keys are there (rejected.* too); it is valid JSON; each counter counts
 * what it says: published, delivered, unrouted, queued (held now), subscriptions,
 * callback_failures and rejections by reason.
 */
#include "check.h"

static atomic_int entered, release_flag;

static int32_t failing_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    return -7; /* a failure: counted, stays subscribed */
}

static int32_t blocking_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_store(&entered, 1);
    double end = now_ms() + 10000;
    while (!atomic_load(&release_flag) && now_ms() < end) sleep_us(200);
    return JSONBUS_OK;
}

static int32_t ok_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    return JSONBUS_OK;
}

int main(void) {
    jsonbus *bus = NEW_BUS("{\"queue_capacity\":4,\"publish_timeout_ms\":0,"
                           "\"max_message_bytes\":100,\"dispatcher_threads\":3}");

    /* ---- keys, on a new bus: all zero except dispatcher_threads ---- */
    char *s = jsonbus_stats(bus);
    CHECK(s != NULL);
    CHECK_CLEARED();
    printf("new bus: %s\n", s);
    static const char *const keys[] = {"published", "delivered", "unrouted", "dropped", "queued",
                                       "subscriptions", "callback_failures"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        long long v = json_int_after(s, s, keys[i]);
        CHECK_MSG(v == 0, "stats key \"%s\" is %lld (missing is -1) on a new bus", keys[i], v);
    }
    CHECK_EQ(json_int_after(s, s, "dispatcher_threads"), 3);
    const char *rejected = strstr(s, "\"rejected\"");
    CHECK_MSG(rejected != NULL, "no \"rejected\" in %s", s);
    const char *colon = rejected + strlen("\"rejected\"");
    while (*colon == ' ') colon++;
    CHECK_MSG(*colon == ':', "\"rejected\" is not a key");
    colon++;
    while (*colon == ' ') colon++;
    CHECK_MSG(*colon == '{', "\"rejected\" is not an object in %s", s);
    static const char *const reasons[] = {"json", "utf8", "topic", "too_large", "full", "closed"};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        long long v = json_int_after(s, rejected, reasons[i]);
        CHECK_MSG(v == 0, "rejected.%s is %lld (missing is -1) on a new bus", reasons[i], v);
    }
    /* the stats text is valid JSON: publishing it must work */
    jsonbus *checker = NEW_BUS(NULL);
    CHECK_OK(jsonbus_publish(checker, "stats", s, strlen(s)));
    jsonbus_string_free(s);

    /* ---- counting ---- */
    int64_t failing = SUBSCRIBE(bus, "fail", failing_callback, NULL);
    SUBSCRIBE(bus, "block", blocking_callback, NULL);
    SUBSCRIBE(bus, "ok.>", ok_callback, NULL);
    SUBSCRIBE(bus, "ok.a", ok_callback, NULL);
    CHECK_EQ(STAT(bus, "subscriptions"), 4);
    /* (flush after each: the capacity is only 4 and publish_timeout_ms 0) */
    for (int i = 0; i < 3; i++) {
        PUBLISH(bus, "fail", "{}");
        CHECK_OK(jsonbus_flush(bus, 5000));
    }
    for (int i = 0; i < 2; i++) {
        PUBLISH(bus, "ok.a", "{}"); /* 2 subscriptions each */
        CHECK_OK(jsonbus_flush(bus, 5000));
    }
    PUBLISH(bus, "ok.b", "[]");
    for (int i = 0; i < 4; i++) PUBLISH(bus, "nobody.home", "0"); /* never held */
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(STAT(bus, "published"), 10);
    CHECK_EQ(STAT(bus, "delivered"), 3 + 4 + 1);
    CHECK_EQ(STAT(bus, "callback_failures"), 3);
    CHECK_EQ(STAT(bus, "unrouted"), 4);
    CHECK_EQ(STAT(bus, "queued"), 0);
    CHECK_EQ(STAT(bus, "dropped"), 0);
    CHECK_EQ(STAT(bus, "subscriptions"), 4); /* a failing callback stays subscribed */

    /* rejections by reason */
    CHECK_ERR(jsonbus_publish(bus, "x", "{", 1), JSONBUS_ERR_JSON);
    CHECK_ERR(jsonbus_publish(bus, "x", "nope", 4), JSONBUS_ERR_JSON);
    CHECK_ERR(jsonbus_publish(bus, "x", "\"\xff\"", 3), JSONBUS_ERR_UTF8);
    CHECK_ERR(jsonbus_publish(bus, "x..y", "1", 1), JSONBUS_ERR_TOPIC);
    CHECK_ERR(jsonbus_publish(bus, "*", "1", 1), JSONBUS_ERR_TOPIC);
    CHECK_ERR(jsonbus_publish(bus, "", "1", 1), JSONBUS_ERR_TOPIC);
    char big[200];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    CHECK_ERR(jsonbus_publish(bus, "x", big, sizeof big), JSONBUS_ERR_TOO_LARGE);

    /* held now: the message in the callback and those waiting (capacity 4) */
    PUBLISH(bus, "block", "1");
    CHECK_MSG(wait_for(&entered, 1, 5000), "callback never started");
    PUBLISH(bus, "block", "2");
    PUBLISH(bus, "block", "3");
    CHECK_EQ(STAT(bus, "queued"), 3);
    PUBLISH(bus, "block", "4");
    CHECK_EQ(STAT(bus, "queued"), 4);
    CHECK_ERR(jsonbus_publish(bus, "block", "5", 1), JSONBUS_ERR_FULL);
    CHECK_ERR(jsonbus_publish(bus, "block", "6", 1), JSONBUS_ERR_FULL);
    atomic_store(&release_flag, 1);
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(STAT(bus, "queued"), 0);

    CHECK_OK(jsonbus_unsubscribe(bus, failing));
    CHECK_EQ(STAT(bus, "subscriptions"), 3);
    CHECK_OK(jsonbus_close(bus, 1000));
    CHECK_ERR(jsonbus_publish(bus, "x", "1", 1), JSONBUS_ERR_CLOSED);

    print_stats("final", bus);
    CHECK_EQ(REJECTED(bus, "json"), 2);
    CHECK_EQ(REJECTED(bus, "utf8"), 1);
    CHECK_EQ(REJECTED(bus, "topic"), 3);
    CHECK_EQ(REJECTED(bus, "too_large"), 1);
    CHECK_EQ(REJECTED(bus, "full"), 2);
    CHECK_EQ(REJECTED(bus, "closed"), 1);
    CHECK_EQ(STAT(bus, "published"), 14);
    CHECK_EQ(STAT(bus, "delivered"), 12);

    /* stats of a closed bus are still valid JSON */
    s = jsonbus_stats(bus);
    CHECK(s != NULL);
    CHECK_OK(jsonbus_publish(checker, "stats", s, strlen(s)));
    jsonbus_string_free(s);
    jsonbus_free(bus);
    CHECK_OK(jsonbus_close(checker, -1));
    jsonbus_free(checker);
    printf("ok\n");
    return 0;
}
